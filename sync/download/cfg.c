/*
 * cfg.c - what a download keeps in its backing.cfg so that the
 * next start can resume it: one object among the cfg's extra fields
 * (Longhorn ignores fields it does not know):
 *
 *   "bimfsDownload": {"url": "...", "etag": "\"v1\"", "lastModified": "...",
 *                     "size": 123}
 *
 * `url` is the URL as given; when it had credentials it is not written at
 * all ("credentials": true instead): credentials never reach the disk, and
 * such a download cannot resume after a restart. etag / lastModified / size
 * describe the response whose bytes backing.tmp holds; download.c writes them
 * after emptying backing.tmp for a new response and before its first byte, so
 * the tmp never holds bytes of another version than the cfg names.
 *
 * Threads: the worker running the download, create (before the job exists)
 * and adoption (before any worker runs); no shared state.
 */
#include "../extra.h"
#include "download.h"

#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#define SYNC_DOWNLOAD_KEY "bimfsDownload"

static void sync_download_saved_string(json_t *obj, const char *key, char *dst, size_t dstlen)
{
    json_t *v = json_object_get(obj, key);

    dst[0] = '\0';
    if (json_is_string(v) && json_string_length(v) < dstlen)
        str_copy(dst, dstlen, json_string_value(v));
}

int sync_download_saved_get(const char *extra, struct sync_download_saved *out)
{
    json_t *obj = sync_extra_get(extra, SYNC_DOWNLOAD_KEY), *size;

    memset(out, 0, sizeof(*out));
    out->size = -1;
    if (json_is_object(obj)) {
        out->present = true;
        out->credentials = json_is_true(json_object_get(obj, "credentials"));
        sync_download_saved_string(obj, "url", out->url, sizeof(out->url));
        sync_download_saved_string(obj, "etag", out->etag, sizeof(out->etag));
        sync_download_saved_string(obj, "lastModified", out->last_modified,
                                   sizeof(out->last_modified));
        size = json_object_get(obj, "size");
        if (json_is_integer(size) && json_integer_value(size) >= 0)
            out->size = (int64_t)json_integer_value(size);
    }
    json_decref(obj);
    return 0;
}

/* The object for `s`. */
static json_t *sync_download_saved_object(const struct sync_download_saved *s)
{
    json_t *obj = json_object();
    int bad = !obj;

    if (!bad && s->credentials)
        bad |= json_object_set_new(obj, "credentials", json_true());
    if (!bad && s->url[0])
        bad |= json_object_set_new(obj, "url", json_string(s->url));
    if (!bad && s->etag[0])
        bad |= json_object_set_new(obj, "etag", json_string(s->etag));
    if (!bad && s->last_modified[0])
        bad |= json_object_set_new(obj, "lastModified", json_string(s->last_modified));
    if (!bad && s->size >= 0)
        bad |= json_object_set_new(obj, "size", json_integer((json_int_t)s->size));
    if (bad) {
        json_decref(obj);
        return NULL;
    }
    return obj;
}

int sync_download_saved_put(const char *extra, const struct sync_download_saved *s, char **out)
{
    return sync_extra_set(extra, SYNC_DOWNLOAD_KEY, sync_download_saved_object(s), out);
}

static int sync_download_saved_edit(struct store_cfg *cfg, bool loaded, const void *arg,
                                    struct bim_error *err)
{
    char *extra = NULL;
    int rc;

    (void)loaded;
    rc = sync_download_saved_put(cfg->extra, arg, &extra);
    if (rc < 0)
        return bim_error_set(err, rc, "out of memory");
    free(cfg->extra);
    cfg->extra = extra;
    return 0;
}

int sync_download_saved_store(struct sync *sync, const char *name, const char *uuid,
                              const struct sync_download_saved *s, struct bim_error *err)
{
    return sync_cfg_update(sync, name, uuid, false, sync_download_saved_edit, s, err);
}
