/*
 * protocol.h - ctl's private header: the control socket's wire protocol
 * (docs/protocol.md), shared by the server, bimctl and the unit tests.
 *
 * Three parts:
 *  - the wire (protocol.c; links only common + jansson, so bimctl needs no
 *    store/sync): line framing with a bounded buffer and SCM_RIGHTS fds,
 *    sending a JSON value as one line, building and reading replies, error
 *    code names;
 *  - the client (client.c, bimctl_print.c, in bimctl): calls, watch events,
 *    how bimctl prints images;
 *  - the server side (request.c, image.c, session.c; link sync): parsing and
 *    validating a request, converting sync's records to JSON, serving one
 *    connection.
 *
 * Threads: nothing here has shared state; a struct ctl_reader or
 * ctl_request belongs to one thread.
 */
#ifndef BIMFS_CTL_PROTOCOL_H
#define BIMFS_CTL_PROTOCOL_H

#include "ctl.h"
#include "sync.h" /* enum sync_source_type */

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define CTL_DEPTH_MAX 16           /* JSON nesting of a request (the top object is 1) */
#define CTL_PEERS_MAX 16           /* host:port entries in a sync request's `from` */
#define CTL_PEER_MAX 261           /* bytes of one host:port */
#define CTL_URL_MAX 4096           /* bytes of a download URL */
#define CTL_FDS_MAX 16             /* file descriptors queued per connection */
#define CTL_REPLY_MAX (256u << 20) /* longest reply line a client accepts */

/* ---- error codes (SPEC §6) ---- */

/* -errno -> "invalid_argument", "not_found", "already_exists", "busy",
 * "unavailable" or "internal". */
const char *ctl_error_code_name(int rc);

/* A JSON string of text; bytes that are not well-formed UTF-8 become '?'
 * (a message may quote a truncated or foreign string). NULL only on ENOMEM. */
json_t *ctl_json_text(const char *text);

/* ---- line framing ---- */

/* A queued file descriptor and the stream offset of the last byte read with it. */
struct ctl_queued_fd {
    int fd;
    uint64_t offset;
};

/*
 * Reads newline-terminated lines from a stream socket into a buffer that
 * grows up to `max` bytes per line. With accept_fds, SCM_RIGHTS descriptors
 * are received (MSG_CMSG_CLOEXEC) and queued with the stream offset of the
 * last byte read with them; beyond CTL_FDS_MAX they are closed at once. A
 * line owns the fds read no later than its newline: send an fd in the same
 * sendmsg as the first bytes of its request line, one request per sendmsg.
 */
struct ctl_reader {
    char *buf;
    size_t start; /* first byte not yet returned */
    size_t len;   /* bytes in buf */
    size_t cap;
    size_t max;        /* longest line, without its newline */
    uint64_t offset;   /* stream offset of buf[0] */
    uint64_t line_end; /* stream offset just past the last line returned */
    bool accept_fds;
    struct ctl_queued_fd fds[CTL_FDS_MAX];
    size_t fd_count;
};

void ctl_reader_init(struct ctl_reader *r, size_t max, bool accept_fds);

/* Free the buffer and close every queued fd. */
void ctl_reader_clear(struct ctl_reader *r);

/*
 * Next line (without "\n" or "\r\n", NUL-terminated, valid until the next
 * call): 1 with line and len set; 0 at end of stream (a last line without a newline
 * is returned first); -E2BIG when a line exceeds max (the stream cannot be
 * resynchronised); -errno on a socket error.
 */
int ctl_reader_next(struct ctl_reader *r, int fd, char **line, size_t *len);

/* The first queued fd that came with the last line returned (or before), or
 * -1. The caller owns it. */
int ctl_reader_fd_take(struct ctl_reader *r);

/* Close the queued fds that came with the last line returned (or before). */
void ctl_reader_fd_drop_stale(struct ctl_reader *r);

/*
 * Send `value` as one compact line (jansson never emits a raw newline) with
 * MSG_NOSIGNAL. pass_fd >= 0 travels in SCM_RIGHTS with the first byte.
 * 0 or -errno.
 */
int ctl_send_json(int fd, const json_t *value, int pass_fd);

/* ---- replies ---- */

/* {"id": id (if any), "ok": true, "result": result}; steals result. NULL on
 * allocation failure. */
json_t *ctl_reply_ok(json_t *id, json_t *result);

/* {"id": id (if any), "ok": false, "error": {"code": ..., "message": ...}} */
json_t *ctl_reply_error(json_t *id, int rc, const char *message);

/* A reply as a client reads it; pointers borrow from root. */
struct ctl_reply {
    json_t *root;
    json_t *id; /* NULL if none */
    bool ok;
    json_t *result;      /* ok: the result */
    const char *code;    /* !ok: the error code */
    const char *message; /* !ok: the message */
};

