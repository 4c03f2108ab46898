/*
 * http_server.c - the HTTP server on --listen (SPEC §8): libmicrohttpd's
 * daemon on the socket main bound, per-request contexts, routing, bearer
 * token checks, and the reply helpers the routes share.
 *
 * Threads: CTL_HTTP_THREADS libmicrohttpd pool threads (poll(2), one each)
 * run ctl_http_handle() and ctl_http_completed(); each connection is served
 * by one of them, so a request context is never shared. Not epoll: with
 * libmicrohttpd 0.9.75's edge-triggered epoll, a client that closes right
 * after sending a body it had no room for is not noticed until the
 * connection times out (docs/http.md), and a cut upload must go at once.
 * The request context is made by the URI log callback (it keeps the target
 * as sent, for routing); the guard thread (http_guard.c) bounds the time to
 * a complete head.
 * struct ctl_http is read-only after start but for the atomic response
 * counters. No lock of ours is held across network I/O: sync's functions
 * take sync->lock briefly.
 */
#include "http.h"
#include "request.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#define CTL_HTTP_IMAGES "/v1/images"

/* ---- replies ---- */

enum MHD_Result ctl_http_queue(struct ctl_http_request *req, struct MHD_Connection *conn,
                               unsigned status, struct MHD_Response *resp)
{
    enum MHD_Result r;

    if (!resp)
        return MHD_NO; /* out of memory: MHD closes the connection */
    if (status / 100 < 6)
        atomic_fetch_add(&req->http->responses[status / 100], 1);
    if (req->defer) {
        /* answered once the body has been read (see ctl_http_handle) */
        req->deferred = resp;
        req->deferred_status = status;
        return MHD_YES;
    }
    r = MHD_queue_response(conn, status, resp);
    MHD_destroy_response(resp);
    return r;
}

enum MHD_Result ctl_http_reply_text(struct ctl_http_request *req, struct MHD_Connection *conn,
                                    unsigned status, const char *content_type, const char *body,
                                    size_t len)
{
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(len, (void *)body, MHD_RESPMEM_MUST_COPY);

    if (resp)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, content_type);
    return ctl_http_queue(req, conn, status, resp);
}

int ctl_http_text_printf(struct ctl_http_text *t, const char *fmt, ...)
{
    va_list ap;
    int n;

    for (;;) {
        size_t room = t->cap - t->len;

        va_start(ap, fmt);
        n = vsnprintf(t->buf ? t->buf + t->len : NULL, room, fmt, ap);
        va_end(ap);
        if (n < 0)
            return -EINVAL;
        if ((size_t)n < room) {
            t->len += (size_t)n;
            return 0;
        }
        if (t->len + (size_t)n + 1 > t->max)
            return -E2BIG;
        size_t cap = t->cap ? t->cap : 4096;
        while (cap < t->len + (size_t)n + 1)
            cap *= 2;
        if (cap > t->max)
            cap = t->max;
        char *buf = realloc(t->buf, cap);
        if (!buf)
            return -ENOMEM;
        t->buf = buf;
        t->cap = cap;
    }
}

enum MHD_Result ctl_http_reply_buffer(struct ctl_http_request *req, struct MHD_Connection *conn,
                                      unsigned status, const char *content_type,
                                      struct ctl_http_text *t)
{
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(t->len, t->buf ? t->buf : (char *)"",
                                        t->buf ? MHD_RESPMEM_MUST_FREE : MHD_RESPMEM_PERSISTENT);

    if (!resp) {
        free(t->buf);
        t->buf = NULL;
        return MHD_NO;
    }
    t->buf = NULL;
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, content_type);
    return ctl_http_queue(req, conn, status, resp);
}

/* A JSON body (stolen) with one extra header (NULL: none). */
static enum MHD_Result ctl_http_reply_json_with(struct ctl_http_request *req,
                                                struct MHD_Connection *conn, unsigned status,
                                                json_t *body, const char *header, const char *value)
{
    struct MHD_Response *resp = NULL;
    char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;

    json_decref(body);
    if (!text)
        return ctl_http_reply_text(req, conn, MHD_HTTP_INTERNAL_SERVER_ERROR, "text/plain",
                                   "out of memory\n", 14);
    resp = MHD_create_response_from_buffer(strlen(text), text, MHD_RESPMEM_MUST_FREE);
    if (!resp) {
        free(text);
        return MHD_NO;
    }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
    if (header)
        MHD_add_response_header(resp, header, value);
    return ctl_http_queue(req, conn, status, resp);
}

