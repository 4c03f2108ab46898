/*
 * backup.c - the backups of images (backup.h): the table of each image's last
 * backup, starting one, and its coordinator thread, which takes the target's
 * lock, writes the initial cfg, finds the blocks with data, hands them to the
 * shared workers (pool.c), refreshes the lock while they run, writes the final
 * cfg and releases the lock.
 *
 * Threads: callers (the control socket's connection threads) start backups
 * and read statuses; one coordinator thread per running backup (detached:
 * it frees its job; close waits for the job list to empty); the workers of
 * pool.c. b->lock guards the status table (b->entries), the job list and the
 * jobs' queue fields; it is never held across the target or the image file.
 */
#include "backup_internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
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

/* ---- the coordinator ---- */

/* Wait on the job's condition for at most ms (b->lock held). */
static void bk_job_timedwait(struct bk_job *job, unsigned ms)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += ms / 1000;
    ts.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    pthread_cond_timedwait(&job->cond, &job->b->lock, &ts);
}

/* The lock's wait: ms, or less when the backups stop (then nonzero). */
static int bk_job_wait(void *arg, unsigned ms)
{
    struct bk_job *job = arg;
    uint64_t end = clock_monotonic_ms() + ms;
    bool stopping;

    pthread_mutex_lock(&job->b->lock);
    while (!job->b->stopping && clock_monotonic_ms() < end)
        bk_job_timedwait(job, (unsigned)(end - clock_monotonic_ms()));
    stopping = job->b->stopping;
    pthread_mutex_unlock(&job->b->lock);
    return stopping;
}

/* The 2 MiB blocks of the image that hold data (SEEK_DATA/SEEK_HOLE). */
static int bk_job_scan(struct bk_job *job, struct bk_block **out, size_t *count,
                       struct bim_error *err)
{
    uint64_t blocks = (job->size + BK_BLOCK_SIZE - 1) / BK_BLOCK_SIZE, off = 0;
    struct bk_block *v;
    size_t n = 0;

    *out = NULL;
    *count = 0;
    v = calloc(blocks ? blocks : 1, sizeof(*v));
    if (!v)
        return bim_error_set(err, -ENOMEM, "out of memory for %llu blocks",
                             (unsigned long long)blocks);
    while (off < job->size) {
        off_t data = lseek(job->fd, (off_t)off, SEEK_DATA), hole;

        if (data < 0 && errno == ENXIO)
            break;
        if (data < 0) { /* no SEEK_DATA here: every block holds data */
            data = (off_t)off;
            hole = (off_t)job->size;
        } else {
            hole = lseek(job->fd, data, SEEK_HOLE);
            if (hole < 0 || (uint64_t)hole > job->size)
                hole = (off_t)job->size;
        }
        for (uint64_t i = (uint64_t)data / BK_BLOCK_SIZE;
             i <= ((uint64_t)hole - 1) / BK_BLOCK_SIZE && hole > data; i++) {
            if (n && v[n - 1].offset >= i * BK_BLOCK_SIZE)
                continue;
            v[n++].offset = i * BK_BLOCK_SIZE;
        }
        off = (uint64_t)hole > off ? (uint64_t)hole : off + BK_BLOCK_SIZE;
    }
    *out = v;
    *count = n;
    return 0;
}

static int bk_job_write_cfg(struct bk_job *job, const struct bk_cfg *cfg, struct bim_error *err)
{
    char path[BK_PATH_MAX], *text;
    int rc;

    text = bk_cfg_encode(cfg);
    if (!text)
        return bim_error_set(err, -ENOMEM, "out of memory for the cfg");
    bk_cfg_path(job->name, path);
    rc = job->ops->write(job->t, path, text, strlen(text), err);
    free(text);
    return rc;
}

static void bk_job_cfg_init(const struct bk_job *job, struct bk_cfg *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    str_copy(cfg->name, sizeof(cfg->name), job->name);
    cfg->size = job->size;
    str_copy(cfg->checksum, sizeof(cfg->checksum), job->checksum);
    cfg->compression = job->compression;
    str_copy(cfg->created, sizeof(cfg->created), job->created);
}

