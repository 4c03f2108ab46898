/*
 * server.c - the control socket's listener: bind (replacing a stale socket,
 * refusing a live one), the accept thread, one thread per connection (at most
 * CTL_MAX_CLIENTS), and an orderly stop. What a connection does is in
 * session.c.
 *
 * Threads: the accept thread runs ctl_server_accept_loop(); each connection
 * thread runs ctl_conn_main() -> ctl_session_run(). All of them start with
 * every signal blocked, so signals reach main. server->lock guards the
 * connection list and the client count; it is never held across I/O but
 * shutdown(2). A connection's fd is closed only after its thread is joined
 * (by the accept thread reaping finished connections, or by stop), so stop
 * can never shut down a reused descriptor.
 *
 * Stop: a byte on a self-pipe wakes the accept thread; each connection is
 * woken by shutdown(fd) (blocked reads see end of stream, sends fail, a
 * watch's poll sees POLLHUP) and joined.
 */
#include "request.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#define CTL_VERSION_MAX 64
#define CTL_ACCEPT_BACKOFF_MS 100 /* after EMFILE and friends */

struct ctl_conn {
    struct ctl_server *server;
    int fd;
    pthread_t thread;
    bool done; /* the thread has finished serving (server->lock) */
    struct ctl_conn *next;
};

struct ctl_server {
    struct sync *sync;
    struct bk_backups *backups;
    int listen_fd;
    int wake[2]; /* self-pipe: a byte stops the accept thread */
    char path[PATH_MAX];
    char version[CTL_VERSION_MAX];
    bool have_inode; /* the socket file we bound, to unlink only ours */
    dev_t dev;
    ino_t ino;
    pthread_t accept_thread;
    pthread_mutex_t lock; /* guards conns and clients */
    struct ctl_conn *conns;
    unsigned clients; /* connections still serving */
};

/* ---- bind ---- */

/* mkdir -p the directory holding path (0755 for what is created). */
static int ctl_parent_create(const char *path, struct bim_error *err)
{
    char dir[sizeof(((struct sockaddr_un *)0)->sun_path)];
    char *slash;

    str_copy(dir, sizeof(dir), path);
    slash = strrchr(dir, '/');
    if (!slash || slash == dir)
        return 0;
    *slash = '\0';
    for (char *p = dir + 1;; p++) {
        bool last = *p == '\0';

        if (*p != '/' && !last)
            continue;
        *p = '\0';
        if (mkdir(dir, 0755) < 0 && errno != EEXIST)
            return bim_error_set(err, -errno, "socket %s: cannot create directory %s: %s", path,
                                 dir, strerror(errno));
        if (last)
            return 0;
        *p = '/';
    }
}

/* A socket file at path: refuse if a daemon answers, remove it if stale. */
static int ctl_stale_remove(const char *path, const struct sockaddr_un *addr, struct bim_error *err)
{
    struct stat st;
    int probe, rc = 0;

    if (lstat(path, &st) < 0) {
        if (errno == ENOENT)
            return 0;
        return bim_error_set(err, -errno, "socket %s: %s", path, strerror(errno));
    }
    if (!S_ISSOCK(st.st_mode))
        return bim_error_set(err, -EEXIST,
                             "socket %s: the file exists and is not a socket "
                             "(not replacing it)",
                             path);
    probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (probe < 0)
        return bim_error_set(err, -errno, "socket %s: %s", path, strerror(errno));
    if (connect(probe, (const struct sockaddr *)addr, sizeof(*addr)) == 0 || errno == EAGAIN ||
        errno == EINPROGRESS) {
        rc = bim_error_set(err, -EADDRINUSE, "socket %s is in use by a running daemon", path);
    } else if (errno == ECONNREFUSED || errno == ENOENT) {
        if (unlink(path) < 0 && errno != ENOENT)
            rc = bim_error_set(err, -errno, "socket %s: cannot remove the stale socket: %s", path,
                               strerror(errno));
        else
            log_info("removed stale control socket %s", path);
    } else {
        rc = bim_error_set(err, -errno, "socket %s: %s", path, strerror(errno));
    }
    close(probe);
    return rc;
}

