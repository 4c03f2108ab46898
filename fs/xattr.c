/*
 * xattr.c - the user.bim.* status attributes (SPEC §5).
 *
 * The kernel never caches xattrs, so every getxattr reads a fresh sync
 * snapshot: the values are always live. Values are plain text, no trailing
 * newline, numbers in decimal.
 *
 * Threads: handlers run on any libfuse worker; everything is on the stack.
 */
#include "fs_internal.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

/* Long enough for the longest value (user.bim.source). */
#define FS_XATTR_VALUE_MAX (STORE_SOURCE_MAX + 64)

enum fs_xattr_image {
    FS_XATTR_STATE,
    FS_XATTR_UUID,
    FS_XATTR_SIZE,
    FS_XATTR_VIRTUAL_SIZE,
    FS_XATTR_REAL_SIZE,
    FS_XATTR_FORMAT,
    FS_XATTR_EXPECTED_CHECKSUM,
    FS_XATTR_CHECKSUM,
    FS_XATTR_PROGRESS,
    FS_XATTR_ERROR,
    FS_XATTR_SOURCE,
    FS_XATTR_SENDING_REFERENCE,
    FS_XATTR_SENDER,
    FS_XATTR_VERIFIED,
    FS_XATTR_SCRUBBED,
    FS_XATTR_IMAGE_COUNT,
};

static const char *const fs_xattr_image_names[FS_XATTR_IMAGE_COUNT] = {
    [FS_XATTR_STATE] = "user.bim.state",
    [FS_XATTR_UUID] = "user.bim.uuid",
    [FS_XATTR_SIZE] = "user.bim.size",
    [FS_XATTR_VIRTUAL_SIZE] = "user.bim.virtual_size",
    [FS_XATTR_REAL_SIZE] = "user.bim.real_size",
    [FS_XATTR_FORMAT] = "user.bim.format",
    [FS_XATTR_EXPECTED_CHECKSUM] = "user.bim.expected_checksum",
    [FS_XATTR_CHECKSUM] = "user.bim.checksum",
    [FS_XATTR_PROGRESS] = "user.bim.progress",
    [FS_XATTR_ERROR] = "user.bim.error",
    [FS_XATTR_SOURCE] = "user.bim.source",
    [FS_XATTR_SENDING_REFERENCE] = "user.bim.sending_reference",
    [FS_XATTR_SENDER] = "user.bim.sender",
    [FS_XATTR_VERIFIED] = "user.bim.verified",
    [FS_XATTR_SCRUBBED] = "user.bim.scrubbed",
};

static const char *const fs_xattr_root_names[] = {"user.bim.disk_uuid", "user.bim.version"};

#define FS_XATTR_ROOT_COUNT (sizeof(fs_xattr_root_names) / sizeof(fs_xattr_root_names[0]))

static int fs_xattr_find(const char *const *names, size_t count, const char *name)
{
    for (size_t i = 0; i < count; i++) {
        if (!strcmp(names[i], name))
            return (int)i;
    }
    return -1;
}

