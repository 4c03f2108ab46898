/*
 * fetch.c - the blocks of a restore moved by a small pool of fetcher threads
 * (at most SYNC_RESTORE_FETCHERS): each takes the next block in offset order,
 * marks the hole before it as written (store_writer_skip), reads the block
 * from the target, decodes and checks it (block.c) and writes it at its
 * offset (store_writer_pwrite: zero runs stay holes). The writer's hasher and
 * piece thread follow the contiguous written prefix, so the SHA-512 and the
 * piece digests are computed while the blocks arrive; a fetcher does not start
 * a block more than SYNC_HASH_LAG_MAX past what the hasher reached
 * (sync_writeback_pace), which also bounds the ranges in flight.
 *
 * A restore resumed after a restart first reads the block where backing.tmp
 * would hold it: when those bytes are the block (its name matches), they are
 * kept; otherwise the range is emptied and the block fetched.
 *
 * A read that fails is tried SYNC_RESTORE_ATTEMPTS times in all (pauses 1 s,
 * 3 s; the s3 target retries each request too); a missing block and a block
 * that does not decode or hash to its name fail the restore at once, naming
 * the block. The first failure stops every fetcher.
 *
 * Threads: the worker running the job (publishes progress, refreshes the
 * backupstore's lock, starts the page cache's writeback, joins) and the
 * fetchers. t->lock guards t->next, t->stop,
 * t->rc and t->err; the byte counters are atomics; the writer has its own
 * lock; sync->lock only in sync_job_progress.
 */
#include "restore.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static const unsigned sync_restore_pause_ms[SYNC_RESTORE_ATTEMPTS - 1] = {1000, 3000};

/* One fetcher's buffers. */
struct sync_restore_fetcher {
    struct sync_restore_transfer *t;
    struct sync_restore_decoder *decoder;
    unsigned char *out; /* SYNC_RESTORE_BLOCK_STORED_MAX bytes */
    pthread_t thread;
    bool started;
};

static bool sync_restore_stopped(struct sync_restore_transfer *t)
{
    bool stop;

    pthread_mutex_lock(&t->lock);
    stop = t->stop;
    pthread_mutex_unlock(&t->lock);
    return stop || sync_job_cancelled(t->job);
}

/* The first failure wins; every fetcher stops. */
static void sync_restore_fail(struct sync_restore_transfer *t, int rc, const struct bim_error *err)
{
    pthread_mutex_lock(&t->lock);
    if (!t->stop) {
        t->stop = true;
        t->rc = rc;
        t->err = *err;
    }
    pthread_mutex_unlock(&t->lock);
}

/* The next block to fetch, or -1 when none is left (or stop). */
static ssize_t sync_restore_next(struct sync_restore_transfer *t)
{
    ssize_t i = -1;

    pthread_mutex_lock(&t->lock);
    if (!t->stop && t->next < t->backup.count)
        i = (ssize_t)t->next++;
    pthread_mutex_unlock(&t->lock);
    return i;
}

static int sync_restore_write_error(struct sync_restore_transfer *t, int rc, struct bim_error *err)
{
    if (rc == -ENOSPC || rc == -EDQUOT)
        return bim_error_cause(err, BIM_CAUSE_IO, rc, "no space left on the disk");
    return bim_error_cause(err, BIM_CAUSE_IO, rc, "cannot write backing.tmp: %s",
                           store_writer_strerror(t->w, rc));
}

/* Mark [off, off+len) as a hole (emptied first when backing.tmp was kept). */
static int sync_restore_hole(struct sync_restore_transfer *t, uint64_t off, uint64_t len,
                             struct bim_error *err)
{
    int rc = 0;

    if (len == 0)
        return 0;
    if (t->resume)
        rc = store_writer_discard(t->w, off, len);
    if (rc == 0)
        rc = store_writer_skip(t->w, off, len);
    return rc < 0 ? sync_restore_write_error(t, rc, err) : 0;
}

/* Does the kept backing.tmp hold block b already? */
static int sync_restore_kept(struct sync_restore_fetcher *f, const struct sync_restore_block *b,
                             bool *match)
{
    size_t got = 0;
    int rc;

    rc = fd_pread_full(store_writer_fd(f->t->w), f->out, (size_t)b->len, b->off, &got);
    if (rc < 0)
        return rc;
    memset(f->out + got, 0, (size_t)b->len - got); /* past the end: zeros */
    return sync_restore_block_matches(f->out, (size_t)b->len, b->checksum, match);
}

