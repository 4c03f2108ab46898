/*
 * job.c - the coordinator of one backup (backup.h; docs/backup.md "Backups"):
 * it scans the image for the blocks that hold data, hands the early pass to
 * the workers (pool.c) and takes the target's lock meanwhile (lock.c), reads
 * the cfg again, writes the initial cfg, hands them the store pass, refreshes
 * the lock while they run, writes the final cfg, releases the lock and
 * publishes the end.
 *
 * Threads: one coordinator thread per running backup (detached: it frees its
 * job at the end; bk_backups_close waits for the job list to empty). It takes
 * b->lock to queue a pass, to wait for one (a condition on the job) and to
 * publish the end; never across the target or the image file.
 */
#include "backup_internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* Wait on the job's condition for at most ms (b->lock held). */
static void bk_job_timedwait(struct bk_job *job, unsigned ms)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += ms / 1000;
    ts.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    pthread_cond_timedwait(&job->cond, &job->b->lock, &ts);
}

/* The lock's wait: ms, or less when the backups stop (then nonzero). */
static int bk_job_wait(void *arg, unsigned ms)
{
    struct bk_job *job = arg;
    uint64_t end = clock_monotonic_ms() + ms;
    bool stopping;

    pthread_mutex_lock(&job->b->lock);
    while (!job->b->stopping && clock_monotonic_ms() < end)
        bk_job_timedwait(job, (unsigned)(end - clock_monotonic_ms()));
    stopping = job->b->stopping;
    pthread_mutex_unlock(&job->b->lock);
    return stopping;
}

/* The 2 MiB blocks of the image that hold data (SEEK_DATA/SEEK_HOLE). */
static int bk_job_scan(struct bk_job *job, struct bk_block **out, size_t *count,
                       struct bim_error *err)
{
    uint64_t blocks = (job->size + BK_BLOCK_SIZE - 1) / BK_BLOCK_SIZE, off = 0;
    struct bk_block *v;
    size_t n = 0;

    *out = NULL;
    *count = 0;
    v = calloc(blocks ? blocks : 1, sizeof(*v));
    if (!v)
        return bim_error_set(err, -ENOMEM, "out of memory for %llu blocks",
                             (unsigned long long)blocks);
    while (off < job->size) {
        off_t data = lseek(job->fd, (off_t)off, SEEK_DATA), hole;

        if (data < 0 && errno == ENXIO)
            break;
        if (data < 0) { /* no SEEK_DATA here: every block holds data */
            data = (off_t)off;
            hole = (off_t)job->size;
        } else {
            hole = lseek(job->fd, data, SEEK_HOLE);
            if (hole < 0 || (uint64_t)hole > job->size)
                hole = (off_t)job->size;
        }
        for (uint64_t i = (uint64_t)data / BK_BLOCK_SIZE;
             i <= ((uint64_t)hole - 1) / BK_BLOCK_SIZE && hole > data; i++) {
            if (n && v[n - 1].offset >= i * BK_BLOCK_SIZE)
                continue;
            v[n++].offset = i * BK_BLOCK_SIZE;
        }
        off = (uint64_t)hole > off ? (uint64_t)hole : off + BK_BLOCK_SIZE;
    }
    *out = v;
    *count = n;
    return 0;
}

/* Name the scanned blocks the image's last backup named (both by offset). */
static size_t bk_job_name_known(const struct bk_known *k, struct bk_block *v, size_t n)
{
    size_t j = 0, named = 0;

    for (size_t i = 0; i < n && k->blocks; i++) {
        while (j < k->count && k->blocks[j].offset < v[i].offset)
            j++;
        if (j == k->count)
            break;
        if (k->blocks[j].offset != v[i].offset)
            continue;
        memcpy(v[i].sum, k->blocks[j].sum, sizeof(v[i].sum));
        v[i].zero = k->blocks[j].zero;
        v[i].named = true;
        named++;
    }
    return named;
}

/* Write the cfg; the initial record's text is kept (*kept) to compare with
 * the target's before the final one. */
static int bk_job_write_cfg(struct bk_job *job, const struct bk_cfg *cfg, char **kept,
                            struct bim_error *err)
{
    char path[BK_PATH_MAX], *text;
    int rc;

