/*
 * vfs.h - the private header of the file-system targets (backup/vfs.c,
 * backup/vfs_batch.c, backup/nfs.c): an nfs:// target is a vfs target on the
 * directory it mounted.
 *
 * Threads: see vfs.c.
 */
#ifndef BIMFS_BACKUP_VFS_H
#define BIMFS_BACKUP_VFS_H

#include "target.h"

#include <limits.h>
#include <pthread.h>

#define BK_VFS_SHOWN_MAX 512 /* bytes of a target as messages show it */
#define BK_VFS_BATCH_MAX 64  /* deferred writes per flush at most (128 MiB of blocks) */

struct bk_vfs_pending; /* a deferred write (vfs_batch.c) */

struct bk_target {
    char shown[BK_VFS_SHOWN_MAX];
    char root[PATH_MAX];
    bool local;           /* the root is on a local file system: its listings are immediate */
    pthread_mutex_t lock; /* guards pending and pending_count */
    struct bk_vfs_pending *pending; /* deferred writes not flushed yet */
    size_t pending_count;
};

/* The absolute path of target path `path` (refused: '.', '..', empty or
 * leading '/' components; "" only when empty_ok). 0 or -errno with a message. */
int bk_vfs_full_path(struct bk_target *t, const char *path, bool empty_ok, char *out, size_t outlen,
                     struct bim_error *err);

/* Make every missing directory of full (a file's path) below the root, 0700
 * as Longhorn makes them; when durable, each one made is fsynced into its
 * parent. 0 or -errno. */
int bk_vfs_make_parents(struct bk_target *t, char *full, bool durable);

/* write_deferred and flush of bk_vfs_ops (vfs_batch.c; target.h), and the
 * removal of the tmp files of deferred writes never flushed (at close). */
int bk_vfs_write_deferred(struct bk_target *t, const char *path, const void *buf, size_t len,
                          struct bim_error *err);
int bk_vfs_flush(struct bk_target *t, struct bim_error *err);
void bk_vfs_discard(struct bk_target *t);

/* A vfs target rooted at the absolute directory root (which must exist);
 * messages name it as shown. 0 or -errno with a message. */
int bk_vfs_open_root(const char *shown, const char *root, struct bk_target **out,
                     struct bim_error *err);

/* nfs://server:/export[?nfsOptions=a,b]: mount it as Longhorn does (nfs.c)
 * and open the vfs target on the mount point, whose ops are bk_vfs_ops.
 * -EINVAL with a message naming what is missing when it cannot mount. */
int bk_nfs_open(const char *url, struct bk_target **out, struct bim_error *err);

#endif
