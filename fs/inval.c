/*
 * inval.c - the invalidation thread: sync events -> kernel cache.
 *
 * Files of a ready image are cached for a day (entries, attributes, pages);
 * this thread tells the kernel when that stops being true:
 *
 *   an image appears or changes state  inval inode(root), entry(root, name),
 *   (state_changes tells a change that   entry(dir, "backing"/"raw") and their
 *   merged events hid)                   inodes (pages and attributes)
 *   an image is deleted                inval inode(root), entry(root, name)
 *
 * Updates that keep the state (progress, sending_reference) change nothing
 * the kernel caches: xattrs are never cached. On delete the file inodes are
 * left alone: whoever has them open keeps reading the same bytes.
 *
 * -ENOENT from a notify means the kernel did not know the entry: normal.
 * Notifies are never sent from a request handler (that could deadlock on
 * the kernel's directory lock); only from this thread.
 *
 * Threads: one thread, started by fs_run() and joined before it returns. It
 * owns its watch and the table of last-seen states; SIGTERM/SIGINT/SIGHUP
 * are blocked in it so that they reach the FUSE loop.
 */
#include "fs_internal.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

struct fs_inval_seen {
    uint64_t id;
    enum sync_state state;
    uint64_t state_changes; /* sync_image_info.state_changes when seen */
};

/* The last state seen per image id (owned by the thread). */
struct fs_inval_table {
    struct fs_inval_seen *items;
    size_t count;
    size_t cap;
};

static struct fs_inval_seen *fs_inval_table_find(struct fs_inval_table *t, uint64_t id)
{
    for (size_t i = 0; i < t->count; i++) {
        if (t->items[i].id == id)
            return &t->items[i];
    }
    return NULL;
}

/* Record the state; returns whether it differs from the last one seen. */
static bool fs_inval_table_update(struct fs_inval_table *t, const struct sync_image_info *image)
{
    struct fs_inval_seen *seen = fs_inval_table_find(t, image->id);
    bool changed;

    if (seen) {
        /* state_changes catches what merged events hide (ready -> unknown
         * -> ready seen as one update in state ready) */
        changed = seen->state != image->state || seen->state_changes != image->state_changes;
        seen->state = image->state;
        seen->state_changes = image->state_changes;
        return changed;
    }
    if (t->count == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 16;
        struct fs_inval_seen *items = reallocarray(t->items, cap, sizeof(*items));

        if (!items)
            return true; /* not remembered: invalidate every time */
        t->items = items;
        t->cap = cap;
    }
    t->items[t->count++] = (struct fs_inval_seen){
        .id = image->id, .state = image->state, .state_changes = image->state_changes};
    return true;
}

static void fs_inval_table_remove(struct fs_inval_table *t, uint64_t id)
{
    struct fs_inval_seen *seen = fs_inval_table_find(t, id);

    if (seen)
        *seen = t->items[--t->count];
}

static void fs_inval_inode(struct fs *fs, fuse_ino_t ino)
{
    int rc = fuse_lowlevel_notify_inval_inode(fs->se, ino, 0, 0);

    if (rc && rc != -ENOENT)
        log_debug("fs: invalidate inode %llu: %s", (unsigned long long)ino, strerror(-rc));
}

static void fs_inval_entry(struct fs *fs, fuse_ino_t parent, const char *name)
{
    int rc = fuse_lowlevel_notify_inval_entry(fs->se, parent, name, strlen(name));

    if (rc && rc != -ENOENT)
        log_debug("fs: invalidate entry %llu/%s: %s", (unsigned long long)parent, name,
                  strerror(-rc));
}

static void fs_inval_event(struct fs *fs, struct fs_inval_table *table, const struct sync_event *ev)
{
    const struct sync_image_info *image = &ev->image;
    fuse_ino_t root = fs_ino_root();

    if (ev->type == SYNC_EVENT_DELETE) {
        fs_inval_table_remove(table, image->id);
        fs_inval_inode(fs, root);
        fs_inval_entry(fs, root, image->name);
        return;
    }
    if (!fs_inval_table_update(table, image))
        return;
    fs_inval_inode(fs, root);
    fs_inval_entry(fs, root, image->name);
    /* also when ready: it may have been unknown in between (the file changed) */
    for (size_t i = 0; i < FS_FILE_KIND_COUNT; i++) {
        fs_inval_entry(fs, fs_ino_dir(image->id), fs_file_kinds[i].name);
        fs_inval_inode(fs, fs_ino_file(&fs_file_kinds[i], image->id));
    }
}

static void *fs_inval_main(void *arg)
{
    struct fs *fs = arg;
    struct fs_inval_table table = {0};
    struct sync_event *ev = malloc(sizeof(*ev));
    struct pollfd pfd[2] = {
        {.fd = sync_watch_fd(fs->inval_watch), .events = POLLIN},
        {.fd = fs->inval_stop_fd, .events = POLLIN},
    };

    if (!ev) {
        log_error("fs: invalidation thread: out of memory; the kernel cache will not follow "
                  "image changes");
        return NULL;
    }
    for (;;) {
        if (poll(pfd, 2, -1) < 0) {
            if (errno == EINTR)
                continue;
            log_error("fs: invalidation thread: poll: %s", strerror(errno));
            break;
        }
        if (pfd[1].revents)
            break;
        while (sync_watch_next(fs->inval_watch, ev) == 0)
            fs_inval_event(fs, &table, ev);
    }
    free(table.items);
    free(ev);
    return NULL;
}

int fs_inval_start(struct fs *fs)
{
    sigset_t all, old;
    int rc;

    rc = sync_watch_open(fs->sync, NULL, &fs->inval_watch);
    if (rc)
        return rc;
    fs->inval_stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (fs->inval_stop_fd < 0) {
        rc = -errno;
        goto fail;
    }
    /* signals are for the FUSE loop thread */
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    rc = -pthread_create(&fs->inval_thread, NULL, fs_inval_main, fs);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc)
        goto fail;
    fs->inval_started = true;
    return 0;
fail:
    if (fs->inval_stop_fd >= 0)
        close(fs->inval_stop_fd);
    fs->inval_stop_fd = -1;
    sync_watch_close(fs->inval_watch);
    fs->inval_watch = NULL;
    return rc;
}

void fs_inval_stop(struct fs *fs)
{
    uint64_t one = 1;

    if (!fs->inval_started)
        return;
    if (write(fs->inval_stop_fd, &one, sizeof(one)) < 0)
        log_warn("fs: cannot stop the invalidation thread: %s", strerror(errno));
    pthread_join(fs->inval_thread, NULL);
    fs->inval_started = false;
    close(fs->inval_stop_fd);
    fs->inval_stop_fd = -1;
    sync_watch_close(fs->inval_watch);
    fs->inval_watch = NULL;
}