enum MHD_Result ctl_http_reply_json(struct ctl_http_request *req, struct MHD_Connection *conn,
                                    unsigned status, json_t *body)
{
    return ctl_http_reply_json_with(req, conn, status, body, NULL, NULL);
}

enum MHD_Result ctl_http_reply_error_with(struct ctl_http_request *req, struct MHD_Connection *conn,
                                          unsigned status, const char *message, const char *header,
                                          const char *value)
{
    json_t *body = json_pack("{s:{s:s, s:o}}", "error", "code", wire_error_http_code(status),
                             "message", wire_json_text(message));

    return ctl_http_reply_json_with(req, conn, status, body, header, value);
}

enum MHD_Result ctl_http_reply_error(struct ctl_http_request *req, struct MHD_Connection *conn,
                                     unsigned status, const char *message)
{
    return ctl_http_reply_error_with(req, conn, status, message, NULL, NULL);
}

enum MHD_Result ctl_http_reply_sync_error(struct ctl_http_request *req, struct MHD_Connection *conn,
                                          int rc, const struct bim_error *err)
{
    const char *message = err->message[0] ? err->message : strerror(-rc);
    unsigned status = wire_error_http_status(rc); /* the socket's code comes from the same row */

    if (status == MHD_HTTP_SERVICE_UNAVAILABLE) /* a peer waits this long and asks again */
        return ctl_http_reply_error_with(req, conn, status, message, MHD_HTTP_HEADER_RETRY_AFTER,
                                         "1");
    if (status == MHD_HTTP_INTERNAL_SERVER_ERROR)
        log_warn("http: %s", message);
    return ctl_http_reply_error(req, conn, status, message);
}

static enum MHD_Result ctl_http_reply_method(struct ctl_http_request *req,
                                             struct MHD_Connection *conn, const char *allow)
{
    return ctl_http_reply_error_with(req, conn, MHD_HTTP_METHOD_NOT_ALLOWED, "method not allowed",
                                     MHD_HTTP_HEADER_ALLOW, allow);
}

/* ---- authentication (the check is in http_check.c) ---- */

static enum MHD_Result ctl_http_reply_unauthorized(struct ctl_http_request *req,
                                                   struct MHD_Connection *conn)
{
    return ctl_http_reply_error_with(req, conn, MHD_HTTP_UNAUTHORIZED,
                                     "a valid Authorization: Bearer token is required",
                                     MHD_HTTP_HEADER_WWW_AUTHENTICATE, "Bearer realm=\"bimfs\"");
}

/* ---- routing ---- */

static bool ctl_http_method_is(const char *method, const char *want)
{
    return strcmp(method, want) == 0;
}

/* /v1/images/{name}[/backing|/extents|/pieces] (rest is what follows "/v1/images/"
 * in the target as sent: the name is decoded here, after the split, so an
 * encoded '/' is part of the name, which makes it invalid). */
