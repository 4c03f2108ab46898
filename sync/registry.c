/*
 * registry.c - the image records of one disk: lookup, snapshots, state
 * helpers and the events every change sends.
 *
 * Threads: any caller. sync->lock guards the record array, every record's
 * fields, the id and generation counters and the disk uuid. Functions marked
 * "(locked)" in sync_internal.h expect the caller to hold it; the public ones
 * here take it themselves and hold it only while copying.
 */
#include "sync_internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

const char *sync_state_name(enum sync_state state)
{
    switch (state) {
    case SYNC_STATE_PENDING:
        return "pending";
    case SYNC_STATE_STARTING:
        return "starting";
    case SYNC_STATE_IN_PROGRESS:
        return "in-progress";
    case SYNC_STATE_READY:
        return "ready";
    case SYNC_STATE_FAILED:
        return "failed";
    case SYNC_STATE_UNKNOWN:
        return "unknown";
    }
    return "unknown";
}

struct sync_record *sync_record_find(struct sync *sync, const char *name)
{
    for (size_t i = 0; i < sync->record_count; i++)
        if (strcmp(sync->records[i]->info.name, name) == 0)
            return sync->records[i];
    return NULL;
}

struct sync_record *sync_record_find_id(struct sync *sync, uint64_t id)
{
    for (size_t i = 0; i < sync->record_count; i++)
        if (sync->records[i]->info.id == id)
            return sync->records[i];
    return NULL;
}

struct sync_record *sync_record_add(struct sync *sync, const char *name, const char *uuid)
{
    struct sync_record *rec;

    if (sync->record_count == sync->record_cap) {
        size_t cap = sync->record_cap ? sync->record_cap * 2 : 16;
        struct sync_record **records = realloc(sync->records, cap * sizeof(*records));
        if (!records)
            return NULL;
        sync->records = records;
        sync->record_cap = cap;
    }
    rec = calloc(1, sizeof(*rec));
    if (!rec)
        return NULL;
    rec->info.id = sync->next_id++;
    str_copy(rec->info.name, sizeof(rec->info.name), name);
    str_copy(rec->info.uuid, sizeof(rec->info.uuid), uuid);
    rec->info.state = SYNC_STATE_PENDING;
    rec->hidden = true;
    sync->records[sync->record_count++] = rec;
    return rec;
}

void sync_record_remove(struct sync *sync, struct sync_record *rec)
{
    for (size_t i = 0; i < sync->record_count; i++) {
        if (sync->records[i] == rec) {
            sync->records[i] = sync->records[--sync->record_count];
            break;
        }
    }
    free(rec->received);
    free(rec);
}

void sync_record_changed(struct sync *sync, struct sync_record *rec)
{
    if (rec->hidden)
        return;
    rec->info.generation = ++sync->generation;
    if (rec->info.state != rec->published_state) {
        rec->published_state = rec->info.state;
        rec->info.state_changes++;
    }
    sync_stats_note(sync, rec);
    sync_watch_publish(sync, SYNC_EVENT_UPDATE, rec);
}

void sync_record_hide_deleted(struct sync *sync, struct sync_record *rec)
{
    rec->info.generation = ++sync->generation;
    sync_watch_publish(sync, SYNC_EVENT_DELETE, rec);
    rec->hidden = true;
}

void sync_record_set_failed(struct sync_record *rec, enum bim_cause cause, const char *message)
{
    rec->info.state = SYNC_STATE_FAILED;
    rec->info.cause = cause;
    rec->info.rate = 0;
    rec->info.verified[0] = '\0';
    str_copy(rec->info.error, sizeof(rec->info.error), message);
}

void sync_record_set_ready(struct sync_record *rec, const struct store_result *result)
{
    struct sync_image_info *info = &rec->info;

    info->state = SYNC_STATE_READY;
    info->format = result->format;
    info->size = result->size;
    info->virtual_size = result->virtual_size;
    info->real_size = result->real_size;
    str_copy(info->current_checksum, sizeof(info->current_checksum), result->checksum);
    info->progress = 100;
    info->bytes_done = result->size;
    info->bytes_total = result->size;
    info->rate = 0;
    info->error[0] = '\0';
    info->mtime = result->st.st_mtim;
    str_copy(info->verified, sizeof(info->verified), result->verified);
    rec->seen = result->st;
    rec->ready_time = clock_realtime_s();
}

