/*
 * protocol.c - the control socket's wire format, shared by the daemon and
 * bimctl: line framing over a stream socket (with
 * SCM_RIGHTS descriptors), sending one JSON value per line, building and
 * reading replies (codes from the wire codec). Needs only common, jansson
 * and common/wire.
 *
 * Threads: no shared state; a struct ctl_reader belongs to one thread.
 */
#include "protocol.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define CTL_READ_CHUNK 4096
#define CTL_READ_KEEP (64 * 1024) /* a larger idle buffer is freed */

/* ---- line framing ---- */

void ctl_reader_init(struct ctl_reader *r, size_t max, bool accept_fds)
{
    memset(r, 0, sizeof(*r));
    r->max = max;
    r->accept_fds = accept_fds;
}

void ctl_reader_clear(struct ctl_reader *r)
{
    for (size_t i = 0; i < r->fd_count; i++)
        close(r->fds[i].fd);
    r->fd_count = 0;
    free(r->buf);
    r->buf = NULL;
    r->start = r->len = r->cap = 0;
}

/* Queue the descriptors of every SCM_RIGHTS message; close what does not fit. */
static void ctl_reader_fd_queue(struct ctl_reader *r, struct msghdr *msg, uint64_t offset)
{
    for (struct cmsghdr *c = CMSG_FIRSTHDR(msg); c; c = CMSG_NXTHDR(msg, c)) {
        size_t n;

        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
            continue;
        n = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (size_t i = 0; i < n; i++) {
            int fd;

            memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
            if (r->accept_fds && r->fd_count < CTL_FDS_MAX) {
                r->fds[r->fd_count].fd = fd;
                r->fds[r->fd_count].offset = offset;
                r->fd_count++;
            } else {
                close(fd);
            }
        }
    }
}

/* Make room to read at least one byte (and keep one for a NUL): drop the
 * lines already returned, then grow up to max + 3 bytes (the longest line,
 * "\r\n" and the NUL). */
static int ctl_reader_make_room(struct ctl_reader *r)
{
    size_t limit = r->max + 3;
    size_t want;
    char *p;

    if (r->start > 0) {
        memmove(r->buf, r->buf + r->start, r->len - r->start);
        r->offset += r->start;
        r->len -= r->start;
        r->start = 0;
    }
    if (r->len == 0 && r->cap > CTL_READ_KEEP) { /* a long line is gone: shrink */
        free(r->buf);
        r->buf = NULL;
        r->cap = 0;
    }
    if (r->cap - r->len > 1)
        return 0;
    if (r->cap >= limit)
        return -E2BIG;
    want = r->cap ? r->cap * 2 : CTL_READ_CHUNK;
    if (want > limit)
        want = limit;
    p = realloc(r->buf, want);
    if (!p)
        return -ENOMEM;
    r->buf = p;
    r->cap = want;
    return 0;
}

/* One recvmsg into the free space (keeping a byte for a NUL): bytes read, 0 at
 * end of stream, or -errno. */
static ssize_t ctl_reader_fill(struct ctl_reader *r, int fd)
{
    union {
        struct cmsghdr align;
        char buf[CMSG_SPACE(sizeof(int) * CTL_FDS_MAX)];
    } control;
    struct iovec iov = {.iov_base = r->buf + r->len, .iov_len = r->cap - r->len - 1};
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1};
    ssize_t n;

    if (r->accept_fds) {
        msg.msg_control = control.buf;
        msg.msg_controllen = sizeof(control.buf);
    }
    do {
        n = recvmsg(fd, &msg, MSG_CMSG_CLOEXEC);
    } while (n < 0 && errno == EINTR);
    if (n < 0)
        return -errno;
    /*
     * Linux ends a read right after the message that carried descriptors, so
     * they belong to a line that holds the last byte read (or one before it
     * if a sender packed several lines into one sendmsg).
     */
    if (msg.msg_controllen > 0)
        ctl_reader_fd_queue(r, &msg, r->offset + r->len + (n > 0 ? (size_t)n - 1 : 0));
    r->len += (size_t)n;
    return n;
}

/* Return the line buf[start .. end) and consume it and its newline. */
static void ctl_reader_take_line(struct ctl_reader *r, size_t end, size_t consumed, char **line,
                                 size_t *len)
{
    size_t n = end - r->start;

    *line = r->buf + r->start;
    if (n > 0 && (*line)[n - 1] == '\r')
        n--;
    (*line)[n] = '\0';
    *len = n;
    r->line_end = r->offset + end + consumed;
    r->start = end + consumed;
}

int ctl_reader_next(struct ctl_reader *r, int fd, char **line, size_t *len)
{
    size_t scanned = 0; /* bytes after start known to hold no newline */

    for (;;) {
        size_t avail = r->len - r->start;
        char *nl = NULL;
        ssize_t n;
        int rc;

        if (avail > scanned)
            nl = memchr(r->buf + r->start + scanned, '\n', avail - scanned);
        if (nl) {
            size_t end = (size_t)(nl - r->buf);
            size_t body = end - r->start;

            if (body > 0 && r->buf[end - 1] == '\r')
                body--;
            if (body > r->max)
                return -E2BIG;
            ctl_reader_take_line(r, end, 1, line, len);
            return 1;
        }
        scanned = avail;
        if (avail > r->max + 1) /* the longest line and its "\r" */
            return -E2BIG;
        rc = ctl_reader_make_room(r);
        if (rc)
            return rc;
        n = ctl_reader_fill(r, fd);
        if (n < 0)
            return (int)n;
        if (n == 0) {
            if (avail == 0)
                return 0;
            if (avail > r->max && !(avail == r->max + 1 && r->buf[r->len - 1] == '\r'))
                return -E2BIG;
            ctl_reader_take_line(r, r->len, 0, line, len);
            return 1;
        }
    }
}