static enum MHD_Result ctl_http_route_image(struct ctl_http_request *req,
                                            struct MHD_Connection *conn, const char *rest,
                                            const char *method)
{
    char name[BIM_NAME_MAX + 1];
    const char *slash = strchr(rest, '/');
    const char *suffix = "";
    size_t len = strlen(rest);
    bool get = ctl_http_method_is(method, MHD_HTTP_METHOD_GET);
    bool head = ctl_http_method_is(method, MHD_HTTP_METHOD_HEAD);

    if (slash) {
        suffix = slash + 1;
        len = (size_t)(slash - rest);
    }
    if ((suffix[0] && strcmp(suffix, "backing") != 0 && strcmp(suffix, "extents") != 0 &&
         strcmp(suffix, "pieces") != 0) ||
        ctl_http_decode_name(rest, len, name, sizeof(name)) != 0)
        return ctl_http_reply_error(req, conn, MHD_HTTP_BAD_REQUEST,
                                    "invalid image name in the path: must match "
                                    "^[a-zA-Z0-9][a-zA-Z0-9_.-]+$ (at most 64 bytes) once "
                                    "percent-decoded");
    str_copy(req->name, sizeof(req->name), name);
    if (strcmp(suffix, "backing") == 0) {
        if (!get && !head)
            return ctl_http_reply_method(req, conn, "GET, HEAD");
        return ctl_http_backing(req, conn, name, head);
    }
    if (strcmp(suffix, "extents") == 0) {
        if (!get && !head)
            return ctl_http_reply_method(req, conn, "GET, HEAD");
        return ctl_http_extents(req, conn, name);
    }
    if (strcmp(suffix, "pieces") == 0) {
        if (!get && !head)
            return ctl_http_reply_method(req, conn, "GET, HEAD");
        return ctl_http_pieces(req, conn, name);
    }
    if (ctl_http_method_is(method, MHD_HTTP_METHOD_PUT)) {
        req->uploading = true;
        return ctl_http_upload(req, conn, name, NULL, NULL);
    }
    if (!get && !head)
        return ctl_http_reply_method(req, conn, "GET, HEAD, PUT");
    return ctl_http_image_get(req, conn, name);
}

/* Routes match the target as sent (req->path), not libmicrohttpd's decoded
 * copy, in which "%2F" would split a name and "%00" end it. */
static enum MHD_Result ctl_http_route(struct ctl_http_request *req, struct MHD_Connection *conn,
                                      const char *method)
{
    const char *url = req->path;
    bool get = ctl_http_method_is(method, MHD_HTTP_METHOD_GET) ||
               ctl_http_method_is(method, MHD_HTTP_METHOD_HEAD);

    if (req->nul_escape)
        return ctl_http_reply_error(req, conn, MHD_HTTP_BAD_REQUEST,
                                    "invalid request target: it holds %00");
    if (strcmp(url, "/healthz") == 0) {
        if (!get)
            return ctl_http_reply_method(req, conn, "GET, HEAD");
        return ctl_http_reply_text(req, conn, MHD_HTTP_OK, "text/plain", "ok", 2);
    }
    if (!ctl_http_authorized(req->http, conn, method))
        return ctl_http_reply_unauthorized(req, conn);
    if (strcmp(url, "/metrics") == 0) {
        if (!get)
            return ctl_http_reply_method(req, conn, "GET, HEAD");
        return ctl_http_metrics(req, conn);
    }
    if (strcmp(url, CTL_HTTP_IMAGES) == 0 || strcmp(url, CTL_HTTP_IMAGES "/") == 0) {
        if (!get)
            return ctl_http_reply_method(req, conn, "GET, HEAD");
        return ctl_http_images_list(req, conn);
    }
    if (strncmp(url, CTL_HTTP_IMAGES "/", sizeof(CTL_HTTP_IMAGES)) == 0)
        return ctl_http_route_image(req, conn, url + sizeof(CTL_HTTP_IMAGES), method);
    return ctl_http_reply_error(req, conn, MHD_HTTP_NOT_FOUND, "no such route");
}

/*
 * libmicrohttpd calls this first with the headers (no context yet), then
 * with each piece of the body, then once more with *upload_data_size 0. A
 * response queued before the request was read completely makes it close the
 * connection, so every route answers from the last call, but PUT: it is
 * routed from the first (an upload begins before its body comes). A PUT
 * refused at once is answered at once when the client waits for "100
 * Continue" (it has not sent the body); otherwise the answer waits until
 * the body has been read and dropped, so that the client can read it (at
 * most CTL_HTTP_DRAIN_MAX of it: then the connection is closed).
 */
static bool ctl_http_expects_continue(struct MHD_Connection *conn)
{
    const char *v = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_EXPECT);

    return v && strcasecmp(v, "100-continue") == 0;
}

/* MHD_OPTION_URI_LOG_CALLBACK: the request line came; its target is kept
 * as sent (libmicrohttpd decodes its own copy). The context is the
 * handler's *con_cls; NULL (out of memory) ends the connection there. */
