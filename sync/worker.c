/*
 * worker.c - the bounded worker pool: a FIFO of jobs, `worker_count` threads
 * popping it, cancellation, and progress publishing.
 *
 * Threads: worker threads run sync_worker_main(); any thread may queue or
 * cancel. sync->lock guards the queue, job->running, job->next and the
 * record <-> job link. job->cancel is atomic (read per chunk without the
 * lock). The progress fields of a job are touched only by its worker.
 *
 * A job is freed by the worker that ran it, after it detached it from its
 * record under the lock and broadcast sync->cond (a delete may be waiting for
 * exactly that); a job still queued is freed by whoever unlinks it.
 */
#include "sync_internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct sync_job *sync_job_new(struct sync *sync, const struct sync_source_ops *ops,
                              struct sync_record *rec, void *state)
{
    struct sync_job *job = calloc(1, sizeof(*job));

    if (!job)
        return NULL;
    job->ops = ops;
    job->state = state;
    job->sync = sync;
    job->record = rec;
    str_copy(job->name, sizeof(job->name), rec->info.name);
    str_copy(job->uuid, sizeof(job->uuid), rec->info.uuid);
    atomic_init(&job->cancel, false);
    return job;
}

int sync_job_resume(struct sync *sync, const struct sync_source_ops *ops, struct sync_record *rec,
                    const struct store_entry *e, void *state, struct sync_job **job)
{
    *job = sync_job_new(sync, ops, rec, state);
    if (!*job) {
        ops->free_state(state);
        return -ENOMEM;
    }
    if (store_checksum_parse(e->cfg.expected_checksum, &(*job)->expected, NULL) < 0) {
        sync_job_free(*job); /* a cfg bimfs did not write: do not guess */
        *job = NULL;
        return -EINVAL;
    }
    str_copy((*job)->source, sizeof((*job)->source), e->cfg.source);
    return 1;
}

bool sync_stopping(struct sync *sync)
{
    bool stopping;

    pthread_mutex_lock(&sync->lock);
    stopping = sync->stopping;
    pthread_mutex_unlock(&sync->lock);
    return stopping;
}

void sync_job_free(struct sync_job *job)
{
    if (!job)
        return;
    if (job->state && job->ops->free_state)
        job->ops->free_state(job->state);
    free(job);
}

void sync_job_enqueue(struct sync *sync, struct sync_job *job)
{
    job->record->job = job;
    job->next = NULL;
    if (sync->queue_tail)
        sync->queue_tail->next = job;
    else
        sync->queue_head = job;
    sync->queue_tail = job;
    pthread_cond_signal(&sync->work_cond);
}

static void sync_job_unlink(struct sync *sync, struct sync_job *job)
{
    struct sync_job *prev = NULL;

    for (struct sync_job *j = sync->queue_head; j; prev = j, j = j->next) {
        if (j != job)
            continue;
        if (prev)
            prev->next = j->next;
        else
            sync->queue_head = j->next;
        if (sync->queue_tail == j)
            sync->queue_tail = prev;
        j->next = NULL;
        return;
    }
}

struct sync_job *sync_job_cancel(struct sync *sync, struct sync_record *rec)
{
    struct sync_job *job = rec->job;

    if (!job)
        return NULL;
    atomic_store(&job->cancel, true);
    if (job->running)
        return NULL;
    sync_job_unlink(sync, job);
    rec->job = NULL;
    return job;
}

bool sync_job_cancelled(const struct sync_job *job)
{
    return atomic_load(&job->cancel);
}

static int sync_job_percent(uint64_t done, uint64_t total)
{
    double pct;

    if (total == 0)
        return 0;
    pct = (double)done * 100.0 / (double)total;
    /* 100 means ready; a transfer that moved every byte still has to commit */
    return pct >= 99.0 ? 99 : (int)pct;
}

void sync_job_progress(struct sync_job *job, uint64_t bytes_done)
{
    struct sync *sync = job->sync;
    uint64_t now = clock_monotonic_ms();
    struct sync_record *rec;
    int pct;

    job->bytes_done = bytes_done;
    if (now - job->rate_ms >= SYNC_RATE_WINDOW_MS) {
        job->rate = (bytes_done - job->rate_bytes) * 1000 / (now - job->rate_ms);
        job->rate_ms = now;
        job->rate_bytes = bytes_done;
    }
    pct = sync_job_percent(bytes_done, job->bytes_total);
    if (job->flowing && pct == job->published_progress && now - job->publish_ms < SYNC_PUBLISH_MS)
        return;
    job->flowing = true;
    job->published_progress = pct;
    job->publish_ms = now;

    pthread_mutex_lock(&sync->lock);
    rec = job->record;
    if (job->ops->transfer)
        rec->info.state = SYNC_STATE_IN_PROGRESS;
    rec->info.progress = pct;
    rec->info.bytes_done = bytes_done;
    rec->info.bytes_total = job->bytes_total;
    rec->info.rate = job->rate;
    sync_record_changed(sync, rec);
    pthread_mutex_unlock(&sync->lock);
}

static void *sync_worker_main(void *arg)
{
    struct sync *sync = arg;
    struct sync_job *job;

    pthread_mutex_lock(&sync->lock);
    for (;;) {
        while (!sync->stopping && !sync->queue_head)
            pthread_cond_wait(&sync->work_cond, &sync->lock);
        if (sync->stopping)
            break;
        job = sync->queue_head;
        sync_job_unlink(sync, job);
        job->running = true;
        job->rate_ms = clock_monotonic_ms();
        if (job->ops->transfer) {
            job->record->info.state = SYNC_STATE_STARTING;
            sync_record_changed(sync, job->record);
        }
        pthread_mutex_unlock(&sync->lock);

        /* the job publishes its outcome itself; here it only lets go */
        job->ops->run(job);

        pthread_mutex_lock(&sync->lock);
        job->record->job = NULL;
        pthread_cond_broadcast(&sync->cond);
        pthread_mutex_unlock(&sync->lock);
        sync_job_free(job);
        pthread_mutex_lock(&sync->lock);
    }
    pthread_mutex_unlock(&sync->lock);
    return NULL;
}

int sync_workers_start(struct sync *sync)
{
    sync->workers = calloc(sync->worker_count, sizeof(*sync->workers));
    if (!sync->workers)
        return -ENOMEM;
    for (unsigned i = 0; i < sync->worker_count; i++) {
        int rc = pthread_create(&sync->workers[i], NULL, sync_worker_main, sync);
        if (rc != 0) {
            log_error("sync: cannot start worker thread: %s", strerror(rc));
            return -rc;
        }
        sync->workers_started++;
    }
    return 0;
}

void sync_workers_stop(struct sync *sync)
{
    struct sync_job *dropped = NULL;

    pthread_mutex_lock(&sync->lock);
    sync->stopping = true;
    for (size_t i = 0; i < sync->record_count; i++) {
        struct sync_job *job = sync_job_cancel(sync, sync->records[i]);
        if (job) {
            job->next = dropped;
            dropped = job;
        }
    }
    pthread_cond_broadcast(&sync->work_cond);
    pthread_cond_broadcast(&sync->cond);
    pthread_mutex_unlock(&sync->lock);

    while (dropped) {
        struct sync_job *next = dropped->next;
        sync_job_free(dropped);
        dropped = next;
    }
    for (unsigned i = 0; i < sync->workers_started; i++)
        pthread_join(sync->workers[i], NULL);
    sync->workers_started = 0;
    free(sync->workers);
    sync->workers = NULL;
}
