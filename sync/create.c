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
    const struct sync_source_ops *ops;
    struct sync_source_plan source; /* the source's part (its state until the job takes it) */
};

/* Name, uuid and checksum here; the source's fields by its prepare. The
 * message names the image. */
static int sync_create_validate(struct sync *sync, const struct sync_create_request *req,
                                struct sync_create_plan *plan, struct bim_error *err)
{
    struct bim_error cause = {0};
    const char *name = req->name ? req->name : "";
    int rc;

    rc = wire_name_check(name, err);
    if (rc < 0)
        return rc;
    plan->name = name;
    if (req->uuid && wire_uuid_check(req->uuid, &cause) < 0)
        return bim_error_set(err, -EINVAL, "%s: %s", name, cause.message);
    if (req->uuid)
        str_copy(plan->uuid, sizeof(plan->uuid), req->uuid);
    else
        store_uuid_generate(plan->uuid);
    rc = store_checksum_parse(req->checksum, &plan->expected, &cause);
    if (rc < 0)
        return bim_error_set(err, -EINVAL, "%s: %s", name, cause.message);
    if (!plan->ops)
        return bim_error_set(err, -EINVAL, "%s: unknown source type", name);
    rc = plan->ops->prepare(sync, req, &plan->source, &cause);
    if (rc < 0)
        bim_error_set(err, rc, "%s: %s", name, cause.message);
    return rc;
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

/* Write the in-progress cfg (no lock held). */
static int sync_create_prepare(struct sync *sync, struct sync_create_plan *plan,
                               struct bim_error *err)
{
    struct store_cfg *cfg = calloc(1, sizeof(*cfg));
    struct bim_error store_err = {0};
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
    str_copy(cfg->source, sizeof(cfg->source), plan->source.source);
    cfg->extra = plan->source.extra; /* the cfg's until cleared */
    plan->source.extra = NULL;
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
    const struct sync_source_ops *ops = sync_source_get(req->type);
    int fd = ops && ops->takes_fd ? req->fd : -1;
    struct sync_create_plan plan;
    struct sync_record *rec = NULL;
    struct sync_job *job = NULL;
    struct bim_error cause = {0};
    int rc;

    memset(&plan, 0, sizeof(plan));
    plan.ops = ops;
    rc = sync_create_validate(sync, req, &plan, err);
    if (plan.source.state)
        fd = -1; /* the source's state owns it now */
    if (rc < 0)
        goto out;

    pthread_mutex_lock(&sync->lock);
    rc = sync_create_reserve(sync, &plan, out, &rec, err);
    if (rc == 0) {
        job = sync_job_new(sync, ops, rec, plan.source.state);
        if (job)
            plan.source.state = NULL;
        else
            rc = bim_error_set(err, -ENOMEM, "%s: out of memory", plan.name);
    }
    if (rc == 0 && ops->reserve) {
        rc = ops->reserve(sync, req, job->state, &cause);
        if (rc < 0)
            bim_error_set(err, rc, "%s: %s", plan.name, cause.message);
    }
    pthread_mutex_unlock(&sync->lock);
    if (rc != 0) /* 1: the image exists with this uuid */
        goto out;

    rc = sync_create_prepare(sync, &plan, err);
    if (rc < 0)
        goto out;

    job->expected = plan.expected;
    str_copy(job->source, sizeof(job->source), plan.source.source);
    pthread_mutex_lock(&sync->lock);
    rec->hidden = false;
    str_copy(rec->info.source, sizeof(rec->info.source), plan.source.source);
    store_checksum_format(&plan.expected, rec->info.expected_checksum);
    sync_record_changed(sync, rec);
    if (ops->start)
        ops->start(sync, job, req);
    else
        sync_job_enqueue(sync, job);
    *out = rec->info;
    pthread_cond_broadcast(&sync->cond);
    pthread_mutex_unlock(&sync->lock);
    log_info("image=%s uuid=%s created from %s", plan.name, plan.uuid, plan.source.source);
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
    if (plan.source.state && ops->free_state)
        ops->free_state(plan.source.state);
    free(plan.source.extra);
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
    uint64_t id;
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
    id = rec->info.id;
    sync_record_hide_deleted(sync, rec);
    sync_pieces_forget(sync, rec->info.id);
    dropped = sync_job_cancel(sync, rec);
    /* a pushed upload is not waited for (its next bytes may be a minute
     * away): it is detached as soon as it is out of the store */
    while (rec->job && !(rec->job->ops->detach && rec->job->ops->detach(rec, &writer)))
        pthread_cond_wait(&sync->cond, &sync->lock);
    pthread_mutex_unlock(&sync->lock);
    sync_job_free(dropped);
    if (writer)
        store_writer_abort(writer);
    sync_scrub_forget(sync, id); /* a pass over it ends before its data goes */

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
