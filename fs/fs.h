/*
 * fs.h - the mounted image tree (SPEC §5), a read-only libfuse3 low-level
 * filesystem in front of sync's records:
 *
 *   MOUNTPOINT/                 user.bim.disk_uuid, user.bim.version
 *   MOUNTPOINT/<name>/          every image, any state; user.bim.* status
 *   MOUNTPOINT/<name>/backing   only while ready: the stored bytes
 *   MOUNTPOINT/<name>/raw       only while ready: the guest disk
 *
 * Threads: fs_run() runs libfuse's multithreaded loop (its workers call the
 * handlers) plus one invalidation thread that turns sync events into
 * fuse_lowlevel_notify_inval_* calls. Handlers hold no fs lock: all image
 * state comes from sync as copies; open files own their fd.
 */
#ifndef BIMFS_FS_H
#define BIMFS_FS_H

#include "common.h"
#include "sync.h"

#include <stdbool.h>

struct fs;
struct fuse_args;

struct fs_options {
    const char *mountpoint;
    bool single_threaded; /* -s */
    bool debug;           /* -d */
    const char *version;  /* user.bim.version of the root */
};

/*
 * Create the FUSE session from args (FUSE options such as -o allow_other; the
 * program name first) and mount it read-only on mountpoint. Nothing is served
 * until fs_run(). Installs SIGTERM/SIGINT/SIGHUP handlers that end fs_run(),
 * and blocks those signals in the calling thread (threads it creates later
 * inherit the block) so that only the loop thread, where fs_run() unblocks
 * them, receives them. They stay blocked after fs_run() returns.
 */
int fs_mount(const struct fs_options *opts, struct fuse_args *args, struct fs **out,
             struct bim_error *err);

/* Serve requests from sync's records until unmounted or a signal; 0 or -errno. */
int fs_run(struct fs *fs, struct sync *sync);

/* Make fs_run() return (thread-safe). */
void fs_exit(struct fs *fs);

/* Unmount (if still mounted), remove signal handlers, free. */
void fs_unmount(struct fs *fs);

#endif
