/*
 * http.h - what the files of the HTTP server share (ctl/http/http_*.c; the public
 * API is in ctl.h, the routes in docs/http.md).
 *
 *   http_server.c   start/stop, per-request context, routing, auth, replies
 *   http_range.c    the Range header (pure; unit-tested)
 *   http_images.c   /v1/images, /v1/images/{name}, .../backing, .../extents
 *   http_pieces.c   .../pieces (the piece digests, SPEC §9)
 *   http_metrics.c  /metrics
 *   http_upload.c   PUT /v1/images/{name}
 *   http_check.c    framing, names after percent-decoding, the token
 *   http_guard.c    request-head deadlines, connection limits (hostile clients)
 *
 * Threads: libmicrohttpd's pool threads run the handlers; a struct
 * ctl_http_request belongs to one connection and is touched only by the
 * thread serving it. struct ctl_http is read-only after start, except the
 * atomic response counters and the guard (its own lock, http_guard.c).
 */
#ifndef BIMFS_CTL_HTTP_H
#define BIMFS_CTL_HTTP_H

#include "ctl.h"

#include <jansson.h>
#include <microhttpd.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#define CTL_HTTP_THREADS 4                   /* libmicrohttpd pool threads (poll) */
#define CTL_HTTP_CONNECTIONS_MAX 4096        /* connections at once (fewer if fds are short) */
#define CTL_HTTP_FD_RESERVE 256              /* descriptors left to the rest of the daemon */
#define CTL_HTTP_HEAD_TIMEOUT_S 10           /* to send a complete request head */
#define CTL_HTTP_TIMEOUT_S 60                /* an idle connection (head received) is closed */
#define CTL_HTTP_MEMORY (64u << 10)          /* per connection: request line + headers */
#define CTL_HTTP_TOKEN_HASH 32               /* SHA-256 */
#define CTL_HTTP_METRICS_MAX (64u << 20)     /* /metrics body */
#define CTL_HTTP_EXTENTS_TEXT_MAX (8u << 20) /* /extents body (65536 extents fit) */

struct sync_stream;
struct ctl_http_conn;

/* The request-head deadlines (http_guard.c). */
struct ctl_http_guard {
    pthread_mutex_t lock; /* guards the list, waiting, stop */
    pthread_cond_t cond;  /* CLOCK_MONOTONIC; signalled on stop */
    pthread_t thread;
    bool stop;
    struct ctl_http_conn *waiting_head, *waiting_tail; /* oldest first */
    unsigned waiting;                                  /* connections without a head yet */
    unsigned waiting_max;
    _Atomic uint64_t head_timeouts; /* closed: no complete head in time */
    _Atomic uint64_t evictions;     /* closed: the oldest waiting one when full */
};

struct ctl_http {
    struct MHD_Daemon *mhd;
    struct sync *sync;
    unsigned send_limit;
    bool has_token;
    unsigned char token_hash[CTL_HTTP_TOKEN_HASH];
    char version[64];
    unsigned connection_limit;
    struct ctl_http_guard guard;
    _Atomic uint64_t responses[6]; /* by status class: [2] 2xx ... [5] 5xx */
};

/* A body the answer waits for (a PUT refused before its body without
 * Expect: 100-continue, or that failed midway), or one sent to a route that
 * reads none (GET /healthz with a body), is read and dropped so that
 * the client can read the answer, but at most this much of it; past that
 * the connection is closed without one (a body that never ends, chunked or
 * with a huge Content-Length, would keep a pool thread reading it for ever). */
#define CTL_HTTP_DRAIN_MAX (16u << 20)

