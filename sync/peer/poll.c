/*
 * poll.c - what the sources of a peer sync hold, as it changes (SPEC §9
 * "Serving while receiving"): a source that is itself receiving the image
 * answers /pieces with a `have` that grows, and a reference in progress
 * learns more digests as it goes. One poller thread per sync asks every
 * source that is behind (its have is not whole) at least every
 * SYNC_PEER_POLL_MS, and every source while the image's SHA-512 is not
 * known, until a ready one whose digests are all the reference's gives it
 * (manifest.c merges each answer). A sync with many sources has more than
 * one poller (one per SYNC_PEER_POLL_EACH sources, at most
 * SYNC_PEER_POLLERS), each asking the next source that is due: one round
 * of requests over loaded links would otherwise take longer than the
 * interval, and a piece a receiver holds would be seen late by the others. A reference that stops
 * answering /pieces with 409 is asked for its image: if it failed (a download whose checksum did
 * not match), the sync fails with its error.
 *
 *   GET http://<source>/v1/images/<name>/pieces   have, digests, SHA-512
 *   GET http://<source>/v1/images/<name>          its state and error (the reference)
 *
 * Threads: the pollers, beside the fetchers and the job's thread; t->lock
 * guards what it updates (each source's have, complete, ready, polling,
 * polled_ms, the pieces' digests) and is not held across a request.
 */
#include "peer.h"
#include "wire.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

/* A source to ask now (t->lock held), or NULL. */
static struct sync_peer_source *sync_peer_poll_due(struct sync_peer_transfer *t, uint64_t now)
{
    for (size_t k = 0; k < t->nsources; k++) {
        struct sync_peer_source *s = &t->sources[k];

        if (s->fatal || s->polling || now < s->polled_ms + SYNC_PEER_POLL_MS)
            continue;
        if (!s->complete || !t->checksum[0])
            return s;
    }
    return NULL;
}

/* The reference answered /pieces with 409: did it fail? Then the sync
 * fails with its error (t->lock not held; taken to fail). */
static void sync_peer_poll_reference(struct sync_peer_transfer *t, struct http_client *h,
                                     struct sync_peer_source *s)
{
    char state[16], error[BIM_ERROR_MAX - 128];
    bool checksum;

    if (sync_peer_source_state(t, h, s, state, sizeof(state), error, sizeof(error)) < 0 ||
        strcmp(state, "failed") != 0)
        return;
    checksum = strncmp(error, "checksum mismatch", 17) == 0;
    pthread_mutex_lock(&t->lock);
    if (!t->stop) {
        t->rc = -EIO;
        if (checksum) /* SPEC §3's words as the reference gave them */
            bim_error_cause(&t->err, BIM_CAUSE_CHECKSUM, -EIO, "%s", error);
        else
            bim_error_cause(&t->err, BIM_CAUSE_SOURCE, -EIO, "the reference %s failed: %s", s->addr,
                            error);
        t->stop = true;
        pthread_cond_broadcast(&t->cond);
    }
    pthread_mutex_unlock(&t->lock);
}

/* Take an answer (t->lock held). */
static void sync_peer_poll_take(struct sync_peer_transfer *t, struct sync_peer_source *s, int rc,
                                long status, const struct wire_pieces *m, char *why, size_t whylen)
{
    bool is_ref = s == &t->sources[t->reference];
    uint64_t now = clock_monotonic_ms();

    if (rc == 0)
        rc = sync_peer_manifest_merge(t, s, m, why, whylen);
    /* a receiver started with this one may not have the image yet: a 404
     * from a source other than the reference is "not yet", not "never" */
    if (rc == -ENOENT && status == 404 && !is_ref)
        rc = -EAGAIN;
    s->poll_failures = rc == -EAGAIN && status == 0 ? s->poll_failures + 1 : 0;
    switch (rc) {
    case 0:
        t->alive_ms = now;
        s->absent_ms = 0;
        return;
    case -EAGAIN:
        if (status == 409 || status == 404) {
            /* not in progress nor ready (starting, restarted, failed, not
             * asked to sync yet) */
            t->alive_ms = now;
            memset(s->have, 0, t->npieces);
            s->complete = false;
            if (!s->absent_ms)
                s->absent_ms = now;
        }
        if (!s->have || !s->complete)
            str_copy(s->error, sizeof(s->error), why);
        return;
    case -EPROTO:
        if (!t->stop) {
            t->rc = -EIO;
            bim_error_cause(
                &t->err, strstr(why, "checksum mismatch") ? BIM_CAUSE_CHECKSUM : BIM_CAUSE_SOURCE,
                -EIO, "%s", why);
            t->stop = true;
        }
        pthread_cond_broadcast(&t->cond);
        return;
    case -ECANCELED:
        return;
    default: /* -ENOENT, -EBADMSG: it will not do */
        if (is_ref && status == 404)
            snprintf(s->error, sizeof(s->error), "%s (the reference is gone)", why);
        else
            str_copy(s->error, sizeof(s->error), why);
        s->fatal = true;
        memset(s->have, 0, t->npieces);
        log_warn("image=%s uuid=%s not syncing from %s any more: %s", t->job->name, t->job->uuid,
                 s->addr, s->error);
        pthread_cond_broadcast(&t->cond);
        return;
    }
}

static void *sync_peer_poll_main(void *arg)
{
    struct sync_peer_transfer *t = arg;
    struct http_client *h = NULL;
    int rc = sync_peer_client_open(t, &h);

    pthread_mutex_lock(&t->lock);
    if (rc < 0)
        log_warn("image=%s uuid=%s cannot ask the sources what they hold: %s", t->job->name,
                 t->job->uuid, strerror(-rc));
    while (rc == 0 && !t->stop) {
        struct sync_peer_source *s = sync_peer_poll_due(t, clock_monotonic_ms());
        struct wire_pieces m = {0};
        unsigned retry_s = 1;
        char why[512] = "";
        long status = 0;
        int got;

        if (!s) {
            sync_peer_wait(t, 100);
            continue;
        }
        s->polling = true;
        pthread_mutex_unlock(&t->lock);
        got = sync_peer_manifest_get(t, h, s, &m, &retry_s, &status, why, sizeof(why));
        if (got == -EAGAIN && status == 409 && s == &t->sources[t->reference])
            sync_peer_poll_reference(t, h, s);
        pthread_mutex_lock(&t->lock);
        s->polling = false;
        s->polled_ms = clock_monotonic_ms();
        if (got == -EAGAIN && retry_s > 1) /* 503: as long as it asks */
            s->polled_ms += retry_s * 1000ull - SYNC_PEER_POLL_MS;
        sync_peer_poll_take(t, s, got, status, &m, why, sizeof(why));
        pthread_mutex_unlock(&t->lock);
        wire_pieces_free(&m);
        pthread_mutex_lock(&t->lock);
    }
    pthread_mutex_unlock(&t->lock);
    http_client_close(h);
    return NULL;
}

int sync_peer_poll_start(struct sync_peer_transfer *t, pthread_t *threads, size_t *count)
{
    size_t want = (t->nsources + SYNC_PEER_POLL_EACH - 1) / SYNC_PEER_POLL_EACH;
    int rc = 0;

    *count = 0;
    if (want > SYNC_PEER_POLLERS)
        want = SYNC_PEER_POLLERS;
    while (*count < want && rc == 0) {
        rc = -pthread_create(&threads[*count], NULL, sync_peer_poll_main, t);
        if (rc == 0)
            (*count)++;
    }
    return *count > 0 ? 0 : rc;
}
