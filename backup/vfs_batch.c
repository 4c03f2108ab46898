/*
 * vfs_batch.c - the deferred writes of the vfs target (vfs.h; target.h
 * write_deferred and flush): a backup's blocks made durable in batches, so
 * that a backup of N blocks costs a few syncs of the file system instead of
 * 2N fsyncs (one of the file, one of its directory, each a journal commit).
 *
 * write_deferred: the missing directories made (not fsynced one by one), the
 * bytes to a hidden tmp file beside the file (named as write names its own,
 * so list skips it) — with O_DIRECT when the caller's buffer is 4096-aligned,
 * else their writeback started (sync_file_range) — and the pair queued. flush: syncfs(2) of the
 * target's file system (every queued tmp file durable, with the directories made for them), then
 * each tmp file renamed over its file, then syncfs again (the renames durable). So, as with write's
 * fsync before its rename, a file is in place only once its bytes are
 * durable, and a flush returns only once its renames are. The writer that
 * queues the BK_VFS_BATCH_MAX-th write flushes the queue. A flush that fails
 * removes the tmp files it did not rename; so does a close before a flush.
 *
 * Threads: any. t->lock guards the queue (t->pending, t->pending_count); it
 * is held only to push onto it or to take it whole, never across a write, a
 * rename or a sync.
 */
#include "vfs.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define VFS_DIRECT_ALIGN 4096 /* of O_DIRECT's buffer, offset and length */

struct bk_vfs_pending {
    struct bk_vfs_pending *next;
    char *tmp;  /* absolute paths */
    char *file; /* what the message names: the target path */
    char *full;
};

static void vfs_pending_free(struct bk_vfs_pending *p)
{
    free(p->tmp);
    free(p->file);
    free(p->full);
    free(p);
}

static int vfs_batch_sync(struct bk_target *t)
{
    int fd = open(t->root, O_RDONLY | O_DIRECTORY | O_CLOEXEC), rc = 0;

    if (fd < 0)
        return -errno;
    if (syncfs(fd) < 0)
        rc = -errno;
    close(fd);
    return rc;
}

/* Make the taken queue durable and in place (see the top). */
static int vfs_batch_commit(struct bk_target *t, struct bk_vfs_pending *list, struct bim_error *err)
{
    struct bk_vfs_pending *next;
    bool renamed = false;
    int rc, sync_rc;

    rc = vfs_batch_sync(t);
    if (rc < 0)
        bim_error_set(err, rc, "%s: syncing the blocks written: %s", t->shown, strerror(-rc));
    for (struct bk_vfs_pending *p = list; p; p = next) {
        next = p->next;
        if (rc == 0 && rename(p->tmp, p->full) == 0)
            renamed = true;
        else if (rc == 0)
            rc = bim_error_set(err, -errno, "%s: write %s: %s", t->shown, p->file, strerror(errno));
        if (rc < 0)
            unlink(p->tmp);
        vfs_pending_free(p);
    }
    if (renamed) {
        sync_rc = vfs_batch_sync(t);
        if (sync_rc < 0 && rc == 0)
            rc = bim_error_set(err, sync_rc, "%s: syncing the blocks written: %s", t->shown,
                               strerror(-sync_rc));
    }
    return rc;
}

/* Write the bytes at 0 of fd, opened O_DIRECT: the 4096-aligned part
 * straight from buf (no page-cache copy: on a VM, filling fresh page-cache
 * pages costs more than the hash), the short tail through the page cache.
 * A file system that refuses it (EINVAL) gets it all through the page cache. */
static int vfs_batch_write_direct(int fd, const void *buf, size_t len)
{
    size_t head = len / VFS_DIRECT_ALIGN * VFS_DIRECT_ALIGN;
    int flags = fcntl(fd, F_GETFL), rc = 0;

    if (head)
        rc = fd_pwrite_all(fd, buf, head, 0);
    if (flags < 0 || fcntl(fd, F_SETFL, flags & ~O_DIRECT) < 0)
        return -errno;
    if (rc == -EINVAL)
        return fd_pwrite_all(fd, buf, len, 0);
    if (rc == 0 && head < len)
        rc = fd_pwrite_all(fd, (const char *)buf + head, len - head, head);
    return rc;
}

