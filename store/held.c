/*
 * held.c - what a writer still in progress may serve (SPEC §9 "Serving
 * while receiving"): the pieces it holds, and a read-only descriptor of
 * backing.tmp to send them from. A piece is held when all its bytes are in
 * the writer's done ranges (the contiguous prefix and w->ranges) and its
 * digest is known: computed by the piece thread (downloads, uploads), or
 * taken from a trusted manifest (a peer sync marks a piece done only once
 * it matched that digest). Held pieces never change again: a writer writes
 * each range once, and a receiver only discards pieces it has not marked.
 *
 * Threads: any thread, while the writer is alive (the caller keeps it so:
 * sync/serving.c); w->lock guards the ranges and the digests read here.
 */
#include "store_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Is [off, end) done? w->lock held. *cursor walks w->ranges for calls in
 * ascending order. */
static bool store_held_done(const struct store_writer *w, uint64_t off, uint64_t end,
                            size_t *cursor)
{
    if (end <= w->written)
        return true;
    while (*cursor < w->nranges && w->ranges[*cursor].end < end)
        (*cursor)++;
    return *cursor < w->nranges && w->ranges[*cursor].start <= off;
}

/* Is piece index's digest known? w->lock held. */
static bool store_held_known(const struct store_writer *w, uint64_t index)
{
    if (index >= w->pieces.count || !w->pieces.sha256)
        return false;
    return !w->pieces_known || w->pieces_known[index];
}

int store_writer_pieces_held(struct store_writer *w, uint64_t size, uint8_t *held, uint8_t *known,
                             uint8_t (*digest)[32])
{
    uint64_t count = store_pieces_count(size);
    size_t cursor = 0;

    if (count > STORE_PIECES_MAX)
        return -EFBIG;
    pthread_mutex_lock(&w->lock);
    for (uint64_t i = 0; i < count; i++) {
        uint64_t off = i * STORE_PIECE_SIZE, end = off + store_piece_length(size, i);
        bool k = store_held_known(w, i);

        known[i] = k;
        held[i] = k && store_held_done(w, off, end, &cursor);
        if (k)
            memcpy(digest[i], w->pieces.sha256[i], 32);
        else
            memset(digest[i], 0, 32);
    }
    pthread_mutex_unlock(&w->lock);
    return 0;
}

int store_writer_open_read(struct store_writer *w, uint64_t end, int *out)
{
    struct stat st, mine;
    int fd, rc = 0;

    *out = -1;
    fd = openat(w->dirfd, STORE_BACKING_TMP, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return -errno;
    if (fstat(fd, &st) < 0 || fstat(w->fd, &mine) < 0) {
        rc = -errno;
        goto out;
    }
    if (st.st_dev != mine.st_dev || st.st_ino != mine.st_ino) {
        rc = -ESTALE; /* not the writer's file */
        goto out;
    }
    /* A held piece that ends in a hole may lie past the end of the file
     * while a later piece is still on its way (the writer extends the file
     * only where no other claim lies beyond). Its last byte is zero and
     * never changes: writing it makes the file reach the piece's end, so
     * the whole range can be sent from the file. */
    if ((uint64_t)st.st_size < end) {
        static const unsigned char zero;

        rc = fd_pwrite_all(w->fd, &zero, 1, end - 1);
    }
out:
    if (rc < 0)
        close(fd);
    else
        *out = fd;
    return rc;
}

void store_writer_expect(struct store_writer *w, const struct store_checksum *expected)
{
    w->expected = *expected;
}
