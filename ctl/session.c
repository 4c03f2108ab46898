/*
 * session.c - one control socket connection: read request lines, answer each
 * with one reply line, and stream events after a `watch` (docs/protocol.md).
 *
 * Threads: each session runs in its own connection thread (server.c) and
 * shares nothing but sync, whose functions are thread-safe. The server stops
 * a session by shutting its socket down: a blocked read returns end of
 * stream, a blocked send fails, a watch's poll sees POLLHUP.
 */
#include "request.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

struct ctl_session {
    struct sync *sync;
    struct bk_backups *backups;
    const char *version;
    int fd;
    struct ctl_reader reader;
};

/* An error from sync with no message still names the image. */
static void ctl_session_error_fill(const struct ctl_request *req, int rc, struct bim_error *err)
{
    if (err->message[0])
        return;
    if (req->name)
        bim_error_set(err, rc, "%s: %s", req->name, strerror(-rc));
    else
        bim_error_set(err, rc, "%s", strerror(-rc));
}

static int ctl_session_list(struct ctl_session *s, json_t **result, struct bim_error *err)
{
    struct sync_image_info *images = NULL;
    size_t count = 0;
    json_t *map;
    int rc;

    rc = sync_list(s->sync, &images, &count);
    if (rc)
        return bim_error_set(err, rc, "cannot list images: %s", strerror(-rc));
    map = ctl_images_to_json(images, count);
    free(images);
    if (!map)
        return bim_error_set(err, -ENOMEM, "cannot list images: out of memory");
    *result = map;
    return 0;
}

/* The upload fd that came with this request line, checked readable. */
static int ctl_session_upload_fd(struct ctl_session *s, const char *name, int *fd,
                                 struct bim_error *err)
{
    int flags;

    *fd = ctl_reader_fd_take(&s->reader);
    if (*fd < 0)
        return bim_error_set(err, -EINVAL,
                             "%s: upload needs a file descriptor passed with the request", name);
    flags = fcntl(*fd, F_GETFL);
    if (flags < 0 || (flags & O_ACCMODE) == O_WRONLY) {
        close(*fd);
        *fd = -1;
        return bim_error_set(err, -EINVAL,
                             "%s: the file descriptor passed for upload is not open for reading",
                             name);
    }
    return 0;
}

static int ctl_session_create(struct ctl_session *s, const struct ctl_request *req,
                              struct sync_image_info *info, struct bim_error *err)
{
    struct sync_create_request create = {
        .name = req->name,
        .uuid = req->uuid,
        .checksum = req->checksum,
        .type = req->source,
        .fd = -1,
    };
    int rc;

    switch (req->source) {
    case SYNC_SOURCE_PEER:
        create.peers = req->peers;
        create.size = req->size;
        break;
    case SYNC_SOURCE_DOWNLOAD:
    case SYNC_SOURCE_RESTORE:
        create.url = req->url;
        break;
    case SYNC_SOURCE_UPLOAD:
        rc = ctl_session_upload_fd(s, req->name, &create.fd, err);
        if (rc)
            return rc;
        break;
    case SYNC_SOURCE_CLONE:
        create.from = req->clone_from;
        break;
    case SYNC_SOURCE_STREAM: /* the HTTP server's PUT only */
        return bim_error_set(err, -EINVAL, "%s: unknown source type", req->name);
    }
    /* sync owns create.fd from here, failure or not */
    return sync_create(s->sync, &create, info, err);
}

/*
 * Run one valid request. *result is the reply's result; for watch, *watch is
 * the open subscription (the events follow the reply).
 */
static int ctl_session_dispatch(struct ctl_session *s, const struct ctl_request *req,
                                json_t **result, struct sync_watch **watch, struct bim_error *err)
{
    struct sync_image_info info;
    int rc = 0;

    switch (req->op) {
    case CTL_OP_VERSION:
        *result = json_pack("{s:s, s:i}", "version", s->version, "api", CTL_API_VERSION);
        break;
    case CTL_OP_LIST:
        return ctl_session_list(s, result, err);
    case CTL_OP_GET:
        rc = sync_get(s->sync, req->name, &info, err);
        if (!rc)
            *result = ctl_image_to_json(&info);
        break;
    case CTL_OP_CREATE:
    case CTL_OP_SYNC:
        rc = ctl_session_create(s, req, &info, err);
        if (!rc)
            *result = ctl_image_to_json(&info);
        break;
    case CTL_OP_DELETE:
        rc = sync_delete(s->sync, req->name, err);
        if (!rc)
            *result = json_object();
        break;
    case CTL_OP_BACKUP:
    case CTL_OP_BACKUP_STATUS:
    case CTL_OP_BACKUPS:
        return ctl_backup_dispatch(s->sync, s->backups, req, result, err);
    case CTL_OP_WATCH:
        rc = sync_watch_open(s->sync, req->name, watch);
        if (rc)
            return bim_error_set(err, rc, "cannot watch: %s", strerror(-rc));
        *result = json_object();
        break;
    }
    if (!rc && !*result)
        rc = bim_error_set(err, -ENOMEM, "out of memory");
    return rc;
}

