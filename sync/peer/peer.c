/*
 * peer.c - the peer sync job (SPEC §6 `sync`, §9): an image copied from
 * other bimfs daemons over their HTTP API. This file holds the job's frame:
 * the source list, asking the sources for the image (uuid, state, size,
 * checksum), the reference and its piece digests (manifest.c), the plan of
 * pieces, the writer, and the outcome. The pieces move in fetch.c.
 *
 *   GET http://<source>/v1/images/<name>           which image, ready?, size, checksum
 *   GET http://<source>/v1/images/<name>/pieces    the digest of every 4 MiB piece
 *   GET .../backing with Range                     a piece (fetch.c)
 *
 * The reference is the first source, in the list's order, that describes
 * the image (right uuid, ready or itself in progress, and the size and
 * checksum if given) and gives usable digests; one that does not is passed
 * over for the next. A reference in progress (SPEC §9 "Serving while
 * receiving") gives its size and the digests it knows; the others come as
 * it learns them (poll.c), and the image's SHA-512 from a ready source
 * once every piece is verified. A source that does not answer, answers
 * 5xx or has the image in another state is asked again (backing off up to
 * SYNC_PEER_BACKOFF_MAX_MS); one that answers for good (404, 401, another
 * uuid, size or checksum) is not asked again. The image fails when no
 * source is left, or when none answered for the stall time
 * (--stall-timeout, default 60 s).
 *
 * With --verify pieces (the default) the image's SHA-512 is the
 * reference's, taken once every piece matched its digest; with --verify
 * sha512 the writer hashes the image as well and a difference fails it.
 *
 * HTTP is the client's (sync/http/client.h); this file opens it for peers
 * and reads the small JSON answers into a bounded buffer.
 *
 * Threads: the worker thread running the job (and fetch.c's fetchers,
 * which share only the transfer). sync->lock is taken only to publish.
 */
#include "peer.h"
#include "wire.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

/* ---- the source list ---- */

int sync_peer_list_parse(const char *const *peers, struct sync_peer_job *out, char *text,
                         size_t textlen, struct bim_error *err)
{
    size_t len;

    out->count = 0;
    if (!peers || !peers[0])
        return bim_error_set(err, -EINVAL, "sync needs at least one peer (host:port)");
    len = (size_t)snprintf(text, textlen, "sync:");
    for (; peers[out->count]; out->count++) {
        const char *peer = peers[out->count];

        if (out->count == SYNC_PEER_MAX)
            return bim_error_set(err, -EINVAL, "more than %d peers", SYNC_PEER_MAX);
        if (!wire_peer_valid(peer))
            return bim_error_set(err, -EINVAL, "invalid peer address \"%.64s\": expected host:port",
                                 peer);
        str_copy(out->addrs[out->count], sizeof(out->addrs[out->count]), peer);
        len += (size_t)snprintf(text + len, textlen - len, "%s%s", out->count ? "," : "", peer);
        if (len >= textlen)
            return bim_error_set(err, -EINVAL, "the peer list is too long");
    }
    return 0;
}

void sync_set_peer_token(struct sync *sync, const char *token)
{
    pthread_mutex_lock(&sync->lock);
    str_copy(sync->peer_token, sizeof(sync->peer_token), token ? token : "");
    pthread_mutex_unlock(&sync->lock);
}

void sync_set_listen(struct sync *sync, const char *listen)
{
    pthread_mutex_lock(&sync->lock);
    str_copy(sync->listen, sizeof(sync->listen), listen ? listen : "");
    pthread_mutex_unlock(&sync->lock);
}

/* The transfer's sources, from the job's typed list. */
static int sync_peer_sources_init(struct sync_peer_transfer *t, const struct sync_peer_job *pj,
                                  struct bim_error *err)
{
    char listen[SYNC_PEER_ADDR_MAX + 1];