int ctl_server_bind(const char *path, int *listen_fd, struct bim_error *err)
{
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    int fd = -1, rc;

    *listen_fd = -1;
    if (!str_copy(addr.sun_path, sizeof(addr.sun_path), path) || !path[0])
        return bim_error_set(err, -ENAMETOOLONG,
                             "socket %s: the path is empty or longer than %zu "
                             "bytes",
                             path, sizeof(addr.sun_path) - 1);
    rc = ctl_parent_create(path, err);
    if (!rc)
        rc = ctl_stale_remove(path, &addr, err);
    if (rc)
        return rc;
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return bim_error_set(err, -errno, "socket %s: %s", addr.sun_path, strerror(errno));
    if (bind(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0) {
        if (errno == EADDRINUSE)
            rc = bim_error_set(err, -EADDRINUSE, "socket %s is in use by a running daemon",
                               addr.sun_path);
        else
            rc = bim_error_set(err, -errno, "socket %s: %s", addr.sun_path, strerror(errno));
        close(fd);
        return rc;
    }
    /* no client can connect before listen(), so 0600 holds from the start */
    if (chmod(path, 0600) < 0 || listen(fd, CTL_MAX_CLIENTS) < 0) {
        rc = bim_error_set(err, -errno, "socket %s: %s", addr.sun_path, strerror(errno));
        close(fd);
        unlink(path);
        return rc;
    }
    *listen_fd = fd;
    return 0;
}

/* ---- threads ---- */

/* Start a thread with every signal blocked (it inherits the mask). */
static int ctl_thread_start(pthread_t *thread, void *(*fn)(void *), void *arg)
{
    sigset_t all, old;
    int rc;

    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    rc = pthread_create(thread, NULL, fn, arg);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return -rc;
}

static void *ctl_conn_main(void *arg)
{
    struct ctl_conn *conn = arg;
    struct ctl_server *server = conn->server;

    ctl_session_run(server->sync, server->backups, server->version, conn->fd);
    pthread_mutex_lock(&server->lock);
    conn->done = true;
    server->clients--;
    pthread_mutex_unlock(&server->lock);
    return NULL;
}

static void ctl_conn_free_list(struct ctl_conn *list)
{
    while (list) {
        struct ctl_conn *next = list->next;

        pthread_join(list->thread, NULL);
        close(list->fd);
        free(list);
        list = next;
    }
}

/* Join and free the connections that have finished. */
static void ctl_server_reap(struct ctl_server *server)
{
    struct ctl_conn *done = NULL, **link;

    pthread_mutex_lock(&server->lock);
    link = &server->conns;
    while (*link) {
        struct ctl_conn *conn = *link;

        if (conn->done) {
            *link = conn->next;
            conn->next = done;
            done = conn;
        } else {
            link = &conn->next;
        }
    }
    pthread_mutex_unlock(&server->lock);
    ctl_conn_free_list(done);
}

/* Refuse a connection over the limit with one `busy` line, then close it. */
static void ctl_server_refuse(int fd)
{
    char message[96];
    json_t *reply;

    snprintf(message, sizeof(message), "too many control connections (%d); try again later",
             CTL_MAX_CLIENTS);
    reply = ctl_reply_error(NULL, -EBUSY, message);
    if (reply) /* a fresh socket's buffer takes a short line without blocking */
        (void)ctl_send_json(fd, reply, -1);
    json_decref(reply);
    close(fd);
}

static void ctl_server_serve(struct ctl_server *server, int fd)
{
    struct ctl_conn *conn;
    int rc;

    ctl_server_reap(server);
    pthread_mutex_lock(&server->lock);
    if (server->clients >= CTL_MAX_CLIENTS) {
        pthread_mutex_unlock(&server->lock);
        log_warn("control socket: refused a connection: %d clients already", CTL_MAX_CLIENTS);
        ctl_server_refuse(fd);
        return;
    }
    conn = calloc(1, sizeof(*conn));
    if (!conn) {
        pthread_mutex_unlock(&server->lock);
        close(fd);
        return;
    }
    conn->server = server;
    conn->fd = fd;
    rc = ctl_thread_start(&conn->thread, ctl_conn_main, conn);
    if (rc) {
        pthread_mutex_unlock(&server->lock);
        log_warn("control socket: cannot start a connection thread: %s", strerror(-rc));
        close(fd);
        free(conn);
        return;
    }
    conn->next = server->conns;
    server->conns = conn;
    server->clients++;
    pthread_mutex_unlock(&server->lock);
}

static void *ctl_server_accept_loop(void *arg)
{
    struct ctl_server *server = arg;
    struct pollfd pfd[2] = {
        {.fd = server->listen_fd, .events = POLLIN},
        {.fd = server->wake[0], .events = POLLIN},
    };

    for (;;) {
        int fd;

        if (poll(pfd, 2, -1) < 0 && errno != EINTR) {
            log_error("control socket: poll: %s", strerror(errno));
            break;
        }
        if (pfd[1].revents)
            break;
        if (!(pfd[0].revents & POLLIN))
            continue;
        fd = accept4(server->listen_fd, NULL, NULL, SOCK_CLOEXEC);
        if (fd >= 0) {
            ctl_server_serve(server, fd);
            continue;
        }
        if (errno == EAGAIN || errno == EINTR || errno == ECONNABORTED)
            continue;
        log_warn("control socket: accept: %s", strerror(errno));
        /* out of descriptors or memory: back off, still waking for stop */
        if (poll(&pfd[1], 1, CTL_ACCEPT_BACKOFF_MS) > 0)
            break;
    }
    return NULL;
}

/* ---- start / stop ---- */

int ctl_server_start(struct sync *sync, struct bk_backups *backups, int listen_fd, const char *path,
                     const char *version, struct ctl_server **out, struct bim_error *err)
{
    struct ctl_server *server = calloc(1, sizeof(*server));
    struct stat st;
    int rc;

    *out = NULL;
    if (!server) {
        rc = bim_error_set(err, -ENOMEM, "out of memory");
        goto fail;
    }
    server->sync = sync;
    server->backups = backups;
    server->listen_fd = listen_fd;
    server->wake[0] = server->wake[1] = -1;
    str_copy(server->path, sizeof(server->path), path);
    str_copy(server->version, sizeof(server->version), version);
    if (lstat(path, &st) == 0 && S_ISSOCK(st.st_mode)) {
        server->have_inode = true;
        server->dev = st.st_dev;
        server->ino = st.st_ino;
    }
    if (fcntl(listen_fd, F_SETFL, fcntl(listen_fd, F_GETFL) | O_NONBLOCK) < 0 ||
        pipe2(server->wake, O_CLOEXEC | O_NONBLOCK) < 0) {
        rc = bim_error_set(err, -errno, "%s", strerror(errno));
        goto fail;
    }
    pthread_mutex_init(&server->lock, NULL);
    rc = ctl_thread_start(&server->accept_thread, ctl_server_accept_loop, server);
    if (rc) {
        bim_error_set(err, rc, "cannot start the accept thread: %s", strerror(-rc));
        pthread_mutex_destroy(&server->lock);
        goto fail;
    }
    *out = server;
    return 0;
fail:
    if (server && server->wake[0] >= 0) {
        close(server->wake[0]);
        close(server->wake[1]);
    }
    free(server);
    close(listen_fd);
    unlink(path);
    return rc;
}

void ctl_server_stop(struct ctl_server *server)
{
    struct ctl_conn *conns;
    struct stat st;

    if (!server)
        return;
    (void)fd_write_all(server->wake[1], "x", 1);
    pthread_join(server->accept_thread, NULL);

    pthread_mutex_lock(&server->lock);
    for (struct ctl_conn *conn = server->conns; conn; conn = conn->next)
        shutdown(conn->fd, SHUT_RDWR);
    conns = server->conns;
    server->conns = NULL;
    pthread_mutex_unlock(&server->lock);
    ctl_conn_free_list(conns);

    close(server->listen_fd);
    close(server->wake[0]);
    close(server->wake[1]);
    /* remove the socket unless another daemon has replaced it meanwhile */
    if (server->have_inode && lstat(server->path, &st) == 0 && st.st_dev == server->dev &&
        st.st_ino == server->ino)
        unlink(server->path);
    pthread_mutex_destroy(&server->lock);
    free(server);
}