/* Stream events until the client closes, the server stops or a send fails. */
static void ctl_session_watch(struct ctl_session *s, struct sync_watch *watch)
{
    struct pollfd pfd[2] = {
        {.fd = sync_watch_fd(watch), .events = POLLIN},
        {.fd = s->fd, .events = POLLIN},
    };
    struct sync_event ev;
    char discard[4096];

    for (;;) {
        int rc;

        while ((rc = sync_watch_next(watch, &ev)) == 0) {
            json_t *line = ctl_event_to_json(&ev);

            rc = line ? ctl_send_json(s->fd, line, -1) : -ENOMEM;
            json_decref(line);
            if (rc)
                goto out;
        }
        if (rc != -EAGAIN)
            goto out;
        if (poll(pfd, 2, -1) < 0) {
            if (errno == EINTR)
                continue;
            goto out;
        }
        /* POLLHUP: the client closed (or we were shut down); a half-close
         * (end of stream on read) keeps the events flowing. */
        if (pfd[1].revents & (POLLHUP | POLLERR | POLLNVAL))
            goto out;
        if (pfd[1].revents & POLLIN) {
            ssize_t n = recv(s->fd, discard, sizeof(discard), MSG_DONTWAIT);
            if (n == 0)
                pfd[1].events = 0;
            else if (n < 0 && errno != EAGAIN && errno != EINTR)
                goto out;
        }
    }
out:
    sync_watch_close(watch);
}

/* Answer one line. Returns nonzero when the connection must end. */
static int ctl_session_line(struct ctl_session *s, const char *line, size_t len)
{
    struct bim_error err = {0};
    struct sync_watch *watch = NULL;
    struct ctl_request req;
    json_t *result = NULL, *reply;
    int rc;

    rc = ctl_request_parse(line, len, &req, &err);
    if (!rc)
        rc = ctl_session_dispatch(s, &req, &result, &watch, &err);
    ctl_reader_fd_drop_stale(&s->reader);
    if (rc) {
        ctl_session_error_fill(&req, rc, &err);
        if (rc != -EINVAL && rc != -ENOENT && rc != -EEXIST)
            log_warn("control request failed: %s", err.message);
        reply = ctl_reply_error(req.id, rc, err.message);
    } else {
        log_debug("control op %s%s%s: ok", ctl_op_name(req.op), req.name ? " image=" : "",
                  req.name ? req.name : "");
        reply = ctl_reply_ok(req.id, result);
    }
    rc = reply ? ctl_send_json(s->fd, reply, -1) : -ENOMEM;
    json_decref(reply);
    ctl_request_clear(&req);
    if (watch) {
        if (!rc)
            ctl_session_watch(s, watch);
        else
            sync_watch_close(watch);
        return 1; /* a watch holds the connection until the client leaves */
    }
    return rc;
}

static bool ctl_line_blank(const char *line, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        if (line[i] != ' ' && line[i] != '\t')
            return false;
    }
    return true;
}

void ctl_session_run(struct sync *sync, struct bk_backups *backups, const char *version, int fd)
{
    struct ctl_session s = {.sync = sync, .backups = backups, .version = version, .fd = fd};
    char *line;
    size_t len;
    int rc;

    ctl_reader_init(&s.reader, CTL_LINE_MAX, true);
    for (;;) {
        rc = ctl_reader_next(&s.reader, fd, &line, &len);
        if (rc == -E2BIG) {
            char message[128];
            json_t *reply;

            snprintf(message, sizeof(message),
                     "request line longer than %d bytes: closing the connection", CTL_LINE_MAX);
            reply = ctl_reply_error(NULL, -EINVAL, message);
            if (reply)
                (void)ctl_send_json(fd, reply, -1);
            json_decref(reply);
            log_warn("control client sent a line longer than %d bytes; disconnected", CTL_LINE_MAX);
            break;
        }
        if (rc <= 0)
            break;
        if (ctl_line_blank(line, len))
            continue;
        if (ctl_session_line(&s, line, len))
            break;
    }
    ctl_reader_clear(&s.reader);
    shutdown(fd, SHUT_RDWR);
}
