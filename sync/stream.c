/*
 * stream.c - uploads whose bytes the caller pushes (the HTTP server's PUT):
 * the image is created as any upload (sync_create with a STREAM source),
 * whose start operation makes its job the record's running job at once
 * instead of queueing it: the caller's thread moves the bytes through a 1 MiB buffer into
 * the store writer (zero blocks stay holes, hashed while written). The end
 * commits like every transfer. A cut upload (the client went away or
 * stalled, or sent more than announced) frees its data and ends failed,
 * with the cause, like any transfer whose source failed (SPEC §4).
 *
 * A delete does not wait for the caller, whose next bytes may be a minute
 * away: it cancels the job, detaches it from the record, takes the writer
 * (and aborts it itself), then removes the directory. The stream's next
 * write, end or abort sees that it was detached and only frees itself.
 *
 * Threads: one caller thread per stream at a time (an HTTP connection), and
 * any thread deleting the image. sync->lock guards the stream's `busy` and
 * `detached` and, while not busy, its `w`; the record <-> job link as
 * everywhere. The caller touches the store (the writer, the cfg, the record's
 * outcome) only while `busy`, which it sets only while attached; a delete
 * waits while the stream is busy (disk work, never the network), so it never
 * removes the directory under a write or a commit, and never detaches a job
 * that is publishing. The stream and its job are freed only by the caller,
 * after they are out of the record's reach: nothing else keeps a pointer to
 * them once sync->lock is released.
 */
#include "sync_internal.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A cut upload that received nothing this long before is reported as stalled. */
#define SYNC_STREAM_STALLED_MS 10000

struct sync_stream {
    struct sync *sync;
    struct sync_job *job; /* attached by create; freed by the caller */
    struct store_writer *w;
    uint64_t size;    /* announced, or SYNC_STREAM_SIZE_UNKNOWN */
    uint64_t off;     /* bytes taken so far */
    uint64_t data_ms; /* when bytes last came (monotonic) */
    char *buf;        /* SYNC_PIPE_BUFFER bytes, written at off - fill */
    size_t fill;
    char name[STORE_NAME_MAX + 1];
    char cause[BIM_ERROR_MAX]; /* why a write failed (abort fails the image with it) */
    /* guarded by sync->lock (busy is written only by the caller, which may
     * read it without the lock) */
    bool busy;     /* the caller is in the store: a delete waits */
    bool detached; /* a delete took the job from the record, and w */
};

/* Make job the record's running job and the stream's (create, sync->lock
 * held): it runs in the caller's thread, never in a worker (the bytes may
 * take minutes to come; a worker would wait for them). */
static void sync_stream_start(struct sync *sync, struct sync_job *job,
                              const struct sync_create_request *req)
{
    struct sync_stream *stream = req->stream;

    (void)sync;
    job->record->job = job;
    job->running = true;
    job->rate_ms = clock_monotonic_ms();
    stream->job = job;
    stream->busy = true; /* begin opens the writer next */
}

/* A delete cancels the record's stream job (sync->lock held). false: the
 * stream's caller is writing or publishing: wait on sync->cond and ask again
 * (rec->job may be gone by then). true: the job is detached from the record
 * and *w is the writer (or NULL), for the caller to abort before it removes
 * the directory; the stream frees itself and the job later. */
static bool sync_stream_detach(struct sync_record *rec, struct store_writer **w)
{
    struct sync_job *job = rec->job;
    struct sync_stream *s = job->state;

    atomic_store(&job->cancel, true);
    if (s->busy)
        return false;
    s->detached = true;
    sync_serving_stop_locked(job->sync, rec);
    *w = s->w;
    s->w = NULL;
    job->record = NULL;
    rec->job = NULL;
    return true;
}

static int sync_stream_prepare(struct sync *sync, const struct sync_create_request *req,
                               struct sync_source_plan *plan, struct bim_error *err)
{
    (void)sync;
    if (!req->stream)
        return bim_error_set(err, -EINVAL, "a stream upload needs its stream");
    plan->state = req->stream; /* not owned: the stream frees the job, not the reverse */
    str_copy(plan->source, sizeof(plan->source), "upload");
    return 0;
}

