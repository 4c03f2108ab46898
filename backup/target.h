/*
 * target.h - a backup target (SPEC §10, docs/backup.md): the store a backup is
 * written to and restored from, behind one small table of operations, one
 * table per URL scheme. Paths are relative to the target's root ("backupstore/...").
 */
#ifndef BIMFS_BACKUP_TARGET_H
#define BIMFS_BACKUP_TARGET_H

#include "common.h"

#include <stddef.h>
#include <stdint.h>

struct bk_target; /* opaque, per URL */
struct bk_target_ops {
    const char *scheme; /* "vfs", "s3" */
    int (*open)(const char *url, struct bk_target **out, struct bim_error *err);
    int (*list)(struct bk_target *t, const char *dir, char ***names, size_t *count,
                struct bim_error *err); /* direct children names, malloc'd */
    int (*read)(struct bk_target *t, const char *path, size_t max, void **buf, size_t *len,
                struct bim_error *err); /* -ENOENT when missing */
    int (*write)(struct bk_target *t, const char *path, const void *buf, size_t len,
                 struct bim_error *err); /* atomic: all or nothing */
    int (*exists)(struct bk_target *t, const char *path, struct bim_error *err); /* 1, 0, -errno */
    int (*remove)(struct bk_target *t, const char *path, struct bim_error *err); /* missing ok */
    int (*mtime)(struct bk_target *t, const char *path, int64_t *unix_s, struct bim_error *err);
    int (*now)(struct bk_target *t, int64_t *unix_s, struct bim_error *err); /* server time */
    /* Whether a file written is listed at once, by every writer (a local file
     * system; not NFS, CIFS or S3, whose listings may lag): the lock needs no
     * wait then when no lock of another type is there (lock.h). NULL: no. */
    bool (*listing_is_immediate)(struct bk_target *t);
    /* A write whose durability waits for flush (a backup's blocks): until
     * then the file is neither listed nor there for exists, and a flush that
     * fails, or a close before one, leaves no trace of it. A 4096-aligned
     * buf lets vfs write it around the page cache (O_DIRECT). NULL: write. */
    int (*write_deferred)(struct bk_target *t, const char *path, const void *buf, size_t len,
                          struct bim_error *err);
    /* Every deferred write of this target durable and in place (all or
     * nothing per file), its directories durable. NULL: nothing to do. */
    int (*flush)(struct bk_target *t, struct bim_error *err);
    void (*close)(struct bk_target *t);
};
/* The URL's shape only (a known form, no user:password@), without opening
 * it: 0 or -EINVAL with a cause that never shows the URL's credentials. */
int bk_target_check_url(const char *url, struct bim_error *err);
int bk_target_open(const char *url, struct bk_target **out, const struct bk_target_ops **ops,
                   struct bim_error *err);
extern const struct bk_target_ops bk_vfs_ops; /* backup/vfs.c (the other helper) */
extern const struct bk_target_ops bk_s3_ops;  /* backup/s3.c (you) */

#endif
