/*
 * fetch.c - moving the pieces of a peer sync: fetcher threads (each
 * with its own HTTP client and connection) take the 4 MiB pieces in order.
 * A piece whose digest is that of zeros is marked as a hole
 * (store_writer_skip); any other is fetched from a source with Range,
 * written as it arrives with store_writer_pwrite_pending (zero blocks stay
 * holes) while its SHA-256 is computed on the fetcher's thread, and checked
 * against the reference's digest: a match marks it written (only then do
 * the writer's hashers and the commit see it), a mismatch drops it (a hole
 * again) and the source that sent it, and the piece goes to another
 * source. A sync resumed after a restart first checks what backing.tmp
 * holds of each piece: a piece that matches is kept. The job's own thread
 * watches: progress, the sender, cancel, the stall bound, and the writeback
 * of the written prefix (writeback.c).
 *
 * With --verify sha512 the writer's hasher follows the written prefix, so
 * fetchers stay within SYNC_PEER_HASH_LEAD of it (little is left to hash
 * when the last byte lands).
 *
 * Sources are spread over the fetchers (fetcher i prefers source i mod n)
 * with at most SYNC_PEER_PER_SOURCE connections to one source. A source
 * other than the reference is first asked for its digests (manifest.c);
 * one whose digests disagree is dropped. A piece that fails goes back to
 * the front of the line, to whichever source is usable then: one that
 * answered 503 waits Retry-After, one that failed otherwise backs off
 * (doubling up to SYNC_PEER_BACKOFF_MAX_MS), one that answered what will
 * not change (404, 401, another version, a piece that fails its digest) is
 * dropped.
 *
 * Threads: the fetchers and the job's thread share the transfer; t->lock
 * guards the queue, the sources' state and the outcome. A piece belongs to
 * the fetcher holding it; t->bytes and t->received are atomic. No lock is
 * held across network or disk I/O, nor while a digest is computed.
 */
#include "peer.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum sync_peer_outcome {
    SYNC_PEER_DONE,      /* the piece is written and matched its digest */
    SYNC_PEER_BUSY,      /* 503: ask again after Retry-After */
    SYNC_PEER_TRANSIENT, /* worth asking again later */
    SYNC_PEER_FATAL,     /* this source will not do */
    SYNC_PEER_LOCAL,     /* writing failed: the whole sync fails */
    SYNC_PEER_CANCELED,
};

struct sync_peer_fetcher {
    struct sync_peer_transfer *t;
    unsigned index;
    pthread_t thread;
    struct http_client *http;
    struct store_piece_hash *hash; /* the piece being received */
    char *buf;                     /* SYNC_PEER_BUFFER bytes not yet written */
    size_t fill;
    /* the GET in flight */
    struct sync_peer_piece *piece;
    uint64_t pos; /* where buf's first byte goes */
    uint64_t end; /* the piece's end */
    bool wrote;   /* some of it reached backing.tmp */
    int write_rc;
    int hash_rc;
    char why[200]; /* accept()'s verdict on a source that will not do */
};

static void sync_peer_wait(struct sync_peer_transfer *t, uint64_t ms)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    ts.tv_sec += (time_t)(ms / 1000);
    ts.tv_nsec += (long)(ms % 1000) * 1000000;
    if (ts.tv_nsec >= 1000000000) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000;
    }
    pthread_cond_timedwait(&t->cond, &t->lock, &ts);
}

/* ---- one GET of a piece ---- */

/* Write len bytes at f->pos (from the buffer or straight from the client's). */
static int sync_peer_write(struct sync_peer_fetcher *f, const void *data, size_t len)
{
    int rc = store_writer_pwrite_pending(f->t->w, data, len, f->pos);

    f->wrote = true;
    if (rc < 0) {
        f->write_rc = rc;
        return rc;
    }
    f->pos += len;
    return 0;
}

static int sync_peer_flush(struct sync_peer_fetcher *f)
{
    int rc = f->fill ? sync_peer_write(f, f->buf, f->fill) : 0;

    if (rc == 0)
        f->fill = 0;
    return rc;
}

