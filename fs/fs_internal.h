/*
 * fs_internal.h - what the files of fs/ share: struct fs, the inode scheme,
 * open files and the request handlers (one group per file).
 *
 * Threads: struct fs is written by fs_mount()/fs_run() before any worker
 * starts and only read by handlers afterwards, except the loop-control
 * fields, which fs->lock guards, the lists of open files and directories (fs->files_lock)
 * and the cache of open qcow2 images, which fs->qcow_lock guards (qcow2.c). Otherwise handlers keep
 * no fs-wide state: image state comes from sync as copies, an open file (struct fs_file) belongs to
 * its fuse_file_info and is freed by release.
 */
#ifndef BIMFS_FS_INTERNAL_H
#define BIMFS_FS_INTERNAL_H

#define FUSE_USE_VERSION 35

#include "fs.h"

#include <fuse_lowlevel.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/stat.h>
#include <time.h>

/* Entry/attr timeouts (seconds): the files of a ready image never change
 * while it stays ready (changes are invalidated explicitly); the directories
 * list things that come and go. */
#define FS_TIMEOUT_FILE 86400.0
#define FS_TIMEOUT_DIR 1.0

struct fs_dir;

struct fs {
    struct fuse_session *se;
    struct fuse_args args; /* our copy of main's args plus the mount options */
    struct sync *sync;     /* set by fs_run() before the loop starts */
    char *mountpoint;
    char *version;
    bool single_threaded;
    bool mounted;
    bool signals_set;
    sigset_t saved_mask;        /* the caller's signal mask before fs_mount() */
    bool splice;                /* request SPLICE_WRITE|SPLICE_MOVE in init */
    struct timespec start_time; /* the stable time of every directory */
    uid_t uid;
    gid_t gid;
    dev_t dev; /* the mount's st_dev, 0 when unknown */

    /* loop control: fs_exit() may come from any thread */
    pthread_mutex_t lock;
    bool loop_running;
    bool exit_requested;
    pthread_t loop_thread;

    /* open files (file.c), freed at unmount if the kernel never released
     * them: a close sends RELEASE asynchronously, a stop may come first */
    pthread_mutex_t files_lock; /* guards files, dirs and their links */
    struct fs_file *files;
    struct fs_dir *dirs; /* open directories (dir.c), freed likewise */

    /* raw of qcow2 (qcow2.c): qcow_lock guards qcow_list and its entries */
    pthread_mutex_t qcow_lock;
    pthread_cond_t qcow_opened; /* an entry finished opening */
    struct fs_qcow *qcow_list;

    /* the invalidation thread (inval.c) */
    bool inval_started;
    struct sync_watch *inval_watch;
    int inval_stop_fd; /* eventfd: readable when the thread must stop */
    pthread_t inval_thread;
};

static inline struct fs *fs_from_req(fuse_req_t req)
{
    return fuse_req_userdata(req);
}

/* ---- kinds.c: the files of an image directory ---- */

/*
 * How an open file produces its bytes. FS_READER_FD answers reads straight
 * from an fd (backing, and raw of a raw image: the same bytes).
 * FS_READER_QCOW2 decodes the guest disk of a qcow2 image (raw of qcow2).
 */
enum fs_reader { FS_READER_FD, FS_READER_QCOW2 };

/* One file of an image directory: its name, whether it exists for a record,
 * its size, and how its open files read. */
struct fs_file_kind {
    const char *name;
    bool (*exists)(const struct sync_image_info *info);
    uint64_t (*size)(const struct sync_image_info *info);
    enum fs_reader (*reader)(const struct sync_image_info *info);
};

#define FS_FILE_KIND_COUNT 2
extern const struct fs_file_kind fs_file_kinds[FS_FILE_KIND_COUNT];

/* The kind named `name`, or NULL. */
const struct fs_file_kind *fs_file_kind_find(const char *name);
/* Its index in fs_file_kinds (its inode slot is index + 1). */
size_t fs_file_kind_index(const struct fs_file_kind *kind);

/* ---- inode.c: inode numbers and attributes ---- */

/*
 * Root is 1. The image with record id N has its directory at N*64 and the
 * file of fs_file_kinds[i] at N*64+1+i: room for 63 files per image. Record
 * ids are never reused, so an inode number never changes meaning and the
 * generation stays 0.
 */
enum fs_node_type { FS_NODE_ROOT, FS_NODE_DIR, FS_NODE_FILE };

struct fs_node {
    enum fs_node_type type;
    uint64_t id;                     /* the image record; 0 for the root */
    const struct fs_file_kind *file; /* FS_NODE_FILE: which file */
};

/* 0, or -ENOENT for a number that names nothing. */
int fs_node_from_ino(fuse_ino_t ino, struct fs_node *out);
fuse_ino_t fs_ino_root(void);
fuse_ino_t fs_ino_dir(uint64_t id);
fuse_ino_t fs_ino_file(const struct fs_file_kind *kind, uint64_t id);