static void *ctl_http_request_new(void *cls, const char *uri, struct MHD_Connection *conn)
{
    struct ctl_http_request *req = calloc(1, sizeof(*req));

    (void)conn;
    if (!req)
        return NULL;
    req->http = cls;
    req->send.fd = -1;
    req->path = strndup(uri, strcspn(uri, "?"));
    req->nul_escape = ctl_http_target_has_nul(uri);
    if (!req->path) {
        free(req);
        return NULL;
    }
    return req;
}

static enum MHD_Result ctl_http_handle(void *cls, struct MHD_Connection *conn, const char *url,
                                       const char *method, const char *version,
                                       const char *upload_data, size_t *upload_data_size,
                                       void **con_cls)
{
    struct ctl_http_request *req = *con_cls;
    const char *framing;
    enum MHD_Result r;

    (void)cls;
    (void)version;
    if (!req)
        return MHD_NO;
    if (!req->started) {
        /* the head is complete */
        req->started = true;
        ctl_http_guard_head(conn);
        log_debug("http: %s %s", method, url);
        framing = ctl_http_framing_error(conn);
        if (framing) {
            /* answered before the body, which cannot be told from what
             * follows it: libmicrohttpd closes the connection after */
            req->routed = true;
            return ctl_http_reply_error(req, conn, MHD_HTTP_BAD_REQUEST, framing);
        }
        if (!ctl_http_method_is(method, MHD_HTTP_METHOD_PUT))
            return MHD_YES;
        req->routed = true;
        req->defer = !ctl_http_expects_continue(conn);
        r = ctl_http_route(req, conn, method);
        req->defer = false;
        return r;
    }
    if (req->deferred) {
        if (*upload_data_size > 0) {
            req->dropped += *upload_data_size;
            *upload_data_size = 0;
            if (req->dropped > CTL_HTTP_DRAIN_MAX) {
                log_info("http: %s %s refused; closing the connection after %u bytes of its body",
                         method, url, CTL_HTTP_DRAIN_MAX);
                return MHD_NO;
            }
            return MHD_YES;
        }
        r = MHD_queue_response(conn, req->deferred_status, req->deferred);
        MHD_destroy_response(req->deferred);
        req->deferred = NULL;
        return r;
    }
    if (req->uploading)
        return ctl_http_upload(req, conn, req->name, upload_data, upload_data_size);
    if (*upload_data_size > 0) {
        /* a body no route reads: dropped, but no more than CTL_HTTP_DRAIN_MAX of it */
        req->dropped += *upload_data_size;
        *upload_data_size = 0;
        if (req->dropped > CTL_HTTP_DRAIN_MAX) {
            log_info("http: %s %s: closing the connection after %u bytes of a body no route "
                     "reads",
                     method, url, CTL_HTTP_DRAIN_MAX);
            return MHD_NO;
        }
        return MHD_YES;
    }
    if (req->routed)
        return MHD_YES;
    req->routed = true;
    return ctl_http_route(req, conn, method);
}

static void ctl_http_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                               enum MHD_RequestTerminationCode toe)
{
    struct ctl_http_request *req = *con_cls;
    bool ok = toe == MHD_REQUEST_TERMINATED_COMPLETED_OK;

    (void)cls;
    ctl_http_guard_rearm(conn); /* if it stays open, the next head is due */
    if (!req)
        return;
    if (req->deferred)
        MHD_destroy_response(req->deferred);
    if (req->sending) {
        /* bytes reached the peer only if the whole response went out */
        sync_send_end(req->http->sync, &req->send, ok ? req->send_length : 0);
        if (!ok)
            log_debug("image=%s uuid=%s send ended early (%d)", req->send.name, req->send.uuid,
                      (int)toe);
    }
    if (req->uploading) {
        /* a response we did not queue while the body was coming is
         * libmicrohttpd's refusal of its framing */
        const union MHD_ConnectionInfo *info =
            MHD_get_connection_info(conn, MHD_CONNECTION_INFO_HTTP_STATUS);

        ctl_http_upload_completed(req, ok, !ok && info && info->http_status >= 400);
    }
    free(req->path);
    free(req);
    *con_cls = NULL;
}

/* libmicrohttpd's own messages (a client that went away, a bad request
 * line...) are for debugging only. */
