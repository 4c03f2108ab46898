/*
 * writeback.c - pacing a transfer that writes backing.tmp in order (used by
 * peer sync, uploads, restores and clones; a download hashes from the
 * writer's own buffers instead, store/ring.c): the hasher kept close behind,
 * the page cache kept small.
 *
 * The hasher (store/hasher.c) hashes what was written; bytes it has not
 * hashed when the last one arrives are hashed between the last byte and
 * ready. Hashing is the slowest stage, so making the writer wait when the
 * hasher is more than SYNC_HASH_LAG_MAX behind costs no time overall and
 * keeps that latency short.
 *
 * Every SYNC_WRITEBACK_STEP bytes, the writeback of what arrived is started
 * (sync_file_range WRITE), and what is on disk and already hashed, one step
 * behind, is dropped from the page cache (POSIX_FADV_DONTNEED). Why:
 * allocating fresh page-cache pages is what a buffered write costs most
 * (much more so in VMs), recycled ones are cheap; the final fsync of the
 * commit then only has the last steps to write; and a disk slower than the
 * source slows the transfer to its pace here rather than in that fsync.
 * Errors are left to the commit's fsync.
 *
 * Threads: the thread writing the transfer; no shared state.
 */
#include "sync_internal.h"

#include <fcntl.h>
#include <time.h>

void sync_writeback_reset(struct sync_writeback *wb)
{
    wb->flushing = wb->dropped = 0;
}

void sync_writeback_note(struct sync_writeback *wb, struct store_writer *w, uint64_t written)
{
    int fd = store_writer_fd(w);
    uint64_t hashed, limit;

    if (written - wb->flushing >= SYNC_WRITEBACK_STEP) {
        (void)sync_file_range(fd, (off64_t)wb->flushing, (off64_t)(written - wb->flushing),
                              SYNC_FILE_RANGE_WRITE);
        wb->flushing = written;
    }
    hashed = store_writer_hashed(w);
    limit = wb->flushing > SYNC_WRITEBACK_STEP ? wb->flushing - SYNC_WRITEBACK_STEP : 0;
    if (limit > hashed)
        limit = hashed; /* the hasher still has to read it */
    if (limit < wb->dropped + SYNC_WRITEBACK_STEP)
        return;
    (void)sync_file_range(fd, (off64_t)wb->dropped, (off64_t)(limit - wb->dropped),
                          SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE |
                              SYNC_FILE_RANGE_WAIT_AFTER);
    (void)posix_fadvise(fd, (off_t)wb->dropped, (off_t)(limit - wb->dropped), POSIX_FADV_DONTNEED);
    wb->dropped = limit;
}

void sync_writeback_pace(struct store_writer *w, uint64_t written, const atomic_bool *cancel)
{
    uint64_t hashed = store_writer_hashed(w), seen = hashed, moved = clock_monotonic_ms();

    while (written > hashed + SYNC_HASH_LAG_MAX && !atomic_load(cancel)) {
        struct timespec ts = {0, 2 * 1000000L};
        uint64_t now;

        nanosleep(&ts, NULL);
        hashed = store_writer_hashed(w);
        now = clock_monotonic_ms();
        if (hashed != seen) {
            seen = hashed;
            moved = now;
        } else if (now - moved >= 1000) {
            return; /* the hasher stopped (it failed: the commit says why) */
        }
    }
}
