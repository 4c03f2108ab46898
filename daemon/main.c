/*
 * main.c - the bimfs daemon: one manager per disk.
 *
 * Start-up order matters: everything that can refuse to start (DISK, the
 * HTTP port, the control socket, the mount) is checked before the process
 * goes to the background, so a refusal is one line on stderr and exit status
 * 1. Without -f the process then forks (start_detach(), before any thread:
 * fork would lose them); the parent waits until the child is ready — the
 * disk adopted, the control socket and HTTP server serving, the mount
 * answering a request — and exits 0, or exits with the child's status if it
 * stops before that (what mount.fuse3 and mount(8) expect). Readiness is also
 * sent to systemd (READY=1, and STOPPING=1 on the way down; start.h).
 *
 * Threads: main runs the FUSE loop (fs_run); sync, ctl and fs start their
 * own threads (see docs/architecture.md); one short-lived readiness thread
 * waits for the mount to answer, then calls start_ready(). SIGTERM/SIGINT end
 * the FUSE loop through libfuse's handlers; main then stops the control
 * socket (removing it), unmounts and joins everything.
 */
#define FUSE_USE_VERSION 35

#include "ctl.h"
#include "fs.h"
#include "http/client.h"
#include "listen.h"
#include "options.h"
#include "start.h"
#include "store.h"
#include "sync.h"
#include "version.h"

#include <errno.h>
#include <fuse_lowlevel.h>
#include <jansson.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <sys/mount.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

/* Everything main owns, torn down in reverse order. */
struct daemon {
    struct options opts;
    struct store *store;
    struct sync *sync;
    struct fs *fs;
    struct bk_backups *backups;
    struct ctl_server *ctl;
    struct ctl_http *http;
    int ctl_fd;
    int http_fd;
    char socket_path[PATH_MAX];
    char mount_path[PATH_MAX]; /* absolute: the child runs in "/" */
    char token[512];
    pthread_t ready_thread;
    bool ready_started;
};

#define FUSE_SUPER_MAGIC 0x65735546

/* The readiness thread: statfs(2) on the mountpoint is answered by our own
 * FUSE loop once it runs; then the daemon is up. When the loop never answers,
 * the unmount at teardown makes statfs fail and nothing is announced. A
 * mount that does not answer stops the daemon (SIGTERM to itself), so that a
 * parent waiting in the background start sees a failed start, never hangs. */
static void *daemon_ready_wait(void *arg)
{
    struct daemon *d = arg;
    struct statfs sfs;

    if (statfs(d->mount_path, &sfs) == 0 && sfs.f_type == FUSE_SUPER_MAGIC)
        start_ready();
    else {
        log_error("mount %s does not answer: %s; stopping", d->mount_path,
                  errno ? strerror(errno) : "not a FUSE mount");
        kill(getpid(), SIGTERM);
    }
    return NULL;
}

/* Raise the soft descriptor limit to the hard one: the HTTP server sizes
 * its connection limit from it (docs/http.md "Hostile clients"). */
static void raise_fd_limit(void)
{
    struct rlimit rl;

    if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur == rl.rlim_max)
        return;
    rl.rlim_cur = rl.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
        log_warn("cannot raise the open file limit: %s", strerror(errno));
}

/* A refusal to start: one line on stderr (SPEC §1); returns 1. */
static int __attribute__((format(printf, 1, 2))) refuse(const char *fmt, ...)
{
    char line[1024];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    fprintf(stderr, "bimfs: %s\n", line);
    return 1;
}

/* Make a relative socket path absolute: the background child runs in "/". */
static int absolute_path(const char *path, char *out, size_t outlen)
{
    char cwd[PATH_MAX];

    if (path[0] == '/')
        return str_copy(out, outlen, path) ? 0 : -ENAMETOOLONG;
    if (!getcwd(cwd, sizeof(cwd)))
        return -errno;
    if ((size_t)snprintf(out, outlen, "%s/%s", cwd, path) >= outlen)
        return -ENAMETOOLONG;
    return 0;
}