/* Parse one reply line. -EPROTO with a message when it is not a reply. */
int ctl_reply_parse(const char *line, size_t len, struct ctl_reply *out, struct bim_error *err);
void ctl_reply_clear(struct ctl_reply *reply);

/* ---- client side (client.c, linked into bimctl) ---- */

#define CTL_SOCKET_DEFAULT "/run/bimfs/bimfs.sock"

/* One connection to the daemon; requests are sent one at a time. */
struct ctl_client {
    int fd;
    struct ctl_reader reader;
    json_int_t next_id;
};

/* Connect to the socket at path: 0 or -errno. */
int ctl_client_connect(struct ctl_client *client, const char *path);
void ctl_client_close(struct ctl_client *client);

/*
 * Send request (an object; an "id" is added) with pass_fd (>= 0) in
 * SCM_RIGHTS, and read its reply. 0: *reply holds it (ok or not; clear it).
 * -errno with a message when the connection fails or the daemon sends
 * something that is not the reply.
 */
int ctl_client_call(struct ctl_client *client, json_t *request, int pass_fd,
                    struct ctl_reply *reply, struct bim_error *err);

/* After a watch reply: the next event line. 1 and *event (decref it); 0 when
 * the daemon closed the connection; -errno with a message. */
int ctl_client_event(struct ctl_client *client, json_t **event, struct bim_error *err);

/* ---- bimctl's output (bimctl_print.c) ---- */

/* 1024-based with one decimal: "512B", "1.5K", "2.2G". */
void bimctl_size_format(uint64_t bytes, char *out, size_t outlen);

/* "[EVENT ]NAME STATE PROGRESS% uuid=UUID[ error: MESSAGE]", flushed. */
void bimctl_status_line(FILE *out, const char *event, json_t *image);

/* The `list` table: NAME UUID STATE PROGRESS SIZE FORMAT SOURCE. */
void bimctl_table_print(FILE *out, json_t *map);

/* The `get` view: one "label: value" line per field. */
void bimctl_image_print(FILE *out, json_t *image);

/* Redraw / erase the --wait progress bar (on a terminal). */
void bimctl_progress_draw(FILE *out, json_t *image);
void bimctl_progress_clear(FILE *out);

/* "bimctl: <name>: <message>" on stderr, or "bimctl: <message>" when name
 * is NULL (a command that names no image). */
void bimctl_reportf(const char *name, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* A daemon's message: its leading name (or the daemon's shortened form of
 * a too-long name) is dropped so that the name appears once. */
void bimctl_report(const char *name, const char *message);

/* ---- server side: requests ---- */

enum ctl_op {
    CTL_OP_VERSION,
    CTL_OP_LIST,
    CTL_OP_GET,
    CTL_OP_CREATE,
    CTL_OP_SYNC,
    CTL_OP_DELETE,
    CTL_OP_WATCH,
};

/* A validated request; the strings borrow from root. */
struct ctl_request {
    json_t *root;
    json_t *id; /* NULL if the request had none */
    enum ctl_op op;
    const char *name; /* NULL when absent (list, version, watch of all) */
    const char *uuid; /* NULL when absent */
    const char *checksum;
    enum sync_source_type source;         /* create and sync (SYNC_SOURCE_PEER) */
    const char *url;                      /* download */
    const char *clone_from;               /* clone */
    const char *peers[CTL_PEERS_MAX + 1]; /* sync: NULL-terminated */
    size_t peer_count;
    uint64_t size; /* sync: 0 if absent */
};

/*
 * Parse and validate one request line. On -EINVAL the message says why
 * ("<name>: <cause>" when the name is known) and req->id is still set when
 * the line was an object with an id. Always call ctl_request_clear().
 */
int ctl_request_parse(const char *line, size_t len, struct ctl_request *req, struct bim_error *err);
void ctl_request_clear(struct ctl_request *req);

/* "version", "list", ... */
const char *ctl_op_name(enum ctl_op op);

/* http or https with a host, at most CTL_URL_MAX bytes, no spaces or control
 * characters; else -EINVAL with a cause (never echoing the URL). */
int ctl_url_check(const char *url, struct bim_error *err);

/* "host:port" (host a DNS name, IPv4 or [IPv6]; port 1-65535). */
bool ctl_peer_valid(const char *peer);

/* ---- server side: records as JSON (SPEC §6, Longhorn's field names) ---- */

struct sync_image_info;
struct sync_event;
struct sync;

json_t *ctl_image_to_json(const struct sync_image_info *info);

/* {"event": "update"|"delete", "image": {...}} */
json_t *ctl_event_to_json(const struct sync_event *ev);

/* The `list` result: an object name -> image. NULL on allocation failure. */
json_t *ctl_images_to_json(const struct sync_image_info *images, size_t count);

/* ---- server side: one connection (session.c) ---- */

/* Serve one connection until the client closes it, a line is too long, or
 * the fd is shut down by ctl_server_stop(). Does not close fd. */
void ctl_session_run(struct sync *sync, const char *version, int fd);

#endif
