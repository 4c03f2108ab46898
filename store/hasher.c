/*
 * hasher.c - the writer's private hasher thread. It follows the contiguous
 * written prefix of backing.tmp, reading it back (page cache) and feeding
 * the digest, so that commit right after the last byte costs no extra pass.
 *
 * Threads: one hasher per writer, created by store_writer_open() and joined
 * by commit/abort/trust. w->lock guards written, hasher_error and
 * hasher_running; `hashed` is atomic (written only by the hasher); the
 * digest belongs to the hasher until it is joined.
 */
#include "store_internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static void *store_hasher_main(void *arg)
{
    struct store_writer *w = arg;
    void *buf = malloc(STORE_CHUNK);
    int rc = 0;

    pthread_mutex_lock(&w->lock);
    if (!buf)
        rc = -ENOMEM;
    while (rc == 0) {
        uint64_t from, to;

        while (!atomic_load(&w->stop) && atomic_load(&w->hashed) == w->written) {
            pthread_cond_broadcast(&w->done);
            pthread_cond_wait(&w->more, &w->lock);
        }
        if (atomic_load(&w->stop))
            break;
        from = atomic_load(&w->hashed);
        to = w->written;
        pthread_mutex_unlock(&w->lock);
        rc = store_digest_feed_fd(&w->digest, w->fd, from, to, buf, &w->stop, &w->hashed);
        pthread_mutex_lock(&w->lock);
        pthread_cond_broadcast(&w->done);
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
    int rc = pthread_create(&w->hasher, NULL, store_hasher_main, w);

    if (rc != 0)
        return -rc;
    pthread_mutex_lock(&w->lock);
    w->hasher_running = true;
    pthread_mutex_unlock(&w->lock);
    return 0;
}

int store_hasher_wait(struct store_writer *w, uint64_t size)
{
    int rc;

    pthread_mutex_lock(&w->lock);
    while (w->hasher_running && !w->hasher_error && atomic_load(&w->hashed) < size)
        pthread_cond_wait(&w->done, &w->lock);
    rc = w->hasher_error;
    if (rc == 0 && atomic_load(&w->hashed) != size)
        rc = -EIO;
    pthread_mutex_unlock(&w->lock);
    return rc;
}

void store_hasher_stop(struct store_writer *w)
{
    pthread_mutex_lock(&w->lock);
    if (!w->hasher_running) {
        pthread_mutex_unlock(&w->lock);
        return;
    }
    atomic_store(&w->stop, true);
    pthread_cond_broadcast(&w->more);
    pthread_mutex_unlock(&w->lock);
    pthread_join(w->hasher, NULL);
    pthread_mutex_lock(&w->lock);
    w->hasher_running = false;
    pthread_mutex_unlock(&w->lock);
}
