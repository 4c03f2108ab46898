/*
 * extra.c - a source's own object among the cfg's extra fields (the JSON
 * text store keeps for fields it does not know; Longhorn ignores them):
 * read one by its key, or set one keeping the others. A download keeps
 * "bimfsDownload", a peer sync "bimfsSync", so that a restart resumes them.
 *
 * Threads: no shared state.
 */
#include "extra.h"
#include "sync_internal.h"

#include <errno.h>

json_t *sync_extra_get(const char *extra, const char *key)
{
    json_t *root, *obj;

    if (!extra)
        return NULL;
    root = json_loads(extra, JSON_REJECT_DUPLICATES, NULL);
    obj = json_incref(json_object_get(root, key));
    json_decref(root);
    return obj;
}

int sync_extra_set(const char *extra, const char *key, json_t *value, char **out)
{
    json_t *root = NULL;
    int rc = -ENOMEM;

    *out = NULL;
    if (extra)
        root = json_loads(extra, JSON_REJECT_DUPLICATES, NULL);
    if (!json_is_object(root)) {
        json_decref(root);
        root = json_object();
    }
    if (root && value && json_object_set_new(root, key, value) == 0) {
        value = NULL;
        *out = json_dumps(root, JSON_COMPACT);
        rc = *out ? 0 : -ENOMEM;
    }
    json_decref(value);
    json_decref(root);
    return rc;
}