static int sync_peer_on_reply(void *ctx, const struct http_response *r)
{
    struct sync_peer_fetcher *f = ctx;
    char etag[STORE_CHECKSUM_HEX + 8];

    if (r->status != 206)
        return 1; /* judged after the GET by its status */
    if (!r->has_range || r->range_first != f->pos || r->range_last + 1 != f->end ||
        r->range_complete != (int64_t)f->t->size) {
        snprintf(f->why, sizeof(f->why), "sent another range than asked for");
        return -EPROTO;
    }
    snprintf(etag, sizeof(etag), "\"%s\"", f->t->checksum);
    if (r->etag[0] && strcmp(r->etag, etag) != 0) {
        snprintf(f->why, sizeof(f->why), "serves another version of the image (ETag %.24s...)",
                 r->etag);
        return -EPROTO;
    }
    return 0;
}

static int sync_peer_on_data(void *ctx, const void *data, size_t len)
{
    struct sync_peer_fetcher *f = ctx;

    if (len > f->end - f->pos - f->fill) {
        snprintf(f->why, sizeof(f->why), "sent more bytes than asked for");
        return -EPROTO;
    }
    atomic_fetch_add(&f->t->received, len);
    f->hash_rc = store_piece_hash_update(f->hash, data, len);
    if (f->hash_rc < 0)
        return -EIO;
    /* large reads go to the file as they are: one copy less */
    if (f->fill == 0 && len >= SYNC_PEER_DIRECT_MIN)
        return sync_peer_write(f, data, len) < 0 ? -EIO : 0;
    while (len > 0) {
        size_t n = SYNC_PEER_BUFFER - f->fill;

        if (n > len)
            n = len;
        memcpy(f->buf + f->fill, data, n);
        f->fill += n;
        data = (const char *)data + n;
        len -= n;
        if (f->fill == SYNC_PEER_BUFFER && sync_peer_flush(f) < 0)
            return -EIO;
    }
    return 0;
}

/* The whole piece arrived: is it the one the reference described? Then
 * it counts as written. */
static enum sync_peer_outcome sync_peer_check_piece(struct sync_peer_fetcher *f, char *why,
                                                    size_t whylen)
{
    struct sync_peer_transfer *t = f->t;
    struct sync_peer_piece *p = f->piece;
    char got[STORE_PIECE_HEX + 1];
    uint8_t digest[32];
    int rc;

    rc = store_piece_hash_final(f->hash, digest);
    if (rc < 0) {
        snprintf(why, whylen, "cannot compute a piece digest");
        return SYNC_PEER_LOCAL;
    }
    if (memcmp(digest, t->manifest.sha256[p->index], 32) != 0) {
        store_piece_hex(digest, got);
        snprintf(why, whylen,
                 "sent piece %" PRIu64 " with SHA-256 %.16s..., not the reference's digest",
                 p->index, got);
        return SYNC_PEER_FATAL;
    }
    rc = store_writer_skip(t->w, p->off, p->len);
    if (rc < 0) {
        snprintf(why, whylen, "cannot write: %s", store_writer_strerror(t->w, rc));
        return SYNC_PEER_LOCAL;
    }
    atomic_fetch_add(&t->bytes, p->len);
    return SYNC_PEER_DONE;
}