    pthread_mutex_lock(&t->job->sync->lock);
    str_copy(listen, sizeof(listen), t->job->sync->listen);
    pthread_mutex_unlock(&t->job->sync->lock);
    for (size_t i = 0; i < pj->count && t->nsources < SYNC_PEER_MAX; i++) {
        struct sync_peer_source *s = &t->sources[t->nsources];

        /* this daemon, listed among the others (self.c) */
        if (i > 0 && sync_peer_is_self(pj->addrs[i], listen)) {
            if (!t->self[0])
                str_copy(t->self, sizeof(t->self), pj->addrs[i]);
            continue;
        }
        str_copy(s->addr, sizeof(s->addr), pj->addrs[i]);
        /* built in two steps: GCC cannot tell that job->name and s are apart */
        snprintf(s->url, sizeof(s->url), "http://%s/v1/images/", pj->addrs[i]);
        strncat(s->url, t->job->name, sizeof(s->url) - strlen(s->url) - 1);
        t->nsources++;
    }
    /* not listed: the name the others know it by is guessed (self.c) */
    if (!t->self[0] && t->nsources > 0)
        sync_peer_self_name(listen, t->sources[0].addr, t->self, sizeof(t->self));
    return t->nsources ? 0 : bim_error_set(err, -EINVAL, "no peer to sync from");
}

void sync_peer_errors(struct sync_peer_transfer *t, char *out, size_t outlen)
{
    size_t len = 0;

    out[0] = '\0';
    for (size_t i = 0; i < t->nsources && len < outlen; i++) {
        const struct sync_peer_source *s = &t->sources[i];
        len += (size_t)snprintf(out + len, outlen - len, "%s%s: %s", i ? "; " : "", s->addr,
                                s->error[0] ? s->error : "no answer yet");
    }
}

/* ---- the peer API's client side ---- */

int sync_peer_client_open(const struct sync_peer_transfer *t, struct http_client **out)
{
    const struct http_client_options opts = {
        .user_agent = "bimfs-peer",
        .token = t->token,
        .connect_ms = SYNC_PEER_CONNECT_MS,
        .low_speed_s = t->low_speed_s, /* a source that stops sending: the piece goes elsewhere */
        /* a fetcher or the poller asks every source in turn: one kept-alive
         * connection to each, not a new one (handshake, slow start) per piece */
        .keep_connections = SYNC_PEER_MAX,
    };

    return http_client_open(&opts, out);
}

/* A small JSON body, at most max bytes. */
struct sync_peer_body {
    char *buf;
    size_t len;
    size_t max;
};

static int sync_peer_body_accept(void *ctx, const struct http_response *resp)
{
    (void)ctx;
    /* an error's body is not read: the status says enough */
    return resp->status == 200 ? 0 : 1;
}

static int sync_peer_body_add(void *ctx, const void *data, size_t n)
{
    struct sync_peer_body *b = ctx;
    char *buf;

    if (n > b->max - b->len)
        return -EFBIG;
    buf = realloc(b->buf, b->len + n + 1);
    if (!buf)
        return -ENOMEM;
    memcpy(buf + b->len, data, n);
    b->buf = buf;
    b->len += n;
    b->buf[b->len] = '\0';
    return 0;
}

int sync_peer_get_body(struct sync_peer_transfer *t, struct http_client *h, const char *url,
                       size_t max, struct http_response *resp, char **out, size_t *len,
                       struct bim_error *err)
{
    struct sync_peer_body body = {.max = max};
    const struct http_request req = {
        .url = url,
        /* a small answer: a source that hangs is given up on sooner than a
         * piece would be */
        .timeout_ms = SYNC_PEER_JSON_TIMEOUT_MS,
        .cancel = &t->job->cancel,
        .on_response = sync_peer_body_accept,
        .on_data = sync_peer_body_add,
        .ctx = &body,
    };
    int rc;

    *out = NULL;
    *len = 0;
    rc = http_client_get(h, &req, resp, err);
    if (rc < 0 && http_cause_remote(resp->cause))
        rc = -EAGAIN;
    if (rc == -EFBIG)
        rc = bim_error_set(err, -EPROTO, "its answer is larger than %zu bytes", max);
    if (rc == 0 && resp->status == 200) {
        *out = body.buf ? body.buf : strdup("");
        *len = body.len;
        if (!*out)
            rc = bim_error_set(err, -ENOMEM, "out of memory");
        return rc;
    }
    free(body.buf);
    return rc;
}

/* The same for a JSON answer: *out (decref it), or NULL for another status. */
static int sync_peer_get_json(struct sync_peer_transfer *t, struct http_client *h, const char *url,
                              size_t max, struct http_response *resp, json_t **out,
                              struct bim_error *err)
{
    json_error_t jerr;
    char *body = NULL;
    size_t len = 0;
    int rc;

