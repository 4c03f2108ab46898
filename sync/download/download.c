/*
 * download.c - the download job (docs/download.md): an http(s) URL becomes
 * the image. Bytes go from the client's data callback into the store
 * writer's buffers (store/ring.c: zero blocks stay holes; the SHA-512, the
 * SHA-256 when expected and the piece digests hashed from those buffers while
 * they are written with O_DIRECT), so the last byte costs no pass over the
 * file and no page of the page cache is filled.
 *
 * One attempt is one GET (the HTTP client, sync/http/client.h). Its end is one of
 *   done     the body arrived whole          -> commit (checksum, format)
 *   retry    transient: connection refused or reset, timeout, stall, 5xx,
 *            408, 429, a body shorter than announced -> pause, resume
 *   restart  the bytes we hold cannot be continued: a 200 to a Range
 *            request, a changed ETag/Last-Modified, a Content-Range that
 *            does not start where we asked, 416 -> empty backing.tmp, again
 *   fail     permanent: other 4xx, TLS verification, a redirect to another
 *            scheme, too many redirects, no space, a bad write
 *   cancel   delete (data removed) or shutdown (backing.tmp kept to resume)
 *
 * The budget (SPEC §4: a source that keeps failing ends failed within 2
 * minutes with the defaults): an attempt makes progress when backing.tmp
 * ends longer than it ever was. Fail after retry_max attempts in a row
 * without progress, or when no body byte arrived for retry_window_ms
 * (default stall timeout + 40 s = 100 s), whichever comes first. Pauses
 * double from backoff_ms to backoff_max_ms (Retry-After is honoured up to
 * that); one that would end past the window fails the download at once.
 *
 * Resume: Range: bytes=<have>- with If-Range: <strong ETag> (else
 * Last-Modified); only a 206 whose Content-Range starts at <have> (and whose
 * ETag, size match) is appended. The writer is kept across attempts, so its
 * running digest stays right; a restart replaces it by a fresh one.
 *
 * Threads: one worker thread per job; the client's callbacks run in it. No lock is
 * held while transferring; sync->lock only inside sync_job_progress() and to
 * read sync->stopping.
 */
#include "download.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum sync_download_end {
    SYNC_DOWNLOAD_DONE,
    SYNC_DOWNLOAD_RETRY,
    SYNC_DOWNLOAD_RESTART,
    SYNC_DOWNLOAD_FAIL,
    SYNC_DOWNLOAD_CANCEL,
};

struct sync_download {
    struct sync_job *job;
    struct sync *sync;
    const char *url; /* with its credentials: for the client, never shown */
    char shown[SYNC_URL_MAX + 1];
    bool keep; /* no credentials: the cfg keeps the URL and validators */
    struct http_client *http;
    struct http_response resp; /* of the current attempt */
    struct store_writer *w;
    struct sync_download_saved saved; /* what the cfg says about backing.tmp */

    uint64_t have;      /* bytes written to backing.tmp */
    unsigned char *buf; /* received, not yet written: the writer's buffer (ring.c) */
    size_t fill;
    int64_t total; /* bytes of the image, -1 while unknown */

    /* the current attempt */
    enum sync_download_end end;
    struct bim_error why;
    bool local; /* why is about this side, not the server */
    bool range_sent;
    bool partial; /* the accepted response is a 206 */
    unsigned retry_after_s;
    uint64_t tick_ms; /* progress last published from a tick */

    /* the budget */
    uint64_t best; /* the longest backing.tmp so far */
    unsigned attempts;
    unsigned failures; /* attempts in a row without progress */
    uint64_t data_ms;  /* the last new byte (past best) of any attempt, or the job's start:
                        * bytes a server sends again after a restart from 0 do not count,
                        * so a source that keeps stalling fails within the retry window */
};

/* Set how the attempt ends (the first reason wins); returns -ECANCELED, which
 * a client callback returns to stop the transfer. `local`: the cause is on this
 * side (disk, space), not the server's. */
static int sync_download_vstop(struct sync_download *d, enum sync_download_end end, bool local,
                               const char *fmt, va_list ap)
{
    if (d->end != SYNC_DOWNLOAD_DONE)
        return -ECANCELED;
    d->end = end;
    d->local = local;
    vsnprintf(d->why.message, sizeof(d->why.message), fmt, ap);
    d->why.cause = local ? BIM_CAUSE_IO : BIM_CAUSE_SOURCE;
    return -ECANCELED;
}

