/*
 * cfg.c - changing an image's backing.cfg in place: read it, change some
 * fields, write it back through the store's durable helper (tmp + fsync +
 * rename + fsync of the directory), keeping every other field, Longhorn's
 * and unknown ones included (sync_cfg_update). Its users here: the fields
 * sync keeps about a ready image besides what a commit wrote (how it was
 * verified, its last scrub, when it became ready or was found on disk,
 * SPEC §9), and a failure.
 *
 * Threads: any; no shared state. No lock may be held by the caller (this is
 * disk I/O).
 */
#include "sync_internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

int sync_cfg_update(struct sync *sync, const char *name, const char *uuid, bool fresh,
                    sync_cfg_edit edit, const void *arg, struct bim_error *err)
{
    struct store_cfg *cfg = calloc(1, sizeof(*cfg));
    bool loaded = true;
    int rc;

    if (!cfg) {
        rc = bim_error_set(err, -ENOMEM, "out of memory");
        goto out;
    }
    rc = store_image_load_cfg(sync->store, name, uuid, cfg, fresh ? NULL : err);
    if (rc < 0 && !fresh)
        goto out;
    if (rc < 0) {
        loaded = false;
        store_cfg_clear(cfg);
        memset(cfg, 0, sizeof(*cfg));
        store_image_path(sync->store, name, uuid, "backing", cfg->name, sizeof(cfg->name));
        str_copy(cfg->uuid, sizeof(cfg->uuid), uuid);
    }
    rc = edit(cfg, loaded, arg, err);
    if (rc == 0)
        rc = store_image_save_cfg(sync->store, name, uuid, cfg, err);
out:
    if (cfg)
        store_cfg_clear(cfg);
    free(cfg);
    return rc;
}

struct sync_cfg_marks {
    const char *verified;
    int64_t last_scrub, ready_time;
};

static int sync_cfg_mark_edit(struct store_cfg *cfg, bool loaded, const void *arg,
                              struct bim_error *err)
{
    const struct sync_cfg_marks *m = arg;

    (void)loaded;
    (void)err;
    if (m->verified)
        str_copy(cfg->verified, sizeof(cfg->verified), m->verified);
    if (m->last_scrub > 0)
        bim_time_rfc3339(m->last_scrub, cfg->last_scrub);
    if (m->ready_time > 0)
        bim_time_rfc3339(m->ready_time, cfg->ready_time);
    return 0;
}

int sync_cfg_mark(struct sync *sync, const char *name, const char *uuid, const char *verified,
                  int64_t last_scrub, int64_t ready_time, struct bim_error *err)
{
    struct sync_cfg_marks m = {verified, last_scrub, ready_time};

    return sync_cfg_update(sync, name, uuid, false, sync_cfg_mark_edit, &m, err);
}

static int sync_cfg_failed_edit(struct store_cfg *cfg, bool loaded, const void *arg,
                                struct bim_error *err)
{
    const char *message = arg;

    (void)loaded;
    (void)err;
    str_copy(cfg->state, sizeof(cfg->state), "failed");
    str_copy(cfg->error, sizeof(cfg->error), message);
    cfg->verified[0] = '\0';
    return 0;
}

void sync_cfg_save_failed(struct sync *sync, const char *name, const char *uuid,
                          const char *message)
{
    struct bim_error err = {0};
    int rc;

    rc = sync_cfg_update(sync, name, uuid, true, sync_cfg_failed_edit, message, &err);
    if (rc < 0)
        log_error("image=%s uuid=%s cannot record the failure in backing.cfg: %s", name, uuid,
                  err.message[0] ? err.message : strerror(-rc));
}