    *out = NULL;
    rc = sync_peer_get_body(t, h, url, max, resp, &body, &len, err);
    if (rc == 0 && body) {
        *out = json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr);
        if (!*out)
            rc = bim_error_set(err, -EPROTO, "its answer is not JSON: %s", jerr.text);
    }
    free(body);
    return rc;
}

/* ---- asking the sources for the image ---- */

static bool sync_peer_hex128(const char *s)
{
    if (strlen(s) != STORE_CHECKSUM_HEX)
        return false;
    for (; *s; s++)
        if (!((*s >= '0' && *s <= '9') || (*s >= 'a' && *s <= 'f')))
            return false;
    return true;
}

/* Judge the image a source described: 0, or -EAGAIN (not yet) / -ENOENT
 * (never) / -EBADMSG (never: not the expected checksum) with s->error set. */
static int sync_peer_image_judge(struct sync_peer_transfer *t, struct sync_peer_source *s,
                                 json_t *value)
{
    const struct sync_job *job = t->job;
    char expected[STORE_EXPECTED_MAX + 1];
    struct bim_error why = {0};
    struct wire_image img; /* the wire codec reads what ctl/image.c wrote */
    const char *uuid = img.uuid, *state = img.status.state, *sum = img.status.current_checksum;
    uint64_t size;

    if (wire_image_from_json(value, &img, &why) < 0) {
        snprintf(s->error, sizeof(s->error), "described the image in an unknown way: %.400s",
                 why.message);
        return -ENOENT;
    }
    size = img.size;
    if (strcmp(uuid, job->uuid) != 0) {
        snprintf(s->error, sizeof(s->error), "has %s with uuid %.64s, not %s", job->name, uuid,
                 job->uuid);
        return -ENOENT;
    }
    if (strcmp(state, "in-progress") == 0) {
        /* it is receiving the image itself (SPEC §9): its size and the
         * digests it knows come with its /pieces, its SHA-512 once ready */
        t->size = 0;
        t->checksum[0] = '\0';
        return 0;
    }
    if (strcmp(state, "ready") != 0) {
        snprintf(s->error, sizeof(s->error), "has the image but it is %.16s, not ready", state);
        return -EAGAIN;
    }
    if (!sync_peer_hex128(sum)) {
        snprintf(s->error, sizeof(s->error), "gave no valid checksum");
        return -ENOENT;
    }
    if (size > SYNC_PEER_SIZE_MAX) {
        snprintf(s->error, sizeof(s->error),
                 "has %" PRIu64 " bytes, more than the %" PRIu64 " a sync can take", size,
                 SYNC_PEER_SIZE_MAX);
        return -ENOENT;
    }
    if (t->want_size && (uint64_t)size != t->want_size) {
        snprintf(s->error, sizeof(s->error), "has %" PRIu64 " bytes, not the %" PRIu64 " asked for",
                 (uint64_t)size, t->want_size);
        return -ENOENT;
    }
    if (job->expected.algo == STORE_DIGEST_SHA512 && strcmp(job->expected.hex, sum) != 0) {
        store_checksum_format(&job->expected, expected);
        snprintf(s->error, sizeof(s->error), "checksum mismatch: expected %s, got %s", expected,
                 sum);
        return -EBADMSG;
    }
    t->size = size;
    str_copy(t->checksum, sizeof(t->checksum), sum);
    return 0;
}

/* Ask one source: 0 (t->size and t->checksum set), -EAGAIN worth asking
 * again, -ENOENT or -EBADMSG (another checksum) never, -ECANCELED. */
static int sync_peer_ask(struct sync_peer_transfer *t, struct http_client *h,
                         struct sync_peer_source *s)
{
    struct bim_error err = {0};
    struct http_response reply;
    json_t *img = NULL;
    int rc;

    rc = sync_peer_get_json(t, h, s->url, SYNC_PEER_JSON_MAX, &reply, &img, &err);
    if (rc == -ECANCELED)
        return rc;
    if (rc < 0) {
        str_copy(s->error, sizeof(s->error), err.message);
        return rc == -EAGAIN ? -EAGAIN : -ENOENT;
    }
    if (reply.status == 200) {
        rc = sync_peer_image_judge(t, s, img);
    } else {
        snprintf(s->error, sizeof(s->error), "answered HTTP %ld%s", reply.status,
                 reply.status == 404   ? " (no such image)"
                 : reply.status == 401 ? " (the token is missing or wrong)"
                                       : "");
        rc = http_status_transient(reply.status) || reply.status == 409 ? -EAGAIN : -ENOENT;
    }
    json_decref(img);
    return rc;
}

