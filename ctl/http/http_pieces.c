/*
 * http_pieces.c - GET /v1/images/{name}/pieces (SPEC §9): the piece digests
 * of an image, encoded by the wire codec in one buffer (no JSON tree: a
 * 128 GiB image has 32,768 pieces). 404 unknown, 409 not ready nor in
 * progress, 503 with Retry-After while the digests of an adopted image are
 * computed (sync/pieces.c).
 *
 * Threads: libmicrohttpd pool threads; each call works on its own request.
 */
#include "http.h"

#include <errno.h>
#include <stdlib.h>

enum MHD_Result ctl_http_pieces(struct ctl_http_request *req, struct MHD_Connection *conn,
                                const char *name)
{
    struct bim_error err = {0};
    struct wire_pieces p;
    struct ctl_http_text text = {0};
    int rc;

    rc = sync_pieces_get(req->http->sync, name, &p, &err);
    if (rc == 0) {
        rc = wire_pieces_encode(&p, &text.buf, &text.len);
        if (rc < 0)
            bim_error_set(&err, rc, "%s: out of memory", name);
    }
    wire_pieces_free(&p);
    if (rc < 0)
        return ctl_http_reply_sync_error(req, conn, rc, &err);
    text.cap = text.len + 1;
    return ctl_http_reply_buffer(req, conn, MHD_HTTP_OK, "application/json", &text);
}
