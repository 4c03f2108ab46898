/*
 * manifest.c - the piece digests of a peer sync (SPEC §9 "Verification"):
 * the reference's, which every piece is checked against wherever it comes
 * from, and the other sources', which must agree with them before a piece
 * is taken from that source.
 *
 *   GET http://<source>/v1/images/<name>/pieces
 *
 * A manifest is read by the wire codec (common/wire/pieces.c) into a bound
 * set by the image's size; one of another piece size, size or SHA-512 than
 * the image the reference described, or with a piece unknown, is not used.
 *
 * Threads: the job's thread (the reference's) and the fetchers (the
 * others'); no lock is held here: t->manifest is written before the
 * fetchers start and only read after.
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

/* GET s's manifest into *m: 0, -EAGAIN (*retry_s), -ENOENT (why), -ECANCELED. */
static int sync_peer_manifest_get(struct sync_peer_transfer *t, struct http_client *h,
                                  const struct sync_peer_source *s, struct wire_pieces *m,
                                  unsigned *retry_s, char *why, size_t whylen)
{
    char url[sizeof(s->url) + 16];
    struct http_response reply;
    struct bim_error err = {0};
    char *body = NULL;
    size_t len = 0;
    int rc;

    *retry_s = 1;
    snprintf(url, sizeof(url), "%s/pieces", s->url);
    rc = sync_peer_get_body(t, h, url, sync_peer_manifest_max(t), &reply, &body, &len, &err);
    if (rc == -ECANCELED)
        goto out;
    if (rc < 0) {
        snprintf(why, whylen, "piece digests: %s", err.message);
        rc = rc == -EAGAIN ? -EAGAIN : -ENOENT;
        goto out;
    }
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
    if (m->piece_size != STORE_PIECE_SIZE || m->size != t->size) {
        snprintf(why, whylen,
                 "piece digests of another shape: %" PRIu64 " bytes in pieces of %" PRIu64
                 ", not %" PRIu64 " in pieces of %u",
                 m->size, m->piece_size, t->size, STORE_PIECE_SIZE);
        rc = -ENOENT;
        goto out;
    }
    if (m->checksum[0] && strcmp(m->checksum, t->checksum) != 0) {
        snprintf(why, whylen, "piece digests of another version of the image (SHA-512 %.16s...)",
                 m->checksum);
        rc = -ENOENT;
    }
out:
    free(body);
    return rc;
}

int sync_peer_manifest_fetch(struct sync_peer_transfer *t, struct http_client *h, unsigned *retry_s)
{
    struct sync_peer_source *s = &t->sources[t->reference];
    struct wire_pieces m = {0};
    int rc;

    rc = sync_peer_manifest_get(t, h, s, &m, retry_s, s->error, sizeof(s->error));
    if (rc == 0) {
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
        t->manifest.size = m.size;
        t->manifest.count = m.count;
        t->manifest.sha256 = m.digest; /* the same layout: taken over */
        m.digest = NULL;
        s->manifest_ok = true;
    }
    wire_pieces_free(&m);
    return rc;
}

int sync_peer_manifest_check(struct sync_peer_transfer *t, struct http_client *h,
                             struct sync_peer_source *s, unsigned *retry_s, char *why,
                             size_t whylen)
{
    struct wire_pieces m = {0};
    int rc;

    rc = sync_peer_manifest_get(t, h, s, &m, retry_s, why, whylen);
    for (uint64_t i = 0; rc == 0 && i < m.count; i++)
        if (m.known[i] && memcmp(m.digest[i], t->manifest.sha256[i], 32) != 0) {
            snprintf(why, whylen,
                     "its piece digests disagree with those of %s (piece %" PRIu64 " first)",
                     t->sources[t->reference].addr, i);
            rc = -ENOENT;
        }
    wire_pieces_free(&m);
    return rc;
}