/* The value's length, or -ENODATA. */
static int fs_xattr_image_value(const struct sync_image_info *info, const char *name, char *buf,
                                size_t len)
{
    char when[BIM_TIME_MAX];
    int n;

    switch (fs_xattr_find(fs_xattr_image_names, FS_XATTR_IMAGE_COUNT, name)) {
    case FS_XATTR_STATE:
        n = snprintf(buf, len, "%s", sync_state_name(info->state));
        break;
    case FS_XATTR_UUID:
        n = snprintf(buf, len, "%s", info->uuid);
        break;
    case FS_XATTR_SIZE:
        n = snprintf(buf, len, "%" PRIu64, info->size);
        break;
    case FS_XATTR_VIRTUAL_SIZE:
        n = snprintf(buf, len, "%" PRIu64, info->virtual_size);
        break;
    case FS_XATTR_REAL_SIZE:
        n = snprintf(buf, len, "%" PRIu64, info->real_size);
        break;
    case FS_XATTR_FORMAT:
        n = snprintf(buf, len, "%s", store_format_name(info->format));
        break;
    case FS_XATTR_EXPECTED_CHECKSUM:
        n = snprintf(buf, len, "%s", info->expected_checksum);
        break;
    case FS_XATTR_CHECKSUM:
        n = snprintf(buf, len, "%s", info->current_checksum);
        break;
    case FS_XATTR_PROGRESS:
        n = snprintf(buf, len, "%d", info->progress);
        break;
    case FS_XATTR_ERROR:
        n = snprintf(buf, len, "%s", info->error);
        break;
    case FS_XATTR_SOURCE:
        n = snprintf(buf, len, "%s", info->source);
        break;
    case FS_XATTR_SENDING_REFERENCE:
        n = snprintf(buf, len, "%d", info->sending_reference);
        break;
    case FS_XATTR_SENDER:
        n = snprintf(buf, len, "%s", info->sender);
        break;
    case FS_XATTR_VERIFIED: /* empty while not ready (SPEC §9) */
        n = snprintf(buf, len, "%s", info->state == SYNC_STATE_READY ? info->verified : "");
        break;
    case FS_XATTR_SCRUBBED:
        bim_time_rfc3339(info->last_scrub, when);
        n = snprintf(buf, len, "%s", when);
        break;
    default:
        return -ENODATA;
    }
    if (n < 0)
        return -EIO;
    return (size_t)n >= len ? (int)len - 1 : n; /* the buffer holds every field */
}

static int fs_xattr_root_value(struct fs *fs, const char *name, char *buf, size_t len)
{
    char uuid[STORE_UUID_MAX + 1];
    int n;

    switch (fs_xattr_find(fs_xattr_root_names, FS_XATTR_ROOT_COUNT, name)) {
    case 0:
        sync_disk_uuid(fs->sync, uuid);
        n = snprintf(buf, len, "%s", uuid);
        break;
    case 1:
        n = snprintf(buf, len, "%s", fs->version ? fs->version : "");
        break;
    default:
        return -ENODATA;
    }
    if (n < 0)
        return -EIO;
    return (size_t)n >= len ? (int)len - 1 : n;
}

/* size 0 asks for the length; a buffer too small is ERANGE. */
static void fs_xattr_reply(fuse_req_t req, const char *value, size_t len, size_t size)
{
    if (size == 0)
        fuse_reply_xattr(req, len);
    else if (size < len)
        fuse_reply_err(req, ERANGE);
    else
        fuse_reply_buf(req, value, len);
}

void fs_op_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size)
{
    struct fs *fs = fs_from_req(req);
    struct sync_image_info info;
    char value[FS_XATTR_VALUE_MAX];
    struct fs_node node;
    int len;

    if (fs_node_from_ino(ino, &node)) {
        fuse_reply_err(req, ENOENT);
        return;
    }
    if (node.type == FS_NODE_ROOT) {
        len = fs_xattr_root_value(fs, name, value, sizeof(value));
    } else if (sync_get_by_id(fs->sync, node.id, &info)) {
        len = -ENOENT;
    } else {
        len = fs_xattr_image_value(&info, name, value, sizeof(value));
    }
    if (len < 0) {
        fuse_reply_err(req, -len);
        return;
    }
    fs_xattr_reply(req, value, (size_t)len, size);
}

void fs_op_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size)
{
    struct fs *fs = fs_from_req(req);
    struct sync_image_info info;
    char list[1024];
    const char *const *names;
    size_t count;
    size_t used = 0;
    struct fs_node node;

    if (fs_node_from_ino(ino, &node)) {
        fuse_reply_err(req, ENOENT);
        return;
    }
    if (node.type == FS_NODE_ROOT) {
        names = fs_xattr_root_names;
        count = FS_XATTR_ROOT_COUNT;
    } else if (sync_get_by_id(fs->sync, node.id, &info)) {
        fuse_reply_err(req, ENOENT);
        return;
    } else {
        names = fs_xattr_image_names;
        count = FS_XATTR_IMAGE_COUNT;
    }
    /* every name, even when its value is empty, each NUL-terminated */
    for (size_t i = 0; i < count; i++) {
        size_t n = strlen(names[i]) + 1;

        memcpy(list + used, names[i], n);
        used += n;
    }
    fs_xattr_reply(req, list, used, size);
}
