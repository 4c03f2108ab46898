/*
 * inode.c - inode numbers, attributes, lookup and getattr.
 *
 * Threads: the handlers run on any libfuse worker at once. They read sync
 * snapshots (sync takes its own lock briefly) and fill replies on the stack;
 * nothing here is shared or locked.
 */
#include "fs_internal.h"

#include <errno.h>
#include <string.h>

#define FS_INO_ROOT 1
#define FS_INO_PER_IMAGE 4

int fs_node_from_ino(fuse_ino_t ino, struct fs_node *out)
{
    if (ino == FS_INO_ROOT) {
        *out = (struct fs_node){.kind = FS_NODE_ROOT, .id = 0};
        return 0;
    }
    if (ino < FS_INO_PER_IMAGE)
        return -ENOENT;
    out->id = ino / FS_INO_PER_IMAGE;
    switch (ino % FS_INO_PER_IMAGE) {
    case 0:
        out->kind = FS_NODE_DIR;
        return 0;
    case 1:
        out->kind = FS_NODE_BACKING;
        return 0;
    case 2:
        out->kind = FS_NODE_RAW;
        return 0;
    default:
        return -ENOENT;
    }
}

fuse_ino_t fs_node_ino(enum fs_node_kind kind, uint64_t id)
{
    /* ids are a counter: 2^62 images will not happen, but never wrap */
    if (kind == FS_NODE_ROOT || id > (UINT64_MAX - 3) / FS_INO_PER_IMAGE)
        return FS_INO_ROOT;
    switch (kind) {
    case FS_NODE_BACKING:
        return id * FS_INO_PER_IMAGE + 1;
    case FS_NODE_RAW:
        return id * FS_INO_PER_IMAGE + 2;
    default:
        return id * FS_INO_PER_IMAGE;
    }
}

const char *fs_node_file_name(enum fs_node_kind kind)
{
    return kind == FS_NODE_RAW ? "raw" : "backing";
}

bool fs_node_file_exists(enum fs_node_kind kind, const struct sync_image_info *info)
{
    if (info->state != SYNC_STATE_READY)
        return false;
    if (kind == FS_NODE_BACKING)
        return true;
    /* raw: the same bytes for a raw image, the decoded guest disk of a qcow2 */
    return kind == FS_NODE_RAW &&
           (info->format == STORE_FORMAT_RAW || info->format == STORE_FORMAT_QCOW2);
}

static void fs_attr_common(const struct fs *fs, struct stat *st)
{
    memset(st, 0, sizeof(*st));
    st->st_uid = fs->uid;
    st->st_gid = fs->gid;
}

void fs_attr_root(const struct fs *fs, struct stat *st)
{
    fs_attr_common(fs, st);
    st->st_ino = FS_INO_ROOT;
    st->st_mode = S_IFDIR | 0555;
    st->st_nlink = 2;
    st->st_atim = st->st_mtim = st->st_ctim = fs->start_time;
}

void fs_attr_dir(const struct fs *fs, uint64_t id, struct stat *st)
{
    fs_attr_root(fs, st);
    st->st_ino = fs_node_ino(FS_NODE_DIR, id);
}

int fs_attr_file(const struct fs *fs, enum fs_node_kind kind, const struct sync_image_info *info,
                 struct stat *st)
{
    uint64_t size = kind == FS_NODE_RAW ? info->virtual_size : info->size;
    uint64_t blocks = 0;

    if (!fs_node_file_exists(kind, info))
        return -ENOENT;
    if (size > INT64_MAX)
        return -EOVERFLOW;
    /* real_size is what the backing file occupies; raw of a raw image is
     * the same file */
    if (size_align_up(info->real_size, 512, &blocks))
        blocks /= 512;
    fs_attr_common(fs, st);
    st->st_ino = fs_node_ino(kind, info->id);
    st->st_mode = S_IFREG | 0444;
    st->st_nlink = 1;
    st->st_size = (off_t)size;
    st->st_blocks = (blkcnt_t)blocks;
    /* the record's mtime is stable while ready: a changing mtime would make
     * the kernel drop its page cache (auto_inval_data) */
    st->st_atim = st->st_mtim = st->st_ctim = info->mtime;
    return 0;
}

void fs_op_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
    struct fs *fs = fs_from_req(req);
    struct fuse_entry_param e;
    struct sync_image_info info;
    struct fs_node node;
    enum fs_node_kind kind;
    int rc;

    memset(&e, 0, sizeof(e));
    if (fs_node_from_ino(parent, &node)) {
        fuse_reply_err(req, ENOENT);
        return;
    }
    switch (node.kind) {
    case FS_NODE_ROOT:
        /* negative lookups are not cached: a plain ENOENT reply */
        if (sync_get(fs->sync, name, &info, NULL)) {
            fuse_reply_err(req, ENOENT);
            return;
        }
        fs_attr_dir(fs, info.id, &e.attr);
        e.attr_timeout = e.entry_timeout = FS_TIMEOUT_DIR;
        break;
    case FS_NODE_DIR:
        if (!strcmp(name, "backing"))
            kind = FS_NODE_BACKING;
        else if (!strcmp(name, "raw"))
            kind = FS_NODE_RAW;
        else {
            fuse_reply_err(req, ENOENT);
            return;
        }
        if (sync_get_by_id(fs->sync, node.id, &info)) {
            fuse_reply_err(req, ENOENT);
            return;
        }
        rc = fs_attr_file(fs, kind, &info, &e.attr);
        if (rc) {
            fuse_reply_err(req, -rc);
            return;
        }
        e.attr_timeout = e.entry_timeout = FS_TIMEOUT_FILE;
        break;
    default:
        fuse_reply_err(req, ENOTDIR);
        return;
    }
    e.ino = e.attr.st_ino;
    e.generation = 0;
    fuse_reply_entry(req, &e);
}

void fs_op_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    struct fs *fs = fs_from_req(req);
    struct sync_image_info info;
    struct fs_node node;
    struct stat st;
    int rc;

    if (fs_node_from_ino(ino, &node)) {
        fuse_reply_err(req, ENOENT);
        return;
    }
    switch (node.kind) {
    case FS_NODE_ROOT:
        fs_attr_root(fs, &st);
        fuse_reply_attr(req, &st, FS_TIMEOUT_DIR);
        return;
    case FS_NODE_DIR:
        if (sync_get_by_id(fs->sync, node.id, &info)) {
            fuse_reply_err(req, ENOENT);
            return;
        }
        fs_attr_dir(fs, node.id, &st);
        fuse_reply_attr(req, &st, FS_TIMEOUT_DIR);
        return;
    default:
        rc = sync_get_by_id(fs->sync, node.id, &info);
        if (!rc)
            rc = fs_attr_file(fs, node.kind, &info, &st);
        if (rc && fi && fi->fh) {
            /* fstat of an open file whose image is gone (or no longer
             * ready): it stays readable, with the attributes it had */
            st = ((const struct fs_file *)(uintptr_t)fi->fh)->attr;
            rc = 0;
        }
        if (rc) {
            fuse_reply_err(req, -rc);
            return;
        }
        fuse_reply_attr(req, &st, FS_TIMEOUT_FILE);
        return;
    }
}
