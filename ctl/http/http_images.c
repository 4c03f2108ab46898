/*
 * http_images.c - the read routes of /v1/images (SPEC §8): the list and one
 * image (the control socket's JSON), the stored bytes of a ready image
 * (Range, sendfile through an fd response, counted in sendingReference,
 * bounded by --send-limit) and its data extents; of an image in progress,
 * the same for the pieces it holds (SPEC §9; sync_held_get).
 *
 * Threads: libmicrohttpd pool threads; each call works on its own request.
 */
#include "http.h"
#include "request.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum MHD_Result ctl_http_images_list(struct ctl_http_request *req, struct MHD_Connection *conn)
{
    struct sync_image_info *images = NULL;
    size_t count = 0;
    json_t *map;
    int rc;

    rc = sync_list(req->http->sync, &images, &count);
    if (rc < 0)
        return ctl_http_reply_error(req, conn, MHD_HTTP_INTERNAL_SERVER_ERROR,
                                    "cannot list images");
    map = ctl_images_to_json(images, count);
    free(images);
    return ctl_http_reply_json(req, conn, MHD_HTTP_OK, map);
}

enum MHD_Result ctl_http_image_get(struct ctl_http_request *req, struct MHD_Connection *conn,
                                   const char *name)
{
    struct bim_error err = {0};
    struct sync_image_info info;
    int rc;

    rc = sync_get(req->http->sync, name, &info, &err);
    if (rc < 0)
        return ctl_http_reply_sync_error(req, conn, rc, &err);
    return ctl_http_reply_json(req, conn, MHD_HTTP_OK, ctl_image_to_json(&info));
}

/* Open the backing of a ready image without counting a send (HEAD,
 * extents). out->fd is the caller's. */
static int ctl_http_backing_open(struct ctl_http_request *req, const char *name,
                                 struct sync_send *out, struct bim_error *err)
{
    struct sync_image_info info;
    int rc;

    out->fd = -1;
    rc = sync_get(req->http->sync, name, &info, err);
    if (rc < 0)
        return rc;
    if (info.state == SYNC_STATE_READY)
        rc = sync_open_backing(req->http->sync, info.id, &out->fd, NULL);
    if (info.state != SYNC_STATE_READY || rc == -ENOENT)
        return bim_error_set(err, -EBUSY, "%s: not ready (%s)", name, sync_state_name(info.state));
    if (rc < 0)
        return bim_error_set(err, rc, "%s: cannot open backing: %s", name, strerror(-rc));
    out->id = info.id;
    out->size = info.size;
    str_copy(out->checksum, sizeof(out->checksum), info.current_checksum);
    return 0;
}

static enum MHD_Result ctl_http_reply_unsatisfiable(struct ctl_http_request *req,
                                                    struct MHD_Connection *conn, uint64_t size)
{
    struct MHD_Response *resp;
    char range[48];

    snprintf(range, sizeof(range), "bytes */%" PRIu64, size);
    resp = MHD_create_response_from_buffer(0, NULL, MHD_RESPMEM_PERSISTENT);
    if (!resp)
        return MHD_NO;
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_RANGE, range);
    MHD_add_response_header(resp, MHD_HTTP_HEADER_ACCEPT_RANGES, "bytes");
    return ctl_http_queue(req, conn, MHD_HTTP_RANGE_NOT_SATISFIABLE, resp);
}

/* Answer with send->fd: [first, last] as 206, or the whole image as 200
 * when last is UINT64_MAX. The ETag is the checksum, when there is one (an
 * image in progress has none: no validator would be true). */
