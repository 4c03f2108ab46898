/*
 * rehash.c - the rehash job: hash a backing file that bimfs did not just
 * write (adopted at start without a matching cfg, or changed behind bimfs's
 * back while ready) and decide whether it is still the image it was.
 *
 *   expected SHA-512 set and different   -> failed "checksum mismatch:
 *                                           expected <x>, got <y>"
 *   none expected, checksum known before
 *   (the monitor's) and different        -> failed, the same words
 *   otherwise                            -> ready; cfg updated (size, mtime,
 *                                           the new hash as currentChecksum)
 *
 * A re-hash the monitor queued (the file changed while ready) fails with
 * the same words (SPEC §3's, as they are); the log says the file changed on
 * disk. Adoption passes no old
 * checksum: a cfg whose currentChecksum is stale or empty is corrected.
 *
 * A checksum mismatch removes the data (SPEC §3) and records the failure in
 * the cfg, as a failed transfer does. A file that cannot be read (missing,
 * I/O error) is failed but nothing is removed and the cfg stays as it was: the
 * next start looks again. A SHA-256 expectation cannot be checked here (the
 * store hashes SHA-512 only); it was checked when the image was written.
 *
 * Progress: while the file is hashed, a ticker thread publishes the bytes
 * hashed so far (sync_job_progress) every SYNC_PUBLISH_MS; it is the only
 * caller of sync_job_progress for the job until it is joined.
 *
 * Threads: one worker thread per job, plus its ticker while hashing;
 * sync->lock only to publish.
 */
#include "sync_internal.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* The rehash's state: the checksum the image had before ("" if none known). */
struct sync_rehash {
    char old_checksum[STORE_CHECKSUM_HEX + 1];
};

struct sync_rehash_result {
    const struct sync_job *job;
    const struct store_result *result;
};

static int sync_rehash_cfg_edit(struct store_cfg *cfg, bool loaded, const void *arg,
                                struct bim_error *err)
{
    const struct sync_rehash_result *r = arg;
    const struct store_result *result = r->result;

    (void)err;
    if (!loaded)
        store_checksum_format(&r->job->expected, cfg->expected_checksum);
    if (!cfg->name[0])
        store_image_path(r->job->sync->store, r->job->name, r->job->uuid, "backing", cfg->name,
                         sizeof(cfg->name));
    cfg->size = result->size;
    cfg->virtual_size = result->virtual_size;
    cfg->real_size = result->real_size;
    str_copy(cfg->current_checksum, sizeof(cfg->current_checksum), result->checksum);
    str_copy(cfg->modification_time, sizeof(cfg->modification_time), result->modification_time);
    str_copy(cfg->state, sizeof(cfg->state), "ready");
    str_copy(cfg->format, sizeof(cfg->format), store_format_name(result->format));
    cfg->error[0] = '\0';
    str_copy(cfg->verified, sizeof(cfg->verified), result->verified);
    bim_time_rfc3339(clock_realtime_s(), cfg->ready_time);
    return 0;
}

static void sync_rehash_save_cfg(struct sync_job *job, const struct store_result *result)
{
    struct sync_rehash_result r = {job, result};
    struct bim_error err = {0};
    int rc;

    rc = sync_cfg_update(job->sync, job->name, job->uuid, true, sync_rehash_cfg_edit, &r, &err);
    if (rc < 0)
        log_warn("image=%s uuid=%s cannot update backing.cfg: %s (it will be re-hashed at "
                 "the next start)",
                 job->name, job->uuid, err.message[0] ? err.message : strerror(-rc));
}

/* The verdict on a hash result: "" when the image is good, else the cause.
 * The hash is compared with the expected SHA-512 when one is set, else with
 * the checksum the file had before (the monitor's re-hash; adoption knows
 * none, SPEC §2); with neither it becomes the image's checksum. */
static void sync_rehash_judge(const struct sync_job *job, const struct store_result *result,
                              char *cause, size_t len)
{
    const struct sync_rehash *rh = job->state;
    char want[STORE_EXPECTED_MAX + 1];

    cause[0] = '\0';
    if (job->expected.algo == STORE_DIGEST_SHA512)
        store_checksum_format(&job->expected, want);
    else
        str_copy(want, sizeof(want), rh->old_checksum);
    if (want[0] && strcmp(want, result->checksum) != 0)
        snprintf(cause, len, "checksum mismatch: expected %s, got %s", want, result->checksum);
}

struct sync_rehash_ticker {
    struct sync_job *job;
    _Atomic uint64_t *hashed;
    pthread_mutex_t lock; /* guards done */
    pthread_cond_t wake;
    bool done;
};

