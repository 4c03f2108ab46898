/*
 * create.c - creating and deleting images (SPEC §6).
 *
 * create: validate everything first (-EINVAL before anything exists), then
 * under sync->lock settle the name (same uuid: the existing image; other
 * uuid: -EEXIST; a record being created or deleted: wait for it) and reserve
 * a hidden record; without the lock, check the directory and write the cfg
 * (state in-progress); under the lock again, show the record and queue its
 * job.
 *
 * delete: hide the record at once (watchers get the delete event), cancel
 * its job and wait for a running one to let go (a pushed upload is only
 * waited for while it writes to the store; then its writer is taken and
 * aborted here, see stream.c), remove the directory, then drop the record.
 * A create of the same name waits until that is done.
 *
 * Threads: any caller; sync->lock is held only between the disk steps.
 */
#include "sync_internal.h"
#include "wire.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* What create knows once the request is validated. */
struct sync_create_plan {
    const char *name;
    char uuid[STORE_UUID_MAX + 1];
    struct store_checksum expected;
    char source[STORE_SOURCE_MAX];
    const char *url;      /* download: as given */
    bool url_credentials; /* download: the URL has credentials (not kept on disk) */
};

static enum sync_job_type sync_create_job_type(enum sync_source_type type)
{
    switch (type) {
    case SYNC_SOURCE_UPLOAD:
        return SYNC_JOB_UPLOAD;
    case SYNC_SOURCE_DOWNLOAD:
        return SYNC_JOB_DOWNLOAD;
    case SYNC_SOURCE_PEER:
        return SYNC_JOB_PEER;
    case SYNC_SOURCE_STREAM:
        return SYNC_JOB_STREAM;
    default:
        return SYNC_JOB_CLONE;
    }
}

static int sync_create_validate_url(const struct sync_create_request *req,
                                    struct sync_create_plan *plan, struct bim_error *err)
{
    struct bim_error url_err = {{0}};
    char *shown = malloc(SYNC_URL_MAX + 1);
    int rc;

    if (!shown)
        return bim_error_set(err, -ENOMEM, "%s: out of memory", plan->name);
    rc = http_url_check(req->url, shown, SYNC_URL_MAX + 1, &plan->url_credentials, &url_err);
    if (rc < 0)
        bim_error_set(err, rc, "%s: %s", plan->name, url_err.message);
    else
        snprintf(plan->source, sizeof(plan->source), "download:%s", shown);
    plan->url = req->url;
    free(shown);
    return rc;
}

static int sync_create_validate(const struct sync_create_request *req,
                                struct sync_create_plan *plan, struct bim_error *err)
{
    struct bim_error sum_err = {{0}};
    const char *name = req->name ? req->name : "";
    int rc;

    rc = wire_name_check(name, err);
    if (rc < 0)
        return rc;
    plan->name = name;
    if (req->uuid && wire_uuid_check(req->uuid, &sum_err) < 0)
        return bim_error_set(err, -EINVAL, "%s: %s", name, sum_err.message);
    if (req->uuid)
        str_copy(plan->uuid, sizeof(plan->uuid), req->uuid);
    else
        store_uuid_generate(plan->uuid);
    rc = store_checksum_parse(req->checksum, &plan->expected, &sum_err);
    if (rc < 0)
        return bim_error_set(err, -EINVAL, "%s: %s", name, sum_err.message);
    switch (req->type) {
    case SYNC_SOURCE_UPLOAD:
        if (req->fd < 0)
            return bim_error_set(err, -EINVAL, "%s: upload needs a file descriptor", name);
        str_copy(plan->source, sizeof(plan->source), "upload");
        return 0;
    case SYNC_SOURCE_CLONE:
        if (wire_name_check(req->from, &sum_err) < 0)
            return bim_error_set(err, -EINVAL, "%s: clone source %s", name, sum_err.message);
        if (strcmp(req->from, name) == 0)
            return bim_error_set(err, -EINVAL, "%s: cannot clone an image from itself", name);
        snprintf(plan->source, sizeof(plan->source), "clone:%s", req->from);
        return 0;
    case SYNC_SOURCE_DOWNLOAD:
        return sync_create_validate_url(req, plan, err);
    case SYNC_SOURCE_PEER:
        if (!req->uuid)
            return bim_error_set(err, -EINVAL, "%s: sync needs the image's uuid", name);
        for (size_t i = 0; req->peers && req->peers[i]; i++) {
            if (wire_peer_check(req->peers[i], &sum_err) < 0)
                return bim_error_set(err, -EINVAL, "%s: %s", name, sum_err.message);
        }
        return sync_peer_source_text(name, req->peers, plan->source, sizeof(plan->source), err);
    case SYNC_SOURCE_STREAM:
        if (!req->stream)
            return bim_error_set(err, -EINVAL, "%s: a stream upload needs its stream", name);
        str_copy(plan->source, sizeof(plan->source), "upload");
        return 0;
    }
    return bim_error_set(err, -EINVAL, "%s: unknown source type", name);
}

/* Is <name>-<uuid> the directory of a record with another name? ("a" with
 * uuid "b-c" and "a-b" with uuid "c" share "a-b-c".) sync->lock held. */
