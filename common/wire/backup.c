/*
 * backup.c - the JSON of the backup ops (SPEC §10): a backup's status (the
 * result of backup and backup-status, read back by bimctl --wait) and one
 * entry of the `backups` map.
 *
 * Threads: no shared state.
 */
#include "wire.h"

#include <errno.h>
#include <string.h>

json_t *wire_backup_status_to_json(const struct wire_backup_status *s)
{
    return json_pack("{s:o, s:s, s:i, s:o}", "url", wire_json_text(s->url), "state", s->state,
                     "progress", s->progress, "error", wire_json_text(s->error));
}

static int wire_backup_text(const json_t *value, const char *key, char *out, size_t outlen,
                            struct bim_error *err)
{
    json_t *v = json_object_get(value, key);

    if (!json_is_string(v))
        return bim_error_set(err, -EPROTO, "backup status: \"%s\" is not a string", key);
    if (json_string_length(v) >= outlen)
        return bim_error_set(err, -EPROTO, "backup status: \"%s\" is too long", key);
    memcpy(out, json_string_value(v), json_string_length(v) + 1);
    return 0;
}

int wire_backup_status_from_json(const json_t *value, struct wire_backup_status *out,
                                 struct bim_error *err)
{
    json_t *progress = json_object_get(value, "progress");
    int rc;

    memset(out, 0, sizeof(*out));
    if (!json_is_object(value))
        return bim_error_set(err, -EPROTO, "backup status: not an object");
    rc = wire_backup_text(value, "url", out->url, sizeof(out->url), err);
    if (!rc)
        rc = wire_backup_text(value, "state", out->state, sizeof(out->state), err);
    if (!rc)
        rc = wire_backup_text(value, "error", out->error, sizeof(out->error), err);
    if (rc)
        return rc;
    if (strcmp(out->state, "in_progress") && strcmp(out->state, "complete") &&
        strcmp(out->state, "error"))
        return bim_error_set(err, -EPROTO, "backup status: unknown state");
    if (!json_is_integer(progress) || json_integer_value(progress) < 0 ||
        json_integer_value(progress) > WIRE_PROGRESS_MAX)
        return bim_error_set(err, -EPROTO, "backup status: \"progress\" is not 0 to 100");
    out->progress = (int)json_integer_value(progress);
    return 0;
}

json_t *wire_backup_entry_to_json(const struct wire_backup_entry *e)
{
    json_t *labels = json_object(), *entry;

    for (size_t i = 0; labels && i < e->label_count; i++) {
        if (json_object_set_new(labels, e->label_keys[i], wire_json_text(e->label_values[i])) < 0) {
            json_decref(labels);
            return NULL;
        }
    }
    if (!labels)
        return NULL;
    entry = json_pack("{s:o, s:I, s:o, s:o, s:o, s:o, s:o}", "url", wire_json_text(e->url), "size",
                      (json_int_t)e->size, "checksum", wire_json_text(e->checksum), "created",
                      wire_json_text(e->created), "completed", wire_json_text(e->completed),
                      "compression", wire_json_text(e->compression), "labels", labels);
    return entry;
}