/* The final record: the stored blocks, by offset. */
static int bk_job_finish_cfg(struct bk_job *job, struct bim_error *err)
{
    struct bk_cfg_block *blocks;
    struct bk_cfg cfg;
    size_t n = 0;
    int rc;

    blocks = calloc(job->block_count ? job->block_count : 1, sizeof(*blocks));
    if (!blocks)
        return bim_error_set(err, -ENOMEM, "out of memory for the cfg");
    for (size_t i = 0; i < job->block_count; i++) {
        if (job->blocks[i].zero)
            continue;
        blocks[n].offset = job->blocks[i].offset;
        bk_block_hex(job->blocks[i].sum, blocks[n].checksum);
        n++;
    }
    bk_job_cfg_init(job, &cfg);
    bk_time_now(cfg.completed);
    cfg.labels = job->labels;
    cfg.label_count = job->label_count;
    cfg.blocks = blocks;
    cfg.block_count = n;
    rc = bk_job_write_cfg(job, &cfg, err);
    free(blocks);
    return rc;
}

/* Hand a pass over the blocks to the workers (b->lock held). */
static void bk_job_queue(struct bk_job *job, enum bk_phase phase)
{
    job->phase = phase;
    job->next = 0;
    job->queued = true;
    pthread_cond_broadcast(&job->b->work);
}

/* No more blocks are taken; wait until the workers hold none of the job's. */
static void bk_job_drain(struct bk_job *job)
{
    pthread_mutex_lock(&job->b->lock);
    job->failed = true;
    while (job->in_flight > 0)
        pthread_cond_wait(&job->cond, &job->b->lock);
    pthread_mutex_unlock(&job->b->lock);
}

/* Wait for the workers to end the pass, refreshing the lock (when held)
 * every 60 s. */
static int bk_job_pass_wait(struct bk_job *job, struct bk_lock *lock, struct bim_error *err)
{
    struct bk_backups *b = job->b;
    uint64_t refresh = clock_monotonic_ms() + BK_LOCK_REFRESH_MS;
    int rc = 0;

    pthread_mutex_lock(&b->lock);
    while (job->in_flight > 0 || (!b->stopping && !job->failed && job->next < job->block_count)) {
        uint64_t now = clock_monotonic_ms();

        if (now >= refresh && lock->ops) {
            pthread_mutex_unlock(&b->lock);
            rc = bk_lock_refresh(lock, err);
            pthread_mutex_lock(&b->lock);
            if (rc < 0) {
                job->failed = true; /* the workers take no more */
                job->block_err = *err;
            }
            refresh = now + BK_LOCK_REFRESH_MS;
            continue;
        }
        bk_job_timedwait(job, (unsigned)(refresh - now));
    }
    if (job->failed) {
        *err = job->block_err;
        rc = -EIO;
    } else if (b->stopping) {
        rc = bim_error_cause(err, BIM_CAUSE_INTERRUPTED, -ECANCELED,
                             "interrupted: the daemon stopped");
    }
    pthread_mutex_unlock(&b->lock);
    return rc;
}

/* Under the lock, before the initial record: a backup of that name that
 * another writer completed since the check at the start is not overwritten
 * (a complete backup is immutable); nor is a cfg that cannot be read. */
static int bk_job_recheck(struct bk_job *job, struct bim_error *err)
{
    struct bim_error cause = {{0}, 0};
    struct bk_backup_entry entry;
    char path[BK_PATH_MAX];
    void *buf = NULL;
    size_t len = 0;
    int rc;

    bk_cfg_path(job->name, path);
    rc = job->ops->read(job->t, path, BK_CFG_MAX, &buf, &len, err);
    if (rc == -ENOENT)
        return 0;
    if (rc < 0)
        return rc;
    rc = bk_cfg_decode_entry(buf, len, &entry, &cause);
    free(buf);
    if (rc < 0)
        return bim_error_set(err, -EEXIST,
                             "already exists: a cfg of that name that cannot be read (%s) "
                             "appeared on the target meanwhile",
                             cause.message);
    rc = 0;
    if (entry.completed[0])
        rc = bim_error_set(err, -EEXIST,
                           "already exists: another writer completed a backup of that name "
                           "meanwhile (completed %s)",
                           entry.completed);
    bk_entry_clear(&entry);
    return rc;
}