static int __attribute__((format(printf, 3, 4)))
sync_download_stop(struct sync_download *d, enum sync_download_end end, const char *fmt, ...)
{
    va_list ap;
    int rc;

    va_start(ap, fmt);
    rc = sync_download_vstop(d, end, false, fmt, ap);
    va_end(ap);
    return rc;
}

/* A failure on this side: the image fails. */
static int __attribute__((format(printf, 2, 3)))
sync_download_fail_local(struct sync_download *d, const char *fmt, ...)
{
    va_list ap;
    int rc;

    va_start(ap, fmt);
    rc = sync_download_vstop(d, SYNC_DOWNLOAD_FAIL, true, fmt, ap);
    va_end(ap);
    return rc;
}

/* "GET <url>" or "GET <url> (redirected to <url>)", without credentials. */
static void sync_download_where(struct sync_download *d, char *out, size_t len)
{
    const char *effective = d->resp.effective_url;

    if (effective[0] && strcmp(effective, d->shown) != 0)
        snprintf(out, len, "GET %s (redirected to %s)", d->shown, effective);
    else
        snprintf(out, len, "GET %s", d->shown);
}

/* Prefix the cause with the request it is about. */
static void sync_download_locate(struct sync_download *d, struct bim_error *err)
{
    char where[2 * SYNC_URL_MAX + 64], cause[BIM_ERROR_MAX];
    char line[sizeof(where) + sizeof(cause) + 2];
    size_t keep;

    sync_download_where(d, where, sizeof(where));
    str_copy(cause, sizeof(cause), err->message);
    /* the cause matters more than the URL: cut the URL when both do not fit */
    keep = strlen(cause) + 3 < sizeof(err->message) ? sizeof(err->message) - strlen(cause) - 3 : 0;
    if (strlen(where) > keep)
        where[keep] = '\0';
    snprintf(line, sizeof(line), "%s: %s", where, cause);
    str_copy(err->message, sizeof(err->message), line);
}

static const struct store_checksum *sync_download_expected(struct sync_download *d)
{
    return d->job->expected.algo != STORE_DIGEST_NONE ? &d->job->expected : NULL;
}

/* ---- writing ---- */

static int sync_download_flush(struct sync_download *d)
{
    int rc;

    if (d->fill == 0)
        return 0;
    rc = store_writer_ring_write(d->w, d->fill);
    d->fill = 0;
    if (rc == -ENOSPC || rc == -EDQUOT)
        return sync_download_fail_local(d, "no space left on the disk after %" PRIu64 " bytes",
                                        d->have);
    if (rc < 0)
        return sync_download_fail_local(d, "cannot write backing.tmp: %s",
                                        store_writer_strerror(d->w, rc));
    d->have = store_writer_written(d->w);
    rc = store_writer_ring_buffer(d->w, (void **)&d->buf, &d->job->cancel);
    if (rc == -ECANCELED)
        return sync_download_stop(d, SYNC_DOWNLOAD_CANCEL, "cancelled");
    return rc;
}

/* Room in the buffer: up to the next SYNC_DOWNLOAD_BUFFER boundary of the
 * file, so that after a short buffer (an attempt that broke off, a resumed
 * file) the following ones are aligned again, for O_DIRECT. */
static size_t sync_download_room(const struct sync_download *d)
{
    return SYNC_DOWNLOAD_BUFFER - (size_t)(d->have % SYNC_DOWNLOAD_BUFFER);
}

/* The writer takes the bytes in its own buffers (store/ring.c), the next
 * one into d->buf. */
static int sync_download_ring(struct sync_download *d, struct bim_error *err)
{
    int rc = store_writer_ring_start(d->w);

    if (rc == 0)
        rc = store_writer_ring_buffer(d->w, (void **)&d->buf, NULL); /* a fresh ring: no wait */
    if (rc < 0)
        return bim_error_set(err, rc, "cannot set up the write buffers: %s", strerror(-rc));
    return 0;
}

/* Write what the attempt left in the buffer; a write error then wins over
 * how the attempt ended. */
static void sync_download_flush_last(struct sync_download *d)
{
    enum sync_download_end end = d->end;
    struct bim_error why = d->why;
    bool local = d->local;

    if (d->fill == 0)
        return;
    d->end = SYNC_DOWNLOAD_DONE;
    if (sync_download_flush(d) == 0) {
        d->end = end;
        d->why = why;
        d->local = local;
    }
}

