/*
 * http_upload.c - PUT /v1/images/{name}?uuid=U&checksum=C (SPEC §8): the
 * request body becomes the image, streamed into a store writer through
 * sync_stream_* as it arrives (holes kept, hashed as written). Answers:
 * 201 with the image once it is ready; 200 with the image when it already
 * exists with this uuid (the body is not read); 400 for a bad name, uuid or
 * checksum, or a checksum mismatch (the image is then failed, as any
 * upload); 409 when it exists with another uuid or was deleted meanwhile;
 * 413 for a body longer than announced (the image is then failed). After
 * a failure mid-body at most CTL_HTTP_DRAIN_MAX more bytes are read before
 * the answer; past that the connection is closed without one. A
 * request cut short (the client went away, a timeout, shutdown) leaves the
 * image failed with the cause ("upload cut short: received X of Y bytes",
 * or "upload stalled: ..."), its data removed (SPEC §4). A body whose
 * chunked framing libmicrohttpd refused (it answers 400 itself) removes
 * the image too: invalid framing changes nothing (SPEC §8).
 *
 * A delete meanwhile does not wait for this thread (sync/stream.c): the
 * stream's next call answers -ECANCELED or just frees it.
 *
 * Threads: the libmicrohttpd pool thread serving the connection; the
 * stream belongs to the request.
 */
#include "http.h"
#include "request.h"

#include <errno.h>
#include <string.h>

struct ctl_http_upload_args {
    const char *uuid;
    const char *checksum;
    const char *unknown; /* the first other argument */
};

static enum MHD_Result ctl_http_upload_arg(void *cls, enum MHD_ValueKind kind, const char *key,
                                           const char *value)
{
    struct ctl_http_upload_args *a = cls;

    (void)kind;
    if (strcmp(key, "uuid") == 0)
        a->uuid = value ? value : "";
    else if (strcmp(key, "checksum") == 0)
        a->checksum = value ? value : "";
    else if (!a->unknown)
        a->unknown = key;
    return MHD_YES;
}

/* Content-Length, or SYNC_STREAM_SIZE_UNKNOWN (chunked). */
static uint64_t ctl_http_upload_length(struct MHD_Connection *conn)
{
    const char *v =
        MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
    uint64_t n = 0;

    if (!v || !*v)
        return SYNC_STREAM_SIZE_UNKNOWN;
    for (; *v; v++) {
        if (*v < '0' || *v > '9' || !size_mul(n, 10, &n) || !size_add(n, (uint64_t)(*v - '0'), &n))
            return SYNC_STREAM_SIZE_UNKNOWN; /* MHD itself rejects a bad one */
    }
    return n;
}

static enum MHD_Result ctl_http_upload_begin(struct ctl_http_request *req,
                                             struct MHD_Connection *conn, const char *name)
{
    struct ctl_http_upload_args args = {0};
    struct sync_create_request create = {.name = name, .fd = -1};
    struct bim_error err = {0};
    struct sync_image_info info;
    char message[128];
    int rc;

    MHD_get_connection_values(conn, MHD_GET_ARGUMENT_KIND, ctl_http_upload_arg, &args);
    if (args.unknown) {
        snprintf(message, sizeof(message), "%s: unknown query parameter \"%.32s\"", name,
                 args.unknown);
        return ctl_http_reply_error(req, conn, MHD_HTTP_BAD_REQUEST, message);
    }
    create.uuid = args.uuid;
    create.checksum = args.checksum;
    rc = sync_stream_begin(req->http->sync, &create, ctl_http_upload_length(conn), &req->stream,
                           &info, &err);
    if (rc == 1) /* it exists with this uuid: nothing to upload */
        return ctl_http_reply_json(req, conn, MHD_HTTP_OK, ctl_image_to_json(&info));
    if (rc < 0)
        return ctl_http_reply_sync_error(req, conn, rc, &err);
    str_copy(req->upload_uuid, sizeof(req->upload_uuid), info.uuid);
    return MHD_YES; /* the body follows (after 100 Continue if asked) */
}

/* A piece of the body. After a failure the rest is read and dropped; the
 * answer says what happened once the body has ended. */
static enum MHD_Result ctl_http_upload_data(struct ctl_http_request *req, const char *data,
                                            size_t *size)
{
    int rc;

    if (req->stream && req->upload_rc == 0) {
        rc = sync_stream_write(req->stream, data, *size, &req->upload_err);
        if (rc < 0) {
            req->upload_rc = rc;
            sync_stream_abort(req->stream);
            req->stream = NULL;
        }
    } else if (req->upload_rc < 0) {
        req->dropped += *size;
        if (req->dropped > CTL_HTTP_DRAIN_MAX) {
            log_info("image=%s uuid=%s upload over HTTP failed; closing the connection after "
                     "%u bytes more of its body",
                     req->name, req->upload_uuid, CTL_HTTP_DRAIN_MAX);
            return MHD_NO; /* the image is failed with its cause already */
        }
    }
    *size = 0;
    return MHD_YES;
}

static enum MHD_Result ctl_http_upload_end(struct ctl_http_request *req,
                                           struct MHD_Connection *conn)
{
    struct bim_error err = {0};
    struct sync_image_info info;
    int rc;

    if (req->upload_rc < 0)
        return ctl_http_reply_sync_error(req, conn, req->upload_rc, &req->upload_err);
    if (!req->stream)
        return ctl_http_reply_error(req, conn, MHD_HTTP_INTERNAL_SERVER_ERROR,
                                    "the upload was lost");
    rc = sync_stream_end(req->stream, &info, &err);
    req->stream = NULL;
    if (rc < 0)
        return ctl_http_reply_sync_error(req, conn, rc, &err);
    return ctl_http_reply_json(req, conn, MHD_HTTP_CREATED, ctl_image_to_json(&info));
}

enum MHD_Result ctl_http_upload(struct ctl_http_request *req, struct MHD_Connection *conn,
                                const char *name, const char *data, size_t *size)
{
    if (!size)
        return ctl_http_upload_begin(req, conn, name);
    if (*size > 0)
        return ctl_http_upload_data(req, data, size);
    return ctl_http_upload_end(req, conn);
}

/* The body's framing was refused: the image this upload created goes
 * (unless it was deleted, or replaced by another uuid, meanwhile). */
static void ctl_http_upload_discard(struct ctl_http_request *req)
{
    struct bim_error err = {0};
    struct sync_image_info info;

    if (sync_get(req->http->sync, req->name, &info, &err) != 0 ||
        strcmp(info.uuid, req->upload_uuid) != 0)
        return;
    if (sync_delete(req->http->sync, req->name, &err) != 0)
        log_warn("image=%s uuid=%s cannot remove the refused upload: %s", req->name,
                 req->upload_uuid, err.message);
}

void ctl_http_upload_completed(struct ctl_http_request *req, bool ok, bool refused)
{
    /* a stream still open means the body never ended: a cut upload, failed
     * by the abort (or only freed, if it was deleted meanwhile) */
    if (!req->stream)
        return;
    if (refused)
        log_info("image=%s uuid=%s upload over HTTP refused: invalid body framing", req->name,
                 req->upload_uuid);
    else
        log_info("image=%s upload over HTTP cut short%s", req->name,
                 ok ? "" : " (the connection ended)");
    sync_stream_abort(req->stream);
    req->stream = NULL;
    if (refused)
        ctl_http_upload_discard(req);
}
