/*
 * cfg.c - the fields of backing.cfg that sync keeps about a ready image
 * besides what a commit wrote: how it was verified, its last scrub and
 * when it became ready or was found on disk (SPEC §9). Each update reads
 * the cfg, sets the fields given and writes it back through the store's
 * durable helper (tmp + fsync + rename + fsync of the directory), keeping
 * every other field, Longhorn's and unknown ones included.
 *
 * Threads: any; no shared state. No lock may be held by the caller (this is
 * disk I/O).
 */
#include "sync_internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

int sync_cfg_mark(struct sync *sync, const char *name, const char *uuid, const char *verified,
                  int64_t last_scrub, int64_t ready_time, struct bim_error *err)
{
    struct store_cfg *cfg = calloc(1, sizeof(*cfg));
    int rc;

    if (!cfg)
        return bim_error_set(err, -ENOMEM, "out of memory");
    rc = store_image_load_cfg(sync->store, name, uuid, cfg, err);
    if (rc < 0)
        goto out;
    if (verified)
        str_copy(cfg->verified, sizeof(cfg->verified), verified);
    if (last_scrub > 0)
        bim_time_rfc3339(last_scrub, cfg->last_scrub);
    if (ready_time > 0)
        bim_time_rfc3339(ready_time, cfg->ready_time);
    rc = store_image_save_cfg(sync->store, name, uuid, cfg, err);
    store_cfg_clear(cfg);
out:
    free(cfg);
    return rc;
}
