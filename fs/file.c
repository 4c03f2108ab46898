/*
 * file.c - open files and the read path.
 *
 * open asks sync for a read-only fd of the backing file. `backing`, and
 * `raw` of a raw image, keep that fd in the open file (struct fs_file in
 * fi->fh) and release closes it; `raw` of a qcow2 image takes a reference
 * on the decoded image instead (qcow2.c) and closes the fd at once. Either
 * keeps the data alive, so a file stays readable after its image is
 * deleted. read never copies for fd files: it replies with an fd-backed
 * bufvec and libfuse preads (or splices) straight from the backing file
 * into /dev/fuse; qcow2 reads are built in qcow2.c the same way.
 *
 * With libfuse >= 3.17 and a kernel >= 6.9, open is where FUSE passthrough
 * would register the fd (fuse_passthrough_open) for FS_READER_FD files; see
 * docs/fs.md. Debian 12's libfuse 3.14 has no passthrough.
 *
 * Every open file is also on fs->files (under fs->files_lock), so that
 * fs_unmount() can free those the kernel never released.
 *
 * Threads: handlers run on any libfuse worker, several reads of one open
 * file at once. They only read the fs_file (written once in open), and
 * pread/lseek on its fd are safe concurrently; the qcow2 image is shared
 * under qcow2.c's rules.
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

    /* the attributes describe the state the fd was opened in */
    rc = sync_open_backing(fs->sync, node->id, &fd, &info);
    if (rc)
        return rc == -EAGAIN ? -ENOENT : rc;
    file = calloc(1, sizeof(*file));
    if (!file) {
        rc = -ENOMEM;
        goto out;
    }
    rc = fs_attr_file(fs, node->file, &info, &file->attr);
    if (rc) {
        free(file);
        goto out;
    }
    file->kind = node->file;
    file->size = (uint64_t)file->attr.st_size;
    file->reader = node->file->reader(&info);
    if (file->reader == FS_READER_QCOW2) {
        file->fd = -1;
        rc = fs_qcow_get(fs, &info, fd, &file->qcow);
        if (rc) {
            free(file);
            goto out;
        }
    } else {
        file->fd = fd;
        fd = -1;
    }
    pthread_mutex_lock(&fs->files_lock);
    file->next = fs->files;
    if (fs->files)
        fs->files->prev = file;
    fs->files = file;
    pthread_mutex_unlock(&fs->files_lock);
    *out = file;
out:
    if (fd >= 0)
        close(fd);
    return rc;
}

static void fs_file_free(struct fs *fs, struct fs_file *file)
{
    pthread_mutex_lock(&fs->files_lock);
    if (file->prev)
        file->prev->next = file->next;
    else
        fs->files = file->next;
    if (file->next)
        file->next->prev = file->prev;
    pthread_mutex_unlock(&fs->files_lock);
    if (file->fd >= 0)
        close(file->fd);
    fs_qcow_put(fs, file->qcow);
    free(file);
}

void fs_files_free_all(struct fs *fs)
{
    while (fs->files)
        fs_file_free(fs, fs->files);
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
    if (!rc && node.type != FS_NODE_FILE)
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
        fs_file_free(fs, file); /* the opener was interrupted: no release follows */
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
    case FS_READER_QCOW2:
        fs_qcow_read(req, file->qcow, size, (uint64_t)off);
        return;
    }
    fuse_reply_err(req, EIO);
}

void fs_op_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    (void)ino;
    fs_file_free(fs_from_req(req), (struct fs_file *)(uintptr_t)fi->fh);
    fuse_reply_err(req, 0);
}

/* The kernel resolves SEEK_SET/CUR/END itself; SEEK_DATA/SEEK_HOLE come here
 * so that `cp --sparse` and qemu-img stay sparse through the mount. */
void fs_op_lseek(fuse_req_t req, fuse_ino_t ino, off_t off, int whence, struct fuse_file_info *fi)
{
    const struct fs_file *file = (const struct fs_file *)(uintptr_t)fi->fh;
    uint64_t pos;
    off_t res;
    int rc;

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
    case FS_READER_QCOW2:
        rc = off < 0 ? -ENXIO : fs_qcow_seek(file->qcow, file->size, (uint64_t)off, whence, &pos);
        if (rc)
            fuse_reply_err(req, -rc);
        else
            fuse_reply_lseek(req, (off_t)pos);
        return;
    }
    fuse_reply_err(req, EIO);
}