int sync_peer_source_state(struct sync_peer_transfer *t, struct http_client *h,
                           struct sync_peer_source *s, char *state, size_t statelen, char *error,
                           size_t errorlen)
{
    struct wire_image *img = malloc(sizeof(*img));
    struct bim_error err = {0};
    struct http_response reply;
    json_t *value = NULL;
    int rc = img ? 0 : -ENOMEM;

    if (rc == 0)
        rc = sync_peer_get_json(t, h, s->url, SYNC_PEER_JSON_MAX, &reply, &value, &err);
    if (rc == 0 && !value)
        rc = -EAGAIN; /* another status */
    if (rc == 0)
        rc = wire_image_from_json(value, img, &err);
    if (rc == 0) {
        str_copy(state, statelen, img->status.state);
        str_copy(error, errorlen, img->status.error);
    }
    json_decref(value);
    free(img);
    return rc;
}

/* Sleep ms in slices, watching cancel. */
static int sync_peer_pause(struct sync_peer_transfer *t, uint64_t ms)
{
    uint64_t end = clock_monotonic_ms() + ms;

    while (!sync_job_cancelled(t->job)) {
        uint64_t now = clock_monotonic_ms();
        struct timespec ts;

        if (now >= end)
            return 0;
        ts.tv_sec = 0;
        ts.tv_nsec = (long)((end - now < SYNC_POLL_MS ? end - now : SYNC_POLL_MS) * 1000000);
        nanosleep(&ts, NULL);
    }
    return -ECANCELED;
}

/* Find the reference: the first source that has the image ready and gives
 * usable piece digests (t->reference, t->manifest). When none can and one
 * has another checksum than the expected one, the error is SPEC §3's
 * "checksum mismatch: expected <x>, got <y>" (the log names the source). */
static int sync_peer_discover(struct sync_peer_transfer *t, struct http_client *h,
                              struct bim_error *err)
{
    uint64_t start = clock_monotonic_ms(), pause = 500, bound = t->stall_ms;
    const struct sync_peer_source *mismatch = NULL;
    char causes[BIM_ERROR_MAX];

    for (;;) {
        bool again = false;

        for (size_t i = 0; i < t->nsources; i++) {
            struct sync_peer_source *s = &t->sources[i];
            unsigned retry_s = 1;
            int rc;

            if (s->fatal)
                continue;
            rc = sync_peer_ask(t, h, s);
            if (rc == 0) {
                t->reference = i;
                rc = sync_peer_manifest_fetch(t, h, &retry_s);
                if (rc == 0)
                    return 0;
                if (rc == -EAGAIN) {
                    /* the reference computes its digests (503): it stays
                     * the reference, asked again after Retry-After, for
                     * as long as a source may answer only 503 */
                    bound = SYNC_PEER_BUSY_MAX_MS;
                    pause = retry_s * 1000ull;
                    again = true;
                    break;
                }
            }
            if (rc == -ECANCELED)
                return rc;
            s->fatal = rc != -EAGAIN;
            again |= !s->fatal;
            if (rc == -EBADMSG && !mismatch)
                mismatch = s;
        }
        if (!again && mismatch) { /* SPEC §3's words as they are; the log names the source */
            log_warn("image=%s uuid=%s %s: %s", t->job->name, t->job->uuid, mismatch->addr,
                     mismatch->error);
            return bim_error_cause(err, BIM_CAUSE_CHECKSUM, -EINVAL, "%s", mismatch->error);
        }
        sync_peer_errors(t, causes, sizeof(causes));
        if (!again)
            return bim_error_set(err, -ENOENT, "no source can provide the image: %s", causes);
        if (clock_monotonic_ms() - start >= bound)
            return bim_error_set(err, -ETIMEDOUT, "no source provided the image within %u s: %s",
                                 (unsigned)(bound / 1000), causes);
        if (sync_peer_pause(t, pause) < 0)
            return -ECANCELED;
        pause = pause * 2 > SYNC_PEER_BACKOFF_MAX_MS ? SYNC_PEER_BACKOFF_MAX_MS : pause * 2;
    }
}