    text = bk_cfg_encode(cfg);
    if (!text)
        return bim_error_set(err, -ENOMEM, "out of memory for the cfg");
    bk_cfg_path(job->name, path);
    rc = job->ops->write(job->t, path, text, strlen(text), err);
    if (rc == 0 && kept)
        *kept = text;
    else
        free(text);
    return rc;
}

/* Before the final record: the target's cfg of that name must still be our
 * initial record. Another writer backing up the same name meanwhile (another
 * daemon, Longhorn; type 1 locks do not exclude each other) has replaced it
 * with its own: its backup is not overwritten, ours ends error. Two writers
 * whose initial records are the same bytes back up the same image (same
 * Size and Checksum) in the same second: either final record is right. */
static int bk_job_check_own(struct bk_job *job, const char *initial, struct bim_error *err)
{
    char path[BK_PATH_MAX];
    void *buf = NULL;
    size_t len = 0;
    int rc;

    bk_cfg_path(job->name, path);
    rc = job->ops->read(job->t, path, BK_CFG_MAX, &buf, &len, err);
    if (rc == -ENOENT)
        return bim_error_set(err, -EBUSY,
                             "the backup's initial record was removed from the target meanwhile "
                             "(a deletion?): the backup is not completed");
    if (rc < 0)
        return rc;
    if (len != strlen(initial) || memcmp(buf, initial, len) != 0)
        rc = bim_error_set(err, -EBUSY,
                           "another writer is backing up %s to this target: the record there is "
                           "no longer this backup's (left as it is)",
                           job->name);
    free(buf);
    return rc;
}

static void bk_job_cfg_init(const struct bk_job *job, struct bk_cfg *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    str_copy(cfg->name, sizeof(cfg->name), job->name);
    cfg->size = job->size;
    str_copy(cfg->checksum, sizeof(cfg->checksum), job->checksum);
    cfg->compression = job->compression;
    str_copy(cfg->created, sizeof(cfg->created), job->created);
}

/* The final record: the stored blocks, by offset. */
static int bk_job_finish_cfg(struct bk_job *job, struct bim_error *err)
{
    struct bk_cfg_block *blocks;
    struct bk_cfg cfg;
    size_t n = 0;
    int rc;

    blocks = calloc(job->block_count ? job->block_count : 1, sizeof(*blocks));
    if (!blocks)
        return bim_error_set(err, -ENOMEM, "out of memory for the cfg");
    for (size_t i = 0; i < job->block_count; i++) {
        if (job->blocks[i].zero)
            continue;
        blocks[n].offset = job->blocks[i].offset;
        bk_block_hex(job->blocks[i].sum, blocks[n].checksum);
        n++;
    }
    bk_job_cfg_init(job, &cfg);
    bk_time_now(cfg.completed);
    cfg.labels = job->labels;
    cfg.label_count = job->label_count;
    cfg.blocks = blocks;
    cfg.block_count = n;
    rc = bk_job_write_cfg(job, &cfg, NULL, err);
    free(blocks);
    return rc;
}

/* Hand a pass over the blocks to the workers (b->lock held). */
static void bk_job_queue(struct bk_job *job, enum bk_phase phase)
{
    job->phase = phase;
    job->next = 0;
    job->queued = true;
    pthread_cond_broadcast(&job->b->work);
}

/* No more blocks are taken; wait until the workers hold none of the job's. */
static void bk_job_drain(struct bk_job *job)
{
    pthread_mutex_lock(&job->b->lock);
    job->failed = true;
    while (job->in_flight > 0)
        pthread_cond_wait(&job->cond, &job->b->lock);
    pthread_mutex_unlock(&job->b->lock);
}

/* Wait for the workers to end the pass, refreshing the lock (when held)
 * every 60 s. */
