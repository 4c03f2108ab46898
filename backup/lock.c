/*
 * lock.c - the lock of a backupstore's backing images (notes/backupstore.md
 * A5, Longhorn's lock.go): one file per holder in BK_LOCK_DIR,
 * lock-<16 hex>.lck holding {"Name":..,"Type":..,"Acquired":..}. Backups and
 * restores (type 1) do not exclude each other; a deletion (type 2) excludes
 * them. The age of a lock is the target's clock (now) minus the file's mtime
 * (the server's time on s3, so the clocks of writers do not matter); a lock
 * not refreshed for 150 s has expired. On a target that lists a file as soon
 * as it is written (a local file system), the lock is taken without the 2 s
 * wait when no lock of another type is there (bk_lock_fast).
 *
 * Threads: a struct bk_lock belongs to the thread that took it; the target
 * may be shared (targets are thread-safe).
 */
#include "backup_internal.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#define BK_LOCK_FILE_MAX 4096

struct bk_lock_seen {
    char name[64];
    int type;
    bool acquired;
    int64_t mtime;
};

static int bk_lock_write(struct bk_lock *lock, bool acquired, struct bim_error *err)
{
    char text[128];
    int n;

    n = snprintf(text, sizeof(text), "{\"Name\":\"%s\",\"Type\":%d,\"Acquired\":%s}", lock->name,
                 lock->type, acquired ? "true" : "false");
    return lock->ops->write(lock->t, lock->path, text, (size_t)n, err);
}

/* <0 when a comes before b: acquired first, then the older, then the smaller name. */
static int bk_lock_compare(const struct bk_lock_seen *a, const struct bk_lock_seen *b)
{
    if (a->acquired != b->acquired)
        return a->acquired ? -1 : 1;
    if (a->mtime != b->mtime)
        return a->mtime < b->mtime ? -1 : 1;
    return strcmp(a->name, b->name);
}

/* Read the lock file `file` of the lock directory. 1 read, 0 gone or not a
 * lock (skipped), -errno when the target fails. */
static int bk_lock_load(struct bk_lock *lock, const char *file, struct bk_lock_seen *out,
                        struct bim_error *err)
{
    char path[BK_PATH_MAX];
    json_t *root = NULL, *type, *acquired;
    size_t len = 0;
    void *buf = NULL;
    int rc;

    snprintf(path, sizeof(path), BK_LOCK_DIR "/%s", file);
    rc = lock->ops->read(lock->t, path, BK_LOCK_FILE_MAX, &buf, &len, err);
    if (rc == -ENOENT)
        return 0;
    if (rc < 0)
        return rc;
    rc = lock->ops->mtime(lock->t, path, &out->mtime, err);
    if (rc == -ENOENT) {
        rc = 0;
        goto out;
    }
    if (rc < 0)
        goto out;
    root = json_loadb(buf, len, 0, NULL);
    type = json_object_get(root, "Type");
    acquired = json_object_get(root, "Acquired");
    if (!json_is_integer(type)) {
        log_warn("backup target lock %s is not a lock file; ignored", file);
        goto out;
    }
    snprintf(out->name, sizeof(out->name), "%.*s", (int)(strlen(file) - strlen(".lck")), file);
    out->type = (int)json_integer_value(type);
    out->acquired = json_is_true(acquired);
    rc = 1;
out:
    json_decref(root);
    free(buf);
    return rc;
}

/* 0 when no lock of another type comes before ours; -EBUSY naming it. With
 * any, a lock of another type that has not expired is in the way wherever it
 * comes: -EAGAIN (the first look of the fast path). */