/* The token file's trailing newline is ignored (SPEC §1). */
static int read_token(const char *path, char *out, size_t outlen, struct bim_error *err)
{
    FILE *f = fopen(path, "re");
    size_t n;
    int rc = 0;

    if (!f)
        return bim_error_set(err, -errno, "--token-file %s: %s", path, strerror(errno));
    n = fread(out, 1, outlen - 1, f);
    if (ferror(f) || !feof(f)) {
        rc = bim_error_set(err, -EINVAL, "--token-file %s: unreadable or longer than %zu bytes",
                           path, outlen - 2);
        goto out;
    }
    out[n] = '\0';
    while (n > 0 && (out[n - 1] == '\n' || out[n - 1] == '\r'))
        out[--n] = '\0';
    if (n == 0)
        rc = bim_error_set(err, -EINVAL, "--token-file %s: the token is empty", path);
out:
    fclose(f);
    return rc;
}

/* Checks that need no threads; on failure prints one line and returns 1. */
static int daemon_prepare(struct daemon *d)
{
    struct options *o = &d->opts;
    struct bim_error err = {0};
    struct fuse_args args = FUSE_ARGS_INIT(o->fuse_argc, o->fuse_argv);
    struct fs_options fs_opts = {
        .mountpoint = o->mountpoint,
        .single_threaded = o->single_threaded,
        .debug = o->debug,
        .version = BIMFS_VERSION,
    };
    struct stat st;

    if (store_open(o->disk, &d->store, &err))
        return refuse("disk %s: %s", o->disk, err.message);
    store_set_max_size(d->store, o->max_size);
    if (o->token_file && read_token(o->token_file, d->token, sizeof(d->token), &err))
        return refuse("%s", err.message);
    if (o->ca_file && access(o->ca_file, R_OK) < 0)
        return refuse("--ca-file %s: %s", o->ca_file, strerror(errno));
    errno = 0;
    if (stat(o->mountpoint, &st) < 0 && errno == ENOTCONN) {
        /* a FUSE mount whose daemon died (kill -9, OOM): detach it and go on,
         * as `fusermount3 -u -z` would (a restarted pod or unit needs this) */
        log_warn("mountpoint %s: a dead mount is left there; detaching it", o->mountpoint);
        if (umount2(o->mountpoint, MNT_DETACH) < 0)
            log_warn("mountpoint %s: cannot detach the dead mount: %s", o->mountpoint,
                     strerror(errno));
        errno = 0;
    }
    if (stat(o->mountpoint, &st) < 0 || !S_ISDIR(st.st_mode) ||
        !realpath(o->mountpoint, d->mount_path))
        return refuse("mountpoint %s: %s", o->mountpoint,
                      errno ? strerror(errno) : "not a directory");
    if (listen_bind(o->listen, &d->http_fd, &err))
        return refuse("%s", err.message);
    if (absolute_path(o->socket_path, d->socket_path, sizeof(d->socket_path)))
        return refuse("socket %s: %s", o->socket_path, "path too long");
    if (ctl_server_bind(d->socket_path, &d->ctl_fd, &err))
        return refuse("%s", err.message);
    if (fs_mount(&fs_opts, &args, &d->fs, &err)) {
        unlink(d->socket_path);
        return refuse("mount %s: %s", o->mountpoint, err.message);
    }
    return 0;
}