/* Start over from byte 0: a fresh writer (an empty backing.tmp, a new digest). */
static int sync_download_reset(struct sync_download *d)
{
    struct bim_error err = {0};
    int rc;

    sync_serving_stop(d->job);
    store_writer_abort(d->w);
    d->w = NULL;
    d->have = 0;
    d->fill = 0;
    d->buf = NULL;
    rc = store_writer_open(d->sync->store, d->job->name, d->job->uuid, sync_download_expected(d),
                           STORE_WRITER_NEW, &d->w, &err);
    if (rc == 0)
        rc = sync_download_ring(d, &err);
    if (rc < 0) {
        d->end = SYNC_DOWNLOAD_DONE; /* this reason wins */
        return sync_download_fail_local(d, "%s", err.message);
    }
    sync_serving_start(d->job, d->w);
    return 0;
}

/* Refuse at once an announced size past --max-size. No space check here:
 * the size is an upper bound, not a need (zero blocks are not written, so a
 * sparse image takes far less); a full disk fails fast with ENOSPC. */
static int sync_download_limit(struct sync_download *d, int64_t total)
{
    struct bim_error err = {0};

    if (total <= 0 || sync_size_check(d->sync, (uint64_t)total, &err) == 0)
        return 0;
    return sync_download_fail_local(d, "%s", err.message);
}

/* The response's ETag if it is strong, else "": a weak ETag cannot guard a
 * Range request (RFC 9110 13.1.5). */
static const char *sync_download_etag(const struct http_response *r)
{
    return r->etag[0] == '"' ? r->etag : "";
}

/* The validators and size of the response backing.tmp now follows; written
 * to the cfg (after backing.tmp was emptied, before its first byte). */
static void sync_download_remember(struct sync_download *d, const struct http_response *r)
{
    struct sync_download_saved *s = &d->saved;
    struct bim_error err = {0};
    int rc;

    if (strcmp(s->etag, sync_download_etag(r)) == 0 &&
        strcmp(s->last_modified, r->last_modified) == 0 && s->size == d->total)
        return;
    str_copy(s->etag, sizeof(s->etag), sync_download_etag(r));
    str_copy(s->last_modified, sizeof(s->last_modified), r->last_modified);
    s->size = d->total;
    if (!d->keep)
        return;
    rc = sync_download_saved_store(d->sync, d->job->name, d->job->uuid, s, &err);
    if (rc < 0) /* a restart then finds old validators: the server answers 200, we start over */
        log_warn("image=%s uuid=%s cannot record the download's validators: %s", d->job->name,
                 d->job->uuid, err.message[0] ? err.message : strerror(-rc));
}

static void sync_download_set_total(struct sync_download *d, int64_t total)
{
    d->total = total;
    d->job->bytes_total = total > 0 ? (uint64_t)total : 0;
}

/* ---- the client's callbacks ---- */

/* 200: the whole file from byte 0. */
static int sync_download_take_full(struct sync_download *d, const struct http_response *r)
{
    int rc;

    d->partial = false;
    if (d->have > 0 || d->fill > 0) {
        bool changed =
            (d->saved.etag[0] && strcmp(d->saved.etag, sync_download_etag(r)) != 0) ||
            (d->saved.last_modified[0] && strcmp(d->saved.last_modified, r->last_modified) != 0);
        log_info("image=%s uuid=%s %s: starting over from byte 0", d->job->name, d->job->uuid,
                 changed ? "the file changed on the server" : "the server sent the whole file");
        rc = sync_download_reset(d);
        if (rc < 0)
            return rc;
    }
    sync_download_set_total(d, r->length);
    rc = sync_download_limit(d, r->length);
    if (rc < 0)
        return rc;
    sync_download_remember(d, r);
    return 0;
}

