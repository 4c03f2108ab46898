/*
 * pieces.c - the piece digests an image offers its peers (SPEC §9,
 * GET /v1/images/{name}/pieces): a ready image's come from backing.pieces,
 * which every writer leaves; an image adopted without them (a disk written
 * by Longhorn, or a file re-hashed after it changed behind bimfs's back)
 * gets them from one background thread, while /pieces answers 503 and the
 * image stays ready. An image in progress answers with what its writer
 * holds (serving.c).
 *
 * The thread takes record ids from its queue (every ready image at start,
 * and any whose digests a request found missing or stale), reads the file
 * with no lock held (store_image_compute_pieces: hole pieces without
 * reading), at a lower CPU priority than the transfers, and writes
 * backing.pieces tagged with the SHA-512 the image was ready with: digests
 * of another version of the file are never taken (store_image_load_pieces
 * checks the tag).
 *
 * Threads: the HTTP threads call sync_pieces_get; the digest thread; delete
 * and close. task->lock guards the queue, `current` and `stop`; `cancel` is
 * atomic. Lock order: sync->lock before task->lock; the thread never holds
 * task->lock while it takes sync->lock, nor either while it reads.
 */
#include "sync_internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#define SYNC_PIECES_NICE 10 /* the digest thread yields the CPU to transfers */

struct sync_pieces_task {
    pthread_t thread;
    bool started;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    uint64_t *queue; /* record ids, oldest first */
    size_t count, cap;
    uint64_t current;   /* the id being computed, 0 */
    atomic_bool cancel; /* stop computing `current` */
    bool stop;
};

/* Queue id unless it is queued or being computed (task->lock held). */
static void sync_pieces_push(struct sync_pieces_task *task, uint64_t id)
{
    uint64_t *q;

    if (task->current == id)
        return;
    for (size_t i = 0; i < task->count; i++)
        if (task->queue[i] == id)
            return;
    if (task->count == task->cap) {
        size_t cap = task->cap ? task->cap * 2 : 16;

        q = reallocarray(task->queue, cap, sizeof(*q));
        if (!q)
            return; /* asked again by the next request */
        task->queue = q;
        task->cap = cap;
    }
    task->queue[task->count++] = id;
    pthread_cond_signal(&task->cond);
}

void sync_pieces_want(struct sync *sync, uint64_t id)
{
    struct sync_pieces_task *task = sync->pieces;

    if (!task)
        return;
    pthread_mutex_lock(&task->lock);
    sync_pieces_push(task, id);
    pthread_mutex_unlock(&task->lock);
}

void sync_pieces_forget(struct sync *sync, uint64_t id)
{
    struct sync_pieces_task *task = sync->pieces;

    if (!task)
        return;
    pthread_mutex_lock(&task->lock);
    for (size_t i = 0; i < task->count; i++)
        if (task->queue[i] == id) {
            memmove(&task->queue[i], &task->queue[i + 1], (task->count - i - 1) * sizeof(id));
            task->count--;
            break;
        }
    if (task->current == id)
        atomic_store(&task->cancel, true);
    pthread_mutex_unlock(&task->lock);
}

/* What to compute for record id: false when it is not a ready image now. */
static bool sync_pieces_snapshot(struct sync *sync, uint64_t id, struct sync_image_info *info)
{
    struct sync_record *rec;
    bool ready;

    pthread_mutex_lock(&sync->lock);
    rec = sync_record_find_id(sync, id);
    ready = rec && !rec->hidden && rec->info.state == SYNC_STATE_READY;
    if (ready)
        *info = rec->info;
    pthread_mutex_unlock(&sync->lock);
    return ready;
}

