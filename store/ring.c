/*
 * ring.c - a writer that appends in order (a download) fills the writer's
 * own buffers in place, and both followers (the SHA-512 hasher, the piece
 * thread) hash from those buffers while the producer writes them to the
 * disk with O_DIRECT: no page-cache page is filled and none is read back.
 *
 * The ring is STORE_RING_SLOTS buffers of STORE_RING_CHUNK bytes. Slot s
 * (in the order they are handed over) lives in buffer s % STORE_RING_SLOTS
 * and holds the bytes [off[s], off[s] + len[s]); slots are contiguous from
 * `base` (what the file held when the ring started: the followers read that
 * prefix from the file). A buffer is handed out again only once every
 * follower still running has hashed past the slot it held, so a follower
 * reads a slot's bytes without the lock.
 *
 * Threads: one producer (the writer's owner) calls buffer/write; the
 * followers read slots (hasher.c, pieces_hasher.c). A follower asked to stop
 * no longer holds a buffer back: only the producer itself may stop one
 * (commit, abort), never another thread while it waits here. w->lock guards the ring's
 * bookkeeping (base, end, handed, off, len); a slot's bytes are written by
 * the producer before it is handed over and only read after.
 */
#include "store_internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define STORE_RING_CANCEL_MS 200 /* how often a producer waiting for a buffer looks at cancel */

int store_writer_ring_start(struct store_writer *w)
{
    struct store_ring *r;
    void *mem = NULL;
    int rc;

    if (w->ring)
        return 0;
    r = calloc(1, sizeof(*r));
    rc = r ? posix_memalign(&mem, 4096, (size_t)STORE_RING_SLOTS * STORE_RING_CHUNK) : ENOMEM;
    if (rc != 0) {
        free(r);
        return -rc;
    }
    r->mem = mem;
    (void)store_writer_direct(w); /* refused by the file system: writes stay buffered */
    pthread_mutex_lock(&w->lock);
    r->base = r->end = w->written;
    w->ring = r;
    pthread_mutex_unlock(&w->lock);
    return 0;
}

void store_ring_free(struct store_ring *r)
{
    if (!r)
        return;
    free(r->mem);
    free(r);
}

/* With w->lock held: does a follower still need the bytes before end? One
 * that is not running, was asked to stop or failed does not. */
static bool store_ring_needed(struct store_writer *w, uint64_t end)
{
    if (w->hasher.running && !atomic_load(&w->hasher.stop) && !w->hasher_error &&
        atomic_load(&w->hashed) < end)
        return true;
    return w->pieces_hasher.running && !atomic_load(&w->pieces_hasher.stop) && !w->pieces_error &&
           atomic_load(&w->pieces_fed) < end;
}

int store_writer_ring_buffer(struct store_writer *w, void **buf, const atomic_bool *cancel)
{
    struct store_ring *r = w->ring;
    int rc = 0;
    unsigned i;

    if (!r)
        return -EINVAL;
    i = (unsigned)(r->handed % STORE_RING_SLOTS);
    pthread_mutex_lock(&w->lock);
    while (r->handed >= STORE_RING_SLOTS && store_ring_needed(w, r->off[i] + r->len[i])) {
        struct timespec ts;

        if (cancel && atomic_load(cancel)) {
            rc = -ECANCELED;
            break;
        }
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += STORE_RING_CANCEL_MS * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&w->done, &w->lock, &ts);
    }
    pthread_mutex_unlock(&w->lock);
    if (rc == 0)
        *buf = r->mem + (size_t)i * STORE_RING_CHUNK;
    return rc;
}

int store_writer_ring_write(struct store_writer *w, size_t len)
{
    struct store_ring *r = w->ring;
    unsigned i;
    uint64_t off;
    void *buf;

    if (!r || len > STORE_RING_CHUNK)
        return -EINVAL;
    if (len == 0)
        return 0;
    i = (unsigned)(r->handed % STORE_RING_SLOTS);
    buf = r->mem + (size_t)i * STORE_RING_CHUNK;
    pthread_mutex_lock(&w->lock);
    off = r->end;
    pthread_mutex_unlock(&w->lock);
    if (!store_writer_fits(w, off, len))
        return -EFBIG;
    pthread_mutex_lock(&w->lock);
    r->off[i] = off;
    r->len[i] = len;
    r->end = off + len;
    r->handed++;
    pthread_cond_broadcast(&w->more); /* the followers: more to hash */
    pthread_mutex_unlock(&w->lock);
    return store_writer_pwrite(w, buf, len, off);
}

size_t store_ring_at(const struct store_writer *w, uint64_t pos, const unsigned char **p)
{
    const struct store_ring *r = w->ring;
    uint64_t s = r->handed > STORE_RING_SLOTS ? r->handed - STORE_RING_SLOTS : 0;

    for (; s < r->handed; s++) {
        unsigned i = (unsigned)(s % STORE_RING_SLOTS);

        if (pos >= r->off[i] && pos < r->off[i] + r->len[i]) {
            *p = r->mem + (size_t)i * STORE_RING_CHUNK + (pos - r->off[i]);
            return (size_t)(r->off[i] + r->len[i] - pos);
        }
    }
    *p = NULL;
    return 0;
}
