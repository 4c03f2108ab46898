/*
 * pieces_hasher.c - the writer's second thread: the SHA-256 of each 4 MiB
 * piece (SPEC §9) as soon as the contiguous written prefix covers it, read
 * back from backing.tmp (page cache) beside the SHA-512 hasher, on another
 * core. A piece with no data is not read (store_piece_digest_fd). The last,
 * shorter piece waits until commit says the size. A writer with a ring
 * (ring.c) has it hash the ring's buffers instead, past the prefix the file
 * held before.
 *
 * Threads: one per writer, created by store_writer_open() and joined by
 * commit/abort/close. w->lock guards final_known, final_size, pieces_error,
 * pieces_hasher.running, the ring and w->pieces (the thread grows it under
 * the lock, so store_writer_piece_digest may read it from any thread);
 * `pieced` and `pieces_fed` are atomic, written only by the thread.
 * Digests are computed without the lock.
 */
#include "store_internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* With w->lock held: room for entry index. */
static int store_pieces_grow(struct store_writer *w, uint64_t index)
{
    uint64_t cap = w->pieces_cap ? w->pieces_cap : 64;
    void *p;

    if (index < w->pieces_cap)
        return 0;
    if (index >= STORE_PIECES_MAX)
        return -EFBIG;
    while (cap <= index)
        cap *= 2;
    p = realloc(w->pieces.sha256, cap * 32);
    if (!p)
        return -ENOMEM;
    w->pieces.sha256 = p;
    w->pieces_cap = cap;
    return 0;
}

/* With w->lock held: the end of the piece that starts at from (the image's
 * end once commit said it), or 0 when none is left. */
static uint64_t store_pieces_end(const struct store_writer *w, uint64_t from)
{
    uint64_t end = from + STORE_PIECE_SIZE;

    if (w->final_known) {
        if (from >= w->final_size)
            return 0;
        if (end > w->final_size)
            end = w->final_size;
    }
    return end;
}

/*
 * With w->lock held, for the piece [from, end) of which [from, pieces_fed)
 * went into d already: take the next step, without the lock. 1 when the
 * piece is done (its digest in out), 0 after some progress, -EAGAIN when
 * nothing can be done before more is written, or -errno.
 *   - a piece the file holds whole: its digest from the file (a piece
 *     without data by its length alone);
 *   - with a ring, the part before its base from the file, then the ring's
 *     buffers as they are handed over.
 */
static int store_pieces_step(struct store_writer *w, struct store_digest_ctx *d, uint64_t from,
                             uint64_t end, void *buf, uint8_t out[32])
{
    uint64_t fed = atomic_load(&w->pieces_fed);
    const struct store_ring *r = w->ring;
    const unsigned char *p = NULL;
    size_t n = 0;
    int rc;

    if (fed == from && end <= (r ? r->base : w->written)) {
        pthread_mutex_unlock(&w->lock);
        rc = store_piece_digest_fd(d, w->fd, from, end - from, buf, out);
        pthread_mutex_lock(&w->lock);
        if (rc == 0)
            atomic_store(&w->pieces_fed, end);
        return rc < 0 ? rc : 1;
    }
    if (fed == end) { /* fed from the ring; commit has just said this is the last */
        pthread_mutex_unlock(&w->lock);
        rc = store_digest_final_sha256(d, out);
        pthread_mutex_lock(&w->lock);
        return rc < 0 ? rc : 1;
    }
    if (!r || fed >= r->end)
        return -EAGAIN;
    if (fed >= r->base) {
        n = store_ring_at(w, fed, &p); /* fed < r->end: in a buffer kept for us */
        if (n == 0)
            return -EIO;
        if (n > end - fed)
            n = (size_t)(end - fed);
    }
    pthread_mutex_unlock(&w->lock);
    rc = fed == from ? store_digest_reset(d) : 0;
    if (rc == 0 && p) {
        rc = store_digest_update(d, p, n);
        fed += n;
    } else if (rc == 0) { /* the part the file held before the ring */
        uint64_t to = r->base < end ? r->base : end;

        rc = store_digest_feed_fd(d, w->fd, fed, to, buf, NULL, NULL);
        fed = to;
    }
    if (rc == 0 && fed == end)
        rc = store_digest_final_sha256(d, out);
    pthread_mutex_lock(&w->lock);
    if (rc < 0)
        return rc;
    atomic_store(&w->pieces_fed, fed);
    pthread_cond_broadcast(&w->done); /* a producer waiting for a buffer */
    return fed == end ? 1 : 0;
}

