/*
 * cfg.c - what a restore keeps in its backing.cfg so that the next start
 * resumes it (one object among the cfg's extra fields, extra.h):
 *
 *   "bimfsRestore": {"url": "vfs:///backups?backingImage=parrot"}
 *
 * `url` is the backup URL as given (backup URLs carry no credentials: an
 * s3 target's come from the daemon's environment). The uuid and the
 * expected checksum are the cfg's own.
 *
 * Threads: create (before the job exists) and adoption; no shared state.
 */
#include "../extra.h"
#include "restore.h"

#include <errno.h>
#include <string.h>

int sync_restore_saved_put(const char *extra, const struct sync_restore_job *rj, char **out)
{
    json_t *obj = json_pack("{s:s}", "url", rj->url);

    return sync_extra_set(extra, SYNC_RESTORE_KEY, obj, out);
}

int sync_restore_saved_get(const char *extra, struct sync_restore_job *out)
{
    json_t *obj = sync_extra_get(extra, SYNC_RESTORE_KEY), *url;
    int rc = -EINVAL;

    memset(out, 0, sizeof(*out));
    if (!obj)
        return 0;
    url = json_object_get(obj, "url");
    if (json_is_string(url) && sync_restore_url_parse(json_string_value(url), out, NULL) == 0)
        rc = 1;
    json_decref(obj);
    return rc;
}