/* Start the threads and serve until a signal or an unmount. */
static int daemon_serve(struct daemon *d)
{
    struct options *o = &d->opts;
    struct sync_options sync_opts = {
        .workers = o->workers,
        .check_interval_ms = o->check_interval_sec * 1000u,
        .ca_file = o->ca_file,
        .stall_timeout_ms = o->stall_timeout_sec * 1000u,
        .verify =
            o->verify && !strcmp(o->verify, "sha512") ? SYNC_VERIFY_SHA512 : SYNC_VERIFY_PIECES,
        .retry_max = o->download_retries,
        .scrub_off = o->scrub_interval_sec == 0,
        .scrub_interval_s = o->scrub_interval_sec,
        .scrub_rate_mbps = o->scrub_rate_mbps,
    };
    struct bim_error err = {0};
    char disk_uuid[STORE_UUID_MAX + 1] = "";
    int rc;

    rc = sync_open(d->store, &sync_opts, &d->sync, &err);
    if (rc) {
        log_error("cannot adopt disk %s: %s", o->disk, err.message);
        return rc;
    }
    if (o->disk_uuid)
        str_copy(disk_uuid, sizeof(disk_uuid), o->disk_uuid);
    else
        (void)store_disk_uuid(d->store, disk_uuid);
    sync_set_disk_uuid(d->sync, disk_uuid);
    sync_set_peer_token(d->sync, d->token);
    sync_set_listen(d->sync, o->listen);

    rc = bk_backups_open(NULL, &d->backups);
    if (rc) {
        log_error("cannot start the backup workers: %s", strerror(-rc));
        return rc;
    }
    rc = ctl_server_start(d->sync, d->backups, d->ctl_fd, d->socket_path, BIMFS_VERSION, &d->ctl,
                          &err);
    d->ctl_fd = -1; /* owned by the server now, even on failure */
    if (rc) {
        log_error("control socket %s: %s", d->socket_path, err.message);
        return rc;
    }
    rc = ctl_http_start(d->sync, d->http_fd,
                        &(struct ctl_http_options){.token = d->token[0] ? d->token : NULL,
                                                   .send_limit = o->send_limit,
                                                   .version = BIMFS_VERSION},
                        &d->http, &err);
    d->http_fd = -1; /* owned by the HTTP server now, even on failure */
    if (rc) {
        log_error("http %s: %s", o->listen, err.message);
        return rc;
    }
    log_info("serving disk %s on %s (socket %s, disk uuid %s)", o->disk, o->mountpoint,
             d->socket_path, disk_uuid[0] ? disk_uuid : "none");
    rc = pthread_create(&d->ready_thread, NULL, daemon_ready_wait, d);
    if (rc) {
        log_error("cannot start the readiness thread: %s", strerror(rc));
        return -rc;
    }
    d->ready_started = true;
    rc = fs_run(d->fs, d->sync);
    (void)start_notify("STOPPING=1");
    return rc;
}

static void daemon_teardown(struct daemon *d)
{
    if (d->http)
        ctl_http_stop(d->http);
    if (d->ctl)
        ctl_server_stop(d->ctl);
    else if (d->ctl_fd >= 0) {
        close(d->ctl_fd);
        unlink(d->socket_path);
    }
    if (d->fs)
        fs_unmount(d->fs);
    /* after the unmount: a statfs still waiting for the loop fails now */
    if (d->ready_started)
        pthread_join(d->ready_thread, NULL);
    bk_backups_close(d->backups); /* no client can start one now */
    if (d->sync)
        sync_close(d->sync);
    if (d->store)
        store_close(d->store);
    if (d->http_fd >= 0)
        close(d->http_fd);
    options_free(&d->opts);
}

int main(int argc, char **argv)
{
    struct daemon d = {.ctl_fd = -1, .http_fd = -1};
    struct bim_error err = {0};
    int status = 1;
    int rc;

    if (options_parse(argc, argv, &d.opts, &err)) {
        fprintf(stderr, "bimfs: %s\n", err.message);
        options_free(&d.opts);
        return 2;
    }
    if (d.opts.help) {
        options_usage(stdout);
        status = 0;
        goto out;
    }
    if (d.opts.version) {
        printf("bimfs %s\n", BIMFS_VERSION);
        status = 0;
        goto out;
    }
    log_set_debug(d.opts.debug);
    signal(SIGPIPE, SIG_IGN);
    raise_fd_limit();
    json_object_seed(0);
    if (http_client_global_init() < 0) {
        fprintf(stderr, "bimfs: cannot initialise libcurl\n");
        goto out;
    }

    if (daemon_prepare(&d))
        goto out;
    if (!d.opts.foreground && (rc = start_detach()) < 0) {
        fprintf(stderr, "bimfs: cannot go to the background: %s\n", strerror(-rc));
        goto out;
    }
    /* the background child logs to stderr until it is ready (start.h) */
    status = daemon_serve(&d) == 0 ? 0 : 1;
    log_info("stopping");
out:
    daemon_teardown(&d);
    http_client_global_cleanup();
    return status;
}