/* 206: the rest from where we asked, of the same version. */
static int sync_download_take_part(struct sync_download *d, const struct http_response *r)
{
    const struct sync_download_saved *s = &d->saved;
    const char *etag = sync_download_etag(r);

    d->partial = true;
    if (!d->range_sent)
        return sync_download_stop(d, SYNC_DOWNLOAD_RETRY, "HTTP 206 to a request without Range");
    if (!r->has_range)
        return sync_download_stop(d, SYNC_DOWNLOAD_RESTART,
                                  "HTTP 206 without a valid "
                                  "Content-Range");
    if (r->range_first != d->have)
        return sync_download_stop(d, SYNC_DOWNLOAD_RESTART,
                                  "asked for bytes from %" PRIu64 ", got Content-Range bytes "
                                  "%" PRIu64 "-%" PRIu64,
                                  d->have, r->range_first, r->range_last);
    if ((s->etag[0] && etag[0] && strcmp(s->etag, etag) != 0) ||
        (!s->etag[0] && s->last_modified[0] && r->last_modified[0] &&
         strcmp(s->last_modified, r->last_modified) != 0))
        return sync_download_stop(d, SYNC_DOWNLOAD_RESTART, "the file changed on the server");
    if (r->range_complete >= 0) {
        if (d->total >= 0 && r->range_complete != d->total)
            return sync_download_stop(d, SYNC_DOWNLOAD_RESTART,
                                      "the file changed on the server: %" PRId64
                                      " bytes, was %" PRId64,
                                      r->range_complete, d->total);
        sync_download_set_total(d, r->range_complete);
    }
    return sync_download_limit(d, d->total);
}

static int sync_download_on_response(void *arg, const struct http_response *r)
{
    struct sync_download *d = arg;

    d->retry_after_s = r->retry_after_s;
    if (r->status == 200)
        return sync_download_take_full(d, r);
    if (r->status == 206)
        return sync_download_take_part(d, r);
    if (r->status == 416)
        return sync_download_stop(d, SYNC_DOWNLOAD_RESTART, "HTTP 416 %s for bytes from %" PRIu64,
                                  r->reason, d->have);
    return sync_download_stop(
        d, http_status_transient(r->status) ? SYNC_DOWNLOAD_RETRY : SYNC_DOWNLOAD_FAIL,
        "HTTP %ld %s", r->status, r->reason);
}

static int sync_download_on_data(void *arg, const void *data, size_t len)
{
    struct sync_download *d = arg;
    const unsigned char *p = data;
    uint64_t end, now = clock_monotonic_ms();
    int rc;

    if (!size_add(d->have + d->fill, len, &end) || end > (uint64_t)INT64_MAX ||
        (d->total >= 0 && end > (uint64_t)d->total))
        return sync_download_stop(d, SYNC_DOWNLOAD_FAIL,
                                  "the server sent more than the %" PRId64 " bytes it announced",
                                  d->total);
    if (end > d->best)
        d->data_ms = now;
    while (len > 0) {
        size_t n = sync_download_room(d) - d->fill;
        if (n > len)
            n = len;
        memcpy(d->buf + d->fill, p, n);
        d->fill += n;
        p += n;
        len -= n;
        if (d->fill == sync_download_room(d)) {
            rc = sync_download_flush(d);
            if (rc < 0)
                return rc;
        }
    }
    sync_job_progress(d->job, d->have + d->fill);
    return 0;
}

/* The client ends an attempt on cancel and after stall_ms without data;
 * this ends it when the retry window is spent. */
static int sync_download_on_progress(void *arg, uint64_t quiet_ms)
{
    struct sync_download *d = arg;
    uint64_t now = clock_monotonic_ms();

    if (now - d->data_ms >= d->sync->retry_window_ms)
        return sync_download_stop(d, SYNC_DOWNLOAD_RETRY, "stalled: no data for %" PRIu64 " s",
                                  quiet_ms / 1000);
    if (d->job->flowing && now - d->tick_ms >= 1000) { /* lets the rate fall to 0 */
        d->tick_ms = now;
        sync_job_progress(d->job, d->have + d->fill);
    }
    return 0;
}

/* ---- attempts and the budget ---- */

