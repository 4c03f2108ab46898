/*
 * kinds.c - the files of an image directory, one table entry each.
 *
 * Lookup, readdir, invalidation and open all walk fs_file_kinds; adding a
 * file to the tree is one entry here (docs/architecture.md, "Adding a file
 * to the tree").
 *
 * Threads: the table is constant; the functions only read their arguments.
 */
#include "fs_internal.h"

#include <string.h>

static bool fs_kind_backing_exists(const struct sync_image_info *info)
{
    return info->state == SYNC_STATE_READY;
}

static uint64_t fs_kind_backing_size(const struct sync_image_info *info)
{
    return info->size;
}

static bool fs_kind_raw_exists(const struct sync_image_info *info)
{
    /* the same bytes for a raw image, the decoded guest disk of a qcow2 */
    return info->state == SYNC_STATE_READY &&
           (info->format == STORE_FORMAT_RAW || info->format == STORE_FORMAT_QCOW2);
}

static uint64_t fs_kind_raw_size(const struct sync_image_info *info)
{
    return info->virtual_size;
}

static enum fs_reader fs_kind_raw_reader(const struct sync_image_info *info)
{
    return info->format == STORE_FORMAT_QCOW2 ? FS_READER_QCOW2 : FS_READER_FD;
}

static enum fs_reader fs_kind_backing_reader(const struct sync_image_info *info)
{
    (void)info;
    return FS_READER_FD;
}

const struct fs_file_kind fs_file_kinds[FS_FILE_KIND_COUNT] = {
    {
        .name = "backing",
        .exists = fs_kind_backing_exists,
        .size = fs_kind_backing_size,
        .reader = fs_kind_backing_reader,
    },
    {
        .name = "raw",
        .exists = fs_kind_raw_exists,
        .size = fs_kind_raw_size,
        .reader = fs_kind_raw_reader,
    },
};

const struct fs_file_kind *fs_file_kind_find(const char *name)
{
    for (size_t i = 0; i < FS_FILE_KIND_COUNT; i++) {
        if (!strcmp(fs_file_kinds[i].name, name))
            return &fs_file_kinds[i];
    }
    return NULL;
}

size_t fs_file_kind_index(const struct fs_file_kind *kind)
{
    return (size_t)(kind - fs_file_kinds);
}
