/*
 * backup.c - a backup's cfg, backing-image.cfg (../shared/notes/backupstore.md
 * A4), read into the plan of a restore:
 *
 *   {"Name":"parrot","Size":"4194304","BlockCount":"2","Checksum":"<sha512>",
 *    "CompressionMethod":"lz4","CompleteTime":"2024-...","Labels":null,
 *    "ProcessingBlocks":{"Blocks":{}},
 *    "Blocks":[{"Offset":0,"BlockChecksum":"7318..."}, ...]}
 *
 * Size and BlockCount are strings (Go's `json:",string"`; a number is taken
 * too), Offset a number. An empty CompressionMethod is gzip (Longhorn's legacy
 * method). A backup with Size 0 or no CompleteTime is refused, as Longhorn's
 * restore refuses it. Blocks are 2 MiB at offsets that are multiples of 2 MiB
 * inside the image, each at most once; they are sorted here whatever their
 * order. Fields bimfs does not need (Labels, ProcessingBlocks, Secret...) may
 * be anything.
 *
 * Threads: the worker running the job; no shared state.
 */
#include "restore.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A size field: a string of decimal digits (Go's ",string"), or a number. */
static int sync_restore_uint_field(json_t *cfg, const char *key, uint64_t *out,
                                   struct bim_error *err)
{
    json_t *v = json_object_get(cfg, key);
    const char *s;
    char *end;

    if (json_is_integer(v) && json_integer_value(v) >= 0) {
        *out = (uint64_t)json_integer_value(v);
        return 0;
    }
    if (!json_is_string(v))
        return bim_error_set(err, -EINVAL, "the backup's cfg has no %s", key);
    s = json_string_value(v);
    errno = 0;
    *out = strtoull(s, &end, 10);
    if (s[0] < '0' || s[0] > '9' || *end || errno)
        return bim_error_set(err, -EINVAL, "the backup's cfg has a bad %s \"%.32s\"", key, s);
    return 0;
}

static bool sync_restore_hex(const char *s, size_t len)
{
    if (strlen(s) != len)
        return false;
    for (size_t i = 0; i < len; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return false;
    return true;
}

static int sync_restore_method_parse(json_t *cfg, struct sync_restore_backup *out,
                                     struct bim_error *err)
{
    json_t *v = json_object_get(cfg, "CompressionMethod");
    const char *m = json_is_string(v) ? json_string_value(v) : "";

    if (v && !json_is_string(v) && !json_is_null(v))
        return bim_error_set(err, -EINVAL, "the backup's cfg has a bad CompressionMethod");
    if (strcmp(m, "lz4") == 0)
        out->method = BK_COMPRESSION_LZ4;
    else if (strcmp(m, "gzip") == 0 || m[0] == '\0')
        out->method = BK_COMPRESSION_GZIP;
    else if (strcmp(m, "none") == 0)
        out->method = BK_COMPRESSION_NONE;
    else
        return bim_error_set(err, -EINVAL,
                             "the backup's compression \"%.16s\" is not none, gzip or lz4", m);
    str_copy(out->method_name, sizeof(out->method_name), m);
    return 0;
}

static int sync_restore_block_cmp(const void *a, const void *b)
{
    const struct sync_restore_block *x = a, *y = b;

    return x->off < y->off ? -1 : x->off > y->off;
}

static int sync_restore_blocks_parse(json_t *cfg, struct sync_restore_backup *out,
                                     struct bim_error *err)
{
    json_t *blocks = json_object_get(cfg, "Blocks"), *item;
    size_t i;

    if (!blocks || json_is_null(blocks))
        return 0; /* omitempty: an image of holes only */
    if (!json_is_array(blocks))
        return bim_error_set(err, -EINVAL, "the backup's cfg has a bad Blocks list");
    out->blocks =
        calloc(json_array_size(blocks) ? json_array_size(blocks) : 1, sizeof(*out->blocks));
    if (!out->blocks)
        return bim_error_set(err, -ENOMEM, "out of memory");
    json_array_foreach(blocks, i, item)
    {
        json_t *off = json_object_get(item, "Offset"),
               *sum = json_object_get(item, "BlockChecksum");
        struct sync_restore_block *b = &out->blocks[i];

        if (!json_is_integer(off) || json_integer_value(off) < 0 || !json_is_string(sum) ||
            !sync_restore_hex(json_string_value(sum), BK_BLOCK_HEX))
            return bim_error_set(err, -EINVAL,
                                 "the backup's cfg has a bad block (entry %zu): an Offset and a "
                                 "BlockChecksum of 64 hex digits expected",
                                 i);
        b->off = (uint64_t)json_integer_value(off);
        if (b->off % BK_BLOCK_SIZE || b->off >= out->size)
            return bim_error_set(err, -EINVAL,
                                 "the backup's cfg has a block at offset %" PRIu64
                                 ", not a multiple of 2 MiB inside the image",
                                 b->off);
        b->len = out->size - b->off < BK_BLOCK_SIZE ? out->size - b->off : BK_BLOCK_SIZE;
        str_copy(b->checksum, sizeof(b->checksum), json_string_value(sum));
    }
    out->count = json_array_size(blocks);
    qsort(out->blocks, out->count, sizeof(*out->blocks), sync_restore_block_cmp);
    for (i = 1; i < out->count; i++)
        if (out->blocks[i].off == out->blocks[i - 1].off)
            return bim_error_set(err, -EINVAL, "the backup's cfg has two blocks at offset %" PRIu64,
                                 out->blocks[i].off);
    return 0;
}

int sync_restore_backup_parse(const char *text, size_t len, struct sync_restore_backup *out,
                              struct bim_error *err)
{
    json_error_t jerr;
    json_t *cfg, *v;
    int rc;

    memset(out, 0, sizeof(*out));
    cfg = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!json_is_object(cfg)) {
        rc = bim_error_set(err, -EINVAL, "the backup's cfg is not a JSON object%s%s",
                           cfg ? "" : ": ", cfg ? "" : jerr.text);
        goto out;
    }
    v = json_object_get(cfg, "CompleteTime");
    if (!json_is_string(v) || json_string_length(v) == 0) {
        rc = bim_error_set(err, -EINVAL, "the backup is not complete (no CompleteTime)");
        goto out;
    }
    rc = sync_restore_uint_field(cfg, "Size", &out->size, err);
    if (rc == 0 && out->size == 0)
        rc = bim_error_set(err, -EINVAL, "the backup's Size is 0");
    if (rc < 0)
        goto out;
    v = json_object_get(cfg, "Checksum");
    if (v && !json_is_null(v) && !json_is_string(v)) {
        rc = bim_error_set(err, -EINVAL, "the backup's cfg has a bad Checksum");
        goto out;
    }
    if (json_is_string(v) && json_string_length(v) > 0) {
        if (!sync_restore_hex(json_string_value(v), STORE_CHECKSUM_HEX)) {
            rc = bim_error_set(err, -EINVAL,
                               "the backup's Checksum \"%.16s...\" is not a SHA-512 (128 "
                               "lowercase hex digits)",
                               json_string_value(v));
            goto out;
        }
        str_copy(out->checksum, sizeof(out->checksum), json_string_value(v));
    }
    rc = sync_restore_method_parse(cfg, out, err);
    if (rc == 0)
        rc = sync_restore_blocks_parse(cfg, out, err);
out:
    json_decref(cfg);
    if (rc < 0)
        sync_restore_backup_free(out);
    return rc;
}

void sync_restore_backup_free(struct sync_restore_backup *b)
{
    free(b->blocks);
    b->blocks = NULL;
    b->count = 0;
}