static enum MHD_Result ctl_http_backing_send(struct ctl_http_request *req,
                                             struct MHD_Connection *conn, bool head, uint64_t first,
                                             uint64_t last)
{
    struct sync_send *send = &req->send;
    struct MHD_Response *resp;
    char header[STORE_CHECKSUM_HEX + 64];
    bool whole = last == UINT64_MAX;
    uint64_t length = whole ? send->size : last - first + 1;

    if (whole)
        first = 0;
    /* MHD owns the fd from here (closed when the response is destroyed) */
    resp = MHD_create_response_from_fd_at_offset64(length, send->fd, first);
    if (!resp) {
        close(send->fd);
        send->fd = -1;
        return MHD_NO;
    }
    send->fd = -1;
    req->send_length = head ? 0 : length;
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "application/octet-stream");
    MHD_add_response_header(resp, MHD_HTTP_HEADER_ACCEPT_RANGES, "bytes");
    if (send->checksum[0]) {
        snprintf(header, sizeof(header), "\"%s\"", send->checksum);
        MHD_add_response_header(resp, MHD_HTTP_HEADER_ETAG, header);
    }
    if (!whole) {
        snprintf(header, sizeof(header), "bytes %" PRIu64 "-%" PRIu64 "/%" PRIu64, first, last,
                 send->size);
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_RANGE, header);
    }
    return ctl_http_queue(req, conn, whole ? MHD_HTTP_OK : MHD_HTTP_PARTIAL_CONTENT, resp);
}

/* An image in progress serves a Range inside the pieces it holds (SPEC
 * §9): 206, or 409 for any other range or none. 1: *answer is the answer;
 * 0: the image is not in progress (answered as one not ready). */
static int ctl_http_backing_held(struct ctl_http_request *req, struct MHD_Connection *conn,
                                 const char *name, bool head, const char *range_value,
                                 enum MHD_Result *answer)
{
    struct bim_error err = {0};
    struct sync_image_info info;
    struct sync_held held;
    enum ctl_http_range_result range;
    uint64_t first = 0, last = 0;
    int rc;

    if (sync_get(req->http->sync, name, &info, &err) < 0 || info.state != SYNC_STATE_IN_PROGRESS)
        return 0; /* answered as for a ready image (or not ready) */
    /* a range past the end too: "any other range of an image that is not
     * ready is 409" (SPEC §9; 416 is for a ready image's) */
    range = ctl_http_range_parse(range_value, info.bytes_total, &first, &last);
    if (range != CTL_HTTP_RANGE_PARTIAL) {
        bim_error_set(&err, -EBUSY,
                      "%s: not ready (in-progress): only a range inside the "
                      "pieces it holds is served",
                      name);
        *answer = ctl_http_reply_sync_error(req, conn, -EBUSY, &err);
        return 1;
    }
    if (head) {
        rc = sync_held_get(req->http->sync, name, first, last + 1, &held, &req->send.fd, &err);
        req->send.size = held.size;
        req->send.checksum[0] = '\0';
        sync_held_free(&held);
    } else {
        rc = sync_send_begin_held(req->http->sync, name, req->http->send_limit, first, last + 1,
                                  &req->send, &err);
        req->sending = rc == 0; /* ended by ctl_http_completed() */
    }
    if (rc < 0) {
        *answer = ctl_http_reply_sync_error(req, conn, rc, &err);
        return 1;
    }
    *answer = ctl_http_backing_send(req, conn, head, first, last);
    return 1;
}

enum MHD_Result ctl_http_backing(struct ctl_http_request *req, struct MHD_Connection *conn,
                                 const char *name, bool head)
{
    const char *range_value =
        MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_RANGE);
    struct bim_error err = {0};
    struct sync_send *send = &req->send;
    enum MHD_Result answer;
    enum ctl_http_range_result range;
    uint64_t first = 0, last = 0;
    int rc;

    if (head) {
        rc = ctl_http_backing_open(req, name, send, &err);
    } else {
        rc = sync_send_begin(req->http->sync, name, req->http->send_limit, send, &err);
        req->sending = rc == 0; /* ended by ctl_http_completed() */
    }
    if (rc == -EBUSY && ctl_http_backing_held(req, conn, name, head, range_value, &answer))
        return answer;
    if (rc < 0)
        return ctl_http_reply_sync_error(req, conn, rc, &err);

    range = ctl_http_range_parse(range_value, send->size, &first, &last);
    if (range == CTL_HTTP_RANGE_UNSATISFIABLE) {
        close(send->fd);
        send->fd = -1;
        return ctl_http_reply_unsatisfiable(req, conn, send->size);
    }
    if (range != CTL_HTTP_RANGE_PARTIAL) /* the whole image: 200 (an empty one too) */
        return ctl_http_backing_send(req, conn, head, 0, UINT64_MAX);
    return ctl_http_backing_send(req, conn, head, first, last);
}

/* ---- extents ---- */

