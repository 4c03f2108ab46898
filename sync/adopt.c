/*
 * adopt.c - the start-up scan: every image directory the store finds becomes
 * a record (SPEC §2).
 *
 *   backing not a regular single-link file
 *     (symlink, hard link, FIFO ...)       -> failed "<why>; not adopted", nothing
 *                                             on disk touched (store_backing_check)
 *   cfg state "failed"                     -> failed, with the cfg's errorMsg
 *   backing matches the cfg (size, mtime),
 *     state ready or "" (Longhorn), sum    -> ready at once, no hashing;
 *                                             verified as the cfg says, or
 *                                             "adopted"; a cfg without
 *                                             readyTime gets now (found)
 *   backing present otherwise              -> unknown + rehash job, judged
 *                                             on the expected checksum only:
 *                                             the cfg's currentChecksum may
 *                                             be stale (SPEC §2)
 *   no backing, a backing.tmp or state
 *     in-progress (cut by a restart):
 *       a source that can resume it        -> pending + its job (a download
 *         (source.h `resume`; a download     whose cfg keeps its URL resumes
 *         whose cfg keeps its URL)           the tmp or starts over)
 *       otherwise                          -> failed "interrupted by a daemon
 *                                             restart", tmp removed, cfg failed
 *   no backing otherwise                   -> failed "backing file is missing"
 *
 * Uploads and clones cannot resume (their source is gone with the client or
 * may have changed), so their leftover backing.tmp is removed; so is that of
 * a download from a URL with credentials (they are never written to disk).
 * Files are removed and cfgs rewritten after the scan, not from inside it.
 *
 * Threads: runs in sync_open() before any other sync thread exists; it still
 * takes sync->lock around registry changes for uniformity.
 */
#include "sync_internal.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SYNC_INTERRUPTED "interrupted by a daemon restart"

struct sync_adopt_fixup {
    char name[STORE_NAME_MAX + 1];
    char uuid[STORE_UUID_MAX + 1];
    bool remove_tmp;
    bool save_failed;
    const char *message; /* of save_failed */
    int64_t save_found;  /* > 0: keep this found-on-disk time as readyTime */
};

struct sync_adopt {
    struct sync *sync;
    int rc;
    struct sync_adopt_fixup *fixups;
    size_t fixup_count;
    size_t fixup_cap;
};

static struct sync_adopt_fixup *sync_adopt_fixup_add(struct sync_adopt *ctx,
                                                     const struct store_entry *e, bool remove_tmp,
                                                     bool save_failed, const char *message)
{
    struct sync_adopt_fixup *f;

    if (ctx->fixup_count == ctx->fixup_cap) {
        size_t cap = ctx->fixup_cap ? ctx->fixup_cap * 2 : 8;
        f = realloc(ctx->fixups, cap * sizeof(*f));
        if (!f) {
            ctx->rc = -ENOMEM;
            return NULL;
        }
        ctx->fixups = f;
        ctx->fixup_cap = cap;
    }
    f = &ctx->fixups[ctx->fixup_count++];
    str_copy(f->name, sizeof(f->name), e->name);
    str_copy(f->uuid, sizeof(f->uuid), e->uuid);
    f->remove_tmp = remove_tmp;
    f->save_failed = save_failed;
    f->message = message;
    f->save_found = 0;
    return f;
}

/* A transfer cut by a restart: the source whose cfg fields claim it may
 * continue it (a download resumes its backing.tmp). false: it cannot
 * resume; *message says why. */
static bool sync_adopt_resume(struct sync_adopt *ctx, struct sync_record *rec,
                              const struct store_entry *e, const char **message)
{
    const struct sync_source_ops *ops;

    *message = SYNC_INTERRUPTED;
    /* the types are 0, 1, ...: the table ends where it gives NULL */
    for (int t = 0; (ops = sync_source_get((enum sync_source_type)t)); t++) {
        struct sync_job *job = NULL;
        const char *why = NULL;
        int rc;

        if (!ops->resume)
            continue;
        rc = ops->resume(ctx->sync, rec, e, &job, &why);
        if (rc == 0)
            continue; /* not this source's */
        if (rc == -ENOMEM)
            ctx->rc = -ENOMEM;
        if (rc == 1) {
            sync_job_enqueue(ctx->sync, job);
            return true;
        }
        if (why)
            *message = why;
        return false;
    }
    return false;
}