static int bk_job_steps(struct bk_job *job, struct bim_error *err)
{
    struct bk_block *blocks = NULL;
    struct bk_lock lock = {0};
    struct bk_cfg cfg;
    size_t count = 0;
    int rc;

    rc = bk_job_scan(job, &blocks, &count, err);
    if (rc < 0)
        return rc;
    pthread_mutex_lock(&job->b->lock);
    job->blocks = blocks;
    job->block_count = count;
    job->status->blocks = count;
    bk_job_queue(job, BK_PHASE_EARLY); /* while the lock protocol waits */
    pthread_mutex_unlock(&job->b->lock);
    rc = bk_lock_acquire(&lock, job->ops, job->t, BK_LOCK_BACKUP, bk_job_wait, job, err);
    if (rc == 0)
        rc = bk_job_recheck(job, err);
    if (rc < 0)
        goto out;
    bk_job_cfg_init(job, &cfg);
    rc = bk_job_write_cfg(job, &cfg, err);
    if (rc == 0)
        rc = bk_job_pass_wait(job, &lock, err);
    if (rc < 0)
        goto out;
    pthread_mutex_lock(&job->b->lock);
    bk_job_queue(job, BK_PHASE_STORE);
    pthread_mutex_unlock(&job->b->lock);
    rc = bk_job_pass_wait(job, &lock, err);
    if (rc == 0)
        rc = bk_job_finish_cfg(job, err);
out:
    bk_job_drain(job); /* the workers hold none of its blocks when it is freed */
    bk_lock_release(&lock);
    return rc;
}

static void bk_job_free(struct bk_job *job)
{
    if (job->t)
        job->ops->close(job->t);
    if (job->fd >= 0)
        close(job->fd);
    for (size_t i = 0; i < job->label_count; i++) {
        free((char *)job->labels[i].key);
        free((char *)job->labels[i].value);
    }
    free(job->labels);
    free(job->blocks);
    pthread_cond_destroy(&job->cond);
    free(job);
}

static void *bk_job_run(void *arg)
{
    struct bk_job *job = arg;
    struct bk_backups *b = job->b;
    struct bim_error err = {{0}, 0};
    struct bk_status_entry *entry;
    int rc;

    rc = bk_job_steps(job, &err);
    if (rc < 0)
        log_warn("image=%s uuid=%s backup to %s failed: %s", job->name, job->uuid, job->status->url,
                 err.message);
    else
        log_info("image=%s uuid=%s backup to %s complete: %llu blocks, %llu written, "
                 "%llu present",
                 job->name, job->uuid, job->status->url, (unsigned long long)job->status->blocks,
                 (unsigned long long)job->status->blocks_written,
                 (unsigned long long)job->status->blocks_present);
    pthread_mutex_lock(&b->lock);
    for (struct bk_job **p = &b->jobs; *p; p = &(*p)->next_job) {
        if (*p == job) {
            *p = job->next_job;
            break;
        }
    }
    job->status->state = rc < 0 ? BK_BACKUP_ERROR : BK_BACKUP_COMPLETE;
    if (rc < 0)
        str_copy(job->status->error, sizeof(job->status->error), err.message);
    else
        job->status->progress = 100;
    entry =
        (struct bk_status_entry *)((char *)job->status - offsetof(struct bk_status_entry, status));
    entry->running = false;
    pthread_cond_broadcast(&b->work);
    pthread_mutex_unlock(&b->lock);
    bk_job_free(job);
    return NULL;
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
        free(e);
    }
    pthread_cond_destroy(&b->work);
    pthread_mutex_destroy(&b->lock);
    free(b);
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
    if (!job)
        return bim_error_set(err, -ENOMEM, "%s: out of memory", req->name);
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