static int ctl_http_extent_add(struct ctl_http_text *t, uint64_t off, uint64_t len, bool first)
{
    return ctl_http_text_printf(t, "%s[%" PRIu64 ",%" PRIu64 "]", first ? "" : ",", off, len);
}

/* The data extents of [off, size) of fd into t (after *count others).
 * Without SEEK_DATA support the whole range is one extent; past
 * BIM_EXTENTS_MAX extents, the rest of it is one. */
static int ctl_http_extents_add(int fd, uint64_t off, uint64_t size, size_t *count,
                                struct ctl_http_text *t)
{
    int rc = 0;

    while (rc == 0 && off < size) {
        off_t data = lseek(fd, (off_t)off, SEEK_DATA), hole;

        if (data < 0 && errno == ENXIO)
            break;
        if (data < 0 && errno != EINVAL && errno != EOPNOTSUPP)
            return -errno;
        if (data < 0)
            data = (off_t)off;
        if ((uint64_t)data >= size)
            break;
        hole = lseek(fd, data, SEEK_HOLE);
        if (hole < 0 || (uint64_t)hole > size || ++*count >= BIM_EXTENTS_MAX)
            hole = (off_t)size;
        rc = ctl_http_extent_add(t, (uint64_t)data, (uint64_t)(hole - data), *count <= 1);
        off = (uint64_t)hole;
    }
    return rc;
}

/* The data extents of fd (size bytes) as JSON. */
static int ctl_http_extents_json(int fd, uint64_t size, struct ctl_http_text *t)
{
    size_t count = 0;
    int rc = ctl_http_text_printf(t, "[");

    if (rc == 0)
        rc = ctl_http_extents_add(fd, 0, size, &count, t);
    return rc ? rc : ctl_http_text_printf(t, "]");
}

/* The data extents of the held pieces of an image in progress, run by
 * run of held pieces, as JSON. */
static int ctl_http_extents_held(int fd, const struct sync_held *h, struct ctl_http_text *t)
{
    size_t count = 0;
    int rc = ctl_http_text_printf(t, "[");

    for (uint64_t i = 0; rc == 0 && i < h->count && count < BIM_EXTENTS_MAX;) {
        uint64_t j = i;

        if (!h->held[i]) {
            i++;
            continue;
        }
        while (j < h->count && h->held[j])
            j++;
        rc = ctl_http_extents_add(fd, i * STORE_PIECE_SIZE,
                                  j == h->count ? h->size : j * STORE_PIECE_SIZE, &count, t);
        i = j;
    }
    return rc ? rc : ctl_http_text_printf(t, "]");
}

enum MHD_Result ctl_http_extents(struct ctl_http_request *req, struct MHD_Connection *conn,
                                 const char *name)
{
    struct bim_error err = {0};
    struct ctl_http_text text = {.max = CTL_HTTP_EXTENTS_TEXT_MAX};
    struct sync_send backing;
    int rc;

    rc = ctl_http_backing_open(req, name, &backing, &err);
    if (rc == -EBUSY) {
        /* an image in progress: the extents of what it holds (SPEC §9) */
        struct bim_error held_err = {0};
        struct sync_image_info info;
        struct sync_held held;
        int fd = -1;

        if (sync_held_get(req->http->sync, name, 0, 0, &held, &fd, &held_err) == 0) {
            rc = ctl_http_extents_held(fd, &held, &text);
            close(fd);
            sync_held_free(&held);
            goto done;
        }
        /* in progress but serving nothing yet (its writer not open, or its
         * size not known): it holds no piece, as its /pieces says */
        if (sync_get(req->http->sync, name, &info, &held_err) == 0 &&
            info.state == SYNC_STATE_IN_PROGRESS) {
            rc = ctl_http_text_printf(&text, "[]");
            goto done;
        }
    }
    if (rc < 0)
        return ctl_http_reply_sync_error(req, conn, rc, &err);
    rc = ctl_http_extents_json(backing.fd, backing.size, &text);
    close(backing.fd);
done:
    if (rc < 0) {
        free(text.buf);
        bim_error_set(&err, rc, "%s: cannot list extents: %s", name, strerror(-rc));
        return ctl_http_reply_sync_error(req, conn, rc, &err);
    }
    return ctl_http_reply_buffer(req, conn, MHD_HTTP_OK, "application/json", &text);
}
