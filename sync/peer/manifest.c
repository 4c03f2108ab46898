/*
 * manifest.c - the piece digests of a peer sync (SPEC §9 "Verification"):
 * the reference's, which every piece is checked against wherever it comes
 * from, and the other sources', which must agree with them where both
 * know one, or the source is dropped. A reference in progress knows only
 * some digests: the others are learned from its later answers (poll.c)
 * and a piece is never taken before its digest is known. The same answers
 * give each source's have and, from a ready source whose digests are all
 * the reference's, the image's SHA-512.
 *
 *   GET http://<source>/v1/images/<name>/pieces
 *
 * A manifest is read by the wire codec (common/wire/pieces.c) into a bound
 * set by the image's size; one of another piece size, size or SHA-512 than
 * the image the reference described is not used.
 *
 * Threads: the job's thread (the reference's first answer, before the
 * fetchers start) and the poller (merge, with t->lock held: it writes the
 * digests it learns into t->manifest and the pieces, which the fetchers
 * read under the same lock).
 */
#include "peer.h"
#include "wire.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The largest manifest text an image of t->size bytes may answer. */
static size_t sync_peer_manifest_max(const struct sync_peer_transfer *t)
{
    return (size_t)store_pieces_count(t->size) * SYNC_PEER_MANIFEST_ENTRY +
           SYNC_PEER_MANIFEST_SLACK;
}

int sync_peer_manifest_get(struct sync_peer_transfer *t, struct http_client *h,
                           const struct sync_peer_source *s, struct wire_pieces *m,
                           unsigned *retry_s, long *status, char *why, size_t whylen)
{
    char url[sizeof(s->url) + 16];
    struct http_response reply;
    struct bim_error err = {0};
    char *body = NULL;
    size_t len = 0;
    int rc;

    *retry_s = 1;
    *status = 0;
    snprintf(url, sizeof(url), "%s/pieces", s->url);
    rc = sync_peer_get_body(t, h, url, sync_peer_manifest_max(t), &reply, &body, &len, &err);
    if (rc == -ECANCELED)
        goto out;
    if (rc < 0) {
        snprintf(why, whylen, "piece digests: %s", err.message);
        rc = rc == -EAGAIN ? -EAGAIN : -ENOENT;
        goto out;
    }
    *status = reply.status;
    if (reply.status != 200) {
        snprintf(why, whylen, "piece digests: answered HTTP %ld%s", reply.status,
                 reply.status == 404 ? " (no such image, or a bimfs without piece digests)" : "");
        if (reply.status == 503 && reply.retry_after_s > 0)
            *retry_s = reply.retry_after_s > SYNC_PEER_RETRY_AFTER_MAX_S
                           ? SYNC_PEER_RETRY_AFTER_MAX_S
                           : reply.retry_after_s;
        rc = http_status_transient(reply.status) || reply.status == 409 ? -EAGAIN : -ENOENT;
        goto out;
    }
    rc = wire_pieces_decode(body, len, sync_peer_manifest_max(t), m, &err);
    if (rc < 0) {
        snprintf(why, whylen, "piece digests unusable: %.400s", err.message);
        rc = -ENOENT;
        goto out;
    }
    if (t->size == 0 && m->size == 0) {
        /* an image in progress that does not know its size yet */
        snprintf(why, whylen, "piece digests: its size is not known yet");
        rc = -EAGAIN;
        goto out;
    }
    if (m->piece_size != STORE_PIECE_SIZE || (t->size && m->size != t->size)) {
        snprintf(why, whylen,
                 "piece digests of another shape: %" PRIu64 " bytes in pieces of %" PRIu64
                 ", not %" PRIu64 " in pieces of %u",
                 m->size, m->piece_size, t->size, STORE_PIECE_SIZE);
        rc = -ENOENT;
        goto out;
    }
    if (m->checksum[0] && t->checksum[0] && strcmp(m->checksum, t->checksum) != 0) {
        snprintf(why, whylen, "piece digests of another version of the image (SHA-512 %.16s...)",
                 m->checksum);
        rc = -ENOENT;
    }
out:
    free(body);
    return rc;
}

/* A size the reference gives in its digests (it is in progress): what the
 * image object would have had to say. */
static int sync_peer_manifest_size(struct sync_peer_transfer *t, struct sync_peer_source *s,
                                   uint64_t size)
{
    if (size > SYNC_PEER_SIZE_MAX) {
        snprintf(s->error, sizeof(s->error),
                 "has %" PRIu64 " bytes, more than the %" PRIu64 " a sync can take", size,
                 SYNC_PEER_SIZE_MAX);
        return -ENOENT;
    }
    if (t->want_size && size != t->want_size) {
        snprintf(s->error, sizeof(s->error), "has %" PRIu64 " bytes, not the %" PRIu64 " asked for",
                 size, t->want_size);
        return -ENOENT;
    }
    t->size = size;
    return 0;
}