static enum store_format sync_adopt_format(const char *text)
{
    if (strcmp(text, "raw") == 0)
        return STORE_FORMAT_RAW;
    if (strcmp(text, "qcow2") == 0)
        return STORE_FORMAT_QCOW2;
    return STORE_FORMAT_NONE;
}

/* How the cfg says the image was verified, and since when it counts for
 * the scrub: its readyTime, or now (found on disk: kept in the cfg after
 * the scan, so that a restart does not push the scrub back). */
static void sync_adopt_verified(struct sync_adopt *ctx, struct sync_record *rec,
                                const struct store_entry *e)
{
    const struct store_cfg *cfg = &e->cfg;
    struct sync_adopt_fixup *f;

    str_copy(rec->info.verified, sizeof(rec->info.verified),
             cfg->verified[0] ? cfg->verified : STORE_VERIFIED_ADOPTED);
    if (bim_time_rfc3339_parse(cfg->last_scrub, &rec->info.last_scrub) < 0)
        log_warn("image=%s uuid=%s its lastScrub \"%s\" is not an RFC 3339 time: ignored", e->name,
                 e->uuid, cfg->last_scrub);
    if (bim_time_rfc3339_parse(cfg->ready_time, &rec->ready_time) == 0 && rec->ready_time > 0)
        return;
    rec->ready_time = clock_realtime_s();
    f = sync_adopt_fixup_add(ctx, e, false, false, NULL);
    if (f)
        f->save_found = rec->ready_time;
}

/* A backing that matches its cfg: ready, with its format from the cfg or
 * detected from the content. */
static void sync_adopt_ready(struct sync_adopt *ctx, struct sync_record *rec,
                             const struct store_entry *e)
{
    struct sync *sync = ctx->sync;
    struct sync_image_info *info = &rec->info;
    struct store_format_info fmt = {STORE_FORMAT_NONE, 0};
    struct bim_error err = {0};
    char path[PATH_MAX];
    int rc;

    info->format = sync_adopt_format(e->cfg.format);
    info->virtual_size = e->cfg.virtual_size;
    if (info->format == STORE_FORMAT_NONE || info->virtual_size == 0) {
        rc = store_image_path(sync->store, e->name, e->uuid, "backing", path, sizeof(path));
        if (rc == 0)
            rc = store_format_detect(path, info->size, &fmt, &err);
        if (rc < 0) {
            sync_record_set_failed(rec, err.message[0] ? err.cause : BIM_CAUSE_IO,
                                   err.message[0] ? err.message : strerror(-rc));
            return;
        }
        info->format = fmt.format;
        info->virtual_size = fmt.virtual_size;
    }
    info->state = SYNC_STATE_READY;
    info->progress = 100;
    info->bytes_done = info->size;
    info->bytes_total = info->size;
    sync_adopt_verified(ctx, rec, e);
}