/* One request (MHD's per-request context). */
struct ctl_http_request {
    struct ctl_http *http;
    char *path;                    /* the request target as sent, up to '?' (malloc'd) */
    bool nul_escape;               /* the target holds %00 */
    bool started;                  /* the head came (the handler was called) */
    char name[BIM_NAME_MAX + 1];   /* the image the path names, if any */
    bool routed;                   /* the route was chosen (and answered or began) */
    bool defer;                    /* ctl_http_queue() keeps the answer in deferred */
    struct MHD_Response *deferred; /* answered once the body was read and dropped */
    unsigned deferred_status;
    /* a GET of backing: counted in sending_reference until completion */
    bool sending;
    struct sync_send send;
    uint64_t send_length;
    /* a PUT (http_upload.c) */
    bool uploading;
    struct sync_stream *stream;
    char upload_uuid[BIM_UUID_MAX + 1]; /* the image the stream created */
    int upload_rc;                      /* the upload failed: the answer waits for the body's end */
    uint64_t dropped; /* body bytes dropped while the answer waits (CTL_HTTP_DRAIN_MAX) */
    struct bim_error upload_err;
};

/* ---- http_server.c: replies (each returns what the handler returns) ---- */

/* A JSON body (stolen; NULL means out of memory -> 500). */
enum MHD_Result ctl_http_reply_json(struct ctl_http_request *req, struct MHD_Connection *conn,
                                    unsigned status, json_t *body);

/* {"error": {"code": ..., "message": ...}}; code from the status
 * (wire_error_http_code()). */
enum MHD_Result ctl_http_reply_error(struct ctl_http_request *req, struct MHD_Connection *conn,
                                     unsigned status, const char *message);

/* The same with one extra header (NULL: none). */
enum MHD_Result ctl_http_reply_error_with(struct ctl_http_request *req, struct MHD_Connection *conn,
                                          unsigned status, const char *message, const char *header,
                                          const char *value);

/* A sync error as its status (wire_error_http_status(), the table the
 * socket's codes come from): -EINVAL 400, -ENOENT 404, -EEXIST, -EBUSY and
 * -ECANCELED 409, -EFBIG 413, -EAGAIN 503 with Retry-After: 1, others 500
 * (logged). */
enum MHD_Result ctl_http_reply_sync_error(struct ctl_http_request *req, struct MHD_Connection *conn,
                                          int rc, const struct bim_error *err);

/* A plain-text body (copied). */
enum MHD_Result ctl_http_reply_text(struct ctl_http_request *req, struct MHD_Connection *conn,
                                    unsigned status, const char *content_type, const char *body,
                                    size_t len);

/* Queue resp with status, count it, release our reference. */
enum MHD_Result ctl_http_queue(struct ctl_http_request *req, struct MHD_Connection *conn,
                               unsigned status, struct MHD_Response *resp);

/* A growable text buffer of at most `max` bytes (bodies we build). */
struct ctl_http_text {
    char *buf; /* NUL-terminated; malloc'd */
    size_t len;
    size_t cap;
    size_t max;
};

