/*
 * lock.h - the lock of a backupstore's backing images (notes/backupstore.md
 * A5; lock.c): what a backup (backup.c) and a restore (sync/restore/) take on
 * a target while they work, so that a deletion (Longhorn's, type 2) does not
 * remove blocks under them. Backups and restores (type 1) do not exclude each
 * other.
 *
 * Threads: a struct bk_lock belongs to the thread that took it; the target
 * may be shared (targets are thread-safe).
 */
#ifndef BIMFS_BACKUP_LOCK_H
#define BIMFS_BACKUP_LOCK_H

#include "layout.h"
#include "target.h"

#define BK_LOCK_BACKUP 1 /* = RESTORE_LOCK */
#define BK_LOCK_RESTORE BK_LOCK_BACKUP
#define BK_LOCK_DELETION 2 /* excludes 1 */
#define BK_LOCK_CHECK_WAIT_MS 2000
#define BK_LOCK_REFRESH_MS 60000
#define BK_LOCK_DURATION_S 150

struct bk_lock {
    const struct bk_target_ops *ops;
    struct bk_target *t;
    char name[32]; /* lock-<16 hex> */
    char path[BK_PATH_MAX];
    int type;
};

/* Waits BK_LOCK_CHECK_WAIT_MS through this, which returns nonzero when the
 * caller must stop (then -ECANCELED). */
typedef int (*bk_lock_wait_fn)(void *arg, unsigned ms);

/* Take a lock of type on target: write it not acquired, wait, read every
 * lock; a lock of the other type that comes first (acquired, then older
 * mtime, then smaller name) and has not expired (target's now - its mtime >
 * 150 s) wins: own file removed, -EBUSY naming it. Else rewritten acquired. */
int bk_lock_acquire(struct bk_lock *lock, const struct bk_target_ops *ops, struct bk_target *t,
                    int type, bk_lock_wait_fn wait, void *wait_arg, struct bim_error *err);

/* Rewrite the lock file (its mtime is the refresh). */
int bk_lock_refresh(struct bk_lock *lock, struct bim_error *err);

/* Remove the lock file (best effort). */
void bk_lock_release(struct bk_lock *lock);

#endif
