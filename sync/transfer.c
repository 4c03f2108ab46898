/*
 * transfer.c - what upload and clone share: copying a sparse file extent by
 * extent into a store writer, committing or aborting, publishing the outcome
 * (the cfg of an image that failed is rewritten by cfg.c).
 *
 * Threads: worker threads, one job each; no lock is held while copying or
 * writing a cfg; sync->lock is taken only to publish.
 */
#include "sync_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <unistd.h>

/* Where the next data extent at or after off starts (size when none), and
 * where it ends. Without SEEK_DATA support everything is data. */
static int sync_extent_next(int fd, uint64_t off, uint64_t size, uint64_t *data, uint64_t *hole)
{
    off_t d, h;

    d = lseek(fd, (off_t)off, SEEK_DATA);
    if (d < 0) {
        if (errno == ENXIO) {
            *data = *hole = size;
            return 0;
        }
        if (errno != EINVAL && errno != EOPNOTSUPP)
            return -errno;
        *data = off;
        *hole = size;
        return 0;
    }
    *data = (uint64_t)d < size ? (uint64_t)d : size;
    h = lseek(fd, d, SEEK_HOLE);
    *hole = h < 0 || (uint64_t)h > size ? size : (uint64_t)h;
    return 0;
}

int sync_transfer_copy_extents(struct sync_job *job, struct store_writer *w, int src_fd,
                               uint64_t size, struct bim_error *err)
{
    struct sync_writeback wb;
    uint64_t off = 0, data = 0, hole = 0;
    int rc;

    /* The copy is much faster than SHA-512: paced to the hasher, with the
     * writeback started as it goes, the commit's fsync overlaps the hashing
     * instead of following it (writeback.c). */
    sync_writeback_reset(&wb);
    job->bytes_total = size;
    while (off < size) {
        if (sync_job_cancelled(job))
            return -ECANCELED;
        rc = sync_extent_next(src_fd, off, size, &data, &hole);
        if (rc < 0)
            return bim_error_set(err, rc, "cannot read the source: %s", strerror(-rc));
        if (data > off) {
            rc = store_writer_skip(w, off, data - off);
            if (rc < 0)
                return bim_error_cause(err, BIM_CAUSE_IO, rc, "cannot write: %s",
                                       store_writer_strerror(w, rc));
            off = data;
            sync_job_progress(job, off);
        }
        while (off < hole) {
            uint64_t n = hole - off < SYNC_CHUNK_MAX ? hole - off : SYNC_CHUNK_MAX;
            if (sync_job_cancelled(job))
                return -ECANCELED;
            rc = store_writer_copy_fd(w, src_fd, off, (size_t)n, off);
            if (rc < 0)
                return bim_error_cause(err, BIM_CAUSE_IO, rc, "cannot copy data: %s",
                                       store_writer_strerror(w, rc));
            off += n;
            sync_job_progress(job, off);
            sync_writeback_note(&wb, w, off);
            sync_writeback_pace(w, off, &job->cancel);
        }
    }
    return 0;
}

int sync_space_check(struct sync *sync, uint64_t need, struct bim_error *err)
{
    struct statvfs sv;
    uint64_t avail;

    if (statvfs(store_images_path(sync->store), &sv) < 0)
        return 0; /* cannot tell: the writes will */
    if (!size_mul((uint64_t)sv.f_bavail, (uint64_t)sv.f_frsize, &avail) || need <= avail)
        return 0;
    return bim_error_set(err, -ENOSPC,
                         "insufficient space: need %" PRIu64 " bytes, have %" PRIu64 " bytes", need,
                         avail);
}

int sync_size_check(struct sync *sync, uint64_t size, struct bim_error *err)
{
    uint64_t max = store_max_size(sync->store);

    if (size == 0 || size <= max) /* 0: unknown (an empty image fails at commit) */
        return 0;
    return bim_error_set(err, -EFBIG, "image larger than --max-size (%" PRIu64 " bytes)", max);
}

void sync_transfer_finish(struct sync_job *job, struct store_writer *w, int rc, uint64_t size,
                          struct bim_error *err)
{
    struct sync *sync = job->sync;
    struct store_result result;
    enum bim_cause why;
    const char *cause;

    memset(&result, 0, sizeof(result));
    sync_serving_stop(job); /* no send uses the writer from here */
    if (rc == 0 && sync_job_cancelled(job))
        rc = -ECANCELED;
    if (rc == 0 && w) {
        rc = store_writer_commit(w, size, job->source, &result, err);
        if (rc == 0)
            w = NULL;
    }
    if (w)
        store_writer_abort(w);

    if (rc == 0) {
        log_info("image=%s uuid=%s ready: %s, %" PRIu64 " bytes, %s", job->name, job->uuid,
                 store_format_name(result.format), result.size, job->source);
        pthread_mutex_lock(&sync->lock);
        sync_record_set_ready(job->record, &result);
        sync_record_changed(sync, job->record);
        pthread_mutex_unlock(&sync->lock);
        return;
    }
    if (rc == -ECANCELED || sync_job_cancelled(job)) {
        /* deleted (the directory goes next) or shutting down (the cfg still
         * says in-progress: the next start reports the interruption) */
        log_info("image=%s uuid=%s transfer cancelled", job->name, job->uuid);
        return;
    }
    cause = err && err->message[0] ? err->message : strerror(-rc);
    why = err && err->message[0] ? err->cause : BIM_CAUSE_SOURCE;
    log_warn("image=%s uuid=%s failed: %s", job->name, job->uuid, cause);
    sync_cfg_save_failed(sync, job->name, job->uuid, cause);
    pthread_mutex_lock(&sync->lock);
    sync_record_set_failed(job->record, why, cause);
    sync_record_changed(sync, job->record);
    pthread_mutex_unlock(&sync->lock);
}

void sync_transfer_fail(struct sync_job *job, int rc, struct bim_error *err)
{
    sync_transfer_finish(job, NULL, rc ? rc : -EIO, 0, err);
}
