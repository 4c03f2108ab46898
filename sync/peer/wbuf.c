/*
 * wbuf.c - a fetcher's writes behind it: a thread of its own writes the
 * buffer the fetcher just filled (store_writer_pwrite_pending, O_DIRECT,
 * waiting for the disk) while the fetcher goes on receiving and hashing
 * into its other buffer. Without it each fetcher stopped draining its
 * connection for every write: on 2 cores a 4 GiB sync left them 25-39 %
 * idle, and took 3.3-4.0 s where it takes 2.4 s with no write at all
 * (docs/benchmarks.md).
 *
 * Threads: the fetcher and its writer. b->lock guards the job (data, len,
 * off, busy), quit and rc; the bytes of the buffer being written are the
 * writer's until it is idle again. No lock is held during the write.
 */
#include "peer.h"

#include <errno.h>
#include <stdlib.h>

static void *sync_peer_wbuf_main(void *arg)
{
    struct sync_peer_wbuf *b = arg;

    pthread_mutex_lock(&b->lock);
    for (;;) {
        int rc;

        while (!b->busy && !b->quit)
            pthread_cond_wait(&b->cond, &b->lock);
        if (!b->busy)
            break;
        pthread_mutex_unlock(&b->lock);
        rc = store_writer_pwrite_pending(b->w, b->data, b->len, b->off);
        pthread_mutex_lock(&b->lock);
        if (rc < 0 && b->rc == 0)
            b->rc = rc;
        b->busy = false;
        pthread_cond_broadcast(&b->cond);
    }
    pthread_mutex_unlock(&b->lock);
    return NULL;
}

int sync_peer_wbuf_start(struct sync_peer_wbuf *b, struct store_writer *w)
{
    int rc;

    b->w = w;
    rc = -posix_memalign((void **)&b->spare, SYNC_PEER_ALIGN, SYNC_PEER_BUFFER);
    if (rc < 0)
        return rc;
    pthread_mutex_init(&b->lock, NULL);
    pthread_cond_init(&b->cond, NULL);
    rc = -pthread_create(&b->thread, NULL, sync_peer_wbuf_main, b);
    if (rc < 0) {
        pthread_cond_destroy(&b->cond);
        pthread_mutex_destroy(&b->lock);
        free(b->spare);
        b->spare = NULL;
        return rc;
    }
    b->started = true;
    return 0;
}

/* With b->lock held: wait until the writer is idle. */
static void sync_peer_wbuf_idle(struct sync_peer_wbuf *b)
{
    while (b->busy)
        pthread_cond_wait(&b->cond, &b->lock);
}

int sync_peer_wbuf_write(struct sync_peer_wbuf *b, char *buf, size_t len, uint64_t off, char **next)
{
    int rc;

    pthread_mutex_lock(&b->lock);
    sync_peer_wbuf_idle(b);
    rc = b->rc;
    if (rc == 0) {
        *next = b->spare;
        b->spare = buf;
        b->data = buf;
        b->len = len;
        b->off = off;
        b->busy = true;
        pthread_cond_broadcast(&b->cond);
    }
    pthread_mutex_unlock(&b->lock);
    return rc;
}

int sync_peer_wbuf_wait(struct sync_peer_wbuf *b)
{
    int rc;

    pthread_mutex_lock(&b->lock);
    sync_peer_wbuf_idle(b);
    rc = b->rc;
    b->rc = 0;
    pthread_mutex_unlock(&b->lock);
    return rc;
}

void sync_peer_wbuf_stop(struct sync_peer_wbuf *b)
{
    if (!b->started)
        return;
    pthread_mutex_lock(&b->lock);
    b->quit = true;
    pthread_cond_broadcast(&b->cond);
    pthread_mutex_unlock(&b->lock);
    pthread_join(b->thread, NULL);
    pthread_cond_destroy(&b->cond);
    pthread_mutex_destroy(&b->lock);
    free(b->spare);
    b->spare = NULL;
    b->started = false;
}
