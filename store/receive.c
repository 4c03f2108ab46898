/*
 * receive.c - what a receiver that checks every piece against a manifest
 * (a peer sync, SPEC §9) needs of a writer beside pwrite: dropping a piece
 * that failed its digest, judging a piece a kept backing.tmp holds (a sync
 * resumed after a restart), and taking the manifest's digests as the
 * image's, so the piece thread need not compute them again.
 *
 * Threads: discard and piece_check may run in several threads at once on
 * disjoint ranges, with no lock (they touch the file only); trust_pieces
 * before any write, w->lock guarding the digests as in pieces_hasher.c.
 */
#include "store_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>

int store_writer_discard(struct store_writer *w, uint64_t off, uint64_t len)
{
    uint64_t end;

    if (!size_add(off, len, &end) || end > (uint64_t)INT64_MAX)
        return -EFBIG;
    if (len == 0)
        return 0;
    if (fallocate(w->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)off, (off_t)len) == 0)
        return 0;
    if (errno != EOPNOTSUPP)
        return -errno;
    /* no hole punching here: zeros written over it read the same */
    {
        static const unsigned char zeros[64 << 10];
        int rc = 0;

        while (rc == 0 && len > 0) {
            size_t n = len < sizeof(zeros) ? (size_t)len : sizeof(zeros);

            rc = fd_pwrite_all(w->fd, zeros, n, off);
            off += n;
            len -= n;
        }
        return rc;
    }
}

int store_writer_piece_check(struct store_writer *w, uint64_t size, uint64_t index,
                             const uint8_t want[32], bool *has_data, bool *match)
{
    uint64_t off = index * STORE_PIECE_SIZE, len = store_piece_length(size, index);
    uint64_t data_end = 0, hole_end = 0;
    struct store_digest_ctx d = {NULL, NULL};
    uint8_t got[32];
    void *buf = NULL;
    int rc;

    *has_data = *match = false;
    if (len == 0)
        return -EINVAL;
    rc = store_digest_find_extent(w->fd, off, off + len, &data_end, &hole_end);
    if (rc < 0)
        return rc;
    *has_data = hole_end < off + len;
    if (*has_data) {
        buf = malloc(STORE_CHUNK);
        rc = buf ? store_digest_init_sha256(&d) : -ENOMEM;
        if (rc == 0)
            rc = store_piece_digest_fd(&d, w->fd, off, len, buf, got);
    } else {
        rc = store_piece_zero_digest(len, got);
    }
    if (rc == 0)
        *match = memcmp(got, want, 32) == 0;
    store_digest_free(&d);
    free(buf);
    return rc;
}

int store_writer_trust_pieces(struct store_writer *w, const struct store_pieces *p,
                              const uint8_t *known)
{
    uint8_t(*copy)[32] = NULL;
    uint8_t *flags = NULL;

    if (p->count != store_pieces_count(p->size))
        return -EINVAL;
    if (p->count > 0) {
        copy = malloc(p->count * 32);
        flags = known ? malloc(p->count) : NULL;
        if (!copy || (known && !flags)) {
            free(copy);
            free(flags);
            return -ENOMEM;
        }
        memcpy(copy, p->sha256, p->count * 32);
        if (known)
            memcpy(flags, known, p->count);
    }
    store_pieces_hasher_stop(w);
    pthread_mutex_lock(&w->lock);
    free(w->pieces.sha256);
    free(w->pieces_known);
    w->pieces.sha256 = copy;
    w->pieces_known = flags;
    w->pieces.count = p->count;
    w->pieces.size = p->size;
    w->pieces_cap = p->count;
    atomic_store(&w->pieced, p->size);
    pthread_mutex_unlock(&w->lock);
    return 0;
}

int store_writer_trust_piece(struct store_writer *w, uint64_t index, const uint8_t digest[32])
{
    int rc = 0;

    pthread_mutex_lock(&w->lock);
    if (!w->pieces_known || index >= w->pieces.count)
        rc = -EINVAL;
    else if (w->pieces_known[index] && memcmp(w->pieces.sha256[index], digest, 32) != 0)
        rc = -EEXIST; /* a digest once known never changes */
    if (rc == 0) {
        memcpy(w->pieces.sha256[index], digest, 32);
        w->pieces_known[index] = 1;
    }
    pthread_mutex_unlock(&w->lock);
    return rc;
}

struct store_piece_hash {
    struct store_digest_ctx d;
};

int store_piece_hash_open(struct store_piece_hash **out)
{
    struct store_piece_hash *h = calloc(1, sizeof(*h));
    int rc;

    *out = NULL;
    if (!h)
        return -ENOMEM;
    rc = store_digest_init_sha256(&h->d);
    if (rc < 0) {
        store_piece_hash_close(h);
        return rc;
    }
    *out = h;
    return 0;
}

int store_piece_hash_reset(struct store_piece_hash *h)
{
    return store_digest_reset(&h->d);
}

int store_piece_hash_update(struct store_piece_hash *h, const void *buf, size_t len)
{
    return store_digest_update(&h->d, buf, len);
}

int store_piece_hash_final(struct store_piece_hash *h, uint8_t out[32])
{
    return store_digest_final_sha256(&h->d, out);
}

void store_piece_hash_close(struct store_piece_hash *h)
{
    if (!h)
        return;
    store_digest_free(&h->d);
    free(h);
}
