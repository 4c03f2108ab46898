/*
 * watch.c - change notification: one bounded event queue per watcher, an
 * eventfd that is readable while the queue is not empty.
 *
 * Threads: sync_watch_publish() runs in whichever thread changed a record,
 * with sync->lock held; it takes each watch's lock inside it. The watcher's
 * thread calls sync_watch_next(), which takes the watch lock to pop and then,
 * separately, sync->lock to copy the current state: never both at once in
 * the watch -> sync order.
 *
 * Updates carry only the image id (the watcher gets the state current when
 * it pops, so updates of one image coalesce); deletes carry the last state.
 * A queue holds at most SYNC_WATCH_QUEUE_MAX entries; beyond that events are
 * dropped and counted (only possible with that many deletes unread).
 */
#include "sync_internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

static void sync_watch_signal(struct sync_watch *watch)
{
    uint64_t one = 1;

    if (write(watch->efd, &one, sizeof(one)) < 0 && errno != EAGAIN)
        log_warn("watch: eventfd write failed: %s", strerror(errno));
}

static void sync_watch_unsignal(struct sync_watch *watch)
{
    uint64_t value;

    if (read(watch->efd, &value, sizeof(value)) < 0 && errno != EAGAIN)
        log_warn("watch: eventfd read failed: %s", strerror(errno));
}

/* Drop queued updates of `id` (a delete follows them). Watch lock held. */
static void sync_watch_drop_updates(struct sync_watch *watch, uint64_t id)
{
    size_t kept = 0;

    for (size_t i = 0; i < watch->count; i++) {
        struct sync_watch_entry *e = &watch->entries[i];
        if (e->type == SYNC_EVENT_UPDATE && e->id == id)
            continue;
        watch->entries[kept++] = *e;
    }
    watch->count = kept;
}

static bool sync_watch_has_update(const struct sync_watch *watch, uint64_t id)
{
    for (size_t i = 0; i < watch->count; i++)
        if (watch->entries[i].type == SYNC_EVENT_UPDATE && watch->entries[i].id == id)
            return true;
    return false;
}

static int sync_watch_grow(struct sync_watch *watch)
{
    struct sync_watch_entry *entries;
    size_t cap;

    if (watch->count < watch->cap)
        return 0;
    if (watch->cap >= SYNC_WATCH_QUEUE_MAX)
        return -ENOSPC;
    cap = watch->cap ? watch->cap * 2 : 16;
    if (cap > SYNC_WATCH_QUEUE_MAX)
        cap = SYNC_WATCH_QUEUE_MAX;
    entries = realloc(watch->entries, cap * sizeof(*entries));
    if (!entries)
        return -ENOMEM;
    watch->entries = entries;
    watch->cap = cap;
    return 0;
}

static void sync_watch_push(struct sync_watch *watch, enum sync_event_type type,
                            const struct sync_record *rec)
{
    struct sync_watch_entry entry = {.type = type, .id = rec->info.id, .last = NULL};
    bool was_empty;

    pthread_mutex_lock(&watch->lock);
    was_empty = watch->count == 0;
    if (type == SYNC_EVENT_UPDATE && sync_watch_has_update(watch, entry.id))
        goto out;
    if (type == SYNC_EVENT_DELETE) {
        sync_watch_drop_updates(watch, entry.id);
        entry.last = malloc(sizeof(*entry.last));
        if (!entry.last)
            goto drop;
        *entry.last = rec->info;
    }
    if (sync_watch_grow(watch) < 0)
        goto drop;
    watch->entries[watch->count++] = entry;
    if (was_empty)
        sync_watch_signal(watch);
    goto out;
drop:
    free(entry.last);
    if (watch->dropped++ == 0)
        log_warn("watch: queue full, events dropped (the watcher does not read)");
out:
    /* dropping updates for a delete may have emptied a queue that had a signal */
    if (!was_empty && watch->count == 0)
        sync_watch_unsignal(watch);
    pthread_mutex_unlock(&watch->lock);
}

void sync_watch_publish(struct sync *sync, enum sync_event_type type, const struct sync_record *rec)
{
    for (struct sync_watch *w = sync->watches; w; w = w->next)
        if (!w->filtered || strcmp(w->name, rec->info.name) == 0)
            sync_watch_push(w, type, rec);
}

int sync_watch_open(struct sync *sync, const char *name, struct sync_watch **out)
{
    struct sync_watch *watch;

    *out = NULL;
    if (name && !store_name_valid(name))
        return -EINVAL;
    watch = calloc(1, sizeof(*watch));
    if (!watch)
        return -ENOMEM;
    watch->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (watch->efd < 0) {
        int rc = -errno;
        free(watch);
        return rc;
    }
    pthread_mutex_init(&watch->lock, NULL);
    watch->sync = sync;
    if (name) {
        watch->filtered = true;
        str_copy(watch->name, sizeof(watch->name), name);
    }
    pthread_mutex_lock(&sync->lock);
    watch->next = sync->watches;
    sync->watches = watch;
    pthread_mutex_unlock(&sync->lock);
    *out = watch;
    return 0;
}

int sync_watch_fd(struct sync_watch *watch)
{
    return watch->efd;
}

/* Pop the oldest entry; false when empty. */
static bool sync_watch_pop(struct sync_watch *watch, struct sync_watch_entry *entry)
{
    bool popped = false;

    pthread_mutex_lock(&watch->lock);
    if (watch->count > 0) {
        *entry = watch->entries[0];
        memmove(&watch->entries[0], &watch->entries[1],
                (watch->count - 1) * sizeof(watch->entries[0]));
        watch->count--;
        if (watch->count == 0)
            sync_watch_unsignal(watch);
        popped = true;
    }
    pthread_mutex_unlock(&watch->lock);
    return popped;
}

int sync_watch_next(struct sync_watch *watch, struct sync_event *ev)
{
    struct sync_watch_entry entry;

    while (sync_watch_pop(watch, &entry)) {
        ev->type = entry.type;
        if (entry.type == SYNC_EVENT_DELETE) {
            ev->image = *entry.last;
            free(entry.last);
            return 0;
        }
        /* an update whose record has vanished: its delete event follows */
        if (sync_get_by_id(watch->sync, entry.id, &ev->image) == 0)
            return 0;
    }
    return -EAGAIN;
}

void sync_watch_free(struct sync_watch *watch)
{
    for (size_t i = 0; i < watch->count; i++)
        free(watch->entries[i].last);
    free(watch->entries);
    close(watch->efd);
    pthread_mutex_destroy(&watch->lock);
    free(watch);
}

void sync_watch_close(struct sync_watch *watch)
{
    struct sync *sync;

    if (!watch)
        return;
    sync = watch->sync;
    pthread_mutex_lock(&sync->lock);
    for (struct sync_watch **p = &sync->watches; *p; p = &(*p)->next) {
        if (*p == watch) {
            *p = watch->next;
            break;
        }
    }
    pthread_mutex_unlock(&sync->lock);
    sync_watch_free(watch);
}
