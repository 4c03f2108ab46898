/*
 * rehash.c - the rehash job: hash a backing file that bimfs did not just
 * write (adopted at start without a matching cfg, or changed behind bimfs's
 * back while ready) and decide whether it is still the image it was.
 *
 *   checksum known before and different  -> failed "backing changed on disk"
 *   expected SHA-512 given and different -> failed "checksum mismatch"
 *   otherwise                            -> ready; cfg updated (size, mtime...)
 *
 * Failures keep the file (it is the user's data) and leave the cfg as it was:
 * it no longer matches the file, so the next start re-hashes and reaches the
 * same verdict, or ready again if the file was put back. A SHA-256
 * expectation cannot be checked here (the store hashes SHA-512 only); it was
 * checked when the image was written.
 *
 * Threads: one worker thread per job; sync->lock only to publish.
 */
#include "sync_internal.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void sync_rehash_save_cfg(struct sync_job *job, const struct store_result *result)
{
    struct sync *sync = job->sync;
    struct store_cfg *cfg = calloc(1, sizeof(*cfg));
    struct bim_error err = {{0}};
    int rc;

    if (!cfg)
        return;
    if (store_image_load_cfg(sync->store, job->name, job->uuid, cfg, NULL) < 0) {
        memset(cfg, 0, sizeof(*cfg));
        str_copy(cfg->uuid, sizeof(cfg->uuid), job->uuid);
        store_checksum_format(&job->expected, cfg->expected_checksum);
    }
    if (!cfg->name[0])
        store_image_path(sync->store, job->name, job->uuid, "backing", cfg->name,
                         sizeof(cfg->name));
    cfg->size = result->size;
    cfg->virtual_size = result->virtual_size;
    cfg->real_size = result->real_size;
    str_copy(cfg->current_checksum, sizeof(cfg->current_checksum), result->checksum);
    str_copy(cfg->modification_time, sizeof(cfg->modification_time), result->modification_time);
    str_copy(cfg->state, sizeof(cfg->state), "ready");
    str_copy(cfg->format, sizeof(cfg->format), store_format_name(result->format));
    cfg->error[0] = '\0';
    rc = store_image_save_cfg(sync->store, job->name, job->uuid, cfg, &err);
    if (rc < 0)
        log_warn("image=%s uuid=%s cannot update backing.cfg: %s (it will be re-hashed at "
                 "the next start)",
                 job->name, job->uuid, err.message[0] ? err.message : strerror(-rc));
    store_cfg_clear(cfg);
    free(cfg);
}

/* The verdict on a hash result: "" when the image is good, else the cause. */
static void sync_rehash_judge(const struct sync_job *job, const struct store_result *result,
                              char *cause, size_t len)
{
    char expected[STORE_EXPECTED_MAX + 1];

    cause[0] = '\0';
    if (job->old_checksum[0] && strcmp(job->old_checksum, result->checksum) != 0) {
        snprintf(cause, len, "backing changed on disk: checksum was %s, is now %s",
                 job->old_checksum, result->checksum);
    } else if (job->expected.algo == STORE_DIGEST_SHA512 &&
               strcmp(job->expected.hex, result->checksum) != 0) {
        store_checksum_format(&job->expected, expected);
        snprintf(cause, len, "checksum mismatch: expected %s, got %s", expected, result->checksum);
    }
}

void sync_rehash_run(struct sync_job *job)
{
    struct sync *sync = job->sync;
    struct bim_error err = {{0}};
    char cause[BIM_ERROR_MAX];
    struct store_result result;
    _Atomic uint64_t hashed = 0;
    int rc;

    log_info("image=%s uuid=%s re-hashing backing", job->name, job->uuid);
    memset(&result, 0, sizeof(result));
    rc = store_image_hash(sync->store, job->name, job->uuid, &job->cancel, &hashed, &result, &err);
    if (rc == -ECANCELED || sync_job_cancelled(job))
        return; /* deleted, or shutting down: the record goes away */
    if (rc == -ENOENT)
        str_copy(cause, sizeof(cause), "backing file is missing");
    else if (rc < 0)
        str_copy(cause, sizeof(cause), err.message[0] ? err.message : strerror(-rc));
    else
        sync_rehash_judge(job, &result, cause, sizeof(cause));

    if (cause[0]) {
        log_warn("image=%s uuid=%s failed: %s", job->name, job->uuid, cause);
        pthread_mutex_lock(&sync->lock);
        sync_record_set_failed(job->record, cause);
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
    struct sync_job *job = sync_job_new(sync, SYNC_JOB_REHASH, rec);

    if (!job)
        return -ENOMEM;
    if (store_checksum_parse(rec->info.expected_checksum, &job->expected, NULL) < 0)
        job->expected.algo = STORE_DIGEST_NONE;
    str_copy(job->old_checksum, sizeof(job->old_checksum), old_checksum);
    job->bytes_total = rec->info.size;
    rec->info.state = SYNC_STATE_UNKNOWN;
    rec->info.progress = 0;
    rec->info.bytes_done = 0;
    rec->info.error[0] = '\0';
    sync_record_changed(sync, rec);
    sync_job_enqueue(sync, job);
    return 0;
}