bool sync_stat_same(const struct stat *a, const struct stat *b)
{
    return a->st_ino == b->st_ino && a->st_size == b->st_size &&
           a->st_mtim.tv_sec == b->st_mtim.tv_sec && a->st_mtim.tv_nsec == b->st_mtim.tv_nsec;
}

/* ---- public lookups ---- */

static int sync_info_compare(const void *a, const void *b)
{
    const struct sync_image_info *x = a, *y = b;

    return strcmp(x->name, y->name);
}

int sync_list(struct sync *sync, struct sync_image_info **out, size_t *count)
{
    struct sync_image_info *list;
    size_t n = 0;

    *out = NULL;
    *count = 0;
    pthread_mutex_lock(&sync->lock);
    list = malloc((sync->record_count ? sync->record_count : 1) * sizeof(*list));
    if (!list) {
        pthread_mutex_unlock(&sync->lock);
        return -ENOMEM;
    }
    for (size_t i = 0; i < sync->record_count; i++)
        if (!sync->records[i]->hidden)
            list[n++] = sync->records[i]->info;
    pthread_mutex_unlock(&sync->lock);
    qsort(list, n, sizeof(*list), sync_info_compare);
    *out = list;
    *count = n;
    return 0;
}

int sync_get(struct sync *sync, const char *name, struct sync_image_info *out,
             struct bim_error *err)
{
    struct sync_record *rec;
    int rc = 0;

    if (!name || !store_name_valid(name))
        return bim_error_set(err, -EINVAL, "%.80s: invalid name", name ? name : "");
    pthread_mutex_lock(&sync->lock);
    rec = sync_record_find(sync, name);
    if (rec && !rec->hidden)
        *out = rec->info;
    else
        rc = bim_error_set(err, -ENOENT, "%s: no such image", name);
    pthread_mutex_unlock(&sync->lock);
    return rc;
}

int sync_get_by_id(struct sync *sync, uint64_t id, struct sync_image_info *out)
{
    struct sync_record *rec;
    int rc = 0;

    pthread_mutex_lock(&sync->lock);
    rec = sync_record_find_id(sync, id);
    if (rec && !rec->hidden)
        *out = rec->info;
    else
        rc = -ENOENT;
    pthread_mutex_unlock(&sync->lock);
    return rc;
}

int sync_open_backing(struct sync *sync, uint64_t id, int *fd, struct sync_image_info *info)
{
    char name[STORE_NAME_MAX + 1], uuid[STORE_UUID_MAX + 1];
    struct sync_record *rec;

    pthread_mutex_lock(&sync->lock);
    rec = sync_record_find_id(sync, id);
    if (!rec || rec->hidden || rec->info.state != SYNC_STATE_READY) {
        pthread_mutex_unlock(&sync->lock);
        return -ENOENT;
    }
    str_copy(name, sizeof(name), rec->info.name);
    str_copy(uuid, sizeof(uuid), rec->info.uuid);
    if (info)
        *info = rec->info;
    pthread_mutex_unlock(&sync->lock);
    return store_image_open_backing(sync->store, name, uuid, fd);
}

void sync_set_disk_uuid(struct sync *sync, const char *disk_uuid)
{
    pthread_mutex_lock(&sync->lock);
    str_copy(sync->disk_uuid, sizeof(sync->disk_uuid), disk_uuid ? disk_uuid : "");
    pthread_mutex_unlock(&sync->lock);
}

int sync_disk_space(struct sync *sync, uint64_t *avail, uint64_t *total)
{
    return store_disk_space(sync->store, avail, total); /* the store is immutable */
}

void sync_disk_uuid(struct sync *sync, char out[STORE_UUID_MAX + 1])
{
    pthread_mutex_lock(&sync->lock);
    str_copy(out, STORE_UUID_MAX + 1, sync->disk_uuid);
    pthread_mutex_unlock(&sync->lock);
}
