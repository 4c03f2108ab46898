/*
 * stream.c - uploads whose bytes the caller pushes (the HTTP server's PUT):
 * the image is created as any upload (sync_create with a STREAM source),
 * but its job is never queued: it is the record's running job from the
 * start, and the caller's thread moves the bytes through a 1 MiB buffer into
 * the store writer (zero blocks stay holes, hashed while written). The end
 * commits like every transfer; a cut upload removes the image altogether.
 *
 * A delete while the upload runs sets the job's cancel flag and waits for
 * the job to let go: the next write (or the end, or the abort when the
 * client goes away or times out) notices it and lets go.
 *
 * Threads: one caller thread per stream at a time (an HTTP connection);
 * sync->lock is taken only to attach, publish and detach.
 */
#include "sync_internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

struct sync_stream {
    struct sync *sync;
    struct sync_job *job; /* attached by create */
    struct store_writer *w;
    uint64_t size; /* announced, or SYNC_STREAM_SIZE_UNKNOWN */
    uint64_t off;  /* bytes taken so far */
    char *buf;     /* SYNC_PIPE_BUFFER bytes, written at off - fill */
    size_t fill;
    char name[STORE_NAME_MAX + 1];
};

void sync_stream_attach(struct sync *sync, struct sync_job *job, struct sync_stream *stream)
{
    (void)sync;
    job->record->job = job;
    job->running = true;
    job->rate_ms = clock_monotonic_ms();
    stream->job = job;
}

/* Let go of the job (a delete may wait for that) and free it. */
static void sync_stream_detach(struct sync_stream *s)
{
    struct sync *sync = s->sync;

    pthread_mutex_lock(&sync->lock);
    s->job->record->job = NULL;
    pthread_cond_broadcast(&sync->cond);
    pthread_mutex_unlock(&sync->lock);
    sync_job_free(s->job);
    s->job = NULL;
}

static void sync_stream_free(struct sync_stream *s)
{
    free(s->buf);
    free(s);
}

int sync_stream_begin(struct sync *sync, const struct sync_create_request *req, uint64_t size,
                      struct sync_stream **stream, struct sync_image_info *out,
                      struct bim_error *err)
{
    struct sync_create_request create = *req;
    struct sync_stream *s = calloc(1, sizeof(*s));
    struct sync_job *job;
    int rc;

    *stream = NULL;
    if (!s || !(s->buf = malloc(SYNC_PIPE_BUFFER))) {
        free(s);
        return bim_error_set(err, -ENOMEM, "%s: out of memory", req->name ? req->name : "");
    }
    s->sync = sync;
    s->size = size;
    create.type = SYNC_SOURCE_STREAM;
    create.fd = -1;
    create.stream = s;
    rc = sync_create(sync, &create, out, err);
    if (rc < 0 || !s->job) {
        sync_stream_free(s);
        return rc < 0 ? rc : 1; /* 1: it exists with this uuid */
    }
    job = s->job;
    str_copy(s->name, sizeof(s->name), job->name);
    job->bytes_total = size == SYNC_STREAM_SIZE_UNKNOWN ? 0 : size;
    rc = store_writer_open(sync->store, job->name, job->uuid,
                           job->expected.algo != STORE_DIGEST_NONE ? &job->expected : NULL, false,
                           &s->w, err);
    if (rc < 0) {
        char cause[BIM_ERROR_MAX];

        str_copy(cause, sizeof(cause), err->message);
        sync_transfer_fail(job, rc, err);
        sync_stream_detach(s);
        sync_stream_free(s);
        return bim_error_set(err, rc, "%s: %s", out->name, cause);
    }
    log_info("image=%s uuid=%s upload started (pushed)", job->name, job->uuid);
    *stream = s;
    return 0;
}

/* Write the buffer; the message is the cause only. */
static int sync_stream_flush(struct sync_stream *s, struct bim_error *err)
{
    int rc;

    if (s->fill == 0)
        return 0;
    rc = store_writer_pwrite(s->w, s->buf, s->fill, s->off - s->fill);
    if (rc < 0)
        return bim_error_set(err, rc, "cannot write: %s", strerror(-rc));
    s->fill = 0;
    sync_job_progress(s->job, s->off);
    return 0;
}

int sync_stream_write(struct sync_stream *s, const void *buf, size_t len, struct bim_error *err)
{
    uint64_t end;
    int rc;

    if (sync_job_cancelled(s->job))
        return bim_error_set(err, -ECANCELED, "%s: deleted while uploading", s->name);
    if (!size_add(s->off, len, &end) || end > (uint64_t)INT64_MAX ||
        (s->size != SYNC_STREAM_SIZE_UNKNOWN && end > s->size))
        return bim_error_set(err, -EFBIG, "%s: more bytes than announced", s->name);
    while (len > 0) {
        size_t n = SYNC_PIPE_BUFFER - s->fill;

        if (n > len)
            n = len;
        memcpy(s->buf + s->fill, buf, n);
        s->fill += n;
        s->off += n;
        buf = (const char *)buf + n;
        len -= n;
        if (s->fill == SYNC_PIPE_BUFFER) {
            rc = sync_stream_flush(s, err);
            if (rc < 0)
                return bim_error_set(err, rc, "%s: cannot write: %s", s->name, strerror(-rc));
        }
    }
    return 0;
}

int sync_stream_end(struct sync_stream *s, struct sync_image_info *out, struct bim_error *err)
{
    struct sync_job *job = s->job;
    struct sync *sync = s->sync;
    uint64_t id = job->record->info.id;
    char name[STORE_NAME_MAX + 1];
    int rc;

    str_copy(name, sizeof(name), s->name);
    rc = sync_stream_flush(s, err);
    if (rc == 0 && s->size != SYNC_STREAM_SIZE_UNKNOWN && s->off != s->size)
        rc = bim_error_set(err, -EIO, "%llu bytes came, %llu were announced",
                           (unsigned long long)s->off, (unsigned long long)s->size);
    /* the record ends ready or failed (with the cause), the cfg with it;
     * cancelled (deleted): nothing is published */
    sync_transfer_finish(job, s->w, rc, s->off, err);
    s->w = NULL;
    sync_stream_detach(s);
    sync_stream_free(s);
    if (sync_get_by_id(sync, id, out) < 0)
        return bim_error_set(err, -ECANCELED, "%s: deleted while uploading", name);
    if (out->state != SYNC_STATE_READY) {
        enum sync_failure_reason why = sync_failure_classify(out->error);

        if (rc == 0)
            rc = why == SYNC_FAILURE_CHECKSUM || why == SYNC_FAILURE_FORMAT ? -EINVAL : -EIO;
        return bim_error_set(err, rc, "%s: %s", out->name, out->error);
    }
    return 0;
}

void sync_stream_abort(struct sync_stream *s)
{
    char name[STORE_NAME_MAX + 1];
    struct sync *sync = s->sync;

    str_copy(name, sizeof(name), s->name);
    log_info("image=%s uuid=%s upload cut short: removing it", name, s->job->uuid);
    store_writer_abort(s->w);
    sync_stream_detach(s);
    sync_stream_free(s);
    /* a delete that came first already removed it: -ENOENT */
    (void)sync_delete(sync, name, NULL);
}