int ctl_reader_fd_take(struct ctl_reader *r)
{
    int fd;

    if (r->fd_count == 0 || r->fds[0].offset >= r->line_end)
        return -1;
    fd = r->fds[0].fd;
    memmove(&r->fds[0], &r->fds[1], (r->fd_count - 1) * sizeof(r->fds[0]));
    r->fd_count--;
    return fd;
}

void ctl_reader_fd_drop_stale(struct ctl_reader *r)
{
    int fd;

    while ((fd = ctl_reader_fd_take(r)) >= 0)
        close(fd);
}

/* ---- sending ---- */

/* sendmsg all of buf; pass_fd (if >= 0) rides with the first byte. */
static int ctl_send_all(int fd, const char *buf, size_t len, int pass_fd)
{
    union {
        struct cmsghdr align;
        char buf[CMSG_SPACE(sizeof(int))];
    } control;

    while (len > 0) {
        struct iovec iov = {.iov_base = (void *)buf, .iov_len = len};
        struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1};
        ssize_t n;

        if (pass_fd >= 0) {
            struct cmsghdr *c;

            memset(&control, 0, sizeof(control));
            msg.msg_control = control.buf;
            msg.msg_controllen = sizeof(control.buf);
            c = CMSG_FIRSTHDR(&msg);
            c->cmsg_level = SOL_SOCKET;
            c->cmsg_type = SCM_RIGHTS;
            c->cmsg_len = CMSG_LEN(sizeof(int));
            memcpy(CMSG_DATA(c), &pass_fd, sizeof(int));
        }
        n = sendmsg(fd, &msg, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        pass_fd = -1;
        buf += n;
        len -= (size_t)n;
    }
    return 0;
}

int ctl_send_json(int fd, const json_t *value, int pass_fd)
{
    char *text = json_dumps(value, JSON_COMPACT);
    size_t len;
    char *line;
    int rc;

    if (!text)
        return -ENOMEM;
    len = strlen(text);
    line = realloc(text, len + 2);
    if (!line) {
        free(text);
        return -ENOMEM;
    }
    line[len++] = '\n';
    line[len] = '\0';
    rc = ctl_send_all(fd, line, len, pass_fd);
    free(line);
    return rc;
}

/* ---- replies ---- */

/* A reply object with the id first, as requests show it. */
static json_t *ctl_reply_new(json_t *id, bool ok)
{
    json_t *reply = json_object();

    if (!reply)
        return NULL;
    if ((id && json_object_set(reply, "id", id)) ||
        json_object_set_new(reply, "ok", json_boolean(ok))) {
        json_decref(reply);
        return NULL;
    }
    return reply;
}

json_t *ctl_reply_ok(json_t *id, json_t *result)
{
    json_t *reply = result ? ctl_reply_new(id, true) : NULL;

    if (!reply || json_object_set_new(reply, "result", result)) {
        if (!reply)
            json_decref(result);
        json_decref(reply);
        return NULL;
    }
    return reply;
}

json_t *ctl_reply_error(json_t *id, int rc, const char *message)
{
    json_t *reply = ctl_reply_new(id, false);
    json_t *error;

    if (!reply)
        return NULL;
    error =
        json_pack("{s:s, s:o}", "code", wire_error_code(rc), "message", wire_json_text(message));
    if (!error || json_object_set_new(reply, "error", error)) {
        json_decref(reply);
        return NULL;
    }
    return reply;
}

int ctl_reply_parse(const char *line, size_t len, struct ctl_reply *out, struct bim_error *err)
{
    json_error_t jerr;
    json_t *ok, *error;

    memset(out, 0, sizeof(*out));
    out->root = json_loadb(line, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!out->root)
        return bim_error_set(err, -EPROTO, "the daemon sent invalid JSON: %s", jerr.text);
    ok = json_object_get(out->root, "ok");
    if (!json_is_object(out->root) || !json_is_boolean(ok))
        return bim_error_set(err, -EPROTO, "the daemon sent a line that is not a reply");
    out->id = json_object_get(out->root, "id");
    out->ok = json_is_true(ok);
    if (out->ok) {
        out->result = json_object_get(out->root, "result");
        if (!out->result)
            return bim_error_set(err, -EPROTO, "the daemon sent a reply without a result");
        return 0;
    }
    error = json_object_get(out->root, "error");
    out->code = json_string_value(json_object_get(error, "code"));
    out->message = json_string_value(json_object_get(error, "message"));
    if (!out->code || !out->message)
        return bim_error_set(err, -EPROTO, "the daemon sent an error without code or message");
    return 0;
}

void ctl_reply_clear(struct ctl_reply *reply)
{
    json_decref(reply->root);
    memset(reply, 0, sizeof(*reply));
}
