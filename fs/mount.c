/*
 * mount.c - the FUSE session: mount, the request loop, signals, shutdown.
 *
 * Signals: libfuse's handlers (SIGTERM/SIGINT/SIGHUP) only set the session's
 * exit flag; the loop notices when its read() or sem_wait() is interrupted,
 * which happens only in a thread the signal is delivered to. So fs_mount()
 * blocks those signals in the calling thread (threads it creates later
 * inherit the mask: sync workers, the control socket), and fs_run()
 * unblocks them in the loop thread alone while the loop runs. fs_exit() does
 * the same thing a signal does: fuse_session_exit() plus a SIGTERM sent to
 * the loop thread to interrupt its wait.
 *
 * Threads: fs_mount/fs_run/fs_unmount run in the main thread; fs_exit in any
 * thread. fs->lock guards loop_running, exit_requested and loop_thread.
 */
#include "fs_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

/*
 * The mount's readahead window (KiB), which sizes the read requests. Not a
 * full 1 MiB: libfuse splices a reply only if its pipe holds the data plus
 * a page per bufvec segment plus two (libfuse 3.14 fuse_send_data_iov), and
 * without CAP_SYS_RESOURCE a pipe cannot grow past pipe-max-size (1 MiB by
 * default). A 1 MiB reply then always fell back to a copy through a buffer
 * libfuse allocates and frees per request, page faults and all: 5x slower
 * on a 2 vCPU VM (docs/fs.md). 960 KiB leaves room for 13 segments.
 */
#define FS_READ_AHEAD_KB 960

static void fs_op_init(void *userdata, struct fuse_conn_info *conn)
{
    struct fs *fs = userdata;
    unsigned splice = FUSE_CAP_SPLICE_WRITE | FUSE_CAP_SPLICE_MOVE;

    /*
     * The kernel sets the mount's readahead window to the smaller of the
     * BDI's read_ahead_kb and our max_readahead. Its INIT offer was made at
     * mount time, with the default 128 KiB; fs_mount() has since raised
     * read_ahead_kb (as root), so answer with at least that window: the
     * maximum that counts is then the BDI's.
     */
    if (conn->max_readahead < FS_READ_AHEAD_KB * 1024u)
        conn->max_readahead = FS_READ_AHEAD_KB * 1024u;
    if (fs->splice && (conn->capable & splice) == splice)
        conn->want |= splice;
    conn->want &= ~FUSE_CAP_SPLICE_READ; /* we take no writes */
    log_debug("fs: init: protocol 7.%u, max_readahead %u, splice %s", conn->proto_minor,
              conn->max_readahead, (conn->want & FUSE_CAP_SPLICE_WRITE) ? "on" : "off");
}

static const struct fuse_lowlevel_ops fs_ops = {
    .init = fs_op_init,
    .lookup = fs_op_lookup,
    .getattr = fs_op_getattr,
    .opendir = fs_op_opendir,
    .readdir = fs_op_readdir,
    .releasedir = fs_op_releasedir,
    .open = fs_op_open,
    .read = fs_op_read,
    .release = fs_op_release,
    .lseek = fs_op_lseek,
    .statfs = fs_op_statfs,
    .getxattr = fs_op_getxattr,
    .listxattr = fs_op_listxattr,
    .setattr = fs_op_setattr,
    .mknod = fs_op_mknod,
    .mkdir = fs_op_mkdir,
    .unlink = fs_op_unlink,
    .rmdir = fs_op_rmdir,
    .symlink = fs_op_symlink,
    .rename = fs_op_rename,
    .link = fs_op_link,
    .create = fs_op_create,
    .write = fs_op_write,
    .setxattr = fs_op_setxattr,
    .removexattr = fs_op_removexattr,
    .fallocate = fs_op_fallocate,
    .copy_file_range = fs_op_copy_file_range,
};