static void sync_pieces_compute(struct sync *sync, struct sync_pieces_task *task, uint64_t id)
{
    struct sync_image_info *info = malloc(sizeof(*info));
    struct store_pieces p = {0};
    struct bim_error err = {0};
    uint64_t start = clock_monotonic_ms();
    int rc;

    if (!info || !sync_pieces_snapshot(sync, id, info))
        goto out;
    rc = store_image_load_pieces(sync->store, info->name, info->uuid, info->size,
                                 info->current_checksum, &p);
    store_pieces_free(&p);
    if (rc == 0)
        goto out; /* they are there */
    log_info("image=%s uuid=%s computing its piece digests (%llu bytes)", info->name, info->uuid,
             (unsigned long long)info->size);
    rc = store_image_compute_pieces(sync->store, info->name, info->uuid, info->current_checksum,
                                    &task->cancel, NULL, &err);
    if (rc == 0)
        log_info("image=%s uuid=%s piece digests computed in %llu ms", info->name, info->uuid,
                 (unsigned long long)(clock_monotonic_ms() - start));
    else if (rc != -ECANCELED)
        log_warn("image=%s uuid=%s cannot compute its piece digests: %s", info->name, info->uuid,
                 err.message);
out:
    free(info);
}

static void *sync_pieces_main(void *arg)
{
    struct sync *sync = arg;
    struct sync_pieces_task *task = sync->pieces;

    /* a thread's own nice value (Linux): the transfers come first */
    if (setpriority(PRIO_PROCESS, (id_t)gettid(), SYNC_PIECES_NICE) < 0)
        log_debug("sync: the digest thread keeps its priority: %s", strerror(errno));
    pthread_mutex_lock(&task->lock);
    for (;;) {
        uint64_t id;

        while (!task->stop && task->count == 0)
            pthread_cond_wait(&task->cond, &task->lock);
        if (task->stop)
            break;
        id = task->queue[0];
        memmove(&task->queue[0], &task->queue[1], (task->count - 1) * sizeof(id));
        task->count--;
        task->current = id;
        atomic_store(&task->cancel, false);
        pthread_mutex_unlock(&task->lock);
        sync_pieces_compute(sync, task, id);
        pthread_mutex_lock(&task->lock);
        task->current = 0;
    }
    pthread_mutex_unlock(&task->lock);
    return NULL;
}

int sync_pieces_start(struct sync *sync)
{
    struct sync_pieces_task *task = calloc(1, sizeof(*task));
    int rc;

    if (!task)
        return -ENOMEM;
    pthread_mutex_init(&task->lock, NULL);
    pthread_cond_init(&task->cond, NULL);
    atomic_init(&task->cancel, false);
    sync->pieces = task;
    /* every ready image: those without digests get them */
    pthread_mutex_lock(&sync->lock);
    for (size_t i = 0; i < sync->record_count; i++)
        if (sync->records[i]->info.state == SYNC_STATE_READY)
            sync_pieces_want(sync, sync->records[i]->info.id);
    pthread_mutex_unlock(&sync->lock);
    rc = pthread_create(&task->thread, NULL, sync_pieces_main, sync);
    task->started = rc == 0;
    return -rc;
}

void sync_pieces_stop(struct sync *sync)
{
    struct sync_pieces_task *task = sync->pieces;

    if (!task)
        return;
    pthread_mutex_lock(&task->lock);
    task->stop = true;
    atomic_store(&task->cancel, true);
    pthread_cond_signal(&task->cond);
    pthread_mutex_unlock(&task->lock);
    if (task->started)
        pthread_join(task->thread, NULL);
    sync->pieces = NULL;
    pthread_cond_destroy(&task->cond);
    pthread_mutex_destroy(&task->lock);
    free(task->queue);
    free(task);
}

/* A ready image's digests into out: -EAGAIN (queued for the thread) when
 * backing.pieces is missing or stale. */
static int sync_pieces_ready(struct sync *sync, const struct sync_image_info *info,
                             struct wire_pieces *out, struct bim_error *err)
{
    struct store_pieces p = {0};
    int rc;

