/*
 * protocol.h - ctl's private header: the control socket's wire protocol
 * (docs/protocol.md), shared by the server, bimctl and the unit tests.
 *
 Two parts, both linking only common, jansson and the wire codec
 * (common/wire/wire.h: the image object, error codes, name syntax), so
 * bimctl needs neither store nor sync:
 *  - the wire (protocol.c): line framing with a bounded buffer and SCM_RIGHTS
 *    fds, sending a JSON value as one line, building and reading replies;
 *  - the client (client.c, bimctl_print.c, in bimctl): calls, watch events,
 *    how bimctl prints images.
 * The server side (requests, records as JSON, one connection) is in
 * request.h.
 *
 * Threads: nothing here has shared state; a struct ctl_reader or
 * ctl_request belongs to one thread.
 */
#ifndef BIMFS_CTL_PROTOCOL_H
#define BIMFS_CTL_PROTOCOL_H

#include "common.h"
#include "wire.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define CTL_DEPTH_MAX 16           /* JSON nesting of a request (the top object is 1) */
#define CTL_FDS_MAX 16             /* file descriptors queued per connection */
#define CTL_REPLY_MAX (256u << 20) /* longest reply line a client accepts */

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
void bimctl_status_line(FILE *out, const char *event, const struct wire_image *image);

/* The `list` table: NAME UUID STATE PROGRESS SIZE FORMAT SOURCE. */
void bimctl_table_print(FILE *out, const struct wire_image *images, size_t count);

/* The `get` view: one "label: value" line per field. */
void bimctl_image_print(FILE *out, const struct wire_image *image);

/* Redraw / erase the --wait progress bar (on a terminal). */
void bimctl_progress_draw(FILE *out, const struct wire_image *image);
void bimctl_progress_clear(FILE *out);

/* "bimctl: <name>: <message>" on stderr, or "bimctl: <message>" when name
 * is NULL (a command that names no image). */
void bimctl_reportf(const char *name, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* A daemon's message: its leading name (or the daemon's shortened form of
 * a too-long name) is dropped so that the name appears once. */
void bimctl_report(const char *name, const char *message);

#endif
