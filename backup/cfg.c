/*
 * cfg.c - backing-image.cfg (notes/backupstore.md A4): written as Go's
 * encoding/json writes Longhorn's BackupBackingImage (fields in struct order,
 * `Size` and `BlockCount` as JSON strings, `Offset` a number, `Blocks`
 * omitted when empty), read tolerantly (ProcessingBlocks null or {}, Labels
 * null, an empty CompressionMethod meaning gzip).
 *
 * Threads: any; no state.
 */
#include "backup_internal.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static json_t *bk_cfg_labels(const struct bk_cfg *cfg)
{
    json_t *labels;

    if (!cfg->completed[0])
        return json_null(); /* the initial record: Labels null, as Longhorn writes it */
    labels = json_object();
    for (size_t i = 0; labels && i < cfg->label_count; i++) {
        if (json_object_set_new(labels, cfg->labels[i].key, json_string(cfg->labels[i].value)) <
            0) {
            json_decref(labels);
            return NULL;
        }
    }
    return labels;
}

static json_t *bk_cfg_blocks(const struct bk_cfg *cfg)
{
    json_t *blocks = json_array();

    for (size_t i = 0; blocks && i < cfg->block_count; i++) {
        json_t *b = json_pack("{s:I, s:s}", "Offset", (json_int_t)cfg->blocks[i].offset,
                              "BlockChecksum", cfg->blocks[i].checksum);

        if (!b || json_array_append_new(blocks, b) < 0) {
            json_decref(blocks);
            return NULL;
        }
    }
    return blocks;
}

char *bk_cfg_encode(const struct bk_cfg *cfg)
{
    char size[24], count[24];
    json_t *root, *labels, *processing, *blocks = NULL;
    char *text = NULL;

    snprintf(size, sizeof(size), "%" PRIu64, cfg->size);
    snprintf(count, sizeof(count), "%zu", cfg->block_count);
    labels = bk_cfg_labels(cfg);
    processing = cfg->completed[0] ? json_pack("{s:{}}", "Blocks") : json_null();
    root = json_pack("{s:s, s:s, s:s, s:s, s:o*, s:s, s:s, s:s, s:s, s:s, s:o*}", "Name", cfg->name,
                     "Size", size, "BlockCount", count, "Checksum", cfg->checksum, "Labels", labels,
                     "CompressionMethod", bk_compression_name(cfg->compression), "CreatedTime",
                     cfg->created, "CompleteTime", cfg->completed, "Secret", "", "SecretNamespace",
                     "", "ProcessingBlocks", processing);
    if (!root || !labels || !processing)
        goto out;
    if (cfg->block_count) {
        blocks = bk_cfg_blocks(cfg);
        if (!blocks || json_object_set_new(root, "Blocks", blocks) < 0)
            goto out;
    }
    text = json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER);
out:
    json_decref(root);
    return text;
}

/* A string field, or "" when missing or null; -EINVAL for another type. */
static int bk_cfg_string(json_t *root, const char *key, const char **out)
{
    json_t *v = json_object_get(root, key);

    *out = "";
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_string(v))
        return -EINVAL;
    *out = json_string_value(v);
    return 0;
}

/* Size: a string as Longhorn writes it (Go's json:",string"), or a JSON
 * number as other writers may (size_text NULL then, *size set); else the
 * string to parse in size_text. */
static int bk_cfg_size(json_t *root, uint64_t *size, const char **size_text)
{
    json_t *v = json_object_get(root, "Size");

    if (json_is_integer(v) && json_integer_value(v) >= 0) {
        *size = (uint64_t)json_integer_value(v);
        *size_text = NULL;
        return 0;
    }
    return bk_cfg_string(root, "Size", size_text);
}

static int bk_cfg_entry_labels(json_t *labels, struct bk_backup_entry *out)
{
    const char *key;
    json_t *value;
    size_t n = 0;

    if (!labels || json_is_null(labels))
        return 0;
    if (!json_is_object(labels) || json_object_size(labels) > BK_LABELS_MAX)
        return -EINVAL;
    out->labels = calloc(json_object_size(labels) + 1, sizeof(*out->labels));
    if (!out->labels)
        return -ENOMEM;
    json_object_foreach(labels, key, value)
    {
        if (!json_is_string(value))
            return -EINVAL;
        out->labels[n].key = strdup(key);
        out->labels[n].value = strdup(json_string_value(value));
        out->label_count = ++n;
        if (!out->labels[n - 1].key || !out->labels[n - 1].value)
            return -ENOMEM;
    }
    return 0;
}

int bk_cfg_decode_entry(const char *text, size_t len, struct bk_backup_entry *out,
                        struct bim_error *err)
{
    const char *name, *size, *checksum, *created, *completed, *compression;
    json_error_t jerr;
    json_t *root;
    char *end;
    int rc = -EINVAL;

    memset(out, 0, sizeof(*out));
    root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!root || !json_is_object(root)) {
        bim_error_set(err, -EINVAL, "not JSON: %s", root ? "not an object" : jerr.text);
        goto out;
    }
    if (bk_cfg_string(root, "Name", &name) || bk_cfg_size(root, &out->size, &size) ||
        bk_cfg_string(root, "Checksum", &checksum) ||
        bk_cfg_string(root, "CreatedTime", &created) ||
        bk_cfg_string(root, "CompleteTime", &completed) ||
        bk_cfg_string(root, "CompressionMethod", &compression)) {
        bim_error_set(err, -EINVAL, "a field has the wrong type");
        goto out;
    }
    if (size) { /* a string */
        errno = 0;
        out->size = strtoull(size, &end, 10);
        if (!size[0] || *end || errno) {
            bim_error_set(err, -EINVAL, "Size \"%.32s\" is not a number", size);
            goto out;
        }
    }
    str_copy(out->name, sizeof(out->name), name);
    str_copy(out->checksum, sizeof(out->checksum), checksum);
    str_copy(out->created, sizeof(out->created), created);
    str_copy(out->completed, sizeof(out->completed), completed);
    str_copy(out->compression, sizeof(out->compression), compression[0] ? compression : "gzip");
    rc = bk_cfg_entry_labels(json_object_get(root, "Labels"), out);
    if (rc < 0)
        bim_error_set(err, rc, "bad Labels");
out:
    json_decref(root);
    if (rc < 0)
        bk_entry_clear(out);
    return rc;
}