static struct sync_record *sync_create_dir_owner(struct sync *sync,
                                                 const struct sync_create_plan *plan)
{
    char mine[STORE_NAME_MAX + STORE_UUID_MAX + 2], theirs[sizeof(mine)];

    snprintf(mine, sizeof(mine), "%s-%s", plan->name, plan->uuid);
    for (size_t i = 0; i < sync->record_count; i++) {
        struct sync_record *rec = sync->records[i];
        snprintf(theirs, sizeof(theirs), "%s-%s", rec->info.name, rec->info.uuid);
        if (strcmp(mine, theirs) == 0 && strcmp(rec->info.name, plan->name) != 0)
            return rec;
    }
    return NULL;
}

/* Settle the name under the lock: 1 with *out filled when the image exists
 * with this uuid, 0 with *reserved a new hidden record, or -errno. */
static int sync_create_reserve(struct sync *sync, const struct sync_create_plan *plan,
                               struct sync_image_info *out, struct sync_record **reserved,
                               struct bim_error *err)
{
    struct sync_record *rec, *owner;

    while ((rec = sync_record_find(sync, plan->name)) && rec->hidden)
        pthread_cond_wait(&sync->cond, &sync->lock);
    if (rec && strcmp(rec->info.uuid, plan->uuid) == 0) {
        *out = rec->info;
        return 1;
    }
    if (rec)
        return bim_error_set(err, -EEXIST, "%s: already exists with uuid %s", plan->name,
                             rec->info.uuid);
    owner = sync_create_dir_owner(sync, plan);
    if (owner)
        return bim_error_set(err, -EEXIST, "%s: directory %s-%s belongs to image %s", plan->name,
                             plan->name, plan->uuid, owner->info.name);
    *reserved = sync_record_add(sync, plan->name, plan->uuid);
    if (!*reserved)
        return bim_error_set(err, -ENOMEM, "%s: out of memory", plan->name);
    return 0;
}

/* The clone source must be ready; the job remembers it as it is now. */
static int sync_create_clone_source(struct sync *sync, const struct sync_create_request *req,
                                    struct sync_job *job, struct bim_error *err)
{
    struct sync_record *src = sync_record_find(sync, req->from);

    if (!src || src->hidden)
        return bim_error_set(err, -ENOENT, "%s: clone source %s: no such image", req->name,
                             req->from);
    if (src->info.state != SYNC_STATE_READY)
        return bim_error_set(err, -EINVAL, "%s: clone source %s is not ready (%s)", req->name,
                             req->from, sync_state_name(src->info.state));
    job->from_id = src->info.id;
    str_copy(job->from, sizeof(job->from), src->info.name);
    str_copy(job->from_uuid, sizeof(job->from_uuid), src->info.uuid);
    str_copy(job->from_checksum, sizeof(job->from_checksum), src->info.current_checksum);
    job->from_seen = src->seen;
    return 0;
}

/* A download keeps its URL in the cfg to resume after a restart, unless
 * the URL has credentials (see download_cfg.c). */
static int sync_create_download_extra(const struct sync_create_plan *plan, char **extra)
{
    struct sync_download_saved *saved = calloc(1, sizeof(*saved));
    int rc;

    if (!saved)
        return -ENOMEM;
    saved->present = true;
    saved->size = -1;
    saved->credentials = plan->url_credentials;
    if (!plan->url_credentials)
        str_copy(saved->url, sizeof(saved->url), plan->url);
    rc = sync_download_saved_put(NULL, saved, extra);
    free(saved);
    return rc;
}

/* Write the in-progress cfg (no lock held). */
static int sync_create_prepare(struct sync *sync, const struct sync_create_plan *plan,
                               struct bim_error *err)
{
    struct store_cfg *cfg = calloc(1, sizeof(*cfg));
    struct bim_error store_err = {{0}};
    char dir[PATH_MAX];
    int rc;

    if (!cfg)
        return bim_error_set(err, -ENOMEM, "%s: out of memory", plan->name);
    rc = store_image_path(sync->store, plan->name, plan->uuid, "backing", cfg->name,
                          sizeof(cfg->name));
    if (rc == 0 && snprintf(dir, sizeof(dir), "%s/%s-%s", store_images_path(sync->store),
                            plan->name, plan->uuid) >= (int)sizeof(dir))
        rc = -ENAMETOOLONG;
    if (rc < 0) {
        rc = bim_error_set(err, rc, "%s: path too long", plan->name);
        goto out;
    }
    /* a directory no record owns: an earlier image bimfs could not identify */
    if (access(dir, F_OK) == 0) {
        rc = bim_error_set(err, -EEXIST, "%s: directory %s-%s already exists on disk", plan->name,
                           plan->name, plan->uuid);
        goto out;
    }
    str_copy(cfg->uuid, sizeof(cfg->uuid), plan->uuid);
    store_checksum_format(&plan->expected, cfg->expected_checksum);
    str_copy(cfg->state, sizeof(cfg->state), "in-progress");
    str_copy(cfg->source, sizeof(cfg->source), plan->source);
    if (plan->url) {
        rc = sync_create_download_extra(plan, &cfg->extra);
        if (rc < 0) {
            rc = bim_error_set(err, rc, "%s: out of memory", plan->name);
            goto out;
        }
    }
    rc = store_image_prepare(sync->store, plan->name, plan->uuid, cfg, &store_err);
    if (rc < 0) {
        bim_error_set(err, rc, "%s: %s", plan->name,
                      store_err.message[0] ? store_err.message : strerror(-rc));
        /* the directory did not exist: whatever part of it was made is ours */
        store_image_remove(sync->store, plan->name, plan->uuid);
    }
out:
    store_cfg_clear(cfg);
    free(cfg);
    return rc;
}

