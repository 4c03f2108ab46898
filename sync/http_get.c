/*
 * http_get.c - one HTTP GET of a download with libcurl's easy interface:
 * the handle's options (http/https only, also on redirects; no Referer; TLS
 * 1.2+ with an optional extra CA file; proxies from the environment, as
 * libcurl does by default), the headers of the final response (status,
 * Content-Length, Content-Range, ETag, Last-Modified, Retry-After), body
 * bytes and progress ticks handed to the download (download.c), and what a
 * transfer error means (worth retrying or not) in a message without
 * credentials.
 *
 * The policy (resume or restart, retry or fail) is download.c's; this file
 * only speaks HTTP.
 *
 * Threads: the worker thread running the download; curl's callbacks run in
 * it, inside curl_multi_perform. A handle is never used by two threads.
 */
#include "sync_internal.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* What one GET carries through curl's callbacks. */
struct sync_http_call {
    CURL *curl;
    const struct sync_http_ops *ops;
    void *ctx;
    struct sync_http_response resp;
    bool responded; /* ops->response accepted the final response */
    int rc;         /* a callback's -errno that ended the GET */
    char errbuf[CURL_ERROR_SIZE];
};

int sync_http_open(const char *ca_file, unsigned connect_ms, struct sync_http *out)
{
    CURL *c = curl_easy_init();
    CURLcode cc = CURLE_OK;

    out->easy = NULL;
    out->multi = curl_multi_init();
    if (!c || !out->multi) {
        curl_easy_cleanup(c);
        curl_multi_cleanup(out->multi);
        out->multi = NULL;
        return -ENOMEM;
    }
#define SET(opt, val)                                                                              \
    do {                                                                                           \
        if (cc == CURLE_OK)                                                                        \
            cc = curl_easy_setopt(c, opt, val);                                                    \
    } while (0)
    SET(CURLOPT_PROTOCOLS_STR, "http,https");
    SET(CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
    SET(CURLOPT_FOLLOWLOCATION, 1L);
    SET(CURLOPT_MAXREDIRS, (long)SYNC_REDIRECTS_MAX);
    SET(CURLOPT_AUTOREFERER, 0L);
    SET(CURLOPT_NOSIGNAL, 1L);
    SET(CURLOPT_TCP_KEEPALIVE, 1L);
    SET(CURLOPT_BUFFERSIZE, (long)SYNC_HTTP_BUFFER);
    SET(CURLOPT_CONNECTTIMEOUT_MS, (long)connect_ms);
    SET(CURLOPT_HTTP_CONTENT_DECODING, 0L); /* the stored bytes are the served bytes */
    SET(CURLOPT_SUPPRESS_CONNECT_HEADERS, 1L);
    SET(CURLOPT_SSLVERSION, (long)CURL_SSLVERSION_TLSv1_2);
    SET(CURLOPT_USERAGENT, "bimfs");
    SET(CURLOPT_NOPROGRESS, 0L);
    /* CAINFO replaces the bundle file; the system's hashed directory
     * (CAPATH, libcurl's default) stays trusted beside it */
    if (ca_file)
        SET(CURLOPT_CAINFO, ca_file);
#undef SET
    if (cc != CURLE_OK) {
        log_error("sync: cannot set up libcurl: %s", curl_easy_strerror(cc));
        curl_easy_cleanup(c);
        curl_multi_cleanup(out->multi);
        out->multi = NULL;
        return -EINVAL;
    }
    out->easy = c;
    return 0;
}

void sync_http_close(struct sync_http *h)
{
    if (h->easy)
        curl_easy_cleanup(h->easy);
    if (h->multi)
        curl_multi_cleanup(h->multi);
    h->easy = NULL;
    h->multi = NULL;
}

bool sync_http_status_transient(long status)
{
    return status == 408 || status == 429 || (status >= 500 && status <= 599);
}

/* ---- headers ---- */

const char *sync_http_header(CURL *curl, const char *name)
{
    struct curl_header *h = NULL;

    if (curl_easy_header(curl, name, 0, CURLH_HEADER, -1, &h) != CURLHE_OK || !h)
        return NULL;
    return h->value;
}

/* A decimal number without sign, whitespace or overflow; end is where it
 * stopped. */
static bool sync_http_number(const char *s, uint64_t *out, const char **end)
{
    uint64_t v = 0;
    const char *p = s;

    while (*p >= '0' && *p <= '9') {
        if (!size_mul(v, 10, &v) || !size_add(v, (uint64_t)(*p - '0'), &v))
            return false;
        p++;
    }
    if (p == s)
        return false;
    *out = v;
    *end = p;
    return true;
}

/* "bytes <first>-<last>/<complete>", the complete length may be "*" (RFC
 * 9110 14.4). */
bool sync_http_content_range_parse(const char *value, uint64_t *first, uint64_t *last,
                                   int64_t *complete)
{
    const char *p;
    uint64_t total;

    if (strncmp(value, "bytes ", 6) != 0)
        return false;
    if (!sync_http_number(value + 6, first, &p) || *p != '-' ||
        !sync_http_number(p + 1, last, &p) || *p != '/' || *last < *first ||
        *last > (uint64_t)INT64_MAX)
        return false;
    if (strcmp(p + 1, "*") == 0) {
        *complete = -1;
        return true;
    }
    if (!sync_http_number(p + 1, &total, &p) || *p != '\0' || total <= *last ||
        total > (uint64_t)INT64_MAX)
        return false;
    *complete = (int64_t)total;
    return true;
}

/* Copy a header value if it fits; longer ones are treated as absent. */
unsigned sync_http_retry_after(CURL *curl, unsigned max_s)
{
    const char *v = sync_http_header(curl, "Retry-After"), *end;
    uint64_t n;

    if (!v || !sync_http_number(v, &n, &end) || *end != '\0')
        return 0;
    return n > max_s ? max_s : (unsigned)n;
}

static void sync_http_value_copy(char *dst, size_t dstlen, const char *src)
{
    dst[0] = '\0';
    if (src && strlen(src) < dstlen)
        str_copy(dst, dstlen, src);
}

/* Fill call->resp from the headers of the response that just ended. */
static void sync_http_response_read(struct sync_http_call *call)
{
    struct sync_http_response *r = &call->resp;
    curl_off_t cl = -1;
    const char *v;

    curl_easy_getinfo(call->curl, CURLINFO_RESPONSE_CODE, &r->status);
    if (curl_easy_getinfo(call->curl, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &cl) != CURLE_OK)
        cl = -1;
    r->length = cl >= 0 ? (int64_t)cl : -1;
    v = sync_http_header(call->curl, "Content-Range");
    r->has_range =
        v && sync_http_content_range_parse(v, &r->range_first, &r->range_last, &r->range_complete);
    /* a weak ETag cannot guard a Range request (RFC 9110 13.1.5) */
    v = sync_http_header(call->curl, "ETag");
    sync_http_value_copy(r->etag, sizeof(r->etag), v && v[0] == '"' ? v : NULL);
    sync_http_value_copy(r->last_modified, sizeof(r->last_modified),
                         sync_http_header(call->curl, "Last-Modified"));
    r->retry_after_s = sync_http_retry_after(call->curl, 3600);
}

/* The reason phrase of a status line, printable ASCII only. */
static void sync_http_reason(struct sync_http_call *call, const char *line, size_t len)
{
    char *out = call->resp.reason;
    size_t i = 0, o = 0;
    int spaces = 0;

    /* "HTTP/1.1 404 Not Found\r\n": the phrase follows the second space */
    while (i < len && spaces < 2) {
        if (line[i++] == ' ')
            spaces++;
    }
    for (; i < len && o + 1 < sizeof(call->resp.reason); i++) {
        if (line[i] == '\r' || line[i] == '\n')
            break;
        out[o++] = line[i] >= 0x20 && line[i] < 0x7f ? line[i] : '?';
    }
    out[o] = '\0';
}

/* Will curl follow this response to another URL? */
static bool sync_http_redirecting(struct sync_http_call *call, long status)
{
    return status >= 300 && status < 400 && status != 304 &&
           sync_http_header(call->curl, "Location") != NULL;
}

static size_t sync_http_on_header(char *line, size_t size, size_t n, void *arg)
{
    struct sync_http_call *call = arg;
    bool blank = (n == 2 && line[0] == '\r' && line[1] == '\n') || (n == 1 && line[0] == '\n');
    long status = 0;
    int rc;

    (void)size;
    if (n >= 5 && memcmp(line, "HTTP/", 5) == 0) {
        call->responded = false;
        sync_http_reason(call, line, n);
        return n;
    }
    if (call->responded || !blank)
        return n; /* a header line (read at the end), or a trailer */
    /* the end of a response's headers */
    curl_easy_getinfo(call->curl, CURLINFO_RESPONSE_CODE, &status);
    if (status < 200 || sync_http_redirecting(call, status))
        return n;
    sync_http_response_read(call);
    rc = call->ops->response(call->ctx, &call->resp);
    if (rc < 0) {
        call->rc = rc;
        return 0; /* ends the transfer with CURLE_WRITE_ERROR */
    }
    call->responded = true;
    return n;
}

static size_t sync_http_on_data(char *buf, size_t size, size_t n, void *arg)
{
    struct sync_http_call *call = arg;
    int rc;

    (void)size;
    if (!call->responded)
        return n; /* the body of a response we do not take */
    rc = call->ops->data(call->ctx, buf, n);
    if (rc < 0) {
        call->rc = rc;
        return 0;
    }
    return n;
}

static int sync_http_on_tick(void *arg, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
                             curl_off_t ulnow)
{
    struct sync_http_call *call = arg;
    int rc;

    (void)dltotal;
    (void)dlnow;
    (void)ultotal;
    (void)ulnow;
    rc = call->ops->tick(call->ctx);
    if (rc < 0) {
        call->rc = rc;
        return 1;
    }
    return 0;
}

/*
 * curl_easy_perform, but waiting at most SYNC_POLL_MS between calls into
 * curl: the easy interface waits up to a second when nothing happens, and
 * the tick (cancel, stall) must run more often than that. One handle, this
 * thread only.
 */
static CURLcode sync_http_perform(struct sync_http *h, struct sync_http_call *call)
{
    CURLcode code = CURLE_OK;
    CURLMcode mc;
    CURLMsg *msg;
    int running = 1, left, rc;

    mc = curl_multi_add_handle(h->multi, h->easy);
    while (mc == CURLM_OK) {
        mc = curl_multi_perform(h->multi, &running);
        if (mc != CURLM_OK || !running)
            break;
        rc = call->ops->tick(call->ctx);
        if (rc < 0) {
            call->rc = rc;
            code = CURLE_ABORTED_BY_CALLBACK;
            break;
        }
        mc = curl_multi_poll(h->multi, NULL, 0, SYNC_POLL_MS, NULL);
    }
    if (mc != CURLM_OK) {
        log_error("sync: libcurl: %s", curl_multi_strerror(mc));
        code = CURLE_OUT_OF_MEMORY;
    }
    while ((msg = curl_multi_info_read(h->multi, &left)) != NULL) {
        if (msg->msg == CURLMSG_DONE && msg->easy_handle == h->easy && code == CURLE_OK)
            code = msg->data.result;
    }
    curl_multi_remove_handle(h->multi, h->easy);
    return code;
}

/* ---- transfer errors ---- */

static bool sync_http_code_transient(CURLcode code)
{
    switch (code) {
    case CURLE_COULDNT_RESOLVE_PROXY:
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_CONNECT:
    case CURLE_WEIRD_SERVER_REPLY:
    case CURLE_HTTP2:
    case CURLE_PARTIAL_FILE:
    case CURLE_OPERATION_TIMEDOUT:
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_GOT_NOTHING:
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
    case CURLE_HTTP2_STREAM:
    case CURLE_AGAIN:
    case CURLE_HTTP3:
    case CURLE_QUIC_CONNECT_ERROR:
    case CURLE_PROXY:
        return true;
    default:
        return false;
    }
}

/* A user-readable cause for a transfer error, credentials removed. */
static int sync_http_code_error(struct sync_http_call *call, const char *url, CURLcode code,
                                struct bim_error *err)
{
    char text[CURL_ERROR_SIZE + 64], redirects[64];
    const char *hint = "";

    snprintf(text, sizeof(text), "%s", call->errbuf[0] ? call->errbuf : curl_easy_strerror(code));
    sync_url_redact(url, text, sizeof(text));
    switch (code) {
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_ISSUER_ERROR:
        hint = " (for a private CA, start bimfs with --ca-file)";
        break;
    case CURLE_UNSUPPORTED_PROTOCOL:
        hint = " (only http and https are followed)";
        break;
    case CURLE_TOO_MANY_REDIRECTS:
        snprintf(redirects, sizeof(redirects), " (at most %d redirects are followed)",
                 SYNC_REDIRECTS_MAX);
        hint = redirects;
        break;
    case CURLE_PARTIAL_FILE:
        hint = " (the body ended early)";
        break;
    default:
        break;
    }
    return bim_error_set(err, sync_http_code_transient(code) ? -EAGAIN : -EPROTO, "%s%s", text,
                         hint);
}

int sync_http_get(struct sync_http *h, const struct sync_http_request *req,
                  const struct sync_http_ops *ops, void *ctx, struct bim_error *err)
{
    CURL *curl = h->easy;
    struct sync_http_call call = {.curl = curl, .ops = ops, .ctx = ctx};
    struct curl_slist *headers = NULL;
    char range[32], if_range[SYNC_VALIDATOR_MAX + 16];
    CURLcode code;
    long status = 0;

    if (req->range_from > 0) {
        snprintf(range, sizeof(range), "%" PRIu64 "-", req->range_from);
        if (req->if_range && req->if_range[0]) {
            snprintf(if_range, sizeof(if_range), "If-Range: %s", req->if_range);
            headers = curl_slist_append(NULL, if_range);
            if (!headers)
                return bim_error_set(err, -ENOMEM, "out of memory");
        }
    }
    code = curl_easy_setopt(curl, CURLOPT_URL, req->url);
    if (code == CURLE_OK)
        code = curl_easy_setopt(curl, CURLOPT_RANGE, req->range_from > 0 ? range : NULL);
    if (code == CURLE_OK)
        code = curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
    if (code == CURLE_OK)
        code = curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, call.errbuf);
    curl_easy_setopt(curl, CURLOPT_HEADERFUNCTION, sync_http_on_header);
    curl_easy_setopt(curl, CURLOPT_HEADERDATA, &call);
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, sync_http_on_data);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, &call);
    curl_easy_setopt(curl, CURLOPT_XFERINFOFUNCTION, sync_http_on_tick);
    curl_easy_setopt(curl, CURLOPT_XFERINFODATA, &call);
    if (code == CURLE_OK)
        code = sync_http_perform(h, &call);
    curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, NULL);
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, NULL);
    curl_slist_free_all(headers);

    if (call.rc < 0)
        return call.rc; /* a callback ended it: the download knows why */
    if (code != CURLE_OK)
        return sync_http_code_error(&call, req->url, code, err);
    if (!call.responded) {
        curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
        return bim_error_set(err, -EPROTO, "unexpected answer: HTTP %ld %s", status,
                             call.resp.reason);
    }
    return 0;
}