static int bk_lock_check(struct bk_lock *lock, bool any, struct bim_error *err)
{
    struct bk_lock_seen self = {.type = lock->type}, other;
    char **names = NULL;
    size_t count = 0;
    int64_t now;
    int rc;

    str_copy(self.name, sizeof(self.name), lock->name);
    rc = lock->ops->mtime(lock->t, lock->path, &self.mtime, err);
    if (rc == 0)
        rc = lock->ops->now(lock->t, &now, err);
    if (rc == 0)
        rc = lock->ops->list(lock->t, BK_LOCK_DIR, &names, &count, err);
    for (size_t i = 0; rc == 0 && i < count; i++) {
        size_t n = strlen(names[i]);

        if (n < 5 || strcmp(names[i] + n - 4, ".lck") != 0 ||
            strncmp(names[i], lock->name, n - 4) == 0)
            continue;
        memset(&other, 0, sizeof(other));
        rc = bk_lock_load(lock, names[i], &other, err);
        if (rc <= 0)
            continue;
        rc = 0;
        if (other.type == lock->type || now - other.mtime > BK_LOCK_DURATION_S)
            continue;
        if (any)
            rc = bim_error_set(err, -EAGAIN, "%s, a lock of another type, is there", other.name);
        else if (bk_lock_compare(&other, &self) < 0)
            rc = bim_error_set(
                err, -EBUSY,
                "the backup target is locked by %s (a %s lock, %s, refreshed %lld s ago)",
                other.name, other.type == BK_LOCK_DELETION ? "deletion" : "foreign",
                other.acquired ? "acquired" : "waiting", (long long)(now - other.mtime));
    }
    for (size_t i = 0; i < count; i++)
        free(names[i]);
    free(names);
    return rc;
}

/* The fast path, on a target that lists a file as soon as it is written:
 * our file is there; when the lock directory then holds no unexpired lock of
 * another type, the lock is ours at once, rewritten acquired. A writer of
 * another type that writes its file after this look checks at least 2 s later
 * and finds ours acquired (it gives way), or finds ours gone, after our
 * work ended (docs/backup.md, "The lock without the wait"). So our acquired
 * file must be there within BK_LOCK_FAST_MS of the look; when the rewrite
 * took longer, the full check is done again. 1 taken, 0 not (the protocol's
 * wait follows), -errno. */
static int bk_lock_fast(struct bk_lock *lock, struct bim_error *err)
{
    struct bim_error busy = {{0}, 0};
    uint64_t start = clock_monotonic_ms();
    int rc;

    if (!lock->ops->listing_is_immediate || !lock->ops->listing_is_immediate(lock->t))
        return 0;
    rc = bk_lock_check(lock, true, &busy);
    if (rc == -EAGAIN)
        return 0;
    if (rc < 0) {
        *err = busy;
        return rc;
    }
    rc = bk_lock_write(lock, true, err);
    if (rc == 0 && clock_monotonic_ms() - start >= BK_LOCK_FAST_MS)
        rc = bk_lock_check(lock, false, err);
    return rc < 0 ? rc : 1;
}

int bk_lock_acquire(struct bk_lock *lock, const struct bk_target_ops *ops, struct bk_target *t,
                    int type, bk_lock_wait_fn wait, void *wait_arg, struct bim_error *err)
{
    unsigned char r[8];
    int rc;

    memset(lock, 0, sizeof(*lock));
    lock->ops = ops;
    lock->t = t;
    lock->type = type;
    if (getrandom(r, sizeof(r), 0) != (ssize_t)sizeof(r))
        return bim_error_set(err, -EIO, "no random bytes for a lock name");
    snprintf(lock->name, sizeof(lock->name), "lock-%02x%02x%02x%02x%02x%02x%02x%02x", r[0], r[1],
             r[2], r[3], r[4], r[5], r[6], r[7]);
    snprintf(lock->path, sizeof(lock->path), BK_LOCK_DIR "/%s.lck", lock->name);
    rc = bk_lock_write(lock, false, err);
    if (rc < 0)
        return rc;
    rc = bk_lock_fast(lock, err);
    if (rc != 0) {
        lock->waited = false;
        goto out;
    }
    lock->waited = true;
    if (wait(wait_arg, BK_LOCK_CHECK_WAIT_MS)) {
        rc = bim_error_set(err, -ECANCELED, "interrupted");
        goto out;
    }
    rc = bk_lock_check(lock, false, err);
    if (rc == 0)
        rc = bk_lock_write(lock, true, err);
out:
    if (rc < 0)
        bk_lock_release(lock);
    return rc < 0 ? rc : 0;
}

int bk_lock_refresh(struct bk_lock *lock, struct bim_error *err)
{
    return bk_lock_write(lock, true, err);
}

void bk_lock_release(struct bk_lock *lock)
{
    struct bim_error err = {{0}, 0};

    if (!lock->ops)
        return;
    if (lock->ops->remove(lock->t, lock->path, &err) < 0)
        log_warn("backup target lock %s not removed: %s", lock->name, err.message);
    lock->ops = NULL;
}
