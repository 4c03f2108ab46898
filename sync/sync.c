/*
 * sync.c - start and stop: adopt the disk, start the workers, the monitor,
 * the digest thread and the scrub; on close stop them all and free the
 * registry.
 *
 * Threads: sync_open() and sync_close() run in the daemon's main thread, with
 * no other sync call in flight for close (watches closed first).
 */
#include "sync_internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static int sync_init_locks(struct sync *sync)
{
    pthread_condattr_t attr;
    int rc;

    pthread_mutex_init(&sync->lock, NULL);
    pthread_cond_init(&sync->cond, NULL);
    pthread_cond_init(&sync->work_cond, NULL);
    rc = pthread_condattr_init(&attr);
    if (rc != 0)
        return -rc;
    rc = pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    if (rc == 0)
        rc = pthread_cond_init(&sync->monitor_cond, &attr);
    pthread_condattr_destroy(&attr);
    return -rc;
}

/* Download settings with their defaults (docs/download.md). */
static int sync_options_apply(struct sync *sync, const struct sync_options *opts)
{
    static const struct sync_options none;

    if (!opts)
        opts = &none;
    sync->verify = opts->verify;
    sync->stall_ms = opts->stall_timeout_ms ? opts->stall_timeout_ms : SYNC_DEFAULT_STALL_MS;
    sync->retry_max = opts->retry_max ? opts->retry_max : SYNC_DEFAULT_RETRY_MAX;
    sync->retry_window_ms =
        opts->retry_window_ms ? opts->retry_window_ms : sync->stall_ms + SYNC_DEFAULT_WINDOW_EXTRA;
    sync->backoff_ms = opts->backoff_ms ? opts->backoff_ms : SYNC_DEFAULT_BACKOFF_MS;
    sync->backoff_max_ms =
        opts->backoff_max_ms ? opts->backoff_max_ms : SYNC_DEFAULT_BACKOFF_MAX_MS;
    if (sync->backoff_max_ms < sync->backoff_ms)
        sync->backoff_max_ms = sync->backoff_ms;
    sync->scrub_interval_s = opts->scrub_off          ? 0
                             : opts->scrub_interval_s ? opts->scrub_interval_s
                                                      : SYNC_DEFAULT_SCRUB_INTERVAL_S;
    sync->scrub_rate =
        (uint64_t)(opts->scrub_rate_mbps ? opts->scrub_rate_mbps : SYNC_DEFAULT_SCRUB_MBPS) *
        1000000u;
    sync->ca_file = opts->ca_file ? strdup(opts->ca_file) : NULL;
    return opts->ca_file && !sync->ca_file ? -ENOMEM : 0;
}

static void sync_free(struct sync *sync)
{
    while (sync->watches) {
        struct sync_watch *watch = sync->watches;
        sync->watches = watch->next;
        log_warn("sync: a watch was still open at close");
        sync_watch_free(watch);
    }
    for (size_t i = 0; i < sync->record_count; i++) {
        free(sync->records[i]->received);
        free(sync->records[i]);
    }
    free(sync->records);
    free(sync->ca_file);
    pthread_cond_destroy(&sync->monitor_cond);
    pthread_cond_destroy(&sync->work_cond);
    pthread_cond_destroy(&sync->cond);
    pthread_mutex_destroy(&sync->lock);
    free(sync);
}

int sync_open(struct store *store, const struct sync_options *opts, struct sync **out,
              struct bim_error *err)
{
    struct sync *sync;
    int rc;

    *out = NULL;
    sync = calloc(1, sizeof(*sync));
    if (!sync)
        return bim_error_set(err, -ENOMEM, "out of memory");
    sync->store = store;
    sync->worker_count = opts && opts->workers ? opts->workers : SYNC_DEFAULT_WORKERS;
    sync->check_interval_ms =
        opts && opts->check_interval_ms ? opts->check_interval_ms : SYNC_DEFAULT_CHECK_MS;
    sync->next_id = 1;
    rc = sync_options_apply(sync, opts);
    if (rc == 0)
        rc = sync_init_locks(sync);
    if (rc < 0) {
        bim_error_set(err, rc, "cannot set up: %s", strerror(-rc));
        free(sync->ca_file);
        free(sync);
        return rc;
    }
    rc = sync_adopt(sync, err);
    if (rc < 0)
        goto fail;
    rc = sync_workers_start(sync);
    if (rc == 0)
        rc = sync_monitor_start(sync);
    if (rc == 0)
        rc = sync_pieces_start(sync);
    if (rc == 0)
        rc = sync_scrub_start(sync, sync->scrub_interval_s, sync->scrub_rate);
    if (rc < 0) {
        bim_error_set(err, rc, "cannot start threads: %s", strerror(-rc));
        goto fail;
    }
    log_info("sync: %zu images, %u workers, checking ready files every %u ms", sync->record_count,
             sync->worker_count, sync->check_interval_ms);
    *out = sync;
    return 0;
fail:
    sync_close(sync);
    return rc;
}

void sync_close(struct sync *sync)
{
    if (!sync)
        return;
    sync_scrub_stop(sync);
    sync_pieces_stop(sync);
    sync_monitor_stop(sync);
    sync_workers_stop(sync);
    sync_free(sync);
}