const struct sync_source_ops sync_stream_ops = {
    .kind = "upload (pushed)",
    .transfer = true,
    .prepare = sync_stream_prepare,
    .start = sync_stream_start,
    .detach = sync_stream_detach,
};

/* Enter the store: false when a delete detached the stream. */
static bool sync_stream_enter(struct sync_stream *s)
{
    bool attached;

    pthread_mutex_lock(&s->sync->lock);
    attached = !s->detached;
    if (attached)
        s->busy = true;
    pthread_mutex_unlock(&s->sync->lock);
    return attached;
}

/* Leave the store (a delete may be waiting for that). */
static void sync_stream_leave(struct sync_stream *s)
{
    struct sync *sync = s->sync;

    pthread_mutex_lock(&sync->lock);
    s->busy = false;
    pthread_cond_broadcast(&sync->cond);
    pthread_mutex_unlock(&sync->lock);
}

/* Free the stream and its job. Busy: let go of the record first (its outcome
 * is published, w gone). Detached: the delete already did. */
static void sync_stream_free(struct sync_stream *s)
{
    struct sync *sync = s->sync;

    if (s->job && s->busy) {
        pthread_mutex_lock(&sync->lock);
        s->job->record->job = NULL;
        s->busy = false;
        pthread_cond_broadcast(&sync->cond);
        pthread_mutex_unlock(&sync->lock);
    }
    sync_job_free(s->job);
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
    s->data_ms = clock_monotonic_ms();
    create.type = SYNC_SOURCE_STREAM;
    create.fd = -1;
    create.stream = s;
    rc = sync_create(sync, &create, out, err);
    if (rc < 0 || !s->job) {
        sync_stream_free(s);
        return rc < 0 ? rc : 1; /* 1: it exists with this uuid */
    }
    /* attached and busy (a delete waits until the writer is open) */
    job = s->job;
    str_copy(s->name, sizeof(s->name), job->name);
    job->bytes_total = size == SYNC_STREAM_SIZE_UNKNOWN ? 0 : size;
    /* a Content-Length past --max-size fails before a byte is taken */
    rc = size == SYNC_STREAM_SIZE_UNKNOWN ? 0 : sync_size_check(sync, size, err);
    if (rc == 0)
        rc = store_writer_open(sync->store, job->name, job->uuid,
                               job->expected.algo != STORE_DIGEST_NONE ? &job->expected : NULL,
                               STORE_WRITER_NEW, &s->w, err);
    if (rc < 0) {
        char cause[BIM_ERROR_MAX];

        str_copy(cause, sizeof(cause), err->message);
        sync_transfer_fail(job, rc, err);
        sync_stream_free(s);
        return bim_error_set(err, rc, "%s: %s", out->name, cause);
    }
    sync_serving_start(job, s->w);
    sync_stream_leave(s);
    log_info("image=%s uuid=%s upload started (pushed)", job->name, job->uuid);
    *stream = s;
    return 0;
}

/* Write the buffer (busy); the message is the cause only. */
static int sync_stream_flush(struct sync_stream *s, struct bim_error *err)
{
    int rc;

    if (s->fill == 0)
        return 0;
    rc = store_writer_pwrite(s->w, s->buf, s->fill, s->off - s->fill);
    if (rc < 0)
        return bim_error_cause(err, BIM_CAUSE_IO, rc, "cannot write: %s",
                               store_writer_strerror(s->w, rc));
    s->fill = 0;
    sync_job_progress(s->job, s->off);
    return 0;
}

/* Take len bytes into the buffer, writing it out each time it fills (busy). */
static int sync_stream_take(struct sync_stream *s, const void *buf, size_t len,
                            struct bim_error *err)
{
    int rc;

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
                return rc;
        }
    }
    return 0;
}