    rc = store_image_load_pieces(sync->store, info->name, info->uuid, info->size,
                                 info->current_checksum, &p);
    if (rc == -ENOENT || rc == -ESTALE) {
        sync_pieces_want(sync, info->id);
        return bim_error_set(err, -EAGAIN, "%s: its piece digests are being computed", info->name);
    }
    if (rc < 0)
        return bim_error_set(err, rc, "%s: cannot read its piece digests: %s", info->name,
                             strerror(-rc));
    out->count = p.count;
    out->digest = p.sha256; /* the same layout: taken over */
    out->known = malloc(p.count ? p.count : 1);
    out->have = malloc(sizeof(*out->have));
    if (!out->known || !out->have) {
        free(p.sha256);
        out->digest = NULL;
        return bim_error_set(err, -ENOMEM, "out of memory");
    }
    memset(out->known, 1, p.count);
    if (p.count) {
        out->have[0][0] = 0;
        out->have[0][1] = p.count - 1;
        out->nhave = 1;
    }
    str_copy(out->checksum, sizeof(out->checksum), info->current_checksum);
    return 0;
}

/* The inclusive index ranges of the held pieces into out->have. */
static int sync_pieces_have(const struct sync_held *h, struct wire_pieces *out)
{
    size_t n = 0;

    for (uint64_t i = 0; i < h->count; i++)
        n += h->held[i] && (i == 0 || !h->held[i - 1]);
    out->have = malloc((n ? n : 1) * sizeof(*out->have));
    if (!out->have)
        return -ENOMEM;
    for (uint64_t i = 0; i < h->count; i++) {
        if (!h->held[i])
            continue;
        if (i == 0 || !h->held[i - 1])
            out->have[out->nhave++][0] = i;
        out->have[out->nhave - 1][1] = i;
    }
    return 0;
}

/* An image in progress: the pieces it holds and the digests it knows
 * (none before its writer is open: every piece of the known size null). */
static int sync_pieces_in_progress(struct sync *sync, const struct sync_image_info *info,
                                   struct wire_pieces *out, struct bim_error *err)
{
    struct sync_held h;
    int rc = sync_held_get_id(sync, info->id, 0, 0, &h, NULL);

    if (rc == 0) {
        out->size = h.size;
        out->count = h.count;
        out->digest = h.digest;
        out->known = h.known;
        h.digest = NULL;
        h.known = NULL;
        rc = sync_pieces_have(&h, out);
        sync_held_free(&h);
        return rc < 0 ? bim_error_set(err, rc, "out of memory") : 0;
    }
    if (rc != -ENOENT)
        return bim_error_set(err, rc, "%s: cannot tell what it holds: %s", info->name,
                             strerror(-rc));
    out->size = info->bytes_total;
    out->count = store_pieces_count(out->size);
    out->digest = calloc(out->count ? out->count : 1, 32);
    out->known = calloc(out->count ? out->count : 1, 1);
    if (!out->digest || !out->known)
        return bim_error_set(err, -ENOMEM, "out of memory");
    return 0;
}

int sync_pieces_get(struct sync *sync, const char *name, struct wire_pieces *out,
                    struct bim_error *err)
{
    struct sync_image_info *info = malloc(sizeof(*info));
    int rc;

    memset(out, 0, sizeof(*out));
    out->piece_size = STORE_PIECE_SIZE;
    if (!info)
        return bim_error_set(err, -ENOMEM, "out of memory");
    rc = sync_get(sync, name, info, err);
    if (rc < 0)
        goto out;
    out->size = info->size;
    switch (info->state) {
    case SYNC_STATE_READY:
        rc = sync_pieces_ready(sync, info, out, err);
        break;
    case SYNC_STATE_IN_PROGRESS:
        rc = sync_pieces_in_progress(sync, info, out, err);
        break;
    default:
        rc = bim_error_set(err, -EBUSY, "%s: not ready (%s)", name, sync_state_name(info->state));
        break;
    }
out:
    free(info);
    return rc;
}