static void sync_download_attempt(struct sync_download *d)
{
    struct http_request req = {
        .url = d->url,
        .cancel = &d->job->cancel,
        .on_response = sync_download_on_response,
        .on_data = sync_download_on_data,
        .on_progress = sync_download_on_progress,
        .ctx = d,
    };
    const char *validator = d->saved.etag[0] ? d->saved.etag : d->saved.last_modified;
    struct bim_error err = {0};
    int rc;

    d->attempts++;
    d->end = SYNC_DOWNLOAD_DONE;
    d->why.message[0] = '\0';
    d->retry_after_s = 0;
    d->range_sent = d->partial = false;
    if (d->have > 0 && !validator[0]) {
        log_info("image=%s uuid=%s the server gave no ETag or Last-Modified: cannot resume, "
                 "starting over from byte 0",
                 d->job->name, d->job->uuid);
        if (sync_download_reset(d) < 0)
            return;
    }
    if (d->have > 0) {
        req.range = true;
        req.range_first = d->have;
        req.range_last = -1;
        req.if_range = validator;
        d->range_sent = true;
    }
    log_debug("image=%s uuid=%s attempt %u: GET %s from byte %" PRIu64, d->job->name, d->job->uuid,
              d->attempts, d->shown, d->have);
    rc = http_client_get(d->http, &req, &d->resp, &err);
    /* a callback that ended the attempt set d->end already */
    if (rc < 0 && d->resp.cause == HTTP_CAUSE_CANCELLED)
        sync_download_stop(d, SYNC_DOWNLOAD_CANCEL, "cancelled");
    else if (rc < 0 && d->resp.cause == HTTP_CAUSE_CALLBACK) /* d->end is set; be safe */
        sync_download_stop(d, SYNC_DOWNLOAD_RETRY, "transfer aborted");
    else if (rc < 0)
        sync_download_stop(d, rc == -EAGAIN ? SYNC_DOWNLOAD_RETRY : SYNC_DOWNLOAD_FAIL, "%s",
                           err.message);
    /* what arrived is a valid prefix unless the attempt was thrown away */
    if (d->end == SYNC_DOWNLOAD_RESTART || d->end == SYNC_DOWNLOAD_FAIL)
        d->fill = 0;
    else
        sync_download_flush_last(d);
    if (d->end == SYNC_DOWNLOAD_DONE && d->total >= 0 && d->have != (uint64_t)d->total)
        sync_download_stop(d, SYNC_DOWNLOAD_RETRY, "the body ended at byte %" PRIu64 " of %" PRId64,
                           d->have, d->total);
    /* a part of unknown complete length may not be the last one: ask on */
    if (d->end == SYNC_DOWNLOAD_DONE && d->total < 0 && d->partial)
        sync_download_stop(d, SYNC_DOWNLOAD_RETRY,
                           "a partial answer ended at byte %" PRIu64 " of an unknown length",
                           d->have);
    if (d->end != SYNC_DOWNLOAD_DONE && d->end != SYNC_DOWNLOAD_CANCEL && !d->local)
        sync_download_locate(d, &d->why);
}

/* How long to wait before the next attempt. */
static uint64_t sync_download_delay(struct sync_download *d)
{
    struct sync *sync = d->sync;
    unsigned shift = d->failures > 1 ? d->failures - 1 : 0;
    uint64_t delay = sync->backoff_ms;

    while (shift-- > 0 && delay < sync->backoff_max_ms)
        delay *= 2;
    if (d->retry_after_s && (uint64_t)d->retry_after_s * 1000 > delay)
        delay = (uint64_t)d->retry_after_s * 1000;
    return delay < sync->backoff_max_ms ? delay : sync->backoff_max_ms;
}

/* After a retry or restart: account for it; false (with end = fail) when the
 * budget is spent, else pause (true; end = cancel if cancelled meanwhile). */
static bool sync_download_again(struct sync_download *d, bool progress)
{
    struct sync *sync = d->sync;
    uint64_t now = clock_monotonic_ms(), delay, until;
    struct bim_error last = d->why;

    d->failures = progress ? 0 : d->failures + 1;
    if (d->failures > sync->retry_max) {
        d->end = SYNC_DOWNLOAD_DONE;
        sync_download_stop(d, SYNC_DOWNLOAD_FAIL, "gave up after %u attempts without new data: %s",
                           d->failures, last.message);
        return false;
    }
    delay = d->end == SYNC_DOWNLOAD_RESTART ? 0 : sync_download_delay(d);
    if (now + delay >= d->data_ms + sync->retry_window_ms) {
        d->end = SYNC_DOWNLOAD_DONE;
        sync_download_stop(d, SYNC_DOWNLOAD_FAIL,
                           "gave up after %" PRIu64 " s without new data (limit %u s): %s",
                           (now - d->data_ms) / 1000, sync->retry_window_ms / 1000, last.message);
        return false;
    }
    log_warn("image=%s uuid=%s download attempt %u failed: %s; %s in %" PRIu64 " ms", d->job->name,
             d->job->uuid, d->attempts, last.message,
             d->end == SYNC_DOWNLOAD_RESTART ? "starting over" : "retrying", delay);
    if (d->end == SYNC_DOWNLOAD_RESTART && sync_download_reset(d) < 0)
        return false;
    for (until = now + delay; clock_monotonic_ms() < until;) {
        struct timespec ts = {0, SYNC_POLL_MS * 1000000L};
        if (sync_job_cancelled(d->job)) {
            d->end = SYNC_DOWNLOAD_CANCEL;
            return true;
        }
        nanosleep(&ts, NULL);
    }
    return true;
}