/* Fetch f->piece from s. *retry_s: Retry-After of a 503. */
static enum sync_peer_outcome sync_peer_get_piece(struct sync_peer_fetcher *f,
                                                  struct sync_peer_source *s, unsigned *retry_s,
                                                  char *why, size_t whylen)
{
    struct sync_peer_transfer *t = f->t;
    struct sync_peer_piece *p = f->piece;
    enum sync_peer_outcome outcome;
    char url[sizeof(s->url) + 16];
    struct http_response reply;
    struct bim_error err = {0};
    struct http_request req = {
        .url = url,
        .range = true,
        .cancel = &t->job->cancel,
        .on_response = sync_peer_on_reply,
        .on_data = sync_peer_on_data,
        .ctx = f,
    };
    int rc;

    snprintf(url, sizeof(url), "%s/backing", s->url);
    f->pos = p->off;
    f->end = p->off + p->len;
    f->fill = 0;
    f->wrote = false;
    f->write_rc = 0;
    f->why[0] = '\0';
    f->hash_rc = store_piece_hash_reset(f->hash);
    if (f->hash_rc < 0) {
        snprintf(why, whylen, "cannot compute a piece digest");
        return SYNC_PEER_LOCAL;
    }
    req.range_first = f->pos;
    req.range_last = (int64_t)(f->end - 1);
    rc = http_client_get(f->http, &req, &reply, &err);
    if (f->write_rc == 0 && sync_peer_flush(f) < 0)
        rc = -EIO;
    if (f->write_rc < 0) {
        snprintf(why, whylen, "cannot write: %s", store_writer_strerror(t->w, f->write_rc));
        outcome = SYNC_PEER_LOCAL;
    } else if (f->hash_rc < 0) {
        snprintf(why, whylen, "cannot compute a piece digest");
        outcome = SYNC_PEER_LOCAL;
    } else if (rc == -ECANCELED) {
        outcome = SYNC_PEER_CANCELED;
    } else if (rc == -EPROTO && reply.cause == HTTP_CAUSE_CALLBACK) {
        str_copy(why, whylen, f->why);
        outcome = SYNC_PEER_FATAL;
    } else if (rc < 0) {
        str_copy(why, whylen, err.message[0] ? err.message : strerror(-rc));
        outcome = SYNC_PEER_TRANSIENT;
    } else if (reply.status == 206 && f->pos == f->end) {
        outcome = sync_peer_check_piece(f, why, whylen);
    } else {
        snprintf(why, whylen, "answered HTTP %ld%s", reply.status,
                 reply.status == 206 ? " with a short body" : "");
        if (reply.status == 503) {
            *retry_s = reply.retry_after_s == 0 ? 1
                       : reply.retry_after_s > SYNC_PEER_RETRY_AFTER_MAX_S
                           ? SYNC_PEER_RETRY_AFTER_MAX_S
                           : reply.retry_after_s;
            outcome = SYNC_PEER_BUSY;
        } else if (reply.status == 206 || reply.status == 409 ||
                   http_status_transient(reply.status)) {
            outcome = SYNC_PEER_TRANSIENT;
        } else {
            outcome = SYNC_PEER_FATAL;
        }
    }
    /* what is not kept goes: a piece is kept whole or not at all */
    if (outcome != SYNC_PEER_DONE && f->wrote) {
        rc = store_writer_discard(t->w, p->off, p->len);
        if (rc < 0 && outcome != SYNC_PEER_CANCELED) {
            snprintf(why, whylen, "cannot drop a bad piece: %s", strerror(-rc));
            outcome = SYNC_PEER_LOCAL;
        }
    }
    return outcome;
}

/* ---- the line of pieces (t->lock held) ---- */

static struct sync_peer_piece *sync_peer_take(struct sync_peer_transfer *t)
{
    if (t->nagain > 0)
        return &t->pieces[t->again[--t->nagain]];
    if (t->next < t->npieces)
        return &t->pieces[t->next++];
    return NULL;
}

static void sync_peer_give_back(struct sync_peer_transfer *t, struct sync_peer_piece *p)
{
    t->again[t->nagain++] = (size_t)(p - t->pieces);
    pthread_cond_broadcast(&t->cond);
}

static void sync_peer_finished(struct sync_peer_transfer *t)
{
    if (--t->left == 0)
        pthread_cond_broadcast(&t->cond);
}

/* Stop the transfer with rc and message (the first failure wins). */
static void sync_peer_fail(struct sync_peer_transfer *t, int rc, enum bim_cause cause,
                           const char *message)
{
    if (!t->stop) {
        t->rc = rc;
        bim_error_cause(&t->err, cause, rc, "%s", message);
    }
    t->stop = true;
    pthread_cond_broadcast(&t->cond);
}

/* A source to ask now, the preferred one first; NULL with *wait_ms when
 * none is (the transfer is stopped when none ever will be). */