int sync_peer_manifest_fetch(struct sync_peer_transfer *t, struct http_client *h, unsigned *retry_s)
{
    struct sync_peer_source *s = &t->sources[t->reference];
    struct wire_pieces m = {0};
    long status;
    int rc;

    rc = sync_peer_manifest_get(t, h, s, &m, retry_s, &status, s->error, sizeof(s->error));
    if (rc == 0 && t->size == 0)
        rc = sync_peer_manifest_size(t, s, m.size);
    if (rc == 0 && !t->checksum[0] && m.checksum[0]) {
        /* it turned ready since it described itself: ask it again */
        snprintf(s->error, sizeof(s->error), "became ready meanwhile");
        rc = -EAGAIN;
        t->size = 0;
    }
    if (rc == 0 && t->checksum[0]) {
        for (uint64_t i = 0; i < m.count; i++)
            if (!m.known[i]) {
                snprintf(s->error, sizeof(s->error),
                         "piece digests: piece %" PRIu64 " has none, the image is ready", i);
                rc = -ENOENT;
                break;
            }
    }
    if (rc == 0) {
        store_pieces_free(&t->manifest);
        free(t->known);
        t->manifest.size = m.size;
        t->manifest.count = m.count;
        t->manifest.sha256 = m.digest; /* the same layout: taken over */
        t->known = m.known;
        m.digest = NULL;
        m.known = NULL;
        s->manifest_ok = true;
    }
    wire_pieces_free(&m);
    return rc;
}

/* The reference gave the digest of piece i (t->lock held). */
static void sync_peer_manifest_learn(struct sync_peer_transfer *t, uint64_t i,
                                     const uint8_t digest[32])
{
    struct sync_peer_piece *p = &t->pieces[i];
    int rc;

    memcpy(t->manifest.sha256[i], digest, 32);
    p->known = true;
    p->hole = memcmp(digest, i + 1 == t->npieces ? t->zero_last : t->zero, 32) == 0;
    if (t->w) {
        /* so this receiver's own /pieces knows it too (SPEC §9) */
        rc = store_writer_trust_piece(t->w, i, digest);
        if (rc < 0)
            log_warn("image=%s uuid=%s cannot keep the digest of piece %" PRIu64 ": %s",
                     t->job->name, t->job->uuid, i, strerror(-rc));
    }
}

int sync_peer_manifest_merge(struct sync_peer_transfer *t, struct sync_peer_source *s,
                             const struct wire_pieces *m, char *why, size_t whylen)
{
    const struct sync_peer_source *ref = &t->sources[t->reference];
    char expected[STORE_EXPECTED_MAX + 1];
    bool is_ref = s == ref, all = true;
    const struct sync_job *job = t->job;

    if (m->count != t->npieces) {
        snprintf(why, whylen, "piece digests of another shape: %" PRIu64 " pieces, not %zu",
                 m->count, t->npieces);
        return is_ref ? -EPROTO : -EBADMSG;
    }
    for (uint64_t i = 0; i < m->count; i++) {
        struct sync_peer_piece *p = &t->pieces[i];

        if (!m->known[i]) {
            all = false;
            continue;
        }
        if (p->known && memcmp(m->digest[i], t->manifest.sha256[i], 32) != 0) {
            if (is_ref)
                snprintf(why, whylen,
                         "the reference %s gave another digest for piece %" PRIu64 " than before",
                         s->addr, i);
            else
                snprintf(why, whylen,
                         "its piece digests disagree with those of %s (piece %" PRIu64 " first)",
                         ref->addr, i);
            return is_ref ? -EPROTO : -EBADMSG;
        }
        if (!p->known && is_ref)
            sync_peer_manifest_learn(t, i, m->digest[i]);
        all &= p->known;
    }
    memset(s->have, 0, t->npieces);
    s->complete = t->npieces > 0;
    for (size_t r = 0; r < m->nhave; r++)
        for (uint64_t i = m->have[r][0]; i <= m->have[r][1] && i < t->npieces; i++)
            s->have[i] = m->known[i]; /* a piece without a digest is not held */
    for (size_t i = 0; i < t->npieces; i++)
        s->complete &= s->have[i];
    s->manifest_ok = true;
    if (m->checksum[0]) {
        s->ready = true;
        if (job->expected.algo == STORE_DIGEST_SHA512 && strcmp(job->expected.hex, m->checksum)) {
            store_checksum_format(&job->expected, expected);
            /* SPEC §3's words as they are; the log names the source */
            snprintf(why, whylen, "checksum mismatch: expected %s, got %s", expected, m->checksum);
            log_warn("image=%s uuid=%s %s has another checksum: %s", job->name, job->uuid, s->addr,
                     m->checksum);
            return is_ref ? -EPROTO : -EBADMSG;
        }
        /* the whole image's SHA-512, from a ready source whose every
         * digest is the reference's */
        if (!t->checksum[0] && all && s->complete)
            str_copy(t->checksum, sizeof(t->checksum), m->checksum);
    }
    pthread_cond_broadcast(&t->cond);
    return 0;
}