static void *store_pieces_main(void *arg)
{
    struct store_writer *w = arg;
    struct store_digest_ctx d = {NULL, NULL};
    void *buf = malloc(STORE_CHUNK);
    uint8_t digest[32];
    int rc = buf ? store_digest_init_sha256(&d) : -ENOMEM;

    pthread_mutex_lock(&w->lock);
    while (rc >= 0 && !atomic_load(&w->pieces_hasher.stop)) {
        uint64_t from = atomic_load(&w->pieced), end = store_pieces_end(w, from);

        rc = end ? store_pieces_step(w, &d, from, end, buf, digest) : -EAGAIN;
        if (rc == -EAGAIN) {
            rc = 0;
            pthread_cond_broadcast(&w->done);
            pthread_cond_wait(&w->more, &w->lock);
            continue;
        }
        if (rc == 1)
            rc = store_pieces_grow(w, from / STORE_PIECE_SIZE);
        if (rc == 0 && atomic_load(&w->pieces_fed) == end) {
            memcpy(w->pieces.sha256[from / STORE_PIECE_SIZE], digest, 32);
            w->pieces.count = from / STORE_PIECE_SIZE + 1;
            atomic_store(&w->pieced, end);
            pthread_cond_broadcast(&w->done);
        }
    }
    if (rc < 0) {
        w->pieces_error = rc;
        log_error("image=%s uuid=%s computing the piece digests of backing.tmp failed: %s", w->name,
                  w->uuid, strerror(-rc));
    }
    pthread_cond_broadcast(&w->done);
    pthread_mutex_unlock(&w->lock);
    store_digest_free(&d);
    free(buf);
    return NULL;
}

int store_pieces_hasher_start(struct store_writer *w)
{
    return store_follower_start(w, &w->pieces_hasher, store_pieces_main);
}

void store_pieces_hasher_stop(struct store_writer *w)
{
    store_follower_stop(w, &w->pieces_hasher);
}

int store_pieces_hasher_finish(struct store_writer *w, uint64_t size, struct store_pieces *out)
{
    int rc;

    memset(out, 0, sizeof(*out));
    pthread_mutex_lock(&w->lock);
    w->final_known = true;
    w->final_size = size;
    pthread_cond_broadcast(&w->more);
    while (w->pieces_hasher.running && !w->pieces_error && atomic_load(&w->pieced) < size)
        pthread_cond_wait(&w->done, &w->lock);
    rc = w->pieces_error;
    if (rc == 0 && atomic_load(&w->pieced) != size)
        rc = -EIO;
    pthread_mutex_unlock(&w->lock);
    store_pieces_hasher_stop(w);
    if (rc < 0)
        return rc;
    pthread_mutex_lock(&w->lock); /* store_writer_piece_digest may read them meanwhile */
    /* a trusted manifest must be whole by now */
    for (uint64_t i = 0; w->pieces_known && rc == 0 && i < w->pieces.count; i++)
        if (!w->pieces_known[i])
            rc = -EIO;
    if (rc == 0 && w->pieces.count == store_pieces_count(size)) {
        *out = w->pieces;
        out->size = size;
        memset(&w->pieces, 0, sizeof(w->pieces));
        w->pieces_cap = 0;
    } else if (rc == 0) {
        rc = -EIO;
    }
    pthread_mutex_unlock(&w->lock);
    return rc;
}

uint64_t store_writer_pieced(struct store_writer *w)
{
    return atomic_load(&w->pieced);
}

int store_writer_piece_digest(struct store_writer *w, uint64_t index, uint8_t out[32])
{
    int rc = -ENODATA;

    pthread_mutex_lock(&w->lock);
    if (index < w->pieces.count && w->pieces.sha256) {
        memcpy(out, w->pieces.sha256[index], 32);
        rc = 0;
    }
    pthread_mutex_unlock(&w->lock);
    return rc;
}