static void *sync_rehash_tick(void *arg)
{
    struct sync_rehash_ticker *t = arg;
    struct timespec until;

    pthread_mutex_lock(&t->lock);
    while (!t->done) {
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_nsec += (long)SYNC_PUBLISH_MS * 1000000L;
        until.tv_sec += until.tv_nsec / 1000000000L;
        until.tv_nsec %= 1000000000L;
        pthread_cond_timedwait(&t->wake, &t->lock, &until);
        if (t->done)
            break;
        pthread_mutex_unlock(&t->lock);
        sync_job_progress(t->job, atomic_load(t->hashed));
        pthread_mutex_lock(&t->lock);
    }
    pthread_mutex_unlock(&t->lock);
    return NULL;
}

/* store_image_hash with the progress published as it goes. */
static int sync_rehash_hash(struct sync_job *job, struct store_result *result,
                            struct bim_error *err)
{
    struct sync_rehash_ticker t = {.job = job, .done = false};
    _Atomic uint64_t hashed = 0;
    pthread_t thread;
    bool ticking;
    int rc;

    t.hashed = &hashed;
    pthread_mutex_init(&t.lock, NULL);
    pthread_cond_init(&t.wake, NULL);
    ticking = pthread_create(&thread, NULL, sync_rehash_tick, &t) == 0;
    rc = store_image_hash(job->sync->store, job->name, job->uuid, &job->cancel, &hashed, result,
                          err);
    if (ticking) {
        pthread_mutex_lock(&t.lock);
        t.done = true;
        pthread_cond_signal(&t.wake);
        pthread_mutex_unlock(&t.lock);
        pthread_join(thread, NULL);
    }
    pthread_cond_destroy(&t.wake);
    pthread_mutex_destroy(&t.lock);
    return rc;
}

static void sync_rehash_run(struct sync_job *job)
{
    struct sync *sync = job->sync;
    struct bim_error err = {0};
    char cause[BIM_ERROR_MAX];
    enum bim_cause why = BIM_CAUSE_CHECKSUM;
    struct store_result result;
    bool mismatch = false;
    int rc;

    log_info("image=%s uuid=%s re-hashing backing", job->name, job->uuid);
    memset(&result, 0, sizeof(result));
    rc = sync_rehash_hash(job, &result, &err);
    if (rc == -ECANCELED || sync_job_cancelled(job))
        return; /* deleted, or shutting down: the record goes away */
    if (rc == -ENOENT) {
        why = BIM_CAUSE_CHANGED;
        str_copy(cause, sizeof(cause), "backing file is missing");
    } else if (rc < 0) {
        why = err.message[0] ? err.cause : BIM_CAUSE_IO;
        str_copy(cause, sizeof(cause), err.message[0] ? err.message : strerror(-rc));
    } else
        sync_rehash_judge(job, &result, cause, sizeof(cause));
    mismatch = rc == 0 && cause[0];

    if (cause[0]) {
        log_warn("image=%s uuid=%s failed: %s", job->name, job->uuid, cause);
        if (mismatch) {
            sync_cfg_save_failed(sync, job->name, job->uuid, cause);
            rc = store_image_remove_data(sync->store, job->name, job->uuid);
            if (rc < 0)
                log_error("image=%s uuid=%s cannot remove the data that failed: %s", job->name,
                          job->uuid, strerror(-rc));
        }
        pthread_mutex_lock(&sync->lock);
        sync_record_set_failed(job->record, why, cause);
        sync_record_changed(sync, job->record);
        pthread_mutex_unlock(&sync->lock);
        return;
    }
    sync_rehash_save_cfg(job, &result);
    log_info("image=%s uuid=%s ready after re-hash: %s, %" PRIu64 " bytes", job->name, job->uuid,
             store_format_name(result.format), result.size);
    pthread_mutex_lock(&sync->lock);
    sync_record_set_ready(job->record, &result);
    sync_record_changed(sync, job->record);
    pthread_mutex_unlock(&sync->lock);
}

int sync_rehash_queue(struct sync *sync, struct sync_record *rec, const char *old_checksum)
{
    struct sync_rehash *rh = calloc(1, sizeof(*rh));
    struct sync_job *job = rh ? sync_job_new(sync, &sync_rehash_ops, rec, rh) : NULL;

    if (!job) {
        free(rh);
        return -ENOMEM;
    }
    if (store_checksum_parse(rec->info.expected_checksum, &job->expected, NULL) < 0)
        job->expected.algo = STORE_DIGEST_NONE;
    str_copy(rh->old_checksum, sizeof(rh->old_checksum), old_checksum);
    job->bytes_total = rec->info.size;
    rec->info.state = SYNC_STATE_UNKNOWN;
    rec->info.verified[0] = '\0';
    rec->info.progress = 0;
    rec->info.bytes_done = 0;
    rec->info.error[0] = '\0';
    sync_record_changed(sync, rec);
    sync_job_enqueue(sync, job);
    return 0;
}

const struct sync_source_ops sync_rehash_ops = {
    .kind = "rehash",
    .run = sync_rehash_run,
    .free_state = free,
};