/* Pause ms, watching stop; false when stopped. */
static bool sync_restore_pause(struct sync_restore_transfer *t, unsigned ms)
{
    for (unsigned slept = 0; slept < ms; slept += SYNC_POLL_MS) {
        struct timespec ts = {0, SYNC_POLL_MS * 1000000L};

        if (sync_restore_stopped(t))
            return false;
        nanosleep(&ts, NULL);
    }
    return !sync_restore_stopped(t);
}

/* Read the stored block from the target into *buf (malloc'd). */
static int sync_restore_read(struct sync_restore_transfer *t, const struct sync_restore_block *b,
                             void **buf, size_t *len, struct bim_error *err)
{
    char path[BK_PATH_MAX];
    int rc = 0;

    bk_block_path(b->checksum, path);
    for (unsigned attempt = 0; attempt < SYNC_RESTORE_ATTEMPTS; attempt++) {
        bim_error_clear(err);
        rc = t->ops->read(t->target, path, SYNC_RESTORE_BLOCK_STORED_MAX, buf, len, err);
        if (rc == 0 || rc == -ENOENT || rc == -EFBIG || rc == -EACCES || rc == -EINVAL)
            break;
        if (attempt + 1 < SYNC_RESTORE_ATTEMPTS) {
            log_warn("image=%s uuid=%s block %s at offset %" PRIu64 ": %s; trying again",
                     t->job->name, t->job->uuid, b->checksum, b->off,
                     err->message[0] ? err->message : strerror(-rc));
            if (!sync_restore_pause(t, sync_restore_pause_ms[attempt]))
                return -ECANCELED;
        }
    }
    if (rc == -ENOENT)
        return bim_error_set(err, rc,
                             "block %s (offset %" PRIu64 ") is missing from the backup: %s",
                             b->checksum, b->off, path);
    if (rc < 0) {
        char cause[BIM_ERROR_MAX];

        str_copy(cause, sizeof(cause), err->message[0] ? err->message : strerror(-rc));
        return bim_error_set(err, rc, "block %s (offset %" PRIu64 "): %s", b->checksum, b->off,
                             cause);
    }
    return 0;
}

/* Bytes of the block past its place in the image must be zeros (a last
 * block stored whole); they are not written. */
static int sync_restore_trim(const unsigned char *out, size_t *n, uint64_t len)
{
    for (size_t i = (size_t)len; i < *n; i++)
        if (out[i])
            return -EBADMSG;
    if (*n > len)
        *n = (size_t)len;
    return 0;
}

/* Fetch, check and write block b. */
static int sync_restore_block(struct sync_restore_fetcher *f, const struct sync_restore_block *b,
                              struct bim_error *err)
{
    struct sync_restore_transfer *t = f->t;
    struct bim_error cause = {0};
    void *stored = NULL;
    size_t stored_len = 0, n = 0;
    bool match = false;
    int rc;

    if (t->resume) {
        rc = sync_restore_kept(f, b, &match);
        if (rc == 0 && match) {
            atomic_fetch_add(&t->kept, b->len);
            rc = store_writer_skip(t->w, b->off, b->len);
            return rc < 0 ? sync_restore_write_error(t, rc, err) : 0;
        }
        rc = store_writer_discard(t->w, b->off, b->len);
        if (rc < 0)
            return sync_restore_write_error(t, rc, err);
    }
    rc = sync_restore_read(t, b, &stored, &stored_len, err);
    if (rc < 0)
        goto out;
    rc = sync_restore_block_decode(f->decoder, t->backup.method, stored, stored_len, f->out,
                                   SYNC_RESTORE_BLOCK_STORED_MAX, &n, b->checksum, &cause);
    if (rc == 0 && sync_restore_trim(f->out, &n, b->len) < 0)
        rc = bim_error_set(&cause, -EBADMSG, "%zu bytes, more than the image has at its offset", n);
    if (rc < 0) {
        bim_error_set(err, rc, "block %s (offset %" PRIu64 "): %s", b->checksum, b->off,
                      cause.message);
        goto out;
    }
    rc = store_writer_pwrite(t->w, f->out, n, b->off);
    if (rc == 0)
        rc = store_writer_skip(t->w, b->off + n, b->len - n);
    if (rc < 0)
        sync_restore_write_error(t, rc, err);
out:
    free(stored);
    return rc;
}