static struct sync_peer_source *sync_peer_pick(struct sync_peer_transfer *t, unsigned preferred,
                                               uint64_t now, uint64_t *wait_ms)
{
    char causes[BIM_ERROR_MAX - 64], message[BIM_ERROR_MAX];
    bool usable = false;

    *wait_ms = SYNC_POLL_MS;
    for (size_t k = 0; k < t->nsources; k++) {
        struct sync_peer_source *s = &t->sources[(preferred + k) % t->nsources];

        if (s->fatal)
            continue;
        usable = true;
        if (s->manifest_busy)
            continue;
        if (s->retry_ms > now) {
            if (s->retry_ms - now < *wait_ms)
                *wait_ms = s->retry_ms - now;
            continue;
        }
        if (s->active < SYNC_PEER_PER_SOURCE)
            return s;
    }
    if (!usable) {
        sync_peer_errors(t, causes, sizeof(causes));
        snprintf(message, sizeof(message), "no source can finish the image: %s", causes);
        sync_peer_fail(t, -EIO, BIM_CAUSE_SOURCE, message);
    }
    return NULL;
}

/* Record how a GET of piece p from s went (t->lock held). */
static void sync_peer_judge(struct sync_peer_transfer *t, struct sync_peer_source *s,
                            struct sync_peer_piece *p, enum sync_peer_outcome outcome,
                            unsigned retry_s, const char *why)
{
    uint64_t now = clock_monotonic_ms(), backoff;

    s->active--;
    switch (outcome) {
    case SYNC_PEER_DONE:
        s->failures = 0;
        t->alive_ms = now;
        t->sender = (int)(s - t->sources);
        sync_peer_finished(t);
        return;
    case SYNC_PEER_BUSY:
        t->alive_ms = now;
        s->retry_ms = now + retry_s * 1000ull;
        str_copy(s->error, sizeof(s->error), why);
        break;
    case SYNC_PEER_TRANSIENT:
        s->failures++;
        backoff = 250ull << (s->failures < 6 ? s->failures : 6);
        s->retry_ms =
            now + (backoff < SYNC_PEER_BACKOFF_MAX_MS ? backoff : SYNC_PEER_BACKOFF_MAX_MS);
        str_copy(s->error, sizeof(s->error), why);
        log_debug("image=%s uuid=%s %s: %s", t->job->name, t->job->uuid, s->addr, why);
        break;
    case SYNC_PEER_FATAL:
        s->fatal = true;
        str_copy(s->error, sizeof(s->error), why);
        log_warn("image=%s uuid=%s not syncing from %s any more: %s", t->job->name, t->job->uuid,
                 s->addr, why);
        break;
    case SYNC_PEER_LOCAL:
        sync_peer_fail(t, -EIO, BIM_CAUSE_IO, why);
        break;
    case SYNC_PEER_CANCELED:
        sync_peer_fail(t, -ECANCELED, BIM_CAUSE_SOURCE, "cancelled");
        break;
    }
    sync_peer_give_back(t, p);
}

/* ---- the fetcher threads ---- */

/* A resumed sync: what backing.tmp holds of p. true when it is the piece
 * (marked written); false when it must be fetched (what was there is
 * dropped). No lock held. */
static bool sync_peer_kept(struct sync_peer_transfer *t, struct sync_peer_piece *p, int *rc)
{
    bool has_data = false, match = false;

    *rc = store_writer_piece_check(t->w, t->size, p->index, t->manifest.sha256[p->index], &has_data,
                                   &match);
    if (*rc == 0 && has_data && !match)
        *rc = store_writer_discard(t->w, p->off, p->len);
    if (*rc < 0 || !(match || p->hole))
        return false;
    *rc = store_writer_skip(t->w, p->off, p->len);
    if (*rc == 0)
        atomic_fetch_add(&t->bytes, p->len);
    return *rc == 0;
}

/* Ask s, not yet known to agree with the reference, for its digests.
 * t->lock held, dropped meanwhile. true: s may serve pieces now. */
static bool sync_peer_vet(struct sync_peer_fetcher *f, struct sync_peer_source *s)
{
    struct sync_peer_transfer *t = f->t;
    unsigned retry_s = 1;
    char why[512] = "";
    int rc;

    s->manifest_busy = true;
    pthread_mutex_unlock(&t->lock);
    rc = sync_peer_manifest_check(t, f->http, s, &retry_s, why, sizeof(why));
    pthread_mutex_lock(&t->lock);
    s->manifest_busy = false;
    if (rc == 0) {
        s->manifest_ok = true;
        return true;
    }
    if (rc == -ECANCELED) {
        sync_peer_fail(t, -ECANCELED, BIM_CAUSE_SOURCE, "cancelled");
    } else if (rc == -EAGAIN) {
        s->retry_ms = clock_monotonic_ms() + retry_s * 1000ull;
        str_copy(s->error, sizeof(s->error), why);
    } else {
        s->fatal = true;
        str_copy(s->error, sizeof(s->error), why);
        log_warn("image=%s uuid=%s not syncing from %s: %s", t->job->name, t->job->uuid, s->addr,
                 why);
    }
    pthread_cond_broadcast(&t->cond);
    return false;
}

