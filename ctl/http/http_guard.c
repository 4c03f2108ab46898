/*
 * http_guard.c - idle and slow clients cannot starve the HTTP server (SPEC
 * §8, docs/http.md "Hostile clients").
 *
 * Every connection has CTL_HTTP_HEAD_TIMEOUT_S from when it opened (or from
 * the end of its previous request) to deliver a complete request head.
 * libmicrohttpd's own timeout is an idle timeout that any trickled byte
 * resets, so the guard keeps its own deadline: past it, the socket is shut
 * down (libmicrohttpd then sees the end of the stream and closes it). At
 * most `waiting_max` connections may wait for their head at once: one more
 * shuts down the oldest waiting one, so the rest of the connection limit is
 * always left to connections that sent a request. A connection whose head
 * came is governed by the long idle timeout (CTL_HTTP_TIMEOUT_S) instead.
 *
 * Threads: the guard thread (ctl_http_guard_run) wakes at the earliest
 * deadline; libmicrohttpd's pool threads call the hooks. guard->lock guards
 * the waiting list (oldest first, so deadline order), its count, and every
 * struct ctl_http_conn's links. A waiting socket is shut down under the
 * lock: shutdown(2) does not block, and libmicrohttpd closes a socket only
 * after MHD_CONNECTION_NOTIFY_CLOSED, which takes the lock to unlink it, so
 * the descriptor cannot be closed and reused meanwhile.
 */
#include "http.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>

/* One connection (libmicrohttpd's socket context). */
struct ctl_http_conn {
    struct ctl_http_guard *guard;
    struct ctl_http_conn *prev, *next; /* in guard->waiting_head..tail */
    bool waiting;                      /* linked: no complete request head yet */
    int fd;
    uint64_t deadline_ms; /* CLOCK_MONOTONIC */
};

static uint64_t ctl_http_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

unsigned ctl_http_connection_limit(void)
{
    struct rlimit rl;
    uint64_t fds, limit;

    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return 64;
    fds = rl.rlim_cur == RLIM_INFINITY ? UINT64_MAX : (uint64_t)rl.rlim_cur;
    if (fds <= CTL_HTTP_FD_RESERVE + 96)
        return 64;
    /* a connection sending an image holds its file too: at the limit,
     * waiting_max waiting sockets plus the rest sending fit in 5/6 */
    limit = (fds - CTL_HTTP_FD_RESERVE) / 3 * 2;
    return limit > CTL_HTTP_CONNECTIONS_MAX ? CTL_HTTP_CONNECTIONS_MAX : (unsigned)limit;
}

/* Under the lock. */
static void ctl_http_guard_unlink(struct ctl_http_guard *g, struct ctl_http_conn *c)
{
    if (!c->waiting)
        return;
    if (c->prev)
        c->prev->next = c->next;
    else
        g->waiting_head = c->next;
    if (c->next)
        c->next->prev = c->prev;
    else
        g->waiting_tail = c->prev;
    c->prev = c->next = NULL;
    c->waiting = false;
    g->waiting--;
}

/* Under the lock: the deadline is now + the timeout, never earlier than
 * the tail's, so the list stays in deadline order. */
static void ctl_http_guard_append(struct ctl_http_guard *g, struct ctl_http_conn *c)
{
    if (c->waiting)
        return;
    c->deadline_ms = ctl_http_now_ms() + (uint64_t)CTL_HTTP_HEAD_TIMEOUT_S * 1000;
    c->prev = g->waiting_tail;
    c->next = NULL;
    if (g->waiting_tail)
        g->waiting_tail->next = c;
    else
        g->waiting_head = c;
    g->waiting_tail = c;
    c->waiting = true;
    g->waiting++;
}

/* Under the lock. */
static void ctl_http_guard_close(struct ctl_http_guard *g, struct ctl_http_conn *c,
                                 _Atomic uint64_t *counter)
{
    ctl_http_guard_unlink(g, c);
    (void)shutdown(c->fd, SHUT_RDWR);
    atomic_fetch_add(counter, 1);
}