/* Open the writer (resuming a backing.tmp left by a restart) and the handle. */
static int sync_download_open(struct sync_download *d, struct bim_error *err)
{
    const struct http_client_options opts = {
        .user_agent = "bimfs",
        .https = true,
        .follow_redirects = true,
        .proxy_from_env = true,
        .ca_file = d->sync->ca_file,
        .connect_ms = d->sync->stall_ms,
        .stall_ms = d->sync->stall_ms,
    };
    struct sync_job *job = d->job;
    const struct sync_download_job *dj = job->state;
    struct store_cfg *cfg;
    bool creds = false;
    int rc;

    rc = http_url_check(d->url, d->shown, sizeof(d->shown), &creds, err);
    if (rc < 0)
        return rc;
    d->keep = !creds;
    cfg = calloc(1, sizeof(*cfg));
    if (!cfg)
        return bim_error_set(err, -ENOMEM, "out of memory");
    if (store_image_load_cfg(d->sync->store, job->name, job->uuid, cfg, NULL) == 0)
        sync_download_saved_get(cfg->extra, &d->saved);
    else
        sync_download_saved_get(NULL, &d->saved);
    store_cfg_clear(cfg);
    free(cfg);
    sync_download_set_total(d, dj->resume ? d->saved.size : -1);

    rc = store_writer_open(d->sync->store, job->name, job->uuid, sync_download_expected(d),
                           dj->resume ? STORE_WRITER_RESUME : STORE_WRITER_NEW, &d->w, err);
    if (rc == 0)
        rc = sync_download_ring(d, err);
    if (rc < 0)
        return rc;
    sync_serving_start(job, d->w);
    d->have = d->best = store_writer_written(d->w);
    if (dj->resume)
        log_info("image=%s uuid=%s resuming the download of %s at byte %" PRIu64, job->name,
                 job->uuid, d->shown, d->have);
    else
        log_info("image=%s uuid=%s download started: %s", job->name, job->uuid, d->shown);
    rc = http_client_open(&opts, &d->http);
    if (rc < 0)
        return bim_error_set(err, rc, "cannot set up the HTTP client");
    return 0;
}

static void sync_download_run(struct sync_job *job)
{
    struct sync_download *d = calloc(1, sizeof(*d));
    struct bim_error err = {0};
    uint64_t size = 0;
    int rc;

    if (!d) {
        sync_transfer_fail(job, -ENOMEM, NULL);
        return;
    }
    d->job = job;
    d->sync = job->sync;
    d->url = ((const struct sync_download_job *)job->state)->url;
    d->total = -1;
    d->data_ms = d->tick_ms = clock_monotonic_ms();
    rc = sync_download_open(d, &err);
    while (rc == 0) {
        uint64_t before = d->best;
        sync_download_attempt(d);
        if (d->have > d->best)
            d->best = d->have;
        if (d->end != SYNC_DOWNLOAD_RETRY && d->end != SYNC_DOWNLOAD_RESTART)
            break;
        if (!sync_download_again(d, d->best > before) || d->end == SYNC_DOWNLOAD_CANCEL)
            break;
    }
    if (rc == 0) {
        switch (d->end) {
        case SYNC_DOWNLOAD_DONE:
            size = d->have;
            log_info("image=%s uuid=%s download complete: %" PRIu64 " bytes in %u attempt%s",
                     job->name, job->uuid, size, d->attempts, d->attempts == 1 ? "" : "s");
            break;
        case SYNC_DOWNLOAD_CANCEL:
            rc = -ECANCELED;
            if (d->w && sync_stopping(d->sync)) {
                /* shutdown: keep backing.tmp; the next start resumes it */
                sync_serving_stop(job);
                store_writer_close(d->w);
                d->w = NULL;
            }
            break;
        default:
            rc = -EIO;
            err = d->why;
            break;
        }
    }
    http_client_close(d->http);
    sync_transfer_finish(job, d->w, rc, size, &err);
    free(d);
}