static void fs_signal_set(sigset_t *set)
{
    sigemptyset(set);
    sigaddset(set, SIGTERM);
    sigaddset(set, SIGINT);
    sigaddset(set, SIGHUP);
}

/*
 * Raise the mount's readahead window (root only; failure is harmless). The
 * mountpoint is stat'ed without asking the filesystem (AT_STATX_DONT_SYNC,
 * empty mask): nothing answers requests before fs_run().
 */
static void fs_mount_tune_readahead(struct fs *fs)
{
    struct statx stx;
    char path[64];
    char value[16];
    int fd;
    int n;

    if (statx(AT_FDCWD, fs->mountpoint, AT_STATX_DONT_SYNC | AT_NO_AUTOMOUNT, 0, &stx) < 0) {
        log_debug("fs: readahead: stat %s: %s", fs->mountpoint, strerror(errno));
        return;
    }
    fs->dev = makedev(stx.stx_dev_major, stx.stx_dev_minor);
    if (geteuid() != 0)
        return;
    snprintf(path, sizeof(path), "/sys/class/bdi/%u:%u/read_ahead_kb", stx.stx_dev_major,
             stx.stx_dev_minor);
    n = snprintf(value, sizeof(value), "%d", FS_READ_AHEAD_KB);
    fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0 || fd_write_all(fd, value, (size_t)n) < 0)
        log_debug("fs: readahead: %s: %s", path, strerror(errno));
    else
        log_debug("fs: readahead: %s = %s", path, value);
    if (fd >= 0)
        close(fd);
}

/* Our copy of main's args (libfuse may only append to args it allocated),
 * with the options bimfs insists on last so that no -o undoes them. */
static int fs_mount_args(struct fs *fs, const struct fs_options *opts, struct fuse_args *args)
{
    int argc = args ? args->argc : 0;

    if (argc == 0 && fuse_opt_add_arg(&fs->args, "bimfs"))
        return -ENOMEM;
    for (int i = 0; i < argc; i++) {
        if (fuse_opt_add_arg(&fs->args, args->argv[i]))
            return -ENOMEM;
    }
    if (opts->debug && fuse_opt_add_arg(&fs->args, "-d"))
        return -ENOMEM;
    if (fuse_opt_add_arg(&fs->args, "-o") ||
        fuse_opt_add_arg(&fs->args, "ro,default_permissions,fsname=bimfs,subtype=bimfs"))
        return -ENOMEM;
    return 0;
}

int fs_mount(const struct fs_options *opts, struct fuse_args *args, struct fs **out,
             struct bim_error *err)
{
    const char *nosplice = getenv("BIMFS_NO_SPLICE");
    struct fs *fs;
    sigset_t set;
    int rc;

    fs = calloc(1, sizeof(*fs));
    if (!fs)
        return bim_error_set(err, -ENOMEM, "out of memory");
    pthread_mutex_init(&fs->lock, NULL);
    pthread_mutex_init(&fs->files_lock, NULL);
    fs_qcow_cache_init(fs);
    fs->inval_stop_fd = -1;
    fs->single_threaded = opts->single_threaded;
    fs->splice = !(nosplice && !strcmp(nosplice, "1"));
    fs->uid = getuid();
    fs->gid = getgid();
    clock_gettime(CLOCK_REALTIME, &fs->start_time);
    /* absolute: the background daemon runs in "/" and libfuse unmounts by
     * the path it mounted */
    fs->mountpoint = realpath(opts->mountpoint, NULL);
    if (!fs->mountpoint) {
        rc = bim_error_set(err, -errno, "%s", strerror(errno));
        goto fail;
    }
    fs->version = strdup(opts->version ? opts->version : "");
    if (!fs->version || fs_mount_args(fs, opts, args)) {
        rc = bim_error_set(err, -ENOMEM, "out of memory");
        goto fail;
    }

