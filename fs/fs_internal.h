/*
 * fs_internal.h - what the files of fs/ share: struct fs, the inode scheme,
 * open files and the request handlers (one group per file).
 *
 * Threads: struct fs is written by fs_mount()/fs_run() before any worker
 * starts and only read by handlers afterwards, except the loop-control
 * fields, which fs->lock guards. Handlers keep no fs-wide state: image state
 * comes from sync as copies, an open file (struct fs_file) belongs to its
 * fuse_file_info and is freed by release.
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

/* ---- inode.c: inode numbers and attributes ---- */

/*
 * Root is 1. The image with record id N has its directory at N*4, `backing`
 * at N*4+1 and `raw` at N*4+2. Record ids are never reused, so an inode
 * number never changes meaning and the generation stays 0.
 */
enum fs_node_kind { FS_NODE_ROOT, FS_NODE_DIR, FS_NODE_BACKING, FS_NODE_RAW };

struct fs_node {
    enum fs_node_kind kind;
    uint64_t id; /* the image record; 0 for the root */
};

/* 0, or -ENOENT for a number that names nothing. */
int fs_node_from_ino(fuse_ino_t ino, struct fs_node *out);
fuse_ino_t fs_node_ino(enum fs_node_kind kind, uint64_t id);

/* The name of a file node inside its image directory ("backing", "raw"). */
const char *fs_node_file_name(enum fs_node_kind kind);

/* Whether the file `kind` exists for this record: ready, and for `raw` a
 * format we can present as a guest disk. */
bool fs_node_file_exists(enum fs_node_kind kind, const struct sync_image_info *info);

void fs_attr_root(const struct fs *fs, struct stat *st);
void fs_attr_dir(const struct fs *fs, uint64_t id, struct stat *st);
/* -ENOENT when the file does not exist (see fs_node_file_exists). */
int fs_attr_file(const struct fs *fs, enum fs_node_kind kind, const struct sync_image_info *info,
                 struct stat *st);

void fs_op_lookup(fuse_req_t req, fuse_ino_t parent, const char *name);
void fs_op_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);

/* ---- dir.c: directory listings, statfs ---- */

void fs_op_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
void fs_op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                   struct fuse_file_info *fi);
void fs_op_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
void fs_op_statfs(fuse_req_t req, fuse_ino_t ino);

/* ---- file.c: open files and the read path ---- */

/*
 * How an open file produces its bytes. FS_READER_FD answers reads straight
 * from an fd (backing, and raw of a raw image: the same bytes). A qcow2
 * decoder for `raw` plugs in as another reader.
 */
enum fs_reader { FS_READER_FD };

struct fs_file {
    enum fs_node_kind kind;
    enum fs_reader reader;
    int fd;           /* the backing file, owned: closed by release */
    struct stat attr; /* the attributes at open (used once the record is gone) */
    uint64_t size;    /* bytes the kernel was told; reads are clipped here */
};

void fs_op_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
void fs_op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi);
void fs_op_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
void fs_op_lseek(fuse_req_t req, fuse_ino_t ino, off_t off, int whence, struct fuse_file_info *fi);

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
