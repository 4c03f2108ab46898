/*
 * serving.c - an image in progress serves the pieces its writer holds
 * (SPEC §9 "Serving while receiving"). A transfer announces its writer with
 * sync_serving_start once it is open, and withdraws it with
 * sync_serving_stop before it commits, aborts or closes it; a send (the
 * HTTP server's /pieces, /extents, /backing) takes the writer for the time
 * of a few store calls, counted in serving_users, so stop waits until no
 * send uses it and the writer is never freed under one. The fd a send
 * gets is its own (store_writer_open_read) and outlives the writer.
 *
 * Threads: transfer workers (start, stop), HTTP threads (sync_held_get).
 * sync->lock guards every record's `serving` and `serving_users`; it is
 * not held while the writer is asked (the writer's own lock is taken
 * then), and never across I/O. sync->cond is broadcast when users drop to 0.
 */
#include "sync_internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void sync_serving_start(struct sync_job *job, struct store_writer *w)
{
    pthread_mutex_lock(&job->sync->lock);
    if (job->record && job->record->job == job)
        job->record->serving = w;
    pthread_mutex_unlock(&job->sync->lock);
}

void sync_serving_stop_locked(struct sync *sync, struct sync_record *rec)
{
    rec->serving = NULL;
    while (rec->serving_users > 0)
        pthread_cond_wait(&sync->cond, &sync->lock);
}

void sync_serving_stop(struct sync_job *job)
{
    struct sync_record *rec;

    pthread_mutex_lock(&job->sync->lock);
    rec = job->record;
    if (rec && rec->job == job)
        sync_serving_stop_locked(job->sync, rec);
    pthread_mutex_unlock(&job->sync->lock);
}

/* Take the writer of record id for a while: NULL when it serves none. */
static struct store_writer *sync_serving_take(struct sync *sync, uint64_t id, uint64_t *size)
{
    struct sync_record *rec;
    struct store_writer *w = NULL;

    pthread_mutex_lock(&sync->lock);
    rec = sync_record_find_id(sync, id);
    if (rec && !rec->hidden && rec->serving && rec->info.state == SYNC_STATE_IN_PROGRESS &&
        rec->info.bytes_total > 0) {
        w = rec->serving;
        *size = rec->info.bytes_total;
        rec->serving_users++;
    }
    pthread_mutex_unlock(&sync->lock);
    return w;
}

static void sync_serving_give(struct sync *sync, uint64_t id)
{
    struct sync_record *rec;

    pthread_mutex_lock(&sync->lock);
    rec = sync_record_find_id(sync, id);
    if (rec && rec->serving_users > 0 && --rec->serving_users == 0)
        pthread_cond_broadcast(&sync->cond);
    pthread_mutex_unlock(&sync->lock);
}

void sync_held_free(struct sync_held *h)
{
    free(h->held);
    free(h->known);
    free(h->digest);
    memset(h, 0, sizeof(*h));
}

int sync_held_get_id(struct sync *sync, uint64_t id, uint64_t first, uint64_t end,
                     struct sync_held *out, int *fd)
{
    struct store_writer *w;
    uint64_t size = 0, n;
    int rc;

    memset(out, 0, sizeof(*out));
    if (fd)
        *fd = -1;
    w = sync_serving_take(sync, id, &size);
    if (!w)
        return -ENOENT;
    out->id = id;
    out->size = size;
    out->count = n = store_pieces_count(size);
    out->held = malloc(n ? n : 1);
    out->known = malloc(n ? n : 1);
    out->digest = malloc((n ? n : 1) * 32);
    rc = out->held && out->known && out->digest ? 0 : -ENOMEM;
    if (rc == 0)
        rc = store_writer_pieces_held(w, size, out->held, out->known, out->digest);
    if (rc == 0 && fd && end > 0) {
        /* only bytes of held pieces are sent */
        if (first >= end || end > size)
            rc = -ERANGE;
        for (uint64_t i = first / STORE_PIECE_SIZE; rc == 0 && i <= (end - 1) / STORE_PIECE_SIZE;
             i++)
            if (!out->held[i])
                rc = -ERANGE;
    }
    if (rc == 0 && fd)
        rc = store_writer_open_read(w, end, fd);
    sync_serving_give(sync, id);
    for (uint64_t i = 0; rc == 0 && i < n; i++)
        out->nheld += out->held[i];
    if (rc < 0)
        sync_held_free(out);
    return rc;
}

int sync_held_get(struct sync *sync, const char *name, uint64_t first, uint64_t end,
                  struct sync_held *out, int *fd, struct bim_error *err)
{
    struct sync_image_info *info = malloc(sizeof(*info));
    int rc;

    memset(out, 0, sizeof(*out));
    if (fd)
        *fd = -1;
    if (!info)
        return bim_error_set(err, -ENOMEM, "out of memory");
    rc = sync_get(sync, name, info, err);
    if (rc == 0) {
        rc = sync_held_get_id(sync, info->id, first, end, out, fd);
        if (rc == -ENOENT)
            rc = bim_error_set(err, -EBUSY, "%s: not ready (%s)", name,
                               sync_state_name(info->state));
        else if (rc == -ERANGE)
            rc = bim_error_set(err, -EBUSY, "%s: bytes %llu-%llu are not held yet", name,
                               (unsigned long long)first, (unsigned long long)(end - 1));
        else if (rc < 0)
            rc = bim_error_set(err, rc, "%s: cannot serve what it holds: %s", name, strerror(-rc));
    }
    free(info);
    return rc;
}

uint64_t sync_pieces_held(struct sync *sync, const struct sync_image_info *info)
{
    struct sync_held h;
    uint64_t n;

    if (info->state == SYNC_STATE_READY)
        return store_pieces_count(info->size);
    if (info->state != SYNC_STATE_IN_PROGRESS || sync_held_get_id(sync, info->id, 0, 0, &h, NULL))
        return 0;
    n = h.nheld;
    sync_held_free(&h);
    return n;
}