    fs->se = fuse_session_new(&fs->args, &fs_ops, sizeof(fs_ops), fs);
    if (!fs->se) {
        rc = bim_error_set(err, -EINVAL, "cannot create the FUSE session (bad FUSE option?)");
        goto fail;
    }
    /* libfuse leaves a signal alone when it is ignored, and a daemon started
     * in the background by a shell inherits SIGINT (and SIGQUIT) ignored:
     * SPEC §1 wants SIGINT to stop it all the same */
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    signal(SIGHUP, SIG_DFL);
    if (fuse_set_signal_handlers(fs->se)) {
        rc = bim_error_set(err, -EIO, "cannot install signal handlers");
        goto fail;
    }
    fs->signals_set = true;
    /* from now on the signals wait for the loop thread (see above) */
    fs_signal_set(&set);
    pthread_sigmask(SIG_BLOCK, &set, &fs->saved_mask);
    if (fuse_session_mount(fs->se, fs->mountpoint)) {
        rc = bim_error_set(err, -EIO, "cannot mount the filesystem");
        pthread_sigmask(SIG_SETMASK, &fs->saved_mask, NULL);
        goto fail;
    }
    fs->mounted = true;
    fs_mount_tune_readahead(fs);
    log_debug("fs: mounted %s (splice %s)", fs->mountpoint, fs->splice ? "allowed" : "off");
    *out = fs;
    return 0;
fail:
    fs_unmount(fs);
    return rc;
}

int fs_run(struct fs *fs, struct sync *sync)
{
    struct fuse_loop_config config = {.clone_fd = 0, .max_idle_threads = 10};
    sigset_t set, old;
    int rc;

    fs->sync = sync;
    rc = fs_inval_start(fs);
    if (rc) {
        log_error("fs: cannot start the invalidation thread: %s", strerror(-rc));
        return rc;
    }

    pthread_mutex_lock(&fs->lock);
    if (fs->exit_requested) {
        pthread_mutex_unlock(&fs->lock);
        goto out;
    }
    fs->loop_thread = pthread_self();
    fs->loop_running = true;
    pthread_mutex_unlock(&fs->lock);

    fs_signal_set(&set);
    pthread_sigmask(SIG_UNBLOCK, &set, &old);
    if (fs->single_threaded)
        rc = fuse_session_loop(fs->se);
    else
        rc = fuse_session_loop_mt(fs->se, &config);
    pthread_sigmask(SIG_SETMASK, &old, NULL);

    pthread_mutex_lock(&fs->lock);
    fs->loop_running = false;
    pthread_mutex_unlock(&fs->lock);
    /* a positive result is the signal that ended the loop: a normal stop */
    if (rc > 0)
        rc = 0;
out:
    fs_inval_stop(fs);
    return rc;
}

void fs_exit(struct fs *fs)
{
    pthread_mutex_lock(&fs->lock);
    fs->exit_requested = true;
    if (fs->loop_running) {
        fuse_session_exit(fs->se);
        /* interrupt the loop thread's wait; libfuse's handler runs there */
        if (!pthread_equal(fs->loop_thread, pthread_self()))
            pthread_kill(fs->loop_thread, SIGTERM);
    }
    pthread_mutex_unlock(&fs->lock);
}

void fs_unmount(struct fs *fs)
{
    if (!fs)
        return;
    fs_inval_stop(fs);
    if (fs->se) {
        if (fs->mounted)
            fuse_session_unmount(fs->se);
        if (fs->signals_set)
            fuse_remove_signal_handlers(fs->se);
        fuse_session_destroy(fs->se);
    }
    fuse_opt_free_args(&fs->args);
    fs_files_free_all(fs);
    fs_dirs_free_all(fs);
    pthread_mutex_destroy(&fs->files_lock);
    fs_qcow_cache_destroy(fs);
    pthread_mutex_destroy(&fs->lock);
    free(fs->mountpoint);
    free(fs->version);
    free(fs);
}