static int bk_job_pass_wait(struct bk_job *job, struct bk_lock *lock, struct bim_error *err)
{
    struct bk_backups *b = job->b;
    uint64_t refresh = clock_monotonic_ms() + BK_LOCK_REFRESH_MS;
    int rc = 0;

    pthread_mutex_lock(&b->lock);
    while (job->in_flight > 0 || (!b->stopping && !job->failed && job->next < job->block_count)) {
        uint64_t now = clock_monotonic_ms();

        if (now >= refresh && lock->ops) {
            pthread_mutex_unlock(&b->lock);
            rc = bk_lock_refresh(lock, err);
            pthread_mutex_lock(&b->lock);
            if (rc < 0) {
                job->failed = true; /* the workers take no more */
                job->block_err = *err;
            }
            refresh = now + BK_LOCK_REFRESH_MS;
            continue;
        }
        bk_job_timedwait(job, (unsigned)(refresh - now));
    }
    if (job->failed) {
        *err = job->block_err;
        rc = -EIO;
    } else if (b->stopping) {
        rc = bim_error_cause(err, BIM_CAUSE_INTERRUPTED, -ECANCELED,
                             "interrupted: the daemon stopped");
    }
    pthread_mutex_unlock(&b->lock);
    return rc;
}

/* Make the pass's deferred writes durable and in place (target.h). A
 * failure after the early pass is not the backup's: the blocks it lost are
 * missing, and the store pass writes them again. */
static int bk_job_flush(struct bk_job *job, bool early, struct bim_error *err)
{
    struct bim_error cause = {{0}, 0};
    int rc;

    if (!job->ops->flush)
        return 0;
    rc = job->ops->flush(job->t, &cause);
    if (rc < 0 && early)
        log_warn("image=%s uuid=%s backup to %s: the early pass's blocks not stored: %s", job->name,
                 job->uuid, job->status->url, cause.message);
    else if (rc < 0)
        *err = cause;
    return early ? 0 : rc;
}

/* Under the lock, before the initial record: a backup of that name that
 * another writer completed since the check at the start is not overwritten
 * (a complete backup is immutable); nor is a cfg that cannot be read. */
static int bk_job_recheck(struct bk_job *job, struct bim_error *err)
{
    struct bim_error cause = {{0}, 0};
    struct bk_backup_entry entry;
    char path[BK_PATH_MAX];
    void *buf = NULL;
    size_t len = 0;
    int rc;

    bk_cfg_path(job->name, path);
    rc = job->ops->read(job->t, path, BK_CFG_MAX, &buf, &len, err);
    if (rc == -ENOENT)
        return 0;
    if (rc < 0)
        return rc;
    rc = bk_cfg_decode_entry(buf, len, &entry, &cause);
    free(buf);
    if (rc < 0)
        return bim_error_set(err, -EEXIST,
                             "already exists: a cfg of that name that cannot be read (%s) "
                             "appeared on the target meanwhile",
                             cause.message);
    rc = 0;
    if (entry.completed[0])
        rc = bim_error_set(err, -EEXIST,
                           "already exists: another writer completed a backup of that name "
                           "meanwhile (completed %s)",
                           entry.completed);
    bk_entry_clear(&entry);
    return rc;
}

static int bk_job_steps(struct bk_job *job, struct bim_error *err)
{
    struct bk_block *blocks = NULL;
    struct bk_lock lock = {0};
    char *initial = NULL;
    struct bk_cfg cfg;
    size_t count = 0;
    int rc;

    rc = bk_job_scan(job, &blocks, &count, err);
    if (rc < 0)
        return rc;
    job->named = bk_job_name_known(&job->known, blocks, count);
    pthread_mutex_lock(&job->b->lock);
    job->blocks = blocks;
    job->block_count = count;
    job->status->blocks = count;
    bk_job_queue(job, BK_PHASE_EARLY); /* while the lock protocol waits */
    pthread_mutex_unlock(&job->b->lock);
    rc = bk_lock_acquire(&lock, job->ops, job->t, BK_LOCK_BACKUP, bk_job_wait, job, err);
    job->lock_waited = lock.waited;
    if (rc == 0)
        rc = bk_job_recheck(job, err);
    if (rc < 0)
        goto out;
    bk_job_cfg_init(job, &cfg);
    rc = bk_job_write_cfg(job, &cfg, &initial, err);
    if (rc == 0)
        rc = bk_job_pass_wait(job, &lock, err);
    if (rc < 0)
        goto out;
    bk_job_flush(job, true, err); /* what it wrote in place: the store pass finds it */
    pthread_mutex_lock(&job->b->lock);
    bk_job_queue(job, BK_PHASE_STORE);
    pthread_mutex_unlock(&job->b->lock);
    rc = bk_job_pass_wait(job, &lock, err);
    if (rc == 0)
        rc = bk_job_flush(job, false, err); /* every block durable before the final cfg */
    if (rc == 0)
        rc = bk_job_check_own(job, initial, err);
    if (rc == 0)
        rc = bk_job_finish_cfg(job, err);
out:
    free(initial);
    bk_job_drain(job); /* the workers hold none of its blocks when it is freed */
    bk_lock_release(&lock);
    return rc;
}