int sync_stream_write(struct sync_stream *s, const void *buf, size_t len, struct bim_error *err)
{
    uint64_t end;
    int rc;

    if (sync_job_cancelled(s->job))
        return bim_error_set(err, -ECANCELED, "%s: deleted while uploading", s->name);
    s->data_ms = clock_monotonic_ms();
    if (!size_add(s->off, len, &end) || end > (uint64_t)INT64_MAX ||
        (s->size != SYNC_STREAM_SIZE_UNKNOWN && end > s->size)) {
        snprintf(s->cause, sizeof(s->cause),
                 "upload cut: body longer than the %" PRIu64 " bytes announced", s->size);
        return bim_error_set(err, -EFBIG, "%s: more bytes than announced", s->name);
    }
    if (!sync_stream_enter(s))
        return bim_error_set(err, -ECANCELED, "%s: deleted while uploading", s->name);
    rc = sync_stream_take(s, buf, len, err);
    sync_stream_leave(s);
    if (rc < 0) {
        str_copy(s->cause, sizeof(s->cause), err->message);
        return bim_error_set(err, rc, "%s: %s", s->name, s->cause);
    }
    return 0;
}

int sync_stream_end(struct sync_stream *s, struct sync_image_info *out, struct bim_error *err)
{
    struct sync *sync = s->sync;
    char name[STORE_NAME_MAX + 1];
    uint64_t id;
    int rc;

    str_copy(name, sizeof(name), s->name);
    if (!sync_stream_enter(s)) {
        sync_stream_free(s);
        return bim_error_set(err, -ECANCELED, "%s: deleted while uploading", name);
    }
    id = s->job->record->info.id;
    rc = sync_stream_flush(s, err);
    if (rc == 0 && s->size != SYNC_STREAM_SIZE_UNKNOWN && s->off != s->size)
        rc = bim_error_set(err, -EIO, "%" PRIu64 " bytes came, %" PRIu64 " were announced", s->off,
                           s->size);
    /* the record ends ready or failed (with the cause), the cfg with it;
     * cancelled (deleted): nothing is published */
    sync_transfer_finish(s->job, s->w, rc, s->off, err);
    s->w = NULL;
    sync_stream_free(s);
    if (sync_get_by_id(sync, id, out) < 0)
        return bim_error_set(err, -ECANCELED, "%s: deleted while uploading", name);
    if (out->state != SYNC_STATE_READY) {
        if (rc == 0)
            rc =
                out->cause == BIM_CAUSE_CHECKSUM || out->cause == BIM_CAUSE_FORMAT ? -EINVAL : -EIO;
        return bim_error_set(err, rc, "%s: %s", out->name, out->error);
    }
    return 0;
}

/* Why the upload was cut: a write's failure, or how far it came. */
static void sync_stream_cut_cause(const struct sync_stream *s, char *out, size_t outlen)
{
    uint64_t idle_ms = clock_monotonic_ms() - s->data_ms;
    char got[96];

    if (s->cause[0]) {
        str_copy(out, outlen, s->cause);
        return;
    }
    if (s->size == SYNC_STREAM_SIZE_UNKNOWN)
        snprintf(got, sizeof(got), "received %" PRIu64 " bytes (size not announced)", s->off);
    else
        snprintf(got, sizeof(got), "received %" PRIu64 " of %" PRIu64 " bytes", s->off, s->size);
    if (idle_ms >= SYNC_STREAM_STALLED_MS)
        snprintf(out, outlen, "upload stalled: no data for %" PRIu64 " s, %s", idle_ms / 1000, got);
    else
        snprintf(out, outlen, "upload cut short: %s", got);
}

void sync_stream_abort(struct sync_stream *s)
{
    struct bim_error err = {0};

    if (!sync_stream_enter(s)) {
        /* deleted: the delete aborted the writer and removed the directory */
        log_info("image=%s uuid=%s upload ended after its delete", s->name, s->job->uuid);
        sync_stream_free(s);
        return;
    }
    sync_serving_stop(s->job);
    store_writer_abort(s->w);
    s->w = NULL;
    sync_stream_cut_cause(s, err.message, sizeof(err.message));
    /* failed with the cause, in the record and the cfg; cancelled
     * (a delete waiting for us, or shutdown): nothing is published */
    sync_transfer_fail(s->job, -EIO, &err);
    sync_stream_free(s);
}