/* ---- the plan ---- */

/* Receivers started together share what they ask the origin (the first
 * source) for: piece i is the one of rank i mod N among the N receivers
 * (this one and the others of the list; the list of each names all the
 * others, and may name itself: self.c), ranked by the names the list gives
 * them, this one by the name the others know it by. So each asks the origin
 * for 1/N of the pieces, spread over the image (also while the origin is
 * still downloading it, in order), and the rest comes from the others
 * (fetch.c). t->owner[r] is the source of rank r, -1 for this receiver.
 * Without a rank (no --listen known), every piece is its own; where it
 * starts looking is then random. */
static void sync_peer_ranks(struct sync_peer_transfer *t, uint64_t n)
{
    const char *self = t->self; /* sources_init's */
    uint8_t rnd[4] = {0};
    size_t rank = 0;
    bool listed = false;

    for (size_t k = 1; k < t->nsources; k++) {
        int c = strcmp(t->sources[k].addr, self);

        listed |= c == 0;
        rank += c < 0;
    }
    t->ranked = self[0] && !listed && t->nsources > 1;
    if (t->ranked) {
        t->rank = rank;
        t->owner[rank] = -1;
        for (size_t k = 1; k < t->nsources; k++) {
            size_t r = strcmp(self, t->sources[k].addr) < 0;

            for (size_t j = 1; j < t->nsources; j++)
                r += j != k && strcmp(t->sources[j].addr, t->sources[k].addr) < 0;
            t->owner[r] = (int)k;
        }
        t->start = n ? (size_t)(rank * n / t->nsources) : 0;
        return;
    }
    if (getrandom(rnd, 4, GRND_NONBLOCK) < 0)
        memcpy(rnd, &(uint32_t){(uint32_t)clock_monotonic_ms() ^ (uint32_t)getpid()}, 4);
    t->start = n ? (size_t)(((uint32_t)rnd[0] | (uint32_t)rnd[1] << 8 | (uint32_t)rnd[2] << 16 |
                             (uint32_t)rnd[3] << 24) %
                            n)
                 : 0;
}

/* One piece per digest; a piece whose digest is that of zeros is a hole
 * (marked, never fetched). A piece whose digest the reference (in
 * progress) does not know yet waits for it. *data: bytes of the pieces
 * that are not known holes. Each source's have, from its /pieces (the
 * poller); a reference that is ready holds every piece. */
static int sync_peer_plan(struct sync_peer_transfer *t, uint64_t *data)
{
    uint64_t n = t->manifest.count, last = n ? store_piece_length(t->size, n - 1) : 0;
    int rc;

    *data = 0;
    t->pieces = calloc(n ? n : 1, sizeof(*t->pieces));
    if (!t->pieces)
        return -ENOMEM;
    for (size_t k = 0; k < t->nsources; k++) {
        t->sources[k].have = calloc(n ? n : 1, 1);
        if (!t->sources[k].have)
            return -ENOMEM;
    }
    rc = store_piece_zero_digest(STORE_PIECE_SIZE, t->zero);
    if (rc == 0 && n)
        rc = store_piece_zero_digest(last, t->zero_last);
    for (uint64_t i = 0; rc == 0 && i < n; i++) {
        struct sync_peer_piece *p = &t->pieces[i];

        p->index = i;
        p->off = i * STORE_PIECE_SIZE;
        p->len = store_piece_length(t->size, i);
        p->known = t->known[i];
        p->hole =
            p->known && memcmp(t->manifest.sha256[i], i + 1 == n ? t->zero_last : t->zero, 32) == 0;
        if (!p->hole)
            *data += p->len;
        if (t->checksum[0])
            t->sources[t->reference].have[i] = 1;
    }
    t->sources[t->reference].complete = t->checksum[0] != '\0';
    t->sources[t->reference].ready = t->checksum[0] != '\0';
    t->npieces = (size_t)n;
    sync_peer_ranks(t, n);
    return rc;
}

/* ---- the job ---- */

/* Take the sources' checksum as the expectation when none was given, and
 * show it (and the size) at once. A reference in progress gives none yet:
 * called again once a ready source gave it. */
