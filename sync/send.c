/*
 * send.c - serving images to peers (ready ones, and the held pieces of
 * those in progress: serving.c): the count of GETs in flight per
 * image (sending_reference, bounded by the HTTP server's --send-limit), the
 * bytes served, and the daemon's counters for metrics (sends, refusals,
 * failures by their typed cause).
 *
 * Threads: HTTP server threads call begin/end, any thread reads the stats.
 * sync->lock guards sync->stats, every record's sending_reference,
 * bytes_sent and failure_counted; the backing file is opened without it.
 */
#include "sync_internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void sync_stats_note(struct sync *sync, struct sync_record *rec)
{
    if (rec->info.state != SYNC_STATE_FAILED || rec->failure_counted)
        return;
    rec->failure_counted = true;
    sync->stats.failures[rec->info.cause < BIM_CAUSE_COUNT ? rec->info.cause : BIM_CAUSE_SOURCE]++;
}

void sync_stats_get(struct sync *sync, struct sync_stats *out)
{
    pthread_mutex_lock(&sync->lock);
    *out = sync->stats;
    pthread_mutex_unlock(&sync->lock);
    sync_scrub_stats(sync, out); /* its own atomics */
}

/* Count the send in (locked): 0, or -errno with a message. `held`: of an
 * image in progress (what it holds is checked next), else of a ready one. */
static int sync_send_claim(struct sync *sync, const char *name, unsigned limit, bool held,
                           struct sync_send *out, struct bim_error *err)
{
    struct sync_record *rec = sync_record_find(sync, name);

    if (!rec || rec->hidden)
        return bim_error_set(err, -ENOENT, "%s: no such image", name);
    if (rec->info.state != (held ? SYNC_STATE_IN_PROGRESS : SYNC_STATE_READY))
        return bim_error_set(err, -EBUSY, "%s: not ready (%s)", name,
                             sync_state_name(rec->info.state));
    if (limit > 0 && rec->info.sending_reference >= (int)limit) {
        sync->stats.sends_refused++;
        return bim_error_set(err, -EAGAIN, "%s: %d transfers already in flight (--send-limit)",
                             name, rec->info.sending_reference);
    }
    rec->info.sending_reference++;
    sync->stats.sends++;
    out->id = rec->info.id;
    str_copy(out->name, sizeof(out->name), rec->info.name);
    str_copy(out->uuid, sizeof(out->uuid), rec->info.uuid);
    out->size = held ? rec->info.bytes_total : rec->info.size;
    if (!held) /* an image in progress has no checksum to vouch for its bytes */
        str_copy(out->checksum, sizeof(out->checksum), rec->info.current_checksum);
    sync_record_changed(sync, rec);
    return 0;
}

/* What both begins do first: a cleared `out` (no fd yet), the name checked,
 * the send counted in. 0, or -errno with a message. */
static int sync_send_start(struct sync *sync, const char *name, unsigned limit, bool held,
                           struct sync_send *out, struct bim_error *err)
{
    int rc;

    memset(out, 0, sizeof(*out));
    out->fd = -1;
    if (!name || !store_name_valid(name)) {
        rc = bim_error_set(err, -EINVAL, "%.80s: invalid name", name ? name : "");
        goto out;
    }
    pthread_mutex_lock(&sync->lock);
    rc = sync_send_claim(sync, name, limit, held, out, err);
    pthread_mutex_unlock(&sync->lock);
out:
    return rc;
}

/* A started send that cannot go on: its fd closed, its count given back. */
static void sync_send_abandon(struct sync *sync, struct sync_send *out)
{
    if (out->fd >= 0)
        close(out->fd);
    out->fd = -1;
    sync_send_end(sync, out, 0);
}

int sync_send_begin(struct sync *sync, const char *name, unsigned limit, struct sync_send *out,
                    struct bim_error *err)
{
    struct stat st;
    int rc;

    rc = sync_send_start(sync, name, limit, false, out, err);
    if (rc < 0)
        goto out;
    rc = store_image_open_backing(sync->store, out->name, out->uuid, &out->fd);
    /* the file must still be the one the record describes (a change behind
     * our back is the monitor's to judge; we only refuse to serve it) */
    if (rc == 0 && (fstat(out->fd, &st) < 0 || (uint64_t)st.st_size != out->size))
        rc = -ESTALE;
    if (rc < 0) {
        sync_send_abandon(sync, out);
        rc = bim_error_set(err, rc == -ENOENT ? -EBUSY : rc, "%s: cannot open backing: %s", name,
                           strerror(-rc));
    }
out:
    return rc;
}

int sync_send_begin_held(struct sync *sync, const char *name, unsigned limit, uint64_t first,
                         uint64_t end, struct sync_send *out, struct bim_error *err)
{
    struct sync_held held;
    int rc;

    rc = sync_send_start(sync, name, limit, true, out, err);
    if (rc < 0)
        goto out;
    rc = sync_held_get(sync, name, first, end, &held, &out->fd, err);
    if (rc == 0 && held.size != out->size)
        rc = bim_error_set(err, -EBUSY, "%s: its size changed", name);
    sync_held_free(&held);
    if (rc < 0)
        sync_send_abandon(sync, out);
out:
    return rc;
}

void sync_send_end(struct sync *sync, const struct sync_send *send, uint64_t bytes)
{
    struct sync_record *rec;

    pthread_mutex_lock(&sync->lock);
    sync->stats.bytes_sent += bytes;
    rec = sync_record_find_id(sync, send->id);
    if (rec && rec->info.sending_reference > 0) {
        rec->info.sending_reference--;
        rec->info.bytes_sent += bytes;
        sync_record_changed(sync, rec);
    }
    pthread_mutex_unlock(&sync->lock);
}

int sync_received_get(struct sync *sync, const char *name, struct sync_received **out,
                      size_t *count)
{
    struct sync_record *rec;
    int rc = 0;

    *out = NULL;
    *count = 0;
    pthread_mutex_lock(&sync->lock);
    rec = sync_record_find(sync, name);
    if (!rec || rec->hidden) {
        rc = -ENOENT;
    } else if (rec->nreceived > 0) {
        *out = malloc(rec->nreceived * sizeof(**out));
        if (*out) {
            memcpy(*out, rec->received, rec->nreceived * sizeof(**out));
            *count = rec->nreceived;
        } else {
            rc = -ENOMEM;
        }
    }
    pthread_mutex_unlock(&sync->lock);
    return rc;
}
