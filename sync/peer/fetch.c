/*
 * fetch.c - moving the pieces of a peer sync: fetcher threads (each with
 * its own HTTP client and connection) take 4 MiB pieces whose digest the
 * reference gave. A piece whose digest is that of zeros is marked as a hole
 * (store_writer_skip); any other is fetched from a source that holds it
 * (its have, kept current by the pollers: poll.c) with Range, written as it
 * arrives with store_writer_pwrite_pending (zero blocks stay holes) while
 * its SHA-256 is computed on the fetcher's thread, and checked against the
 * reference's digest: a match marks it written (only then do the writer's
 * hashers, the commit and the receiver's own peers see it), a mismatch
 * drops it (a hole again) and the source that sent it, and the piece goes
 * to another source. A sync resumed after a restart first checks what
 * backing.tmp holds of each piece: a piece that matches is kept. The job's
 * own thread watches: progress, the sender, the bytes per source, cancel,
 * the stall bound, and the writeback of the written prefix (writeback.c);
 * it also waits, after the last piece, for a ready source's SHA-512.
 *
 * Which piece from which source (SPEC §9, fan-out): first this receiver's
 * share of the origin (the first of the list), so that the origin's link,
 * which every receiver waits on, stays busy; then the sources other than
 * the origin, the least busy first (each receiver and fetcher starting its
 * turn at another one), and from each the piece the fewest of them hold;
 * while a piece comes from the origin, at most SYNC_PEER_BESIDE_ORIGIN
 * others come at once (they share the downlink), and with 3 sources or
 * more at most SYNC_PEER_MESH_GETS from the others. The origin is asked, over
 * one connection, only for a piece no other source holds, and only for
 * this receiver's share of them (piece i is the receiver of rank i mod N's,
 * peer.c), or for another's whose owner is dropped or failing, or any once
 * this receiver's share has been done for SYNC_PEER_HELP_MS; and for
 * pieces others hold only when all the others hold the whole image and
 * are at their connection limit (copies, not a fan-out). A fetcher idle
 * for SYNC_PEER_IDLE_MS gives up a GET that has run SYNC_PEER_SLOW_MS when
 * another source (not the origin) holds that piece and is free. At most
 * SYNC_PEER_PER_SOURCE connections go to one source (SYNC_PEER_ONLY_SOURCE
 * when it is the only one). A piece that fails
 * goes back, for whichever source holds it and is usable then: one that
 * answered 503 waits Retry-After (the piece is asked of another source
 * that holds it at once), 409 (it does not hold it) loses that piece from
 * its have, one that failed otherwise backs off (doubling up to
 * SYNC_PEER_BACKOFF_MAX_MS), one that answered what will not change (404,
 * 401, another version, a piece that fails its digest) is dropped.
 *
 * With --verify sha512 the writer's hasher follows the written prefix, so
 * no piece past SYNC_PEER_HASH_LEAD of it is started (little is left to
 * hash when the last byte lands).
 *
 * Threads: the fetchers, the pollers and the job's thread share the
 * transfer; t->lock guards the pieces' states, the sources' state and the
 * outcome. A piece in flight belongs to the fetcher holding it; t->bytes,
 * t->received and each source's received are atomic. No lock is held
 * across network or disk I/O, nor while a digest is computed.
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
    SYNC_PEER_NOT_HELD,  /* 409: the source does not hold the piece (yet, or any more) */
    SYNC_PEER_SLOW,      /* given up: another source holds the piece and is free */
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
    struct sync_peer_wbuf wb;      /* writes buf behind the fetcher (wbuf.c) */
    size_t fill;
    uint64_t idle_ms;     /* found nothing to do since, or 0 */
    atomic_bool stop_get; /* ends the GET in flight: the job's cancel, or a slow source */
    bool slow;            /* stop_get was set because its source is slow (t->lock) */
    uint64_t began_ms;    /* the GET in flight began (t->lock) */
    /* the GET in flight */
    struct sync_peer_piece *piece;
    struct sync_peer_source *source;
    uint8_t want[32]; /* the piece's digest (the reference's) */
    uint64_t pos;     /* where buf's first byte goes */
    uint64_t end;     /* the piece's end */
    bool wrote;       /* some of it reached backing.tmp */
    int write_rc;
    int hash_rc;
    char why[200]; /* accept()'s verdict on a source that will not do */
};

