/*
 * clone.c - the clone job: a new image with the bytes of a ready image on
 * the same disk.
 *
 * The source's SHA-512 is trusted (it was verified when it became ready and
 * the monitor re-hashes it when it changes), so nothing is hashed, unless the
 * request expects a SHA-256 sum, which only hashing can check. A clone that
 * trusted its source is verified as the source was (`verified`: sha512,
 * pieces or adopted); one that hashed is sha512. The data is
 * shared with FICLONE where the filesystem can (btrfs, xfs); elsewhere data
 * extents are copied (copy_file_range) and holes stay holes.
 *
 * Threads: one worker thread per job; sync->lock only to look at the source.
 */
#include "sync_internal.h"

#include <errno.h>
#include <linux/fs.h>
#include <string.h>
#include <sys/ioctl.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#define SYNC_CLONE_NAME_RULE "must match ^[a-zA-Z0-9][a-zA-Z0-9_.-]+$, at most 64 bytes"

/* The clone's state: its source as it was when the clone was requested. */
struct sync_clone {
    uint64_t from_id;
    char from[STORE_NAME_MAX + 1];
    char from_uuid[STORE_UUID_MAX + 1];
    char from_checksum[STORE_CHECKSUM_HEX + 1];
    char from_verified[STORE_VERIFIED_MAX]; /* the clone is proven as its source was */
    struct stat from_seen;
};

/* The source must still be the ready image the clone was asked for. */
static bool sync_clone_source_ready(struct sync_job *job, const struct sync_clone *c)
{
    struct sync *sync = job->sync;
    struct sync_record *src;
    bool ok;

    pthread_mutex_lock(&sync->lock);
    src = sync_record_find_id(sync, c->from_id);
    ok = src && !src->hidden && src->info.state == SYNC_STATE_READY &&
         strcmp(src->info.current_checksum, c->from_checksum) == 0;
    pthread_mutex_unlock(&sync->lock);
    return ok;
}

/* Share the source's blocks; false when the filesystem cannot. */
static bool sync_clone_reflink(struct sync_job *job, struct store_writer *w, int src_fd)
{
    if (ioctl(store_writer_fd(w), FICLONE, src_fd) == 0)
        return true;
    log_debug("image=%s uuid=%s no reflink (%s), copying", job->name, job->uuid, strerror(errno));
    return false;
}

static void sync_clone_run(struct sync_job *job)
{
    const struct sync_clone *c = job->state;
    struct bim_error err = {0};
    struct store_writer *w = NULL;
    bool trusted;
    struct stat st;
    uint64_t size = 0;
    int src_fd = -1, rc;

    log_info("image=%s uuid=%s clone from %s started", job->name, job->uuid, c->from);
    if (!sync_clone_source_ready(job, c)) {
        rc = bim_error_set(&err, -ENOENT, "clone source %s is no longer ready", c->from);
        goto out;
    }
    rc = store_image_open_backing(job->sync->store, c->from, c->from_uuid, &src_fd);
    if (rc < 0) {
        bim_error_set(&err, rc, "cannot open clone source %s: %s", c->from, strerror(-rc));
        goto out;
    }
    if (fstat(src_fd, &st) < 0) {
        rc = bim_error_set(&err, -errno, "cannot stat clone source %s: %s", c->from,
                           strerror(errno));
        goto out;
    }
    if (!sync_stat_same(&st, &c->from_seen)) {
        rc = bim_error_set(&err, -ESTALE, "clone source %s changed on disk", c->from);
        goto out;
    }
    size = (uint64_t)st.st_size;
    rc = store_writer_open(job->sync->store, job->name, job->uuid,
                           job->expected.algo != STORE_DIGEST_NONE ? &job->expected : NULL,
                           STORE_WRITER_NEW, &w, &err);
    if (rc < 0)
        goto out;
    trusted = job->expected.algo != STORE_DIGEST_SHA256;
    if (trusted)
        store_writer_trust_checksum(w, c->from_checksum, c->from_verified);
    job->bytes_total = size;
    /* a reflinked range is not written through the writer: only a trusted
     * checksum may skip hashing it */
    if (trusted && size > 0 && sync_clone_reflink(job, w, src_fd)) {
        rc = store_writer_skip(w, 0, size);
        if (rc < 0)
            bim_error_cause(&err, BIM_CAUSE_IO, rc, "cannot write: %s",
                            store_writer_strerror(w, rc));
        else
            sync_job_progress(job, size);
    } else {
        rc = sync_transfer_copy_extents(job, w, src_fd, size, &err);
    }
out:
    if (src_fd >= 0)
        close(src_fd);
    sync_transfer_finish(job, w, rc, size, &err);
}

static int sync_clone_prepare(struct sync *sync, const struct sync_create_request *req,
                              struct sync_source_plan *plan, struct bim_error *err)
{
    struct sync_clone *c;

    (void)sync;
    if (!req->from || !store_name_valid(req->from))
        return bim_error_set(err, -EINVAL, "invalid clone source name (%s)", SYNC_CLONE_NAME_RULE);
    if (strcmp(req->from, req->name) == 0)
        return bim_error_set(err, -EINVAL, "cannot clone an image from itself");
    c = calloc(1, sizeof(*c));
    if (!c)
        return bim_error_set(err, -ENOMEM, "out of memory");
    plan->state = c;
    snprintf(plan->source, sizeof(plan->source), "clone:%s", req->from);
    return 0;
}

/* The clone source must be ready; the clone remembers it as it is now. */
static int sync_clone_reserve(struct sync *sync, const struct sync_create_request *req, void *state,
                              struct bim_error *err)
{
    struct sync_record *src = sync_record_find(sync, req->from);
    struct sync_clone *c = state;

    if (!src || src->hidden)
        return bim_error_set(err, -ENOENT, "clone source %s: no such image", req->from);
    if (src->info.state != SYNC_STATE_READY)
        return bim_error_set(err, -EINVAL, "clone source %s is not ready (%s)", req->from,
                             sync_state_name(src->info.state));
    c->from_id = src->info.id;
    str_copy(c->from, sizeof(c->from), src->info.name);
    str_copy(c->from_uuid, sizeof(c->from_uuid), src->info.uuid);
    str_copy(c->from_checksum, sizeof(c->from_checksum), src->info.current_checksum);
    str_copy(c->from_verified, sizeof(c->from_verified),
             src->info.verified[0] ? src->info.verified : STORE_VERIFIED_ADOPTED);
    c->from_seen = src->seen;
    return 0;
}

const struct sync_source_ops sync_clone_ops = {
    .kind = "clone",
    .transfer = true,
    .prepare = sync_clone_prepare,
    .reserve = sync_clone_reserve,
    .run = sync_clone_run,
    .free_state = free,
};
