/*
 * test_backup_lock.c - the backupstore's lock between writers (backup/lock.c,
 * docs/backup.md "The lock without the wait") on a vfs target in a temporary
 * directory of a local file system: the lock taken at once when no lock of
 * another type is there; a deletion that comes after it waits and gives way;
 * a backup that comes while a deletion holds the lock waits and gives way;
 * expired locks ignored. The wait is counted instead of slept.
 */
#include "backup_internal.h"
#include "check.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static unsigned waits;

/* The protocol's 2 s, counted: the other writer's file is there already. */
static int count_wait(void *arg, unsigned ms)
{
    (void)arg;
    (void)ms;
    waits++;
    return 0;
}

static size_t lock_files(const struct bk_target_ops *ops, struct bk_target *t)
{
    struct bim_error err = {{0}, 0};
    char **names = NULL;
    size_t count = 0;

    CHECK_INT(ops->list(t, BK_LOCK_DIR, &names, &count, &err), 0);
    for (size_t i = 0; i < count; i++)
        free(names[i]);
    free(names);
    return count;
}

static void test_writers_on_a_local_target(void)
{
    char dir[] = "/tmp/bimfs-lock-test.XXXXXX", url[64], path[BK_PATH_MAX + 64];
    struct bim_error err = {{0}, 0};
    const struct bk_target_ops *ops = NULL;
    struct bk_lock backup, deletion, old;
    struct bk_target *t = NULL;
    struct timespec past[2] = {{.tv_sec = 1}, {.tv_sec = 1}};

    CHECK(mkdtemp(dir) != NULL, "mkdtemp: %s", strerror(errno));
    snprintf(url, sizeof(url), "vfs://%s", dir);
    CHECK_INT(bk_target_open(url, &t, &ops, &err), 0);
    if (!t)
        return;
    if (!ops->listing_is_immediate || !ops->listing_is_immediate(t)) {
        fprintf(stderr, "skipped: /tmp is not on a local file system\n");
        goto out;
    }

    /* nobody there: at once */
    waits = 0;
    CHECK_INT(bk_lock_acquire(&backup, ops, t, BK_LOCK_BACKUP, count_wait, NULL, &err), 0);
    CHECK_INT(waits, 0);
    CHECK(!backup.waited, "the lock was taken through the wait");

    /* a deletion after it sees a lock of another type, waits, finds it acquired: gives way */
    waits = 0;
    CHECK_INT(bk_lock_acquire(&deletion, ops, t, BK_LOCK_DELETION, count_wait, NULL, &err), -EBUSY);
    CHECK_INT(waits, 1);
    CHECK(strstr(err.message, backup.name) != NULL, "the refusal does not name the lock: %s",
          err.message);
    CHECK_INT(lock_files(ops, t), 1); /* its own file removed */

    /* the backup gone, the deletion takes it at once; a backup then waits and gives way */
    bk_lock_release(&backup);
    waits = 0;
    CHECK_INT(bk_lock_acquire(&deletion, ops, t, BK_LOCK_DELETION, count_wait, NULL, &err), 0);
    CHECK_INT(waits, 0);
    CHECK_INT(bk_lock_acquire(&backup, ops, t, BK_LOCK_BACKUP, count_wait, NULL, &err), -EBUSY);
    CHECK_INT(waits, 1);

    /* an expired deletion lock (mtime long past) is ignored: at once */
    snprintf(path, sizeof(path), "%s/%s", dir, deletion.path);
    CHECK_INT(utimensat(AT_FDCWD, path, past, 0), 0);
    waits = 0;
    CHECK_INT(bk_lock_acquire(&backup, ops, t, BK_LOCK_BACKUP, count_wait, NULL, &err), 0);
    CHECK_INT(waits, 0);

    /* another backup beside it (type 1): no conflict, at once */
    CHECK_INT(bk_lock_acquire(&old, ops, t, BK_LOCK_RESTORE, count_wait, NULL, &err), 0);
    CHECK_INT(waits, 0);
    bk_lock_release(&old);
    bk_lock_release(&backup);
    bk_lock_release(&deletion);
    CHECK_INT(lock_files(ops, t), 0);
out:
    CHECK_INT(ops->remove(t, "backupstore", &err), 0);
    ops->close(t);
    rmdir(dir);
}

int main(void)
{
    RUN(test_writers_on_a_local_target);
    return check_exit();
}
