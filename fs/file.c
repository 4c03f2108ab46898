/*
 * file.c - open files and the read path.
 *
 * open asks sync for a read-only fd of the backing file and hands it to the
 * open file (struct fs_file in fi->fh); release closes it. The fd keeps the
 * data alive, so a file stays readable after its image is deleted. read
 * never copies: it replies with an fd-backed bufvec and libfuse preads (or
 * splices) straight from the backing file into /dev/fuse.
 *
 * With libfuse >= 3.17 and a kernel >= 6.9, open is where FUSE passthrough
 * would register the fd (fuse_passthrough_open) for FS_READER_FD files; see
 * docs/fs.md. Debian 12's libfuse 3.14 has no passthrough.
 *
 * Threads: handlers run on any libfuse worker, several reads of one open
 * file at once. They only read the fs_file (written once in open), and
 * pread/lseek on its fd are safe concurrently.
 */
#include "fs_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

static int fs_file_new(struct fs *fs, const struct fs_node *node, struct fs_file **out)
{
    struct sync_image_info info;
    struct fs_file *file;
    int fd = -1;
    int rc;

    /* open first, then take the attributes: they describe the state the fd
     * was opened in (or a later one) */
    rc = sync_open_backing(fs->sync, node->id, &fd);
    if (rc)
        return rc == -EAGAIN ? -ENOENT : rc;
    rc = sync_get_by_id(fs->sync, node->id, &info);
    if (rc)
        goto out;
    file = calloc(1, sizeof(*file));
    if (!file) {
        rc = -ENOMEM;
        goto out;
    }
    rc = fs_attr_file(fs, node->kind, &info, &file->attr);
    if (rc) {
        free(file);
        goto out;
    }
    file->kind = node->kind;
    file->reader = FS_READER_FD; /* backing, or raw of a raw image */
    file->fd = fd;
    file->size = (uint64_t)file->attr.st_size;
    fd = -1;
    *out = file;
out:
    if (fd >= 0)
        close(fd);
    return rc;
}

static void fs_file_free(struct fs_file *file)
{
    if (file->fd >= 0)
        close(file->fd);
    free(file);
}

void fs_op_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    struct fs *fs = fs_from_req(req);
    struct fs_file *file = NULL;
    struct fs_node node;
    int accmode = fi->flags & O_ACCMODE;
    int rc;

    if (accmode == O_WRONLY || accmode == O_RDWR || (fi->flags & O_TRUNC)) {
        fuse_reply_err(req, EROFS);
        return;
    }
    if (accmode != O_RDONLY) {
        fuse_reply_err(req, EACCES);
        return;
    }
    rc = fs_node_from_ino(ino, &node);
    if (!rc && node.kind != FS_NODE_BACKING && node.kind != FS_NODE_RAW)
        rc = -EISDIR;
    if (!rc)
        rc = fs_file_new(fs, &node, &file);
    if (rc) {
        fuse_reply_err(req, -rc);
        return;
    }
    fi->fh = (uintptr_t)file;
    /* the bytes of a ready image never change: keep the page cache across
     * opens (a change comes with an invalidation and a new mtime) */
    fi->keep_cache = 1;
    fi->noflush = 1;
    if (fuse_reply_open(req, fi) == -ENOENT)
        fs_file_free(file); /* the opener was interrupted: no release follows */
}

void fs_op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi)
{
    const struct fs_file *file = (const struct fs_file *)(uintptr_t)fi->fh;
    struct fuse_bufvec buf = FUSE_BUFVEC_INIT(size);

    (void)ino;
    if (off < 0) {
        fuse_reply_err(req, EINVAL);
        return;
    }
    if ((uint64_t)off >= file->size) {
        fuse_reply_buf(req, NULL, 0);
        return;
    }
    if (size > file->size - (uint64_t)off)
        size = (size_t)(file->size - (uint64_t)off);

    switch (file->reader) {
    case FS_READER_FD:
        buf.buf[0].size = size;
        buf.buf[0].flags = FUSE_BUF_IS_FD | FUSE_BUF_FD_SEEK;
        buf.buf[0].fd = file->fd;
        buf.buf[0].pos = off;
        /* SPLICE_MOVE only takes effect when init negotiated it */
        fuse_reply_data(req, &buf, FUSE_BUF_SPLICE_MOVE);
        return;
    }
    fuse_reply_err(req, EIO);
}

void fs_op_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    (void)ino;
    fs_file_free((struct fs_file *)(uintptr_t)fi->fh);
    fuse_reply_err(req, 0);
}

/* The kernel resolves SEEK_SET/CUR/END itself; SEEK_DATA/SEEK_HOLE come here
 * so that `cp --sparse` and qemu-img stay sparse through the mount. */
void fs_op_lseek(fuse_req_t req, fuse_ino_t ino, off_t off, int whence, struct fuse_file_info *fi)
{
    const struct fs_file *file = (const struct fs_file *)(uintptr_t)fi->fh;
    off_t res;

    (void)ino;
    if (whence != SEEK_DATA && whence != SEEK_HOLE) {
        fuse_reply_err(req, EINVAL);
        return;
    }
    switch (file->reader) {
    case FS_READER_FD:
        res = lseek(file->fd, off, whence);
        if (res < 0)
            fuse_reply_err(req, errno);
        else
            fuse_reply_lseek(req, res);
        return;
    }
    fuse_reply_err(req, EIO);
}
