/*
 * backup.c - the control socket's backup ops (SPEC §10): `backup` (a ready
 * image's backing handed to the backups, backup/backup.h), `backup-status`
 * and `backups`, their results in the wire codec's JSON (common/wire/backup.c).
 *
 * Threads: connection threads; no state of its own (sync and the backups are
 * thread-safe). A `backups` listing reads the target in the calling thread.
 */
#include "request.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static json_t *ctl_backup_status_json(const struct bk_backup_status *st)
{
    struct wire_backup_status w;

    memset(&w, 0, sizeof(w));
    str_copy(w.url, sizeof(w.url), st->url);
    str_copy(w.state, sizeof(w.state), bk_backup_state_name(st->state));
    w.progress = st->progress;
    str_copy(w.error, sizeof(w.error), st->error);
    return wire_backup_status_to_json(&w);
}

/* The labels of the request as the backup takes them (borrowed strings). */
static int ctl_backup_labels(const struct ctl_request *req, struct bk_label **out, size_t *count,
                             struct bim_error *err)
{
    const char *key;
    json_t *value;
    size_t n = 0;

    *out = NULL;
    *count = 0;
    if (!req->labels)
        return 0;
    if (json_object_size(req->labels) > BK_LABELS_MAX)
        return bim_error_set(err, -EINVAL, "%s: more than %d labels", req->name, BK_LABELS_MAX);
    *out = calloc(json_object_size(req->labels) + 1, sizeof(**out));
    if (!*out)
        return bim_error_set(err, -ENOMEM, "%s: out of memory", req->name);
    json_object_foreach(req->labels, key, value)
    {
        (*out)[n].key = key;
        (*out)[n].value = json_string_value(value);
        n++;
    }
    *count = n;
    return 0;
}

static int ctl_backup_start(struct sync *sync, struct bk_backups *backups,
                            const struct ctl_request *req, json_t **result, struct bim_error *err)
{
    struct bk_backup_request br = {.name = req->name, .target = req->target, .fd = -1};
    struct sync_image_info info;
    struct bk_backup_status st;
    struct bk_label *labels = NULL;
    int rc;

    if (bk_compression_parse(req->compression, &br.compression) < 0)
        return bim_error_set(err, -EINVAL, "%s: compression must be lz4, gzip or none", req->name);
    rc = ctl_backup_labels(req, &labels, &br.label_count, err);
    if (rc)
        return rc;
    br.labels = labels;
    rc = sync_get(sync, req->name, &info, err);
    if (rc)
        goto out;
    if (info.state != SYNC_STATE_READY) {
        rc = bim_error_set(err, -EBUSY, "%s: not ready (%s): only a ready image is backed up",
                           req->name, sync_state_name(info.state));
        goto out;
    }
    rc = sync_open_backing(sync, info.id, &br.fd, &info);
    if (rc) {
        rc = bim_error_set(err, -EBUSY, "%s: not ready any more", req->name);
        goto out;
    }
    br.uuid = info.uuid;
    br.size = info.size;
    br.checksum = info.current_checksum;
    rc = bk_backup_start(backups, &br, &st, err); /* takes br.fd */
    if (!rc)
        *result = ctl_backup_status_json(&st);
out:
    free(labels);
    return rc;
}

static int ctl_backup_list(const struct ctl_request *req, json_t **result, struct bim_error *err)
{
    struct bk_backup_entry *entries = NULL;
    size_t count = 0;
    json_t *map;
    int rc;

    rc = bk_backup_list(req->target, &entries, &count, err);
    if (rc)
        return rc;
    map = json_object();
    for (size_t i = 0; map && i < count; i++) {
        const struct bk_backup_entry *e = &entries[i];
        const char *keys[BK_LABELS_MAX], *values[BK_LABELS_MAX];
        struct wire_backup_entry w = {
            .url = e->url,
            .size = e->size,
            .checksum = e->checksum,
            .created = e->created,
            .completed = e->completed,
            .compression = e->compression,
            .label_keys = keys,
            .label_values = values,
            .label_count = e->label_count < BK_LABELS_MAX ? e->label_count : BK_LABELS_MAX,
        };
        json_t *item;

        for (size_t j = 0; j < w.label_count; j++) {
            keys[j] = e->labels[j].key;
            values[j] = e->labels[j].value;
        }
        item = wire_backup_entry_to_json(&w);
        if (!item || json_object_set_new(map, e->name, item) < 0) {
            json_decref(map);
            map = NULL;
        }
    }
    bk_backup_entries_free(entries, count);
    if (!map)
        return bim_error_set(err, -ENOMEM, "cannot list backups: out of memory");
    *result = map;
    return 0;
}

int ctl_backup_dispatch(struct sync *sync, struct bk_backups *backups,
                        const struct ctl_request *req, json_t **result, struct bim_error *err)
{
    struct bk_backup_status st;
    int rc = -EINVAL;

    switch (req->op) {
    case CTL_OP_BACKUP:
        rc = ctl_backup_start(sync, backups, req, result, err);
        break;
    case CTL_OP_BACKUP_STATUS:
        rc = bk_backup_status_get(backups, req->name, &st, err);
        if (!rc)
            *result = ctl_backup_status_json(&st);
        break;
    case CTL_OP_BACKUPS:
        rc = ctl_backup_list(req, result, err);
        break;
    default:
        break;
    }
    if (!rc && !*result)
        rc = bim_error_set(err, -ENOMEM, "out of memory");
    return rc;
}