static void sync_adopt_entry(void *arg, const struct store_entry *e)
{
    struct sync_adopt *ctx = arg;
    struct sync *sync = ctx->sync;
    const struct store_cfg *cfg = &e->cfg;
    struct sync_record *rec;
    bool cfg_ready = cfg->state[0] == '\0' || strcmp(cfg->state, "ready") == 0;

    pthread_mutex_lock(&sync->lock);
    rec = sync_record_find(sync, e->name);
    if (rec) {
        log_warn("image=%s uuid=%s left alone: image %s already has uuid %s", e->name, e->uuid,
                 e->name, rec->info.uuid);
        goto out;
    }
    rec = sync_record_add(sync, e->name, e->uuid);
    if (!rec) {
        ctx->rc = -ENOMEM;
        goto out;
    }
    rec->hidden = false;
    str_copy(rec->info.expected_checksum, sizeof(rec->info.expected_checksum),
             cfg->expected_checksum);
    str_copy(rec->info.current_checksum, sizeof(rec->info.current_checksum), cfg->current_checksum);
    str_copy(rec->info.source, sizeof(rec->info.source), cfg->source);
    rec->info.size = cfg->size;
    rec->info.virtual_size = cfg->virtual_size;
    rec->info.real_size = cfg->real_size;
    rec->info.format = sync_adopt_format(cfg->format);
    if (e->has_backing) {
        rec->seen = e->backing;
        rec->info.mtime = e->backing.st_mtim;
        rec->info.size = (uint64_t)e->backing.st_size;
        rec->info.real_size = (uint64_t)e->backing.st_blocks * 512u;
    }

    if (e->backing_refused[0]) {
        char why[STORE_REFUSED_MAX + 32];

        snprintf(why, sizeof(why), "%s; not adopted", e->backing_refused);
        sync_record_set_failed(rec, BIM_CAUSE_SOURCE, why);
    } else if (strcmp(cfg->state, "failed") == 0) {
        /* failed before this start: shown, not counted (its cause is not kept) */
        sync_record_set_failed(rec, BIM_CAUSE_SOURCE, cfg->error[0] ? cfg->error : "failed");
        rec->failure_counted = true;
        if (e->has_tmp)
            sync_adopt_fixup_add(ctx, e, true, false, NULL);
    } else if (e->has_backing) {
        if (e->has_tmp)
            sync_adopt_fixup_add(ctx, e, true, false, NULL);
        if (e->matches_cfg && cfg_ready && cfg->current_checksum[0])
            sync_adopt_ready(ctx, rec, e);
        else if (sync_rehash_queue(sync, rec, "") < 0)
            ctx->rc = -ENOMEM;
    } else if (e->has_tmp || strcmp(cfg->state, "in-progress") == 0) {
        const char *why;
        if (!sync_adopt_resume(ctx, rec, e, &why)) {
            sync_record_set_failed(rec, BIM_CAUSE_INTERRUPTED, why);
            sync_adopt_fixup_add(ctx, e, e->has_tmp, true, why);
        }
    } else {
        sync_record_set_failed(rec, BIM_CAUSE_CHANGED, "backing file is missing");
    }
    sync_record_changed(sync, rec);
    log_info("image=%s uuid=%s adopted: %s%s%s", e->name, e->uuid, sync_state_name(rec->info.state),
             rec->info.error[0] ? ": " : "", rec->info.error);
out:
    pthread_mutex_unlock(&sync->lock);
}

int sync_adopt(struct sync *sync, struct bim_error *err)
{
    struct sync_adopt ctx = {.sync = sync};
    int rc;

    rc = store_scan(sync->store, sync_adopt_entry, &ctx);
    if (rc < 0) {
        bim_error_set(err, rc, "cannot scan %s: %s", store_images_path(sync->store), strerror(-rc));
        goto out;
    }
    if (ctx.rc < 0) {
        rc = bim_error_set(err, ctx.rc, "cannot adopt images: %s", strerror(-ctx.rc));
        goto out;
    }
    for (size_t i = 0; i < ctx.fixup_count; i++) {
        const struct sync_adopt_fixup *f = &ctx.fixups[i];
        if (f->remove_tmp) {
            int r = store_image_remove_tmp(sync->store, f->name, f->uuid);
            if (r < 0)
                log_warn("image=%s uuid=%s cannot remove backing.tmp: %s", f->name, f->uuid,
                         strerror(-r));
            else
                log_info("image=%s uuid=%s removed the backing.tmp of an interrupted transfer",
                         f->name, f->uuid);
        }
        if (f->save_failed)
            sync_cfg_save_failed(sync, f->name, f->uuid, f->message);
        if (f->save_found > 0) {
            struct bim_error e = {0};
            int r = sync_cfg_mark(sync, f->name, f->uuid, NULL, 0, f->save_found, &e);

            if (r < 0)
                log_warn("image=%s uuid=%s cannot keep when it was found in backing.cfg: %s",
                         f->name, f->uuid, e.message[0] ? e.message : strerror(-r));
        }
    }
out:
    free(ctx.fixups);
    return rc;
}