void bk_job_free(struct bk_job *job)
{
    if (job->t)
        job->ops->close(job->t);
    if (job->fd >= 0)
        close(job->fd);
    for (size_t i = 0; i < job->label_count; i++) {
        free((char *)job->labels[i].key);
        free((char *)job->labels[i].value);
    }
    free(job->labels);
    free(job->blocks);
    bk_known_clear(NULL, &job->known);
    pthread_cond_destroy(&job->cond);
    free(job);
}

/* Keep the job's blocks as the image's known ones when it completed; give
 * back the table it was handed when it did not (b->lock held). Over
 * BK_KNOWN_MAX in all, the other images' tables go. */
static void bk_job_keep_known(struct bk_job *job, struct bk_status_entry *entry, int rc)
{
    struct bk_backups *b = job->b;
    struct bk_known *k = &entry->known;

    bk_known_clear(b, k);
    if (rc == 0 && job->block_count <= BK_KNOWN_MAX) {
        str_copy(k->uuid, sizeof(k->uuid), job->uuid);
        str_copy(k->checksum, sizeof(k->checksum), job->checksum);
        k->size = job->size;
        k->blocks = job->blocks;
        k->count = job->block_count;
        job->blocks = NULL;
    } else if (rc < 0) {
        *k = job->known;
        memset(&job->known, 0, sizeof(job->known));
    }
    b->known_blocks += k->count;
    for (struct bk_status_entry *e = b->entries; e && b->known_blocks > BK_KNOWN_MAX; e = e->next)
        if (e != entry)
            bk_known_clear(b, &e->known);
    if (b->known_blocks > BK_KNOWN_MAX)
        bk_known_clear(b, k);
}

void *bk_job_run(void *arg)
{
    struct bk_job *job = arg;
    struct bk_backups *b = job->b;
    struct bim_error err = {{0}, 0};
    struct bk_status_entry *entry;
    size_t zeros = 0;
    int rc;

    rc = bk_job_steps(job, &err);
    for (size_t i = 0; i < job->block_count; i++) /* the workers hold none of them now */
        zeros += job->blocks[i].zero;
    if (rc < 0)
        log_warn("image=%s uuid=%s backup to %s failed: %s", job->name, job->uuid, job->status->url,
                 err.message);
    else
        log_info("image=%s uuid=%s backup to %s complete: %zu blocks stored (%llu written, "
                 "%llu present), %zu of zeros left out, %zu named from the image's last "
                 "backup; the lock taken %s",
                 job->name, job->uuid, job->status->url, job->block_count - zeros,
                 (unsigned long long)job->status->blocks_written,
                 (unsigned long long)job->status->blocks_present, zeros, job->named,
                 job->lock_waited ? "after the protocol's 2 s wait" : "at once");
    pthread_mutex_lock(&b->lock);
    for (struct bk_job **p = &b->jobs; *p; p = &(*p)->next_job) {
        if (*p == job) {
            *p = job->next_job;
            break;
        }
    }
    job->status->state = rc < 0 ? BK_BACKUP_ERROR : BK_BACKUP_COMPLETE;
    if (rc < 0)
        str_copy(job->status->error, sizeof(job->status->error), err.message);
    else
        job->status->progress = 100;
    entry =
        (struct bk_status_entry *)((char *)job->status - offsetof(struct bk_status_entry, status));
    entry->running = false;
    bk_job_keep_known(job, entry, rc);
    pthread_cond_broadcast(&b->work);
    pthread_mutex_unlock(&b->lock);
    bk_job_free(job);
    return NULL;
}
