/*
 * restore.c - the restore job (SPEC §10, docs/backup.md "Restore"): an image
 * made from a backing-image backup in a Longhorn backupstore. This file holds
 * the job's frame: the backup URL, the target (backup/target.h), the backup's
 * cfg (backup.c), the expectation, the writer and the outcome; the blocks
 * move in fetch.c.
 *
 *   <target>?backingImage=<name>                  the backup URL (create's source.url)
 *   backupstore/backing-images/backing-images/<name>/backing-image.cfg
 *   backupstore/backing-images/blocks/<c[0:2]>/<c[2:4]>/<c>.blk
 *
 * The image's SHA-512 must be the backup's Checksum: it is the expectation
 * unless the create gave one; a SHA-512 given that differs from the backup's
 * fails at once (SPEC §3's "checksum mismatch: expected <x>, got <y>"); a
 * SHA-256 given is checked beside the backup's SHA-512. The
 * writer hashes the image (SHA-512 and the piece digests) as blocks land, and
 * its commit compares.
 *
 * The backupstore's lock (backup/lock.h) is taken as Longhorn's restore
 * takes it (type 1: backups go on, a deletion waits) before the cfg is read,
 * refreshed while blocks move (fetch.c), and released at the end.
 *
 * Resume: the cfg keeps the URL ("bimfsRestore", cfg.c); a restore cut by a
 * restart is queued again with the backing.tmp it left, whose blocks are
 * checked against their names and kept when they match (fetch.c). A delete
 * removes the data; a shutdown keeps backing.tmp.
 *
 * Threads: the worker running the job (and fetch.c's fetchers, which share
 * only the transfer); prepare and resume in create and adoption. sync->lock
 * is taken only to publish and to read sync->stopping.
 */
#include "restore.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define SYNC_RESTORE_PARAM "backingImage="

/* ---- the backup URL ---- */

int sync_restore_url_parse(const char *url, struct sync_restore_job *out, struct bim_error *err)
{
    const char *q, *p, *name = NULL;
    size_t n = 0;

    memset(out, 0, sizeof(*out));
    if (!url || !url[0])
        return bim_error_set(err, -EINVAL, "a restore needs the backup's URL");
    if (strlen(url) > SYNC_RESTORE_URL_MAX)
        return bim_error_set(err, -EINVAL, "the backup URL is longer than %d bytes",
                             SYNC_RESTORE_URL_MAX);
    for (p = url; *p; p++)
        if ((unsigned char)*p <= ' ' || (unsigned char)*p >= 0x7f)
            return bim_error_set(err, -EINVAL,
                                 "the backup URL holds a byte a URL cannot (0x%02x at %zu)",
                                 (unsigned char)*p, (size_t)(p - url));
    q = strchr(url, '?');
    for (p = q; p && !name; p = strchr(p + 1, '&'))
        if (strncmp(p + 1, SYNC_RESTORE_PARAM, strlen(SYNC_RESTORE_PARAM)) == 0) {
            name = p + 1 + strlen(SYNC_RESTORE_PARAM);
            n = strcspn(name, "&#");
        }
    if (!name)
        return bim_error_set(err, -EINVAL,
                             "a backup URL is <target>?backingImage=<name> (no backingImage in "
                             "\"%.200s\")",
                             url);
    if (n > SYNC_RESTORE_NAME_MAX ||
        (memcpy(out->backup, name, n), out->backup[n] = '\0', !store_name_valid(out->backup)))
        return bim_error_set(err, -EINVAL, "invalid backing image name \"%.*s\" in the backup URL",
                             (int)(n > 64 ? 64 : n), name);
    str_copy(out->url, sizeof(out->url), url);
    return 0;
}

/* ---- the backup ---- */

static int sync_restore_backup_load(struct sync_restore_transfer *t,
                                    const struct sync_restore_job *rj, struct bim_error *err)
{
    char path[BK_PATH_MAX], cause[BIM_ERROR_MAX];
    void *text = NULL;
    size_t len = 0;
    int rc;

    bk_cfg_path(rj->backup, path);
    rc = t->ops->read(t->target, path, BK_CFG_MAX, &text, &len, err);
    str_copy(cause, sizeof(cause), err->message[0] ? err->message : strerror(-rc));
    if (rc == -ENOENT)
        rc = bim_error_set(err, rc, "no backup %s on the target (%s)", rj->backup, cause);
    else if (rc < 0)
        rc = bim_error_set(err, rc, "cannot read the backup's cfg: %s", cause);
    else
        rc = sync_restore_backup_parse(text, len, &t->backup, err);
    free(text);
    return rc;
}