static void sync_peer_expect(struct sync_peer_transfer *t, struct store_checksum *expected)
{
    struct sync_job *job = t->job;

    *expected = job->expected;
    if (expected->algo == STORE_DIGEST_NONE && t->checksum[0]) {
        expected->algo = STORE_DIGEST_SHA512;
        str_copy(expected->hex, sizeof(expected->hex), t->checksum);
    }
    pthread_mutex_lock(&job->sync->lock);
    store_checksum_format(expected, job->record->info.expected_checksum);
    job->record->info.bytes_total = t->size;
    sync_record_changed(job->sync, job->record);
    pthread_mutex_unlock(&job->sync->lock);
}

static int sync_peer_transfer_init(struct sync_peer_transfer *t, struct sync_job *job,
                                   struct bim_error *err)
{
    pthread_condattr_t attr;
    unsigned low;
    int rc;

    t->job = job;
    t->sender = -1;
    atomic_init(&t->bytes, 0);
    t->stall_ms = job->sync->stall_ms ? job->sync->stall_ms : SYNC_DEFAULT_STALL_MS;
    low = t->stall_ms / 2000;
    t->low_speed_s = low < 2 ? 2 : low > 30 ? 30 : low;
    pthread_mutex_lock(&job->sync->lock);
    str_copy(t->token, sizeof(t->token), job->sync->peer_token);
    pthread_mutex_unlock(&job->sync->lock);
    t->want_size = ((const struct sync_peer_job *)job->state)->size;
    t->resume = ((const struct sync_peer_job *)job->state)->resume;
    t->hash_sha512 = job->sync->verify == SYNC_VERIFY_SHA512;
    atomic_init(&t->received, 0);
    rc = sync_peer_sources_init(t, job->state, err);
    if (rc < 0)
        return rc;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    rc = pthread_cond_init(&t->cond, &attr);
    pthread_condattr_destroy(&attr);
    if (rc == 0)
        rc = pthread_mutex_init(&t->lock, NULL);
    return rc ? bim_error_set(err, -rc, "cannot set up: %s", strerror(rc)) : 0;
}

static void sync_peer_transfer_free(struct sync_peer_transfer *t)
{
    pthread_cond_destroy(&t->cond);
    pthread_mutex_destroy(&t->lock);
    explicit_bzero(t->token, sizeof(t->token));
    store_pieces_free(&t->manifest);
    free(t->known);
    for (size_t k = 0; k < t->nsources; k++)
        free(t->sources[k].have);
    free(t->pieces);
    free(t);
}

/* The writer: a fresh backing.tmp, or the one a restart left (its pieces
 * are checked by the fetchers); the digests are the manifest's, and with
 * --verify pieces the SHA-512 the reference's. */
static int sync_peer_writer(struct sync_peer_transfer *t, const struct store_checksum *expected,
                            struct bim_error *err)
{
    struct sync_job *job = t->job;
    int rc;

    rc = store_writer_open(job->sync->store, job->name, job->uuid, expected,
                           t->resume ? STORE_WRITER_KEEP : STORE_WRITER_NEW, &t->w, err);
    if (rc < 0)
        return rc;
    rc = store_writer_trust_pieces(t->w, &t->manifest, t->known);
    if (rc < 0)
        return bim_error_set(err, rc, "cannot keep the piece digests: %s", strerror(-rc));
    if (!t->hash_sha512) {
        store_writer_trust_checksum(t->w, t->checksum, STORE_VERIFIED_PIECES);
        /* nothing reads the file back as it is written: around the page cache */
        t->direct = store_writer_direct(t->w) == 0;
    }
    sync_serving_start(job, t->w); /* its verified pieces may be served */
    return 0;
}