/* Append; -ENOMEM, or -E2BIG past max. */
int ctl_http_text_printf(struct ctl_http_text *t, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* A text body (taken over; freed by MHD). */
enum MHD_Result ctl_http_reply_buffer(struct ctl_http_request *req, struct MHD_Connection *conn,
                                      unsigned status, const char *content_type,
                                      struct ctl_http_text *t);

/* ---- http_check.c ---- */

/* Why the request's framing is invalid (SPEC §8: 400), or NULL: two
 * Content-Length values that differ, a Transfer-Encoding other than one
 * "chunked", or both headers. The same Content-Length repeated is fine. */
const char *ctl_http_framing_error(struct MHD_Connection *conn);

/* Does the request target (as sent) hold "%00"? */
bool ctl_http_target_has_nul(const char *target);

/* Percent-decode one path segment of len bytes into out and check it is a
 * valid image name (SPEC §3). -EINVAL for a bad escape, a decoded NUL or
 * '/', a name too long or invalid. */
int ctl_http_decode_name(const char *segment, size_t len, char *out, size_t outlen);

/* The SHA-256 of a token (all zeros if OpenSSL fails). */
void ctl_http_token_hash(const char *token, size_t len, unsigned char out[CTL_HTTP_TOKEN_HASH]);

/* Does the request carry exactly one "Authorization: Bearer <token>", with
 * nothing after the token (not even behind a NUL)? Always true without
 * --token-file. method: the handler's (it starts the head in memory). */
bool ctl_http_authorized(struct ctl_http *http, struct MHD_Connection *conn, const char *method);

/* ---- http_range.c ---- */

enum ctl_http_range_result {
    CTL_HTTP_RANGE_NONE,          /* no usable Range: serve everything (200) */
    CTL_HTTP_RANGE_PARTIAL,       /* serve [first, last] (206) */
    CTL_HTTP_RANGE_UNSATISFIABLE, /* 416 */
};

/*
 * Judge a Range header value against a representation of `size` bytes
 * (RFC 9110 14.2): "bytes=a-b", "bytes=a-", "bytes=-n". A header that does
 * not parse, is not in bytes, or asks for several ranges is ignored (NONE).
 * A range starting at or past the end is UNSATISFIABLE, as is any range of
 * an empty representation and a suffix of 0 bytes.
 */
enum ctl_http_range_result ctl_http_range_parse(const char *value, uint64_t size, uint64_t *first,
                                                uint64_t *last);

/* ---- the routes ---- */

enum MHD_Result ctl_http_images_list(struct ctl_http_request *req, struct MHD_Connection *conn);
enum MHD_Result ctl_http_image_get(struct ctl_http_request *req, struct MHD_Connection *conn,
                                   const char *name);
enum MHD_Result ctl_http_backing(struct ctl_http_request *req, struct MHD_Connection *conn,
                                 const char *name, bool head);
enum MHD_Result ctl_http_extents(struct ctl_http_request *req, struct MHD_Connection *conn,
                                 const char *name);

/* ---- http_pieces.c ---- */

enum MHD_Result ctl_http_pieces(struct ctl_http_request *req, struct MHD_Connection *conn,
                                const char *name);
enum MHD_Result ctl_http_metrics(struct ctl_http_request *req, struct MHD_Connection *conn);

/* PUT: first called with size NULL (headers only), then for every piece of
 * the body (*size set to 0 when taken), then with *size 0 at its end. */
enum MHD_Result ctl_http_upload(struct ctl_http_request *req, struct MHD_Connection *conn,
                                const char *name, const char *data, size_t *size);

/* The request ended (MHD_OPTION_NOTIFY_COMPLETED): abort an upload that
 * did not finish. refused: libmicrohttpd refused the body's framing (a bad
 * chunk) and answered 4xx itself; the image the upload created is then
 * removed as well (SPEC §8: invalid framing changes nothing). */
void ctl_http_upload_completed(struct ctl_http_request *req, bool ok, bool refused);

/* ---- http_guard.c ---- */

/* How many connections the descriptor limit (RLIMIT_NOFILE) allows, at most
 * CTL_HTTP_CONNECTIONS_MAX. */
unsigned ctl_http_connection_limit(void);

/* Start the deadline thread; at most waiting_max connections wait for
 * their head. 0 or -errno. */
int ctl_http_guard_start(struct ctl_http_guard *guard, unsigned waiting_max);

/* Stop the thread (before MHD_stop_daemon); destroy after it. */
void ctl_http_guard_stop(struct ctl_http_guard *guard);
void ctl_http_guard_destroy(struct ctl_http_guard *guard);

/* MHD_OPTION_NOTIFY_CONNECTION (cls: the guard): a connection opens and
 * waits for its head, or closes. */
void ctl_http_guard_notify(void *cls, struct MHD_Connection *conn, void **socket_context,
                           enum MHD_ConnectionNotificationCode code);

/* The request head came: no head deadline until the request ends. */
void ctl_http_guard_head(struct MHD_Connection *conn);

/* The request ended: the connection waits for the next head. */
void ctl_http_guard_rearm(struct MHD_Connection *conn);

#endif
