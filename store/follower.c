/*
 * follower.c - starting and stopping a writer's follower thread: one that
 * follows the written prefix of backing.tmp (the SHA-512 hasher, hasher.c;
 * the piece digests, pieces_hasher.c).
 *
 * Threads: the writer's owner starts and stops; the follower reads `stop`.
 * w->lock guards f->running; `stop` is atomic. The lock is not held while
 * the thread is joined (it takes the lock to end).
 */
#include "store_internal.h"

#include <errno.h>

int store_follower_start(struct store_writer *w, struct store_follower *f, void *(*main)(void *))
{
    int rc = pthread_create(&f->thread, NULL, main, w);

    if (rc != 0)
        return -rc;
    pthread_mutex_lock(&w->lock);
    f->running = true;
    pthread_mutex_unlock(&w->lock);
    return 0;
}

void store_follower_stop(struct store_writer *w, struct store_follower *f)
{
    bool running;

    pthread_mutex_lock(&w->lock);
    running = f->running;
    if (running) {
        atomic_store(&f->stop, true);
        pthread_cond_broadcast(&w->more);
    }
    pthread_mutex_unlock(&w->lock);
    if (!running)
        return;
    pthread_join(f->thread, NULL);
    pthread_mutex_lock(&w->lock);
    f->running = false;
    pthread_mutex_unlock(&w->lock);
}