/* The expectation: the create's, else the backup's checksum; shown at once. */
static int sync_restore_expect(struct sync_restore_transfer *t, struct store_checksum *expected,
                               struct bim_error *err)
{
    struct sync_job *job = t->job;
    const char *theirs = t->backup.checksum;

    *expected = job->expected;
    if (expected->algo == STORE_DIGEST_SHA512 && theirs[0] && strcmp(expected->hex, theirs) != 0)
        return bim_error_cause(err, BIM_CAUSE_CHECKSUM, -EINVAL,
                               "checksum mismatch: expected %s, got %s", expected->hex, theirs);
    if (expected->algo == STORE_DIGEST_NONE && theirs[0]) {
        expected->algo = STORE_DIGEST_SHA512;
        str_copy(expected->hex, sizeof(expected->hex), theirs);
    }
    pthread_mutex_lock(&job->sync->lock);
    store_checksum_format(expected, job->record->info.expected_checksum);
    job->record->info.bytes_total = t->backup.size;
    sync_record_changed(job->sync, job->record);
    pthread_mutex_unlock(&job->sync->lock);
    return 0;
}

/* ---- the job ---- */

/* The lock's wait: 0, or 1 when the job was cancelled meanwhile. */
static int sync_restore_lock_wait(void *arg, unsigned ms)
{
    struct sync_restore_transfer *t = arg;

    for (unsigned slept = 0; slept < ms; slept += SYNC_POLL_MS) {
        struct timespec ts = {0, SYNC_POLL_MS * 1000000L};

        if (sync_job_cancelled(t->job))
            return 1;
        nanosleep(&ts, NULL);
    }
    return sync_job_cancelled(t->job);
}

static void sync_restore_transfer_free(struct sync_restore_transfer *t)
{
    if (t->store_locked)
        bk_lock_release(&t->store_lock);
    if (t->target)
        t->ops->close(t->target);
    sync_restore_backup_free(&t->backup);
    pthread_mutex_destroy(&t->lock);
    free(t);
}

/* Target, backup, checks, expectation, writer: ready to fetch. */
static int sync_restore_begin(struct sync_restore_transfer *t, struct bim_error *err)
{
    struct sync_job *job = t->job;
    const struct sync_restore_job *rj = job->state;
    struct store_checksum expected;
    uint64_t data = 0;
    int rc;

    rc = bk_target_open(rj->url, &t->target, &t->ops, err);
    if (rc == 0) {
        rc = bk_lock_acquire(&t->store_lock, t->ops, t->target, BK_LOCK_RESTORE,
                             sync_restore_lock_wait, t, err);
        t->store_locked = rc == 0;
    }
    if (rc == 0)
        rc = sync_restore_backup_load(t, rj, err);
    if (rc == 0)
        rc = sync_size_check(job->sync, t->backup.size, err);
    for (size_t i = 0; i < t->backup.count; i++)
        data += t->backup.blocks[i].len;
    if (rc == 0 && !t->resume) /* holes take no space */
        rc = sync_space_check(job->sync, data, err);
    if (rc == 0)
        rc = sync_restore_expect(t, &expected, err);
    if (rc < 0)
        return rc;
    log_info("image=%s uuid=%s %s: %" PRIu64 " bytes, %zu blocks (%" PRIu64 " bytes), %s%s",
             job->name, job->uuid, job->source, t->backup.size, t->backup.count, data,
             t->backup.method_name[0] ? t->backup.method_name : "gzip (legacy)",
             t->resume ? ", resuming" : "");
    rc = store_writer_open(job->sync->store, job->name, job->uuid,
                           expected.algo != STORE_DIGEST_NONE ? &expected : NULL,
                           t->resume ? STORE_WRITER_KEEP : STORE_WRITER_NEW, &t->w, err);
    if (rc == 0 && expected.algo == STORE_DIGEST_SHA256 && t->backup.checksum[0])
        store_writer_expect_sha512(t->w, t->backup.checksum); /* SPEC §10: the backup's too */
    return rc;
}