static void ctl_http_log(void *cls, const char *fmt, va_list ap)
{
    char line[512];
    size_t n;

    (void)cls;
    if (!log_debug_enabled())
        return;
    vsnprintf(line, sizeof(line), fmt, ap);
    n = strlen(line);
    while (n > 0 && line[n - 1] == '\n')
        line[--n] = '\0';
    log_debug("http: libmicrohttpd: %s", line);
}

int ctl_http_start(struct sync *sync, int listen_fd, const struct ctl_http_options *opts,
                   struct ctl_http **out, struct bim_error *err)
{
    struct ctl_http *http;
    bool guarded = false;
    int flags, rc;

    *out = NULL;
    http = calloc(1, sizeof(*http));
    if (!http) {
        rc = bim_error_set(err, -ENOMEM, "out of memory");
        goto out;
    }
    http->sync = sync;
    http->send_limit = opts->send_limit;
    str_copy(http->version, sizeof(http->version), opts->version ? opts->version : "");
    if (opts->token && opts->token[0]) {
        http->has_token = true;
        ctl_http_token_hash(opts->token, strlen(opts->token), http->token_hash);
    }
    /* the pool threads share the socket: accept must not block */
    flags = fcntl(listen_fd, F_GETFL);
    if (flags < 0 || fcntl(listen_fd, F_SETFL, flags | O_NONBLOCK) < 0) {
        rc = bim_error_set(err, -errno, "cannot set up the HTTP socket: %s", strerror(errno));
        goto out;
    }
    /* a quarter of the connections stay for requests whose head came */
    http->connection_limit = ctl_http_connection_limit();
    rc = ctl_http_guard_start(&http->guard, http->connection_limit / 4 * 3);
    if (rc) {
        bim_error_set(err, rc, "cannot start the HTTP guard thread: %s", strerror(-rc));
        goto out;
    }
    guarded = true;
    if (http->connection_limit < 1024)
        log_warn("http: only %u connections at once (RLIMIT_NOFILE is low)",
                 http->connection_limit);
    /* no per-address limit: a client behind the same address as an abuser
     * would be refused; waiting connections are bounded by the guard */
    http->mhd = MHD_start_daemon(
        MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_POLL | MHD_USE_ERROR_LOG, 0, NULL, NULL,
        ctl_http_handle, http, MHD_OPTION_LISTEN_SOCKET, (MHD_socket)listen_fd,
        MHD_OPTION_THREAD_POOL_SIZE, (unsigned)CTL_HTTP_THREADS, MHD_OPTION_CONNECTION_LIMIT,
        http->connection_limit, MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)CTL_HTTP_TIMEOUT_S,
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)CTL_HTTP_MEMORY, MHD_OPTION_STRICT_FOR_CLIENT,
        1, MHD_OPTION_NOTIFY_CONNECTION, ctl_http_guard_notify, &http->guard,
        MHD_OPTION_URI_LOG_CALLBACK, ctl_http_request_new, http, MHD_OPTION_NOTIFY_COMPLETED,
        ctl_http_completed, http, MHD_OPTION_EXTERNAL_LOGGER, ctl_http_log, http, MHD_OPTION_END);
    if (!http->mhd) {
        rc = bim_error_set(err, -EIO, "cannot start the HTTP server (libmicrohttpd)");
        goto out;
    }
    listen_fd = -1; /* closed by MHD_stop_daemon */
    if (!MHD_is_feature_supported(MHD_FEATURE_SENDFILE))
        log_warn("http: this libmicrohttpd cannot use sendfile; images are served by copying");
    *out = http;
    http = NULL;
    rc = 0;
out:
    if (listen_fd >= 0)
        close(listen_fd);
    if (http && guarded) {
        ctl_http_guard_stop(&http->guard);
        ctl_http_guard_destroy(&http->guard);
    }
    free(http);
    return rc;
}

void ctl_http_stop(struct ctl_http *http)
{
    if (!http)
        return;
    ctl_http_guard_stop(&http->guard);
    /* ends every connection: NOTIFY_COMPLETED runs for each request in
     * flight (sends end, uploads abort), then the socket is closed */
    MHD_stop_daemon(http->mhd);
    ctl_http_guard_destroy(&http->guard);
    free(http);
}
