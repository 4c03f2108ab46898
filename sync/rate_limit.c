/*
 * rate_limit.c - pacing a reader to a number of bytes per second (the
 * scrub's --scrub-rate): the bytes read since the window began are due at
 * start + bytes / rate; the reader waits until then. A reader that fell
 * behind by more than SYNC_RATE_SLACK_MS (it paused, or was slow) starts a
 * new window instead of bursting to catch up.
 *
 * Threads: a limiter belongs to one thread; no shared state. Time comes
 * from the caller (monotonic milliseconds), so the arithmetic is tested
 * without a clock.
 */
#include "rate_limit.h"

#define SYNC_RATE_SLACK_MS 500

void sync_rate_limit_init(struct sync_rate_limit *r, uint64_t bytes_per_s, uint64_t now_ms)
{
    r->bytes_per_s = bytes_per_s ? bytes_per_s : 1;
    r->start_ms = now_ms;
    r->bytes = 0;
}

uint64_t sync_rate_limit_take(struct sync_rate_limit *r, uint64_t bytes, uint64_t now_ms)
{
    uint64_t due;

    r->bytes += bytes;
    /* bytes * 1000 stays far below 2^64 within one window (16 PB) */
    due = r->start_ms + r->bytes * 1000u / r->bytes_per_s;
    if (due > now_ms)
        return due - now_ms;
    if (now_ms - due > SYNC_RATE_SLACK_MS)
        sync_rate_limit_init(r, r->bytes_per_s, now_ms);
    return 0;
}