int sync_create(struct sync *sync, const struct sync_create_request *req,
                struct sync_image_info *out, struct bim_error *err)
{
    int fd = req->type == SYNC_SOURCE_UPLOAD ? req->fd : -1;
    struct sync_create_plan plan;
    struct sync_record *rec = NULL;
    struct sync_job *job = NULL;
    int rc;

    memset(&plan, 0, sizeof(plan));
    rc = sync_create_validate(req, &plan, err);
    if (rc < 0)
        goto out;

    pthread_mutex_lock(&sync->lock);
    rc = sync_create_reserve(sync, &plan, out, &rec, err);
    if (rc == 0) {
        job = sync_job_new(sync, sync_create_job_type(req->type), rec);
        if (job && plan.url && !(job->url = strdup(plan.url))) {
            sync_job_free(job);
            job = NULL;
        }
        if (!job)
            rc = bim_error_set(err, -ENOMEM, "%s: out of memory", plan.name);
    }
    if (rc == 0 && req->type == SYNC_SOURCE_CLONE)
        rc = sync_create_clone_source(sync, req, job, err);
    pthread_mutex_unlock(&sync->lock);
    if (rc != 0) /* 1: the image exists with this uuid */
        goto out;

    rc = sync_create_prepare(sync, &plan, err);
    if (rc < 0)
        goto out;

    job->expected = plan.expected;
    str_copy(job->source, sizeof(job->source), plan.source);
    job->fd = fd;
    fd = -1;
    if (req->type == SYNC_SOURCE_PEER)
        job->size = req->size;
    pthread_mutex_lock(&sync->lock);
    rec->hidden = false;
    str_copy(rec->info.source, sizeof(rec->info.source), plan.source);
    store_checksum_format(&plan.expected, rec->info.expected_checksum);
    sync_record_changed(sync, rec);
    if (req->type == SYNC_SOURCE_STREAM)
        sync_stream_attach(sync, job, req->stream);
    else
        sync_job_enqueue(sync, job);
    *out = rec->info;
    pthread_cond_broadcast(&sync->cond);
    pthread_mutex_unlock(&sync->lock);
    log_info("image=%s uuid=%s created from %s", plan.name, plan.uuid, plan.source);
    job = NULL;
    rec = NULL;
out:
    if (rec) {
        pthread_mutex_lock(&sync->lock);
        sync_record_remove(sync, rec);
        pthread_cond_broadcast(&sync->cond);
        pthread_mutex_unlock(&sync->lock);
    }
    sync_job_free(job);
    if (fd >= 0)
        close(fd);
    return rc < 0 ? rc : 0;
}

int sync_delete(struct sync *sync, const char *name, struct bim_error *err)
{
    char uuid[STORE_UUID_MAX + 1];
    struct sync_record *rec;
    struct store_writer *writer = NULL;
    struct sync_job *dropped;
    int rc;

    rc = wire_name_check(name, err);
    if (rc < 0)
        return rc;
    pthread_mutex_lock(&sync->lock);
    rec = sync_record_find(sync, name);
    if (!rec || rec->hidden) {
        pthread_mutex_unlock(&sync->lock);
        return bim_error_set(err, -ENOENT, "%s: no such image", name);
    }
    str_copy(uuid, sizeof(uuid), rec->info.uuid);
    sync_record_hide_deleted(sync, rec);
    dropped = sync_job_cancel(sync, rec);
    /* a pushed upload is not waited for (its next bytes may be a minute
     * away): it is detached as soon as it is out of the store */
    while (rec->job && !(rec->job->type == SYNC_JOB_STREAM && sync_stream_cancel(rec, &writer)))
        pthread_cond_wait(&sync->cond, &sync->lock);
    pthread_mutex_unlock(&sync->lock);
    sync_job_free(dropped);
    if (writer)
        store_writer_abort(writer);

    rc = store_image_remove(sync->store, name, uuid);
    if (rc < 0) {
        log_error("image=%s uuid=%s cannot remove its directory: %s", name, uuid, strerror(-rc));
        bim_error_set(err, rc, "%s: cannot remove its data: %s", name, strerror(-rc));
    } else {
        log_info("image=%s uuid=%s deleted", name, uuid);
    }
    pthread_mutex_lock(&sync->lock);
    sync_record_remove(sync, rec);
    pthread_cond_broadcast(&sync->cond);
    pthread_mutex_unlock(&sync->lock);
    return rc;
}
