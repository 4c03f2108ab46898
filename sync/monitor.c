/*
 * monitor.c - the change monitor: every check_interval_ms it stats the
 * backing file of each ready image and compares inode, size and mtime with
 * what the record saw when it became ready. A changed file goes `unknown`
 * and is re-hashed (rehash.c decides ready or failed); a missing one fails.
 *
 * Threads: one monitor thread. It copies what it needs under sync->lock,
 * stats without the lock, then takes the lock again to act, checking that
 * the record is still the ready one it looked at. It sleeps on
 * sync->monitor_cond (CLOCK_MONOTONIC) so sync_close wakes it at once.
 */
#include "sync_internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct sync_monitor_item {
    uint64_t id;
    char name[STORE_NAME_MAX + 1];
    char uuid[STORE_UUID_MAX + 1];
    struct stat seen;
    struct stat now;
    int rc;
};

/* Ready images without a job (sync->lock held). NULL when none. */
static struct sync_monitor_item *sync_monitor_collect(struct sync *sync, size_t *count)
{
    struct sync_monitor_item *items;
    size_t n = 0;

    *count = 0;
    if (sync->record_count == 0)
        return NULL;
    items = calloc(sync->record_count, sizeof(*items));
    if (!items)
        return NULL;
    for (size_t i = 0; i < sync->record_count; i++) {
        struct sync_record *rec = sync->records[i];
        if (rec->hidden || rec->job || rec->scrub_failing || rec->info.state != SYNC_STATE_READY)
            continue;
        items[n].id = rec->info.id;
        str_copy(items[n].name, sizeof(items[n].name), rec->info.name);
        str_copy(items[n].uuid, sizeof(items[n].uuid), rec->info.uuid);
        items[n].seen = rec->seen;
        n++;
    }
    *count = n;
    return items;
}

/* Act on what one stat found (sync->lock held). */
static void sync_monitor_apply(struct sync *sync, const struct sync_monitor_item *item)
{
    struct sync_record *rec = sync_record_find_id(sync, item->id);

    if (!rec || rec->hidden || rec->job || rec->scrub_failing ||
        rec->info.state != SYNC_STATE_READY || !sync_stat_same(&rec->seen, &item->seen))
        return; /* it moved on while we looked */
    if (item->rc == -ENOENT) {
        log_warn("image=%s uuid=%s backing file is missing", item->name, item->uuid);
        sync_record_set_failed(rec, BIM_CAUSE_CHANGED, "backing file is missing");
        sync_record_changed(sync, rec);
        return;
    }
    if (item->rc < 0) {
        log_warn("image=%s uuid=%s cannot stat backing: %s", item->name, item->uuid,
                 strerror(-item->rc));
        return;
    }
    if (sync_stat_same(&item->now, &rec->seen))
        return;
    log_info("image=%s uuid=%s backing changed on disk, re-hashing", item->name, item->uuid);
    if (sync_rehash_queue(sync, rec, rec->info.current_checksum) < 0)
        log_error("image=%s uuid=%s cannot queue a re-hash: out of memory", item->name, item->uuid);
}

static void sync_monitor_check(struct sync *sync)
{
    struct sync_monitor_item *items;
    size_t count;

    items = sync_monitor_collect(sync, &count);
    if (!items)
        return;
    pthread_mutex_unlock(&sync->lock);
    for (size_t i = 0; i < count; i++)
        items[i].rc =
            store_image_stat_backing(sync->store, items[i].name, items[i].uuid, &items[i].now);
    pthread_mutex_lock(&sync->lock);
    for (size_t i = 0; i < count && !sync->stopping; i++)
        sync_monitor_apply(sync, &items[i]);
    free(items);
}

static void *sync_monitor_main(void *arg)
{
    struct sync *sync = arg;
    struct timespec deadline;

    pthread_mutex_lock(&sync->lock);
    while (!sync->stopping) {
        clock_gettime(CLOCK_MONOTONIC, &deadline);
        deadline.tv_sec += sync->check_interval_ms / 1000;
        deadline.tv_nsec += (long)(sync->check_interval_ms % 1000) * 1000000L;
        if (deadline.tv_nsec >= 1000000000L) {
            deadline.tv_sec++;
            deadline.tv_nsec -= 1000000000L;
        }
        while (!sync->stopping &&
               pthread_cond_timedwait(&sync->monitor_cond, &sync->lock, &deadline) != ETIMEDOUT)
            ;
        if (sync->stopping)
            break;
        sync_monitor_check(sync);
    }
    pthread_mutex_unlock(&sync->lock);
    return NULL;
}

int sync_monitor_start(struct sync *sync)
{
    int rc = pthread_create(&sync->monitor, NULL, sync_monitor_main, sync);

    if (rc != 0) {
        log_error("sync: cannot start the monitor thread: %s", strerror(rc));
        return -rc;
    }
    sync->monitor_started = true;
    return 0;
}

void sync_monitor_stop(struct sync *sync)
{
    if (!sync->monitor_started)
        return;
    pthread_mutex_lock(&sync->lock);
    sync->stopping = true;
    pthread_cond_broadcast(&sync->monitor_cond);
    pthread_mutex_unlock(&sync->lock);
    pthread_join(sync->monitor, NULL);
    sync->monitor_started = false;
}
