/*
 * backup.c - the backups of images (backup.h): the table of each image's last
 * backup, and starting one (the checks a caller is answered with before its
 * coordinator thread, job.c, takes over).
 *
 * Threads: callers (the control socket's connection threads) start backups
 * and read statuses; the coordinators (job.c) and the workers (pool.c) run
 * the rest. b->lock guards the status table (b->entries), the job list and the
 * jobs' queue fields; it is never held across the target or the image file.
 */
#include "backup_internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

const char *bk_backup_state_name(enum bk_backup_state state)
{
    switch (state) {
    case BK_BACKUP_IN_PROGRESS:
        return "in_progress";
    case BK_BACKUP_COMPLETE:
        return "complete";
    case BK_BACKUP_ERROR:
        break;
    }
    return "error";
}

/* ---- the table ---- */

/* Two workers per core, 4 to 8: a worker waits on fsync or the network as often
 * as it computes, and each holds about 4 MiB of buffers. */
static unsigned bk_default_workers(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);

    return n < 2 ? 4 : n > 4 ? 8 : 2 * (unsigned)n;
}

int bk_backups_open(const struct bk_backups_options *opts, struct bk_backups **out)
{
    struct bk_backups *b;
    int rc;

    *out = NULL;
    b = calloc(1, sizeof(*b));
    if (!b)
        return -ENOMEM;
    pthread_mutex_init(&b->lock, NULL);
    pthread_cond_init(&b->work, NULL);
    b->worker_count = opts && opts->workers ? opts->workers : bk_default_workers();
    rc = bk_pool_start(b);
    if (rc < 0) {
        bk_backups_close(b);
        return rc;
    }
    *out = b;
    return 0;
}

void bk_backups_close(struct bk_backups *b)
{
    if (!b)
        return;
    pthread_mutex_lock(&b->lock);
    b->stopping = true;
    for (struct bk_job *j = b->jobs; j; j = j->next_job)
        pthread_cond_signal(&j->cond);
    pthread_mutex_unlock(&b->lock);
    bk_pool_stop(b);
    pthread_mutex_lock(&b->lock);
    while (b->jobs)
        pthread_cond_wait(&b->work, &b->lock);
    pthread_mutex_unlock(&b->lock);
    while (b->entries) {
        struct bk_status_entry *e = b->entries;

        b->entries = e->next;
        bk_known_clear(b, &e->known);
        free(e);
    }
    pthread_cond_destroy(&b->work);
    pthread_mutex_destroy(&b->lock);
    free(b);
}

void bk_known_clear(struct bk_backups *b, struct bk_known *k)
{
    if (b)
        b->known_blocks -= k->count;
    free(k->blocks);
    memset(k, 0, sizeof(*k));
}

/* Hand the job the blocks of the image's last backup when it is the same
 * image (b->lock held); a table of another image is dropped. */
static void bk_entry_hand_known(struct bk_backups *b, struct bk_status_entry *e, struct bk_job *job)
{
    struct bk_known *k = &e->known;

    if (!k->blocks)
        return;
    if (strcmp(k->uuid, job->uuid) == 0 && strcmp(k->checksum, job->checksum) == 0 &&
        k->size == job->size) {
        b->known_blocks -= k->count;
        job->known = *k;
        memset(k, 0, sizeof(*k));
    } else {
        bk_known_clear(b, k);
    }
}

static struct bk_status_entry *bk_entry_find(struct bk_backups *b, const char *name)
{
    for (struct bk_status_entry *e = b->entries; e; e = e->next)
        if (strcmp(e->name, name) == 0)
            return e;
    return NULL;
}

int bk_backup_status_get(struct bk_backups *b, const char *name, struct bk_backup_status *out,
                         struct bim_error *err)
{
    struct bk_status_entry *e;
    int rc = 0;

    pthread_mutex_lock(&b->lock);
    e = bk_entry_find(b, name);
    if (e) {
        *out = e->status;
        if (out->state == BK_BACKUP_IN_PROGRESS && out->blocks)
            out->progress = (int)(out->blocks_done * 99 / (2 * out->blocks)); /* two passes */
    } else {
        rc = bim_error_set(err, -ENOENT, "%s: no backup since the daemon started", name);
    }
    pthread_mutex_unlock(&b->lock);
    return rc;
}

/* ---- starting one ---- */

static int bk_job_labels(struct bk_job *job, const struct bk_backup_request *req,
                         struct bim_error *err)
{
    if (req->label_count > BK_LABELS_MAX)
        return bim_error_set(err, -EINVAL, "%s: more than %d labels", req->name, BK_LABELS_MAX);
    job->labels = calloc(req->label_count + 1, sizeof(*job->labels));
    if (!job->labels)
        return bim_error_set(err, -ENOMEM, "%s: out of memory", req->name);
    for (size_t i = 0; i < req->label_count; i++) {
        const struct bk_label *l = &req->labels[i];

        if (!l->key[0] || strlen(l->key) > BK_LABEL_MAX || strlen(l->value) > BK_LABEL_MAX)
            return bim_error_set(err, -EINVAL,
                                 "%s: a label's key must be 1 to %d bytes, its value at most %d",
                                 req->name, BK_LABEL_MAX, BK_LABEL_MAX);
        job->labels[i].key = strdup(l->key);
        job->labels[i].value = strdup(l->value);
        job->label_count = i + 1;
        if (!job->labels[i].key || !job->labels[i].value)
            return bim_error_set(err, -ENOMEM, "%s: out of memory", req->name);
    }
    return 0;
}

/* Whether the target answers: a listing of its backups (an S3 bucket that
 * does not exist answers 404 there, where a missing object is only absent). */