static void *sync_restore_fetcher_main(void *arg)
{
    struct sync_restore_fetcher *f = arg;
    struct sync_restore_transfer *t = f->t;
    const struct sync_restore_block *blocks = t->backup.blocks;
    struct bim_error err = {0};
    ssize_t i;
    int rc;

    while ((i = sync_restore_next(t)) >= 0) {
        const struct sync_restore_block *b = &blocks[i];
        uint64_t gap = i > 0 ? blocks[i - 1].off + blocks[i - 1].len : 0;

        /* the hole first: the written prefix then waits for blocks only */
        rc = sync_restore_hole(t, gap, b->off - gap, &err);
        if (rc == 0) {
            sync_writeback_pace(t->w, b->off, &t->job->cancel);
            rc = sync_restore_stopped(t) ? -ECANCELED : sync_restore_block(f, b, &err);
        }
        if (rc == -ECANCELED)
            break;
        if (rc < 0) {
            sync_restore_fail(t, rc, &err);
            break;
        }
        atomic_fetch_add(&t->bytes, b->off + b->len - gap);
    }
    return NULL;
}

static void sync_restore_fetchers_free(struct sync_restore_fetcher *f, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (f[i].started)
            pthread_join(f[i].thread, NULL);
        sync_restore_decoder_close(f[i].decoder);
        free(f[i].out);
    }
    free(f);
}

/* While the fetchers run: progress, the page cache, cancel. */
static void sync_restore_watch(struct sync_restore_transfer *t, struct sync_restore_fetcher *f,
                               size_t n)
{
    uint64_t refresh = clock_monotonic_ms() + BK_LOCK_REFRESH_MS;
    struct sync_writeback wb;
    bool done = false;

    sync_writeback_reset(&wb);
    while (!done) {
        struct timespec ts = {0, 100 * 1000000L};
        struct bim_error err = {0};

        nanosleep(&ts, NULL);
        if (t->store_locked && clock_monotonic_ms() >= refresh) {
            /* a lock not refreshed expires: a deletion could then take blocks */
            if (bk_lock_refresh(&t->store_lock, &err) < 0)
                sync_restore_fail(t, -EIO, &err);
            refresh = clock_monotonic_ms() + BK_LOCK_REFRESH_MS;
        }
        if (sync_job_cancelled(t->job)) {
            pthread_mutex_lock(&t->lock);
            t->stop = true;
            pthread_mutex_unlock(&t->lock);
        }
        sync_job_progress(t->job, atomic_load(&t->bytes));
        sync_writeback_note(&wb, t->w, store_writer_written(t->w));
        done = true;
        for (size_t i = 0; i < n; i++)
            if (f[i].started && pthread_tryjoin_np(f[i].thread, NULL) == 0)
                f[i].started = false;
            else if (f[i].started)
                done = false;
    }
}

int sync_restore_fetch(struct sync_restore_transfer *t, struct bim_error *err)
{
    size_t n = t->backup.count < SYNC_RESTORE_FETCHERS ? t->backup.count : SYNC_RESTORE_FETCHERS;
    struct sync_restore_fetcher *f = calloc(n ? n : 1, sizeof(*f));
    uint64_t end = t->backup.count ? t->backup.blocks[t->backup.count - 1].off +
                                         t->backup.blocks[t->backup.count - 1].len
                                   : 0;
    int rc = 0;

    if (!f)
        return bim_error_set(err, -ENOMEM, "out of memory");
    for (size_t i = 0; i < n && rc == 0; i++) {
        f[i].t = t;
        f[i].out = malloc(SYNC_RESTORE_BLOCK_STORED_MAX);
        rc = f[i].out ? sync_restore_decoder_open(&f[i].decoder) : -ENOMEM;
        if (rc == 0)
            rc = -pthread_create(&f[i].thread, NULL, sync_restore_fetcher_main, &f[i]);
        f[i].started = rc == 0;
    }
    if (rc < 0) {
        bim_error_set(err, rc, "cannot start the fetchers: %s", strerror(-rc));
        pthread_mutex_lock(&t->lock);
        t->stop = true;
        pthread_mutex_unlock(&t->lock);
    }
    sync_restore_watch(t, f, n);
    sync_restore_fetchers_free(f, n);
    if (rc < 0)
        return rc;
    if (sync_job_cancelled(t->job))
        return -ECANCELED;
    if (t->rc < 0) {
        *err = t->err;
        return t->rc;
    }
    /* the hole after the last block */
    rc = sync_restore_hole(t, end, t->backup.size - end, err);
    if (rc == 0)
        sync_job_progress(t->job, t->backup.size);
    return rc;
}
