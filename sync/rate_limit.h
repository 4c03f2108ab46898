/*
 * rate_limit.h - pacing a reader to a rate (rate_limit.c), for the scrub.
 */
#ifndef BIMFS_SYNC_RATE_LIMIT_H
#define BIMFS_SYNC_RATE_LIMIT_H

#include <stdint.h>

struct sync_rate_limit {
    uint64_t bytes_per_s;
    uint64_t start_ms; /* the window began */
    uint64_t bytes;    /* read since */
};

/* A new window at now_ms (monotonic ms) for bytes_per_s (0 counts as 1);
 * also how to change the rate. */
void sync_rate_limit_init(struct sync_rate_limit *r, uint64_t bytes_per_s, uint64_t now_ms);

/* `bytes` were just read at now_ms: the milliseconds to wait before the
 * next read, so that the window's average stays at the rate (0: go on). */
uint64_t sync_rate_limit_take(struct sync_rate_limit *r, uint64_t bytes, uint64_t now_ms);

#endif