static void sync_restore_run(struct sync_job *job)
{
    struct sync_restore_transfer *t = calloc(1, sizeof(*t));
    struct bim_error err = {0};
    uint64_t start = clock_monotonic_ms();
    int rc;

    if (!t) {
        sync_transfer_fail(job, bim_error_set(&err, -ENOMEM, "out of memory"), &err);
        return;
    }
    t->job = job;
    t->resume = ((const struct sync_restore_job *)job->state)->resume;
    atomic_init(&t->bytes, 0);
    atomic_init(&t->kept, 0);
    pthread_mutex_init(&t->lock, NULL);
    rc = sync_restore_begin(t, &err);
    if (rc == 0) {
        job->bytes_total = t->backup.size;
        rc = sync_restore_fetch(t, &err);
    }
    if (rc == 0)
        log_info("image=%s uuid=%s all %zu blocks in %" PRIu64 " ms (%" PRIu64
                 " bytes kept from backing.tmp); committing",
                 job->name, job->uuid, t->backup.count, clock_monotonic_ms() - start,
                 (uint64_t)atomic_load(&t->kept));
    if (rc == -ECANCELED && t->w && sync_stopping(job->sync)) {
        /* shutdown: keep backing.tmp; the next start resumes it */
        store_writer_close(t->w);
        t->w = NULL;
    }
    if (t->w)
        sync_transfer_finish(job, t->w, rc, t->backup.size, &err);
    else
        sync_transfer_fail(job, rc, &err);
    sync_restore_transfer_free(t);
}

/* ---- the source's operations (source.h) ---- */

/* The URL must name a backup on a target of a known scheme; vfs and s3
 * targets are opened (no request is made) so that a bad one is refused at
 * once; nfs is mounted when the job runs. */
static int sync_restore_prepare(struct sync *sync, const struct sync_create_request *req,
                                struct sync_source_plan *plan, struct bim_error *err)
{
    struct sync_restore_job *rj = calloc(1, sizeof(*rj));
    const struct bk_target_ops *ops = NULL;
    struct bk_target *target = NULL;
    int rc;

    (void)sync;
    if (!rj)
        return bim_error_set(err, -ENOMEM, "out of memory");
    /* the target's shape first, nfs too (mounted later): a URL with
     * credentials is refused before any message could show it */
    rc = req->url ? bk_target_check_url(req->url, err) : 0;
    if (rc == 0)
        rc = sync_restore_url_parse(req->url, rj, err);
    if (rc == 0 && strncmp(rj->url, "nfs://", 6) != 0) {
        rc = bk_target_open(rj->url, &target, &ops, err);
        if (rc < 0)
            rc = -EINVAL; /* a target that cannot be opened is a bad argument */
        else
            ops->close(target);
    }
    if (rc == 0) {
        snprintf(plan->source, sizeof(plan->source), "restore:%s", rj->url);
        rc = sync_restore_saved_put(NULL, rj, &plan->extra);
        if (rc < 0)
            bim_error_set(err, rc, "out of memory");
    }
    if (rc < 0) {
        free(rj);
        return rc;
    }
    plan->state = rj;
    return 0;
}

/* A restore cut by a restart is one whose cfg keeps the restore's object; it
 * is queued again, and the blocks its backing.tmp holds are kept. */
static int sync_restore_resume(struct sync *sync, struct sync_record *rec,
                               const struct store_entry *e, struct sync_job **job, const char **why)
{
    struct sync_restore_job *rj = calloc(1, sizeof(*rj));
    int rc;

    *job = NULL;
    *why = "interrupted by a daemon restart; the backup URL was not kept";
    if (!rj)
        return -ENOMEM;
    rc = sync_restore_saved_get(e->cfg.extra, rj);
    if (rc <= 0) {
        free(rj);
        return rc == 0 ? 0 : -EINVAL;
    }
    rj->resume = e->has_tmp;
    return sync_job_resume(sync, &sync_restore_ops, rec, e, rj, job);
}

const struct sync_source_ops sync_restore_ops = {
    .kind = "restore",
    .transfer = true,
    .prepare = sync_restore_prepare,
    .run = sync_restore_run,
    .resume = sync_restore_resume,
    .free_state = free,
};