/* Handle a piece: a hole is marked, data fetched and checked. t->lock
 * held; dropped while working. false: no source now (the piece went back). */
static bool sync_peer_work(struct sync_peer_fetcher *f, struct sync_peer_piece *p)
{
    struct sync_peer_transfer *t = f->t;
    struct sync_peer_source *s;
    enum sync_peer_outcome outcome;
    unsigned retry_s = 0;
    uint64_t wait_ms;
    char why[512] = "";
    bool kept = false;
    int rc = 0;

    if (t->resume || p->hole) {
        pthread_mutex_unlock(&t->lock);
        if (t->resume) {
            kept = sync_peer_kept(t, p, &rc);
        } else {
            rc = store_writer_skip(t->w, p->off, p->len);
            if (rc == 0)
                atomic_fetch_add(&t->bytes, p->len);
            kept = rc == 0;
        }
        pthread_mutex_lock(&t->lock);
        if (rc < 0) {
            sync_peer_fail(t, rc, BIM_CAUSE_IO, store_writer_strerror(t->w, rc));
            return true;
        }
        if (kept) {
            sync_peer_finished(t);
            return true;
        }
    }
    /* --verify sha512: keep within SYNC_PEER_HASH_LEAD of the hasher, so
     * that the hashing is done by the time the last byte lands (and the
     * page cache holds little that is not hashed yet) */
    while (t->hash_sha512 && !t->stop && p->off > store_writer_hashed(t->w) + SYNC_PEER_HASH_LEAD)
        sync_peer_wait(t, SYNC_PEER_HASH_WAIT_MS);
    if (t->stop) {
        sync_peer_give_back(t, p);
        return false;
    }
    s = sync_peer_pick(t, f->index % (unsigned)t->nsources, clock_monotonic_ms(), &wait_ms);
    if (s && !s->manifest_ok && !sync_peer_vet(f, s))
        s = NULL;
    if (!s) {
        sync_peer_give_back(t, p);
        if (!t->stop)
            sync_peer_wait(t, wait_ms);
        return false;
    }
    s->active++;
    f->piece = p;
    pthread_mutex_unlock(&t->lock);
    outcome = sync_peer_get_piece(f, s, &retry_s, why, sizeof(why));
    pthread_mutex_lock(&t->lock);
    f->piece = NULL;
    sync_peer_judge(t, s, p, outcome, retry_s, why);
    return true;
}

static void *sync_peer_fetcher_main(void *arg)
{
    struct sync_peer_fetcher *f = arg;
    struct sync_peer_transfer *t = f->t;

    pthread_mutex_lock(&t->lock);
    while (!t->stop && t->left > 0) {
        struct sync_peer_piece *p = sync_peer_take(t);

        if (!p) {
            /* the rest is with other fetchers; one may come back */
            sync_peer_wait(t, SYNC_POLL_MS);
            continue;
        }
        sync_peer_work(f, p);
    }
    pthread_mutex_unlock(&t->lock);
    return NULL;
}

/* ---- the job's thread ---- */

static void sync_peer_publish_sender(struct sync_peer_transfer *t, int sender)
{
    struct sync_job *job = t->job;

    pthread_mutex_lock(&job->sync->lock);
    str_copy(job->record->info.sender, sizeof(job->record->info.sender), t->sources[sender].addr);
    sync_record_changed(job->sync, job->record);
    pthread_mutex_unlock(&job->sync->lock);
}

/* Watch the fetchers until the pieces are done or the transfer stops.
 * t->lock held. */