void sync_peer_wait(struct sync_peer_transfer *t, uint64_t ms)
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

/* Hand the buffer to the writer thread; fill the other one meanwhile. */
static int sync_peer_flush(struct sync_peer_fetcher *f)
{
    int rc;

    if (f->fill == 0)
        return 0;
    rc = sync_peer_wbuf_write(&f->wb, f->buf, f->fill, f->pos, &f->buf);
    f->wrote = true;
    if (rc < 0) {
        f->write_rc = rc;
        return rc;
    }
    f->pos += f->fill;
    f->fill = 0;
    return 0;
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
    /* a source that turned ready sends its checksum as ETag: judged only
     * once the image's SHA-512 is known (the piece's digest is checked) */
    snprintf(etag, sizeof(etag), "\"%s\"", f->t->checksum);
    if (r->etag[0] && f->t->checksum[0] && strcmp(r->etag, etag) != 0) {
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
    atomic_fetch_add(&f->source->received, len);
    f->hash_rc = store_piece_hash_update(f->hash, data, len);
    if (f->hash_rc < 0)
        return -EIO;
    /* large reads go to the file as they are: one copy less (not with
     * O_DIRECT, which wants the aligned buffer) */
    if (!f->t->direct && f->fill == 0 && len >= SYNC_PEER_DIRECT_MIN)
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
    if (memcmp(digest, f->want, 32) != 0) {
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
        .cancel = &f->stop_get,
        .on_response = sync_peer_on_reply,
        .on_data = sync_peer_on_data,
        .ctx = f,
    };
    int rc, wrc;

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
    /* every byte of the piece on the disk (or dropped below) before it is judged */
    wrc = sync_peer_wbuf_wait(&f->wb);
    if (wrc < 0 && f->write_rc == 0) {
        f->write_rc = wrc;
        rc = -EIO;
    }
    if (f->write_rc < 0) {
        snprintf(why, whylen, "cannot write: %s", store_writer_strerror(t->w, f->write_rc));
        outcome = SYNC_PEER_LOCAL;
    } else if (f->hash_rc < 0) {
        snprintf(why, whylen, "cannot compute a piece digest");
        outcome = SYNC_PEER_LOCAL;
    } else if (rc == -ECANCELED && !sync_job_cancelled(t->job)) {
        snprintf(why, whylen, "slow: piece %" PRIu64 " taken from another source", p->index);
        outcome = SYNC_PEER_SLOW;
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
        } else if (reply.status == 409) {
            outcome = SYNC_PEER_NOT_HELD;
        } else if (reply.status == 206 || http_status_transient(reply.status)) {
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

/* ---- choosing a piece and a source (t->lock held) ---- */

static void sync_peer_finished(struct sync_peer_transfer *t, struct sync_peer_piece *p)
{
    p->state = SYNC_PEER_PIECE_DONE;
    t->left--;
    pthread_cond_broadcast(&t->cond); /* a fetcher held back (sync_peer_pick) may go */
}

static void sync_peer_give_back(struct sync_peer_transfer *t, struct sync_peer_piece *p)
{
    p->state = SYNC_PEER_PIECE_TODO;
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

/* Can s be asked for a piece now? One connection to the origin (source
 * 0) when there are others: its link is the one every receiver shares. */
static bool sync_peer_usable(const struct sync_peer_transfer *t, const struct sync_peer_source *s,
                             uint64_t now)
{
    unsigned most = t->nsources == 1      ? SYNC_PEER_ONLY_SOURCE
                    : s == &t->sources[0] ? 1
                                          : SYNC_PEER_PER_SOURCE;

    if (s->cap && most > s->cap)
        most = s->cap;
    return !s->fatal && s->retry_ms <= now && s->active < most;
}

/* A piece to fetch that needs no source first: a known hole, or (a sync
 * resumed) a known piece whose bytes in backing.tmp are not judged yet. */
static struct sync_peer_piece *sync_peer_local(struct sync_peer_transfer *t)
{
    for (size_t i = 0; i < t->npieces; i++) {
        struct sync_peer_piece *p = &t->pieces[i];

        if (p->state == SYNC_PEER_PIECE_TODO && p->known && (p->hole || (t->resume && !p->checked)))
            return p;
    }
    return NULL;
}

/* How many sources other than the origin (source 0) that are not dropped
 * nor failing hold piece i; *busy_only: all of them are at their connection
 * limit (a source backing off after a 503 is waited for: it is serving
 * others). A failing source (its last GET or /pieces poll could not reach
 * it) holds nothing until it answers again: a receiver killed mid fan-out
 * must not keep the pieces only it had from being asked of the origin. */
static unsigned sync_peer_holders(const struct sync_peer_transfer *t, size_t i, bool *busy_only)
{
    unsigned n = 0;

    *busy_only = true;
    for (size_t k = 1; k < t->nsources; k++) {
        const struct sync_peer_source *s = &t->sources[k];

        if (s->fatal || !s->have[i] || s->failures > 0 || s->poll_failures > 0)
            continue;
        n++;
        if (s->active < SYNC_PEER_PER_SOURCE)
            *busy_only = false;
    }
    return n;
}

/* GETs in flight to sources other than the origin. */
static unsigned sync_peer_active_others(const struct sync_peer_transfer *t)
{
    unsigned n = 0;

    for (size_t k = 1; k < t->nsources; k++)
        n += t->sources[k].active;
    return n;
}

/* Do all the sources other than the origin hold the whole image (copies as
 * good as the origin, no receivers being fanned out to)? */
static bool sync_peer_others_whole(const struct sync_peer_transfer *t)
{
    for (size_t k = 1; k < t->nsources; k++)
        if (!t->sources[k].fatal && !t->sources[k].complete)
            return false;
    return t->nsources > 1;
}

/* Is the source of rank r's share a receiver that has said for
 * SYNC_PEER_ABSENT_MS that it is not receiving the image (404 or 409 to
 * its /pieces: not asked to sync, failed, queued)? Every receiver asks it,
 * so all see the same. */
static bool sync_peer_rank_absent(const struct sync_peer_transfer *t, size_t r, uint64_t now)
{
    int k = t->owner[r];
    const struct sync_peer_source *s;

    if (k < 0)
        return false;
    s = &t->sources[k];
    return s->absent_ms && now - s->absent_ms >= SYNC_PEER_ABSENT_MS;
}

/* Piece i's owner is absent: is it this receiver's? The pieces of absent
 * ranks are dealt out in turn to the present ones, so that each is asked of
 * the origin once, not by every receiver. */
static bool sync_peer_dealt(const struct sync_peer_transfer *t, size_t i, uint64_t now)
{
    size_t present = 0, mine = 0, turn;

    for (size_t r = 0; r < t->nsources; r++) {
        if (sync_peer_rank_absent(t, r, now))
            continue;
        if (r == t->rank)
            mine = present;
        present++;
    }
    turn = (i / t->nsources) % present; /* present >= 1: this receiver's rank */
    return turn == mine;
}

/* Is piece i this receiver's to ask the origin for: its own (its rank's:
 * peer.c), or one whose owner cannot take it now (dropped or failing, as
 * this receiver sees it: then it takes it; absent, as every receiver sees
 * it: then it is dealt out), or any, once this receiver's own share has
 * been done for SYNC_PEER_HELP_MS and no one else took it meanwhile (an
 * owner that does not see itself as one: a --listen address other than the
 * one the others use)? Counted from the end of its own share, not from when
 * the origin held the piece: with many pieces, the owners that get the
 * origin's send places last start their shares late, and are not to be
 * doubled. */
static bool sync_peer_mine(const struct sync_peer_transfer *t, size_t i, uint64_t now)
{
    const struct sync_peer_source *owner;
    int k;

    if (!t->ranked)
        return true;
    k = t->owner[i % t->nsources];
    if (k < 0)
        return true;
    owner = &t->sources[k];
    if (owner->fatal || owner->failures > 0 || owner->poll_failures > 0)
        return true;
    if (sync_peer_rank_absent(t, i % t->nsources, now))
        return sync_peer_dealt(t, i, now);
    return t->share_done_ms && now - t->share_done_ms >= SYNC_PEER_HELP_MS;
}

/* Has this receiver done its own share (every piece of its rank is done,
 * in flight or a hole)? Notes when it first has, in t->share_done_ms. */
static void sync_peer_share_check(struct sync_peer_transfer *t, uint64_t now)
{
    if (!t->ranked || t->share_done_ms)
        return;
    for (size_t i = t->rank; i < t->npieces; i += t->nsources) {
        const struct sync_peer_piece *p = &t->pieces[i];

        if (p->state == SYNC_PEER_PIECE_TODO && !p->hole)
            return;
    }
    t->share_done_ms = now;
}

/* The piece to ask s for: one it holds that is known, to do and not a
 * hole; the rarest among the sources other than the origin, looked at
 * from t->start (so receivers spread). From the origin, only a piece no
 * other source holds and that is this receiver's (sync_peer_mine), or one
 * others hold when they all hold the whole image and are at their
 * connection limit (`whole`). NULL: none. */
static struct sync_peer_piece *sync_peer_piece_for(struct sync_peer_transfer *t,
                                                   const struct sync_peer_source *s, bool origin,
                                                   bool whole, uint64_t now)
{
    struct sync_peer_piece *best = NULL;
    unsigned best_holders = UINT32_MAX;

    for (size_t k = 0; k < t->npieces; k++) {
        size_t i = (t->start + k) % t->npieces;
        struct sync_peer_piece *p = &t->pieces[i];
        unsigned holders;
        bool busy_only;

        if (p->state != SYNC_PEER_PIECE_TODO || !p->known || p->hole || !s->have[i])
            continue;
        /* --verify sha512: within SYNC_PEER_HASH_LEAD of the hasher, so
         * that the hashing is done by the time the last byte lands */
        if (p->off > t->hash_limit)
            continue;
        if (t->resume && !p->checked)
            continue;
        holders = sync_peer_holders(t, i, &busy_only);
        if (origin) {
            if ((holders == 0 && sync_peer_mine(t, i, now)) || (holders > 0 && busy_only && whole))
                return p;
            continue;
        }
        if (holders < best_holders) {
            best = p;
            best_holders = holders;
        }
    }
    return best;
}

/* A source and a piece to ask it for, preferring the sources other than
 * the first of the list (the origin: SPEC §9), the least busy first (from
 * the fetcher's own turn). NULL with *wait_ms when there is none now; the
 * transfer is stopped when there never will be. */
static struct sync_peer_source *sync_peer_pick(struct sync_peer_fetcher *f, uint64_t now,
                                               struct sync_peer_piece **piece, uint64_t *wait_ms)
{
    struct sync_peer_transfer *t = f->t;
    char causes[BIM_ERROR_MAX - 64], message[BIM_ERROR_MAX];
    bool alive = false;
    size_t turn;

    *piece = NULL;
    *wait_ms = SYNC_POLL_MS;
    t->hash_limit = t->hash_sha512 ? store_writer_hashed(t->w) + SYNC_PEER_HASH_LEAD : UINT64_MAX;
    if (t->hash_sha512)
        *wait_ms = SYNC_PEER_HASH_WAIT_MS;
    for (size_t k = 0; k < t->nsources; k++) {
        const struct sync_peer_source *s = &t->sources[k];

        alive |= !s->fatal;
        if (!s->fatal && s->retry_ms > now && s->retry_ms - now < *wait_ms)
            *wait_ms = s->retry_ms - now;
    }
    if (!alive || t->sources[t->reference].fatal) {
        bool whole = true;

        for (size_t i = 0; i < t->npieces; i++)
            whole &= t->pieces[i].known;
        if (!alive || !whole) {
            sync_peer_errors(t, causes, sizeof(causes));
            snprintf(message, sizeof(message), "no source can finish the image: %s", causes);
            sync_peer_fail(t, -EIO, BIM_CAUSE_SOURCE, message);
            return NULL;
        }
    }
    /* this receiver's share of the origin first: the origin's link is the
     * one every receiver waits on, so it is kept busy, and its last pieces
     * reach the others early (asked of it only when a fetcher had nothing
     * else to do, a share could wait for seconds behind the others) */
    sync_peer_share_check(t, now);
    if (sync_peer_usable(t, &t->sources[0], now)) {
        *piece = sync_peer_piece_for(t, &t->sources[0], true, false, now);
        if (*piece)
            return &t->sources[0];
    }
    /* while this receiver fetches from the origin, at most
     * SYNC_PEER_BESIDE_ORIGIN other GETs: they share its downlink with the
     * origin's piece, which no one else holds yet and all wait for (with
     * every fetcher busy, the origin's link would idle behind receivers'
     * downlinks) */
    if (t->nsources > 2 && t->sources[0].active > 0 &&
        sync_peer_active_others(t) >= SYNC_PEER_BESIDE_ORIGIN)
        return NULL;
    /* and at most SYNC_PEER_MESH_GETS in all: as many as each source
     * serves at once (--send-limit's default), so that N receivers ask for
     * about the N x 3 places their sources have; with more, every source
     * was at its limit with GETs slowed by the receivers' downlinks, and
     * the others were refused (503) */
    if (t->nsources > 2 && sync_peer_active_others(t) >= SYNC_PEER_MESH_GETS)
        return NULL;
    /* the others, least busy first, each receiver (and each of its
     * fetchers) starting at another one, so that they do not all ask the
     * same source first */
    turn = (t->ranked ? t->rank : t->start) + f->index;
    for (unsigned busy = 0; busy < SYNC_PEER_PER_SOURCE; busy++)
        for (size_t k = 0; k < t->nsources; k++) {
            size_t at = t->nsources > 1 ? 1 + (turn + k) % (t->nsources - 1) : 0;
            struct sync_peer_source *s = &t->sources[at];

            if (at == 0 || s->active != busy || !sync_peer_usable(t, s, now))
                continue;
            *piece = sync_peer_piece_for(t, s, false, false, now);
            if (*piece)
                return s;
        }
    if (sync_peer_usable(t, &t->sources[0], now)) {
        *piece = sync_peer_piece_for(t, &t->sources[0], true, sync_peer_others_whole(t), now);
        if (*piece)
            return &t->sources[0];
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
        sync_peer_finished(t, p);
        return;
    case SYNC_PEER_BUSY:
        t->alive_ms = now;
        s->failures = 0; /* it answers: not failing (sync_peer_holders) */
        str_copy(s->error, sizeof(s->error), why);
        /* the only source, at its --send-limit with this receiver's other
         * GETs: as many as run now from here on, and those go on */
        if (t->nsources == 1 && s->active > 0)
            s->cap = s->active;
        else
            s->retry_ms = now + retry_s * 1000ull;
        break;
    case SYNC_PEER_SLOW:
        /* not a failure; only not this piece from it now */
        s->have[p->index] = 0;
        s->complete = false;
        log_debug("image=%s uuid=%s %s: %s", t->job->name, t->job->uuid, s->addr, why);
        break;
    case SYNC_PEER_NOT_HELD:
        /* it does not hold it (any more): its next have says what it does */
        t->alive_ms = now;
        s->failures = 0;
        s->have[p->index] = 0;
        s->complete = false;
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
static bool sync_peer_kept(struct sync_peer_transfer *t, struct sync_peer_piece *p,
                           const uint8_t digest[32], int *rc)
{
    bool has_data = false, match = false;

    *rc = store_writer_piece_check(t->w, t->size, p->index, digest, &has_data, &match);
    if (*rc == 0 && has_data && !match)
        *rc = store_writer_discard(t->w, p->off, p->len);
    if (*rc < 0 || !(match || p->hole))
        return false;
    *rc = store_writer_skip(t->w, p->off, p->len);
    if (*rc == 0)
        atomic_fetch_add(&t->bytes, p->len);
    return *rc == 0;
}

/* A piece that needs no source: a hole is marked; a resumed piece is
 * judged from what backing.tmp holds. t->lock held; dropped meanwhile. */
static void sync_peer_work_local(struct sync_peer_fetcher *f, struct sync_peer_piece *p)
{
    struct sync_peer_transfer *t = f->t;
    uint8_t digest[32];
    bool kept = false;
    int rc = 0;

    p->state = SYNC_PEER_PIECE_FLIGHT;
    memcpy(digest, t->manifest.sha256[p->index], 32);
    pthread_mutex_unlock(&t->lock);
    if (t->resume && !p->checked) {
        kept = sync_peer_kept(t, p, digest, &rc);
    } else {
        rc = store_writer_skip(t->w, p->off, p->len);
        if (rc == 0)
            atomic_fetch_add(&t->bytes, p->len);
        kept = rc == 0;
    }
    pthread_mutex_lock(&t->lock);
    p->checked = true;
    if (rc < 0) {
        sync_peer_fail(t, rc, BIM_CAUSE_IO, store_writer_strerror(t->w, rc));
        sync_peer_give_back(t, p);
    } else if (kept) {
        sync_peer_finished(t, p);
    } else {
        sync_peer_give_back(t, p);
    }
}

/* Fetch piece p from s. t->lock held; dropped meanwhile. */
static void sync_peer_work(struct sync_peer_fetcher *f, struct sync_peer_source *s,
                           struct sync_peer_piece *p)
{
    struct sync_peer_transfer *t = f->t;
    enum sync_peer_outcome outcome;
    unsigned retry_s = 0;
    char why[512] = "";

    p->state = SYNC_PEER_PIECE_FLIGHT;
    memcpy(f->want, t->manifest.sha256[p->index], 32);
    s->active++;
    f->piece = p;
    f->source = s;
    f->began_ms = clock_monotonic_ms();
    f->slow = false;
    atomic_store(&f->stop_get, sync_job_cancelled(t->job));
    pthread_mutex_unlock(&t->lock);
    outcome = sync_peer_get_piece(f, s, &retry_s, why, sizeof(why));
    /* one line per GET, behind -d: when each piece came and from whom */
    log_debug("image=%s uuid=%s piece %" PRIu64 " from %s: %s, %" PRIu64 " ms, at %" PRIu64
              " ms (monotonic %" PRIu64 ")",
              t->job->name, t->job->uuid, p->index, s->addr,
              outcome == SYNC_PEER_DONE ? "done" : why, clock_monotonic_ms() - f->began_ms,
              clock_monotonic_ms() - t->started_ms, clock_monotonic_ms());
    pthread_mutex_lock(&t->lock);
    f->piece = NULL;
    sync_peer_judge(t, s, p, outcome, retry_s, why);
}

/* A fetcher that has found nothing to do for a while gives up, for
 * another, a GET that has run for SYNC_PEER_SLOW_MS from a source while
 * another source (not the origin, whose link every receiver shares) holds
 * the piece and is free: a receiver never waits on one slow source while
 * another holds the piece (SPEC §9). The piece comes back and is taken
 * from the free source. t->lock held. */
static void sync_peer_unstick(struct sync_peer_fetcher *f, uint64_t now)
{
    struct sync_peer_transfer *t = f->t;

    if (!f->idle_ms || now - f->idle_ms < SYNC_PEER_IDLE_MS)
        return;
    for (size_t g = 0; g < t->nfetchers; g++) {
        struct sync_peer_fetcher *o = &t->fetchers[g];

        if (o == f || !o->piece || o->slow || now - o->began_ms < SYNC_PEER_SLOW_MS)
            continue;
        for (size_t k = 0; k < t->nsources; k++) {
            struct sync_peer_source *s = &t->sources[k];

            if (k == 0 || s == o->source || !s->have[o->piece->index] ||
                !sync_peer_usable(t, s, now))
                continue;
            o->slow = true;
            atomic_store(&o->stop_get, true);
            f->idle_ms = now; /* one at a time */
            return;
        }
    }
}

static void *sync_peer_fetcher_main(void *arg)
{
    struct sync_peer_fetcher *f = arg;
    struct sync_peer_transfer *t = f->t;

    pthread_mutex_lock(&t->lock);
    while (!t->stop && t->left > 0) {
        uint64_t now = clock_monotonic_ms(), wait_ms = SYNC_POLL_MS;
        struct sync_peer_piece *p = sync_peer_local(t);
        struct sync_peer_source *s = NULL;

        if (p) {
            sync_peer_work_local(f, p);
            continue;
        }
        s = sync_peer_pick(f, now, &p, &wait_ms);
        if (!s) {
            /* nothing for now: a piece ends, comes back, or a have grows */
            if (!f->idle_ms)
                f->idle_ms = now;
            sync_peer_unstick(f, now);
            if (!t->stop)
                sync_peer_wait(t, wait_ms);
            continue;
        }
        f->idle_ms = 0;
        sync_peer_work(f, s, p);
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

/* The bytes received from each source, for metrics (bimfs_image_received_bytes_total). */
static void sync_peer_publish_received(struct sync_peer_transfer *t)
{
    struct sync_job *job = t->job;
    struct sync_record *rec;

    pthread_mutex_lock(&job->sync->lock);
    rec = job->record;
    if (rec && !rec->received) {
        rec->received = calloc(t->nsources, sizeof(*rec->received));
        rec->nreceived = rec->received ? t->nsources : 0;
        for (size_t k = 0; k < rec->nreceived; k++)
            str_copy(rec->received[k].addr, sizeof(rec->received[k].addr), t->sources[k].addr);
    }
    for (size_t k = 0; rec && k < rec->nreceived && k < t->nsources; k++)
        rec->received[k].bytes = atomic_load(&t->sources[k].received);
    pthread_mutex_unlock(&job->sync->lock);
}

/* Watch the fetchers until the pieces are done and the SHA-512 is known,
 * or the transfer stops. t->lock held. */
static void sync_peer_watch(struct sync_peer_transfer *t)
{
    uint64_t last_bytes = 0, last_hashed = 0, last_received = 0;
    uint64_t progress_ms = clock_monotonic_ms();
    char causes[BIM_ERROR_MAX - 64], message[BIM_ERROR_MAX];
    struct sync_writeback wb;
    int shown = -1;

    sync_writeback_reset(&wb);
    t->alive_ms = progress_ms;
    while (!t->stop && (t->left > 0 || !t->checksum[0])) {
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
            for (size_t g = 0; g < t->nfetchers; g++)
                atomic_store(&t->fetchers[g].stop_get, true);
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
        sync_peer_publish_received(t);
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
    size_t want = t->nsources == 1 ? SYNC_PEER_ONLY_SOURCE : t->nsources * SYNC_PEER_PER_SOURCE;
    size_t started = 0;
    int rc = 0;

    pthread_t pollers[SYNC_PEER_POLLERS];
    size_t npollers = 0;

    memset(fetchers, 0, sizeof(fetchers));
    t->left = t->npieces;
    t->fetchers = fetchers;
    t->started_ms = clock_monotonic_ms();
    if (want > SYNC_PEER_FETCHERS)
        want = SYNC_PEER_FETCHERS;
    for (; started < want && rc == 0; started++) {
        struct sync_peer_fetcher *f = &fetchers[started];

        f->t = t;
        f->index = (unsigned)started;
        /* aligned for O_DIRECT: a flush at a piece's offset is aligned too */
        rc = -posix_memalign((void **)&f->buf, SYNC_PEER_ALIGN, SYNC_PEER_BUFFER);
        if (rc == 0)
            rc = sync_peer_wbuf_start(&f->wb, t->w);
        if (rc == 0)
            rc = store_piece_hash_open(&f->hash);
        if (rc == 0)
            rc = sync_peer_client_open(t, &f->http);
        if (rc == 0) {
            pthread_mutex_lock(&t->lock);
            t->nfetchers = started + 1;
            pthread_mutex_unlock(&t->lock);
            rc = -pthread_create(&f->thread, NULL, sync_peer_fetcher_main, f);
        }
        if (rc < 0)
            break;
    }
    if (rc == 0) {
        rc = sync_peer_poll_start(t, pollers, &npollers);
    }
    pthread_mutex_lock(&t->lock);
    if (rc < 0)
        sync_peer_fail(t, rc, BIM_CAUSE_SOURCE, "cannot start the fetcher threads");
    else
        sync_peer_watch(t);
    t->stop = true;
    pthread_cond_broadcast(&t->cond);
    pthread_mutex_unlock(&t->lock);

    for (size_t i = 0; i < npollers; i++)
        pthread_join(pollers[i], NULL);
    sync_peer_publish_received(t);
    for (size_t i = 0; i < SYNC_PEER_FETCHERS; i++) {
        if (i < started)
            pthread_join(fetchers[i].thread, NULL);
        sync_peer_wbuf_stop(&fetchers[i].wb);
        http_client_close(fetchers[i].http);
        store_piece_hash_close(fetchers[i].hash);
        free(fetchers[i].buf);
    }
    if (t->rc < 0 || t->left > 0 || !t->checksum[0]) {
        *err = t->err;
        return t->rc < 0 ? t->rc : bim_error_set(err, -EIO, "the sync stopped early");
    }
    /* every byte is here: show it at once (progress is otherwise throttled) */
    t->job->flowing = false;
    sync_job_progress(t->job, atomic_load(&t->bytes));
    return 0;
}