void fs_attr_root(const struct fs *fs, struct stat *st);
void fs_attr_dir(const struct fs *fs, uint64_t id, struct stat *st);
/* -ENOENT when the file does not exist for this record (kind->exists). */
int fs_attr_file(const struct fs *fs, const struct fs_file_kind *kind,
                 const struct sync_image_info *info, struct stat *st);

void fs_op_lookup(fuse_req_t req, fuse_ino_t parent, const char *name);
void fs_op_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);

/* ---- dir.c: directory listings, statfs ---- */

void fs_op_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
void fs_op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                   struct fuse_file_info *fi);
void fs_op_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
void fs_op_statfs(fuse_req_t req, fuse_ino_t ino);

/* ---- file.c: open files and the read path ---- */

struct fs_qcow;

struct fs_file {
    struct fs_file *prev, *next; /* in fs->files */
    const struct fs_file_kind *kind;
    enum fs_reader reader;
    int fd;               /* FS_READER_FD: the backing file, owned; else -1 */
    struct fs_qcow *qcow; /* FS_READER_QCOW2: a reference on the shared image */
    struct stat attr;     /* the attributes at open (used once the record is gone) */
    uint64_t size;        /* bytes the kernel was told; reads are clipped here */
};

/* Free the files the kernel never released (fs_unmount, no request running). */
void fs_files_free_all(struct fs *fs);

/* Free the directories the kernel never released (fs_unmount). */
void fs_dirs_free_all(struct fs *fs);

void fs_op_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
void fs_op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi);
void fs_op_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
void fs_op_lseek(fuse_req_t req, fuse_ino_t ino, off_t off, int whence, struct fuse_file_info *fi);

/* ---- qcow2.c: raw of qcow2 images ---- */

/* The cache of open qcow2 images (fs_mount / fs_unmount). */
void fs_qcow_cache_init(struct fs *fs);
void fs_qcow_cache_destroy(struct fs *fs);

/*
 * A reference on the decoded image of record `info` whose backing file is
 * open as `fd` (the caller keeps fd): shared with the other open files of
 * the same backing file, opened on first use (its virtual size must be
 * info->virtual_size). 0, or -EIO (logged), -ENOMEM, -errno of fstat.
 */
int fs_qcow_get(struct fs *fs, const struct sync_image_info *info, int fd, struct fs_qcow **out);
/* Drop a reference; the last one closes the image. NULL is accepted. */
void fs_qcow_put(struct fs *fs, struct fs_qcow *q);

/* Reply to a read of size > 0 bytes at off, inside the virtual size. */
void fs_qcow_read(fuse_req_t req, struct fs_qcow *q, size_t size, uint64_t off);

/* SEEK_DATA/SEEK_HOLE from off on a disk of `size` bytes: 0 and *out, or
 * -ENXIO (off at or past the end; no data after off). */
int fs_qcow_seek(const struct fs_qcow *q, uint64_t size, uint64_t off, int whence, uint64_t *out);

/* ---- xattr.c: user.bim.* ---- */

void fs_op_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size);
void fs_op_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size);

/* ---- erofs.c: every mutation ---- */

void fs_op_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set,
                   struct fuse_file_info *fi);
void fs_op_mknod(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode, dev_t rdev);
void fs_op_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode);
void fs_op_unlink(fuse_req_t req, fuse_ino_t parent, const char *name);
void fs_op_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name);
void fs_op_symlink(fuse_req_t req, const char *link, fuse_ino_t parent, const char *name);
void fs_op_rename(fuse_req_t req, fuse_ino_t parent, const char *name, fuse_ino_t newparent,
                  const char *newname, unsigned int flags);
void fs_op_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent, const char *newname);
void fs_op_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
                  struct fuse_file_info *fi);
void fs_op_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size, off_t off,
                 struct fuse_file_info *fi);
void fs_op_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name, const char *value,
                    size_t size, int flags);
void fs_op_removexattr(fuse_req_t req, fuse_ino_t ino, const char *name);
void fs_op_fallocate(fuse_req_t req, fuse_ino_t ino, int mode, off_t offset, off_t length,
                     struct fuse_file_info *fi);
void fs_op_copy_file_range(fuse_req_t req, fuse_ino_t ino_in, off_t off_in,
                           struct fuse_file_info *fi_in, fuse_ino_t ino_out, off_t off_out,
                           struct fuse_file_info *fi_out, size_t len, int flags);

/* ---- inval.c: the invalidation thread ---- */

/* Start the thread that turns sync events into kernel cache invalidations. */
int fs_inval_start(struct fs *fs);
/* Stop and join it (no-op when not started). */
void fs_inval_stop(struct fs *fs);

#endif