/* ---- the source's operations (source.h) ---- */

#define SYNC_DOWNLOAD_INTERRUPTED "interrupted by a daemon restart"
#define SYNC_DOWNLOAD_INTERRUPTED_CREDENTIALS                                                      \
    "interrupted by a daemon restart; a download from a URL with credentials cannot resume "       \
    "(bimfs keeps no credentials on disk): delete the image and create it again"

static void sync_download_job_free(void *state)
{
    struct sync_download_job *dj = state;

    if (!dj)
        return;
    if (dj->url)
        explicit_bzero(dj->url, strlen(dj->url));
    free(dj->url);
    free(dj);
}

static struct sync_download_job *sync_download_job_new(const char *url, bool resume)
{
    struct sync_download_job *dj = calloc(1, sizeof(*dj));

    if (!dj || !(dj->url = strdup(url))) {
        free(dj);
        return NULL;
    }
    dj->resume = resume;
    return dj;
}

/* The URL must be http(s); the cfg keeps it to resume after a restart,
 * unless it has credentials (cfg.c). */
static int sync_download_prepare(struct sync *sync, const struct sync_create_request *req,
                                 struct sync_source_plan *plan, struct bim_error *err)
{
    struct sync_download_saved *saved = calloc(1, sizeof(*saved));
    char *shown = malloc(SYNC_URL_MAX + 1);
    bool credentials = false;
    int rc;

    (void)sync;
    if (!saved || !shown) {
        rc = bim_error_set(err, -ENOMEM, "out of memory");
        goto out;
    }
    rc = http_url_check(req->url, shown, SYNC_URL_MAX + 1, &credentials, err);
    if (rc < 0)
        goto out;
    snprintf(plan->source, sizeof(plan->source), "download:%s", shown);
    saved->present = true;
    saved->size = -1;
    saved->credentials = credentials;
    if (!credentials)
        str_copy(saved->url, sizeof(saved->url), req->url);
    rc = sync_download_saved_put(NULL, saved, &plan->extra);
    if (rc == 0 && !(plan->state = sync_download_job_new(req->url, false)))
        rc = -ENOMEM;
    if (rc < 0)
        bim_error_set(err, rc, "out of memory");
out:
    free(shown);
    free(saved);
    return rc;
}

/* A download cut by a restart is one whose cfg has the download's object
 * (typed: never read back from the source text); it is queued again
 * (resuming its backing.tmp) when that object keeps the URL. */
static int sync_download_resume(struct sync *sync, struct sync_record *rec,
                                const struct store_entry *e, struct sync_job **job,
                                const char **why)
{
    struct sync_download_saved *saved = calloc(1, sizeof(*saved));
    struct sync_download_job *dj = NULL;
    int rc;

    *job = NULL;
    *why = SYNC_DOWNLOAD_INTERRUPTED;
    if (!saved)
        return -ENOMEM;
    sync_download_saved_get(e->cfg.extra, saved);
    if (!saved->present) {
        rc = 0; /* not a download */
        goto out;
    }
    if (saved->credentials)
        *why = SYNC_DOWNLOAD_INTERRUPTED_CREDENTIALS;
    rc = -ENOENT;
    if (!saved->url[0])
        goto out;
    rc = -ENOMEM;
    dj = sync_download_job_new(saved->url, e->has_tmp);
    if (!dj || !(*job = sync_job_new(sync, &sync_download_ops, rec, dj)))
        goto out;
    dj = NULL;
    rc = -EINVAL;
    if (store_checksum_parse(e->cfg.expected_checksum, &(*job)->expected, NULL) < 0)
        goto out; /* a cfg bimfs did not write: do not guess */
    str_copy((*job)->source, sizeof((*job)->source), e->cfg.source);
    rc = 1;
out:
    if (rc != 1) {
        sync_job_free(*job);
        *job = NULL;
    }
    sync_download_job_free(dj);
    free(saved);
    return rc;
}

const struct sync_source_ops sync_download_ops = {
    .kind = "download",
    .transfer = true,
    .prepare = sync_download_prepare,
    .run = sync_download_run,
    .resume = sync_download_resume,
    .free_state = sync_download_job_free,
};