static int bk_job_probe_target(struct bk_job *job, struct bim_error *err)
{
    struct bim_error cause = {{0}, 0};
    char **names = NULL;
    size_t count = 0;
    int rc = job->ops->list(job->t, BK_CFG_DIR, &names, &count, &cause);

    for (size_t i = 0; i < count; i++)
        free(names[i]);
    free(names);
    if (rc < 0)
        return bim_error_set(err, -EINVAL, "%s: %s", job->name, cause.message);
    return 0;
}

/* A cfg of that name complete on the target is -EEXIST; an incomplete one is
 * done again. */
static int bk_job_check_target(struct bk_job *job, const char *url, struct bim_error *err)
{
    struct bk_backup_entry entry;
    struct bim_error cause = {{0}, 0};
    char path[BK_PATH_MAX];
    void *buf = NULL;
    size_t len = 0;
    int rc;

    bk_cfg_path(job->name, path);
    rc = job->ops->read(job->t, path, BK_CFG_MAX, &buf, &len, &cause);
    if (rc == -ENOENT)
        return bk_job_probe_target(job, err);
    if (rc < 0)
        return bim_error_set(err, -EINVAL, "%s: %s", job->name, cause.message);
    rc = bk_cfg_decode_entry(buf, len, &entry, &cause);
    free(buf);
    if (rc < 0)
        return bim_error_set(err, -EEXIST,
                             "%s: already exists: %s holds a backup of that name whose cfg "
                             "cannot be read (%s)",
                             job->name, url, cause.message);
    rc = 0;
    if (entry.completed[0])
        rc = bim_error_set(err, -EEXIST,
                           "%s: already exists: %s holds a complete backup of that name "
                           "(completed %s)",
                           job->name, url, entry.completed);
    bk_entry_clear(&entry);
    return rc;
}

static int bk_job_new(const struct bk_backup_request *req, struct bk_job **out,
                      struct bim_error *err)
{
    struct bim_error cause = {{0}, 0};
    struct bk_job *job;
    int rc;

    job = calloc(1, sizeof(*job));
    if (!job) {
        if (req->fd >= 0)
            close(req->fd); /* the backup's, success or not */
        return bim_error_set(err, -ENOMEM, "%s: out of memory", req->name);
    }
    job->fd = req->fd;
    pthread_cond_init(&job->cond, NULL);
    *out = job;
    str_copy(job->name, sizeof(job->name), req->name);
    str_copy(job->uuid, sizeof(job->uuid), req->uuid ? req->uuid : "");
    if (!str_copy(job->target_url, sizeof(job->target_url), req->target))
        return bim_error_set(err, -EINVAL, "%s: target URL too long", req->name);
    if (!req->checksum || strlen(req->checksum) != BIM_CHECKSUM_HEX)
        return bim_error_set(err, -EINVAL, "%s: the image has no checksum yet", req->name);
    str_copy(job->checksum, sizeof(job->checksum), req->checksum);
    job->compression = req->compression;
    job->size = req->size;
    bk_time_now(job->created);
    rc = bk_job_labels(job, req, err);
    if (rc < 0)
        return rc;
    rc = bk_target_open(req->target, &job->t, &job->ops, &cause);
    if (rc < 0)
        return bim_error_set(err, -EINVAL, "%s: %s", req->name, cause.message);
    return 0;
}

int bk_backup_start(struct bk_backups *b, const struct bk_backup_request *req,
                    struct bk_backup_status *out, struct bim_error *err)
{
    struct bk_status_entry *e;
    struct bk_job *job = NULL;
    char url[BK_URL_MAX];
    int rc;

    rc = bk_backup_url(req->target, req->name, url);
    if (rc < 0) {
        if (req->fd >= 0)
            close(req->fd);
        return bim_error_set(err, -EINVAL, "%s: target URL too long", req->name);
    }
    rc = bk_job_new(req, &job, err);
    if (rc == 0)
        rc = bk_job_check_target(job, url, err);
    if (rc < 0)
        goto out;
    pthread_mutex_lock(&b->lock);
    e = bk_entry_find(b, req->name);
    if (b->stopping) {
        rc = bim_error_set(err, -EAGAIN, "%s: the daemon is stopping", req->name);
    } else if (e && e->running) {
        rc = bim_error_set(err, -EBUSY, "%s: a backup of this image is in progress (%s)", req->name,
                           e->status.url);
    } else if (!e && !(e = calloc(1, sizeof(*e)))) {
        rc = bim_error_set(err, -ENOMEM, "%s: out of memory", req->name);
    } else {
        if (!e->name[0]) {
            str_copy(e->name, sizeof(e->name), req->name);
            e->next = b->entries;
            b->entries = e;
        }
        memset(&e->status, 0, sizeof(e->status));
        str_copy(e->status.url, sizeof(e->status.url), url);
        e->status.state = BK_BACKUP_IN_PROGRESS;
        e->running = true;
        job->status = &e->status;
        job->b = b;
        bk_entry_hand_known(b, e, job);
        if (pthread_create(&job->thread, NULL, bk_job_run, job) != 0) {
            e->running = false;
            e->status.state = BK_BACKUP_ERROR;
            str_copy(e->status.error, sizeof(e->status.error), "cannot start a thread");
            rc = bim_error_set(err, -EAGAIN, "%s: cannot start a thread", req->name);
        } else {
            pthread_detach(job->thread);
            job->next_job = b->jobs;
            b->jobs = job;
            *out = e->status;
            job = NULL; /* the thread's */
        }
    }
    pthread_mutex_unlock(&b->lock);
    if (rc == 0)
        log_info("image=%s uuid=%s backup to %s started (%s)", req->name,
                 req->uuid ? req->uuid : "", url, bk_compression_name(req->compression));
out:
    if (job)
        bk_job_free(job);
    return rc;
}
