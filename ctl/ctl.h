/*
 * ctl.h - the control socket (SPEC §6): a Unix stream socket, one JSON object
 * per line each way, served from sync's records; and the client side that
 * bimctl uses.
 *
 * Threads: the server runs one accept thread and one thread per connection
 * (at most CTL_MAX_CLIENTS; more are refused). Connection threads share no
 * state but the server's client count (guarded by server->lock) and sync.
 */
#ifndef BIMFS_CTL_H
#define BIMFS_CTL_H

#include "common.h"
#include "backup.h"
#include "sync.h"

#define CTL_MAX_CLIENTS 64
#define CTL_LINE_MAX (1024 * 1024) /* a longer request line closes the connection */
#define CTL_API_VERSION 1

struct ctl_server;

/*
 * Bind and listen on a Unix socket at path (mode 0600; parent directory
 * created 0755 if missing). A socket file with a live daemon behind it is
 * -EADDRINUSE ("socket <path> is in use by a running daemon"); a stale one is
 * replaced.
 */
int ctl_server_bind(const char *path, int *listen_fd, struct bim_error *err);

/* Start serving listen_fd (takes ownership) from sync; backups runs the
 * backup ops (SPEC §10). */
int ctl_server_start(struct sync *sync, struct bk_backups *backups, int listen_fd, const char *path,
                     const char *version, struct ctl_server **out, struct bim_error *err);

/* Stop accepting, close every connection, join threads, unlink the socket. */
void ctl_server_stop(struct ctl_server *server);

/* ---- the HTTP server on --listen (SPEC §8, docs/http.md) ---- */

struct ctl_http;

struct ctl_http_options {
    const char *token;   /* bearer token required on every route but /healthz; NULL: none */
    unsigned send_limit; /* GETs of one image's backing in flight; 0: no limit */
    const char *version; /* shown by /metrics */
};

/*
 * Serve HTTP on listen_fd (a bound, listening TCP socket; taken over even on
 * failure) from sync with libmicrohttpd's own threads: peers' GETs of ready
 * images (sendfile), uploads by PUT, metrics. The token is copied.
 */
int ctl_http_start(struct sync *sync, int listen_fd, const struct ctl_http_options *opts,
                   struct ctl_http **out, struct bim_error *err);

/* Stop accepting, end every connection (a cut upload leaves nothing behind),
 * join the threads, close the socket. */
void ctl_http_stop(struct ctl_http *http);

#endif
