/*
 * cfg.c - what a peer sync keeps in its backing.cfg so that the next
 * start resumes it (one object among the cfg's extra fields, extra.h):
 *
 *   "bimfsSync": {"peers": ["a:8001", "b:8001"], "size": 123}
 *
 * `peers` is the list as asked for (typed: the source text is for display
 * only), `size` the size asked for (absent: none). The uuid and the
 * expected checksum are the cfg's own.
 *
 * Threads: create (before the job exists) and adoption; no shared state.
 */
#include "../extra.h"
#include "peer.h"
#include "wire.h"

#include <errno.h>
#include <string.h>

#define SYNC_PEER_KEY "bimfsSync"

int sync_peer_saved_put(const char *extra, const struct sync_peer_job *pj, char **out)
{
    json_t *obj = json_object(), *peers = json_array();
    int bad = !obj || !peers;

    for (size_t i = 0; !bad && i < pj->count; i++)
        bad |= json_array_append_new(peers, json_string(pj->addrs[i]));
    if (!bad)
        bad |= json_object_set(obj, "peers", peers);
    if (!bad && pj->size)
        bad |= json_object_set_new(obj, "size", json_integer((json_int_t)pj->size));
    json_decref(peers);
    if (bad) {
        json_decref(obj);
        obj = NULL;
    }
    return sync_extra_set(extra, SYNC_PEER_KEY, obj, out);
}

int sync_peer_saved_get(const char *extra, struct sync_peer_job *out)
{
    json_t *obj = sync_extra_get(extra, SYNC_PEER_KEY), *peers, *size, *item;
    int rc = -EINVAL;
    size_t i;

    memset(out, 0, sizeof(*out));
    if (!obj)
        return 0;
    peers = json_object_get(obj, "peers");
    size = json_object_get(obj, "size");
    if (!json_is_array(peers) || json_array_size(peers) == 0 ||
        json_array_size(peers) > SYNC_PEER_MAX)
        goto out;
    json_array_foreach(peers, i, item)
    {
        if (!json_is_string(item) || !wire_peer_valid(json_string_value(item)))
            goto out;
        str_copy(out->addrs[i], sizeof(out->addrs[i]), json_string_value(item));
    }
    out->count = json_array_size(peers);
    if (size && (!json_is_integer(size) || json_integer_value(size) <= 0))
        goto out;
    out->size = size ? (uint64_t)json_integer_value(size) : 0;
    rc = 1;
out:
    json_decref(obj);
    return rc;
}