static void *ctl_http_guard_run(void *arg)
{
    struct ctl_http_guard *g = arg;

    pthread_mutex_lock(&g->lock);
    while (!g->stop) {
        uint64_t now = ctl_http_now_ms();
        uint64_t wake = now + 1000;
        struct timespec ts;

        while (g->waiting_head && g->waiting_head->deadline_ms <= now)
            ctl_http_guard_close(g, g->waiting_head, &g->head_timeouts);
        if (g->waiting_head && g->waiting_head->deadline_ms < wake)
            wake = g->waiting_head->deadline_ms;
        ts.tv_sec = (time_t)(wake / 1000);
        ts.tv_nsec = (long)(wake % 1000) * 1000000;
        pthread_cond_timedwait(&g->cond, &g->lock, &ts);
    }
    pthread_mutex_unlock(&g->lock);
    return NULL;
}

int ctl_http_guard_start(struct ctl_http_guard *g, unsigned waiting_max)
{
    pthread_condattr_t attr;
    int rc;

    memset(g, 0, sizeof(*g));
    g->waiting_max = waiting_max ? waiting_max : 1;
    rc = -pthread_condattr_init(&attr);
    if (rc)
        return rc;
    rc = -pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    if (!rc)
        rc = -pthread_cond_init(&g->cond, &attr);
    pthread_condattr_destroy(&attr);
    if (rc)
        return rc;
    rc = -pthread_mutex_init(&g->lock, NULL);
    if (rc)
        goto out_cond;
    rc = -pthread_create(&g->thread, NULL, ctl_http_guard_run, g);
    if (rc)
        goto out_lock;
    return 0;
out_lock:
    pthread_mutex_destroy(&g->lock);
out_cond:
    pthread_cond_destroy(&g->cond);
    return rc;
}

void ctl_http_guard_stop(struct ctl_http_guard *g)
{
    pthread_mutex_lock(&g->lock);
    g->stop = true;
    pthread_cond_signal(&g->cond);
    pthread_mutex_unlock(&g->lock);
    pthread_join(g->thread, NULL);
}

void ctl_http_guard_destroy(struct ctl_http_guard *g)
{
    pthread_mutex_destroy(&g->lock);
    pthread_cond_destroy(&g->cond);
}

void ctl_http_guard_notify(void *cls, struct MHD_Connection *conn, void **socket_context,
                           enum MHD_ConnectionNotificationCode code)
{
    struct ctl_http_guard *g = cls;
    struct ctl_http_conn *c = *socket_context;
    const union MHD_ConnectionInfo *info;

    if (code == MHD_CONNECTION_NOTIFY_CLOSED) {
        if (!c)
            return;
        pthread_mutex_lock(&g->lock);
        ctl_http_guard_unlink(g, c);
        pthread_mutex_unlock(&g->lock);
        free(c);
        *socket_context = NULL;
        return;
    }
    info = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    if (!info)
        return;
    c = calloc(1, sizeof(*c));
    if (!c) {
        (void)shutdown(info->connect_fd, SHUT_RDWR); /* cannot be guarded: refused */
        return;
    }
    c->guard = g;
    c->fd = info->connect_fd;
    *socket_context = c;
    pthread_mutex_lock(&g->lock);
    if (g->waiting >= g->waiting_max && g->waiting_head)
        ctl_http_guard_close(g, g->waiting_head, &g->evictions);
    ctl_http_guard_append(g, c);
    pthread_mutex_unlock(&g->lock);
}

static struct ctl_http_conn *ctl_http_conn_of(struct MHD_Connection *conn)
{
    const union MHD_ConnectionInfo *info =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);

    return info ? info->socket_context : NULL;
}

void ctl_http_guard_head(struct MHD_Connection *conn)
{
    struct ctl_http_conn *c = ctl_http_conn_of(conn);

    if (!c)
        return;
    pthread_mutex_lock(&c->guard->lock);
    ctl_http_guard_unlink(c->guard, c);
    pthread_mutex_unlock(&c->guard->lock);
}

void ctl_http_guard_rearm(struct MHD_Connection *conn)
{
    struct ctl_http_conn *c = ctl_http_conn_of(conn);

    if (!c)
        return;
    pthread_mutex_lock(&c->guard->lock);
    ctl_http_guard_append(c->guard, c);
    pthread_mutex_unlock(&c->guard->lock);
}
