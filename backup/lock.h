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
#define BK_LOCK_FAST_MS 1000 /* the fast path's look to its acquired file, at most */

struct bk_lock {
    const struct bk_target_ops *ops;
    struct bk_target *t;
    char name[32]; /* lock-<16 hex> */
    char path[BK_PATH_MAX];
    int type;
    bool waited; /* taken by the protocol's wait, not by the fast path */
};

/* Waits BK_LOCK_CHECK_WAIT_MS through this, which returns nonzero when the
 * caller must stop (then -ECANCELED). */
typedef int (*bk_lock_wait_fn)(void *arg, unsigned ms);

/* Take a lock of type on target: write it not acquired, wait, read every
 * lock; a lock of the other type that comes first (acquired, then older
 * mtime, then smaller name) and has not expired (target's now - its mtime >
 * 150 s) wins: own file removed, -EBUSY naming it. Else rewritten acquired.
 * On a target whose listing is immediate (listing_is_immediate), the lock
 * directory is read at once after the first write: when it holds no
 * unexpired lock of the other type, the lock is rewritten acquired without
 * the wait (lock->waited false). */
int bk_lock_acquire(struct bk_lock *lock, const struct bk_target_ops *ops, struct bk_target *t,
                    int type, bk_lock_wait_fn wait, void *wait_arg, struct bim_error *err);

/* Rewrite the lock file (its mtime is the refresh). */
int bk_lock_refresh(struct bk_lock *lock, struct bim_error *err);

/* Remove the lock file (best effort). */
void bk_lock_release(struct bk_lock *lock);

#endif