static void sync_peer_watch(struct sync_peer_transfer *t)
{
    uint64_t last_bytes = 0, last_hashed = 0, last_received = 0;
    uint64_t progress_ms = clock_monotonic_ms();
    char causes[BIM_ERROR_MAX - 64], message[BIM_ERROR_MAX];
    struct sync_writeback wb;
    int shown = -1;

    sync_writeback_reset(&wb);
    t->alive_ms = progress_ms;
    while (!t->stop && t->left > 0) {
        uint64_t now, bytes, hashed, received;
        int sender;

        sync_peer_wait(t, SYNC_PUBLISH_MS);
        now = clock_monotonic_ms();
        bytes = atomic_load(&t->bytes);
        hashed = store_writer_hashed(t->w);
        received = atomic_load(&t->received);
        /* fetchers waiting for the hasher are not stalled, nor is a piece
         * on its way */
        if (bytes != last_bytes || hashed != last_hashed || received != last_received) {
            last_bytes = bytes;
            last_hashed = hashed;
            last_received = received;
            progress_ms = now;
        }
        if (sync_job_cancelled(t->job)) {
            sync_peer_fail(t, -ECANCELED, BIM_CAUSE_SOURCE, "cancelled");
        } else if (now - progress_ms >= t->stall_ms &&
                   (now - t->alive_ms >= t->stall_ms ||
                    now - progress_ms >= SYNC_PEER_BUSY_MAX_MS)) {
            sync_peer_errors(t, causes, sizeof(causes));
            snprintf(message, sizeof(message), "no source sent data for %u s: %s",
                     (unsigned)((now - progress_ms) / 1000), causes);
            sync_peer_fail(t, -ETIMEDOUT, BIM_CAUSE_SOURCE, message);
        }
        sender = t->sender;
        pthread_mutex_unlock(&t->lock);
        sync_job_progress(t->job, bytes);
        /* the written prefix goes to disk as it grows: the commit's fsync
         * then has little left, and the page cache stays small */
        sync_writeback_note(&wb, t->w, store_writer_written(t->w));
        if (sender >= 0 && sender != shown)
            sync_peer_publish_sender(t, sender);
        shown = sender;
        pthread_mutex_lock(&t->lock);
    }
}

int sync_peer_fetch(struct sync_peer_transfer *t, struct bim_error *err)
{
    struct sync_peer_fetcher fetchers[SYNC_PEER_FETCHERS];
    size_t want = t->nsources * SYNC_PEER_PER_SOURCE, started = 0;
    int rc = 0;

    memset(fetchers, 0, sizeof(fetchers));
    t->left = t->npieces;
    t->again = calloc(t->npieces ? t->npieces : 1, sizeof(*t->again));
    if (!t->again)
        return bim_error_set(err, -ENOMEM, "out of memory");
    if (want > SYNC_PEER_FETCHERS)
        want = SYNC_PEER_FETCHERS;
    for (; started < want && rc == 0; started++) {
        struct sync_peer_fetcher *f = &fetchers[started];

        f->t = t;
        f->index = (unsigned)started;
        f->buf = malloc(SYNC_PEER_BUFFER);
        rc = f->buf ? store_piece_hash_open(&f->hash) : -ENOMEM;
        if (rc == 0)
            rc = sync_peer_client_open(t, &f->http);
        if (rc == 0)
            rc = -pthread_create(&f->thread, NULL, sync_peer_fetcher_main, f);
        if (rc < 0)
            break;
    }
    pthread_mutex_lock(&t->lock);
    if (rc < 0)
        sync_peer_fail(t, rc, BIM_CAUSE_SOURCE, "cannot start the fetcher threads");
    else
        sync_peer_watch(t);
    t->stop = true;
    pthread_cond_broadcast(&t->cond);
    pthread_mutex_unlock(&t->lock);

    for (size_t i = 0; i < SYNC_PEER_FETCHERS; i++) {
        if (i < started)
            pthread_join(fetchers[i].thread, NULL);
        http_client_close(fetchers[i].http);
        store_piece_hash_close(fetchers[i].hash);
        free(fetchers[i].buf);
    }
    if (t->rc < 0 || t->left > 0) {
        *err = t->err;
        return t->rc < 0 ? t->rc : bim_error_set(err, -EIO, "the sync stopped early");
    }
    /* every byte is here: show it at once (progress is otherwise throttled) */
    t->job->flowing = false;
    sync_job_progress(t->job, atomic_load(&t->bytes));
    return 0;
}