static void sync_peer_run(struct sync_job *job)
{
    struct sync_peer_transfer *t = calloc(1, sizeof(*t));
    struct bim_error err = {0};
    struct store_checksum expected;
    struct http_client *h = NULL;
    uint64_t data = 0;
    int rc;

    if (!t) {
        sync_transfer_fail(job, bim_error_set(&err, -ENOMEM, "out of memory"), &err);
        return;
    }
    rc = sync_peer_transfer_init(t, job, &err);
    if (rc == 0)
        rc = sync_peer_client_open(t, &h);
    if (rc == 0)
        rc = sync_peer_discover(t, h, &err);
    if (rc == 0)
        rc = sync_size_check(job->sync, t->size, &err);
    if (rc == 0 && (rc = sync_peer_plan(t, &data)) < 0)
        bim_error_set(&err, rc, "out of memory");
    if (rc == 0 && !t->resume) /* holes take no space */
        rc = sync_space_check(job->sync, data, &err);
    http_client_close(h);
    if (rc < 0) {
        sync_transfer_fail(job, rc, &err);
        goto out;
    }
    log_info("image=%s uuid=%s %s: %" PRIu64 " bytes, %" PRIu64 " of data, in %zu pieces checked "
             "against %s's digests%s%s",
             job->name, job->uuid, job->source, t->size, data, t->npieces,
             t->sources[t->reference].addr, t->hash_sha512 ? ", hashed here too" : "",
             t->resume ? ", resuming" : "");
    sync_peer_expect(t, &expected);
    rc = sync_peer_writer(t, &expected, &err);
    if (rc == 0) {
        uint64_t start = clock_monotonic_ms();

        job->bytes_total = t->size;
        rc = sync_peer_fetch(t, &err);
        if (rc == 0 && expected.algo == STORE_DIGEST_NONE) {
            /* the SHA-512 came late, from a ready source (SPEC §9) */
            sync_peer_expect(t, &expected);
            store_writer_expect(t->w, &expected);
        }
        if (rc == 0 && !t->hash_sha512)
            store_writer_trust_checksum(t->w, t->checksum, STORE_VERIFIED_PIECES);
        if (rc == 0)
            log_info("image=%s uuid=%s all %" PRIu64 " bytes in %" PRIu64 " ms; committing",
                     job->name, job->uuid, t->size, clock_monotonic_ms() - start);
    }
    /* the sender is shown while the sync runs only */
    pthread_mutex_lock(&job->sync->lock);
    job->record->info.sender[0] = '\0';
    pthread_mutex_unlock(&job->sync->lock);
    if (t->w)
        sync_transfer_finish(job, t->w, rc, t->size, &err);
    else
        sync_transfer_fail(job, rc, &err);
out:
    sync_peer_transfer_free(t);
}

/* ---- the source's operations (source.h) ---- */

static int sync_peer_prepare(struct sync *sync, const struct sync_create_request *req,
                             struct sync_source_plan *plan, struct bim_error *err)
{
    struct sync_peer_job *pj;
    int rc;

    (void)sync;
    if (!req->uuid)
        return bim_error_set(err, -EINVAL, "sync needs the image's uuid");
    pj = calloc(1, sizeof(*pj));
    if (!pj)
        return bim_error_set(err, -ENOMEM, "out of memory");
    rc = sync_peer_list_parse(req->peers, pj, plan->source, sizeof(plan->source), err);
    if (rc < 0) {
        free(pj);
        return rc;
    }
    pj->size = req->size;
    rc = sync_peer_saved_put(NULL, pj, &plan->extra);
    if (rc < 0) {
        free(pj);
        return bim_error_set(err, rc, "out of memory");
    }
    plan->state = pj;
    return 0;
}

/* A sync cut by a restart is one whose cfg keeps the sync's object; it is
 * queued again, and its backing.tmp (if any) is checked piece by piece
 * against the reference's digests: what matches is kept. */
static int sync_peer_resume(struct sync *sync, struct sync_record *rec, const struct store_entry *e,
                            struct sync_job **job, const char **why)
{
    struct sync_peer_job *pj = calloc(1, sizeof(*pj));
    int rc;

    *job = NULL;
    *why = "interrupted by a daemon restart; the sync's sources were not kept";
    if (!pj)
        return -ENOMEM;
    rc = sync_peer_saved_get(e->cfg.extra, pj);
    if (rc <= 0) {
        free(pj);
        return rc == 0 ? 0 : -EINVAL;
    }
    pj->resume = e->has_tmp;
    return sync_job_resume(sync, &sync_peer_ops, rec, e, pj, job);
}

const struct sync_source_ops sync_peer_ops = {
    .kind = "sync",
    .transfer = true,
    .prepare = sync_peer_prepare,
    .run = sync_peer_run,
    .resume = sync_peer_resume,
    .free_state = free,
};
