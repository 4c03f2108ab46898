/*
 * hasher.c - the writer's private hasher thread. It follows the contiguous
 * written prefix of backing.tmp, reading it back (page cache) and feeding
 * the digest, so that commit right after the last byte costs no extra pass.
 * A writer with a ring (ring.c) has it hash the ring's buffers instead, past
 * the prefix the file held before.
 *
 * Threads: one hasher per writer, created by store_writer_open() and joined
 * by commit/abort/trust (follower.c). w->lock guards written, the ring,
 * hasher_error and hasher.running; `hashed` is atomic (written only by the hasher); the
 * digest belongs to the hasher until it is joined.
 */
#include "store_internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* With w->lock held: where the bytes to hash end for now (a writer with a
 * ring: what was handed over, else what is written). */
static uint64_t store_hasher_avail(const struct store_writer *w)
{
    return w->ring ? w->ring->end : w->written;
}

static void *store_hasher_main(void *arg)
{
    struct store_writer *w = arg;
    void *buf = malloc(STORE_CHUNK);
    int rc = 0;

    pthread_mutex_lock(&w->lock);
    if (!buf)
        rc = -ENOMEM;
    while (rc == 0) {
        const unsigned char *p;
        uint64_t from;
        size_t n;

        while (!atomic_load(&w->hasher.stop) && atomic_load(&w->hashed) == store_hasher_avail(w)) {
            pthread_cond_broadcast(&w->done);
            pthread_cond_wait(&w->more, &w->lock);
        }
        if (atomic_load(&w->hasher.stop))
            break;
        from = atomic_load(&w->hashed);
        if (w->ring && from >= w->ring->base) {
            n = store_ring_at(w, from, &p); /* from < ring->end: in a slot kept for us */
            pthread_mutex_unlock(&w->lock);
            rc = n > 0 ? store_digest_update(&w->digest, p, n) : -EIO;
            if (rc == 0)
                atomic_store(&w->hashed, from + n);
        } else {
            uint64_t to = w->ring ? w->ring->base : w->written;

            pthread_mutex_unlock(&w->lock);
            rc =
                store_digest_feed_fd(&w->digest, w->fd, from, to, buf, &w->hasher.stop, &w->hashed);
        }
        pthread_mutex_lock(&w->lock);
        pthread_cond_broadcast(&w->done); /* commit, and a producer waiting for a buffer */
    }
    if (rc < 0 && rc != -ECANCELED) {
        w->hasher_error = rc;
        log_error("image=%s uuid=%s hashing backing.tmp failed: %s", w->name, w->uuid,
                  strerror(-rc));
    }
    pthread_cond_broadcast(&w->done);
    pthread_mutex_unlock(&w->lock);
    free(buf);
    return NULL;
}

int store_hasher_start(struct store_writer *w)
{
    return store_follower_start(w, &w->hasher, store_hasher_main);
}

int store_hasher_wait(struct store_writer *w, uint64_t size)
{
    int rc;

    pthread_mutex_lock(&w->lock);
    while (w->hasher.running && !w->hasher_error && atomic_load(&w->hashed) < size)
        pthread_cond_wait(&w->done, &w->lock);
    rc = w->hasher_error;
    if (rc == 0 && atomic_load(&w->hashed) != size)
        rc = -EIO;
    pthread_mutex_unlock(&w->lock);
    return rc;
}

void store_hasher_stop(struct store_writer *w)
{
    store_follower_stop(w, &w->hasher);
}
