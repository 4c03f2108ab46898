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
#define FS_INO_PER_IMAGE 64 /* the directory, then one slot per file kind */

_Static_assert(FS_FILE_KIND_COUNT < FS_INO_PER_IMAGE, "an image has more files than inode slots");

int fs_node_from_ino(fuse_ino_t ino, struct fs_node *out)
{
    uint64_t slot;

    if (ino == FS_INO_ROOT) {
        *out = (struct fs_node){.type = FS_NODE_ROOT};
        return 0;
    }
    if (ino < FS_INO_PER_IMAGE)
        return -ENOENT;
    slot = ino % FS_INO_PER_IMAGE;
    if (slot > FS_FILE_KIND_COUNT)
        return -ENOENT;
    *out = (struct fs_node){
        .type = slot ? FS_NODE_FILE : FS_NODE_DIR,
        .id = ino / FS_INO_PER_IMAGE,
        .file = slot ? &fs_file_kinds[slot - 1] : NULL,
    };
    return 0;
}

fuse_ino_t fs_ino_root(void)
{
    return FS_INO_ROOT;
}

/* ids are a counter: 2^58 images will not happen, but never wrap */
fuse_ino_t fs_ino_dir(uint64_t id)
{
    if (id > UINT64_MAX / FS_INO_PER_IMAGE - 1)
        return FS_INO_ROOT;
    return id * FS_INO_PER_IMAGE;
}

fuse_ino_t fs_ino_file(const struct fs_file_kind *kind, uint64_t id)
{
    fuse_ino_t dir = fs_ino_dir(id);

    return dir == FS_INO_ROOT ? dir : dir + 1 + fs_file_kind_index(kind);
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
    st->st_ino = fs_ino_dir(id);
}

int fs_attr_file(const struct fs *fs, const struct fs_file_kind *kind,
                 const struct sync_image_info *info, struct stat *st)
{
    uint64_t size;
    uint64_t blocks = 0;

    if (!kind->exists(info))
        return -ENOENT;
    size = kind->size(info);
    if (size > INT64_MAX)
        return -EOVERFLOW;
    /* real_size is what the backing file occupies; raw of a raw image is
     * the same file */
    if (size_align_up(info->real_size, 512, &blocks))
        blocks /= 512;
    fs_attr_common(fs, st);
    st->st_ino = fs_ino_file(kind, info->id);
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
    const struct fs_file_kind *kind;
    int rc;

    memset(&e, 0, sizeof(e));
    if (fs_node_from_ino(parent, &node)) {
        fuse_reply_err(req, ENOENT);
        return;
    }
    switch (node.type) {
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
        kind = fs_file_kind_find(name);
        if (!kind) {
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
    switch (node.type) {
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
            rc = fs_attr_file(fs, node.file, &info, &st);
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