/* The bytes to a new tmp file; their writeback started (or done: O_DIRECT
 * when buf is aligned and the file system takes it). */
static int vfs_batch_write_tmp(const char *tmp, const void *buf, size_t len)
{
    bool direct = (uintptr_t)buf % VFS_DIRECT_ALIGN == 0;
    int flags = O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, fd, rc;

    fd = open(tmp, flags | (direct ? O_DIRECT : 0), 0644);
    if (fd < 0 && direct && errno == EINVAL) { /* tmpfs: no O_DIRECT */
        direct = false;
        fd = open(tmp, flags, 0644);
    }
    if (fd < 0)
        return -errno;
    rc = direct ? vfs_batch_write_direct(fd, buf, len) : fd_write_all(fd, buf, len);
    if (rc == 0)
        (void)sync_file_range(fd, 0, 0, SYNC_FILE_RANGE_WRITE); /* a head start, no more */
    if (close(fd) < 0 && rc == 0)
        rc = -errno;
    if (rc < 0)
        unlink(tmp);
    return rc;
}

int bk_vfs_write_deferred(struct bk_target *t, const char *path, const void *buf, size_t len,
                          struct bim_error *err)
{
    char full[PATH_MAX], tmp[PATH_MAX];
    struct bk_vfs_pending *p = NULL, *batch = NULL;
    struct timespec ts;
    char *slash;
    int rc;

    rc = bk_vfs_full_path(t, path, false, full, sizeof(full), err);
    if (rc < 0)
        return rc;
    rc = bk_vfs_make_parents(t, full, false);
    if (rc < 0)
        return bim_error_set(err, rc, "%s: write %s: making its directory: %s", t->shown, path,
                             strerror(-rc));
    slash = strrchr(full, '/');
    clock_gettime(CLOCK_REALTIME, &ts);
    if (snprintf(tmp, sizeof(tmp), "%.*s/.tmp-%.160s-%lld%09ld-%d", (int)(slash - full), full,
                 slash + 1, (long long)ts.tv_sec, ts.tv_nsec, (int)gettid()) >= (int)sizeof(tmp))
        return bim_error_set(err, -ENAMETOOLONG, "%s: write %s: name too long", t->shown, path);
    p = calloc(1, sizeof(*p));
    if (p) {
        p->tmp = strdup(tmp);
        p->file = strdup(path);
        p->full = strdup(full);
    }
    if (!p || !p->tmp || !p->file || !p->full) {
        rc = bim_error_set(err, -ENOMEM, "%s: write %s: out of memory", t->shown, path);
        goto out;
    }
    rc = vfs_batch_write_tmp(tmp, buf, len);
    if (rc < 0) {
        bim_error_set(err, rc, "%s: write %s: %s", t->shown, path, strerror(-rc));
        goto out;
    }
    pthread_mutex_lock(&t->lock);
    p->next = t->pending;
    t->pending = p;
    p = NULL;
    if (++t->pending_count >= BK_VFS_BATCH_MAX) {
        batch = t->pending;
        t->pending = NULL;
        t->pending_count = 0;
    }
    pthread_mutex_unlock(&t->lock);
    if (batch)
        rc = vfs_batch_commit(t, batch, err);
out:
    if (p)
        vfs_pending_free(p);
    return rc;
}

int bk_vfs_flush(struct bk_target *t, struct bim_error *err)
{
    struct bk_vfs_pending *batch;

    pthread_mutex_lock(&t->lock);
    batch = t->pending;
    t->pending = NULL;
    t->pending_count = 0;
    pthread_mutex_unlock(&t->lock);
    return batch ? vfs_batch_commit(t, batch, err) : 0;
}

void bk_vfs_discard(struct bk_target *t)
{
    struct bk_vfs_pending *next;

    pthread_mutex_lock(&t->lock);
    for (struct bk_vfs_pending *p = t->pending; p; p = next) {
        next = p->next;
        unlink(p->tmp);
        vfs_pending_free(p);
    }
    t->pending = NULL;
    t->pending_count = 0;
    pthread_mutex_unlock(&t->lock);
}
