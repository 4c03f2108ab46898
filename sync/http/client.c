/*
 * client.c - the HTTP client over libcurl (client.h): one easy handle in
 * its own multi handle per client (the multi's connection cache keeps
 * connections alive between requests, and polling it lets cancel and the
 * stall bound be looked at every HTTP_POLL_MS: curl_easy_perform waits up to
 * a second when nothing happens), the method and body of each request, the
 * final response's headers, and CURLcode turned into -errno, a cause and a
 * message without credentials. AWS SigV4 is libcurl's (CURLOPT_AWS_SIGV4):
 * the key and secret are handed to libcurl once and not kept here.
 *
 * Threads: the thread using the client; curl's callbacks run in it, inside
 * curl_multi_perform. No lock: a client is never shared.
 */
#include "client.h"

#include <curl/curl.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct http_client {
    CURL *easy;
    CURLM *multi;
    char *auth; /* "Authorization: Bearer <token>" (malloc'd, zeroed when freed), or NULL */
    unsigned stall_ms;
    bool follow;          /* redirects are followed */
    bool signed_requests; /* AWS SigV4 */
    char tls_hint[96];    /* " (for a private CA, ...)" */
};

/* What one request carries through curl's callbacks. */
struct http_call {
    struct http_client *h;
    const struct http_request *req;
    struct http_response *resp;
    bool final; /* the final response's headers ended (req->on_response saw them) */
    bool take;  /* ...and its body goes to req->on_data */
    int rc;     /* a callback's -errno, or -ECANCELED, that ended the GET */
    enum http_cause cause;
    uint64_t start_ms;
    uint64_t data_ms;  /* the last body byte taken */
    uint64_t quiet_ms; /* a stall: how long nothing came */
    size_t sent;       /* bytes of req->body handed to curl */
    char errbuf[CURL_ERROR_SIZE];
};

int http_client_global_init(void)
{
    return curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK ? 0 : -EIO;
}

void http_client_global_cleanup(void)
{
    curl_global_cleanup();
}

static int http_client_auth(struct http_client *h, const char *token)
{
    size_t len;

    if (!token || !token[0])
        return 0;
    len = strlen("Authorization: Bearer ") + strlen(token) + 1;
    h->auth = malloc(len);
    if (!h->auth)
        return -ENOMEM;
    snprintf(h->auth, len, "Authorization: Bearer %s", token);
    return 0;
}

static CURLcode http_client_setopts(CURL *c, const struct http_client_options *o)
{
    const char *protocols = o->https ? "http,https" : "http";
    CURLcode cc = CURLE_OK;

#define SET(opt, val)                                                                              \
    do {                                                                                           \
        if (cc == CURLE_OK)                                                                        \
            cc = curl_easy_setopt(c, opt, val);                                                    \
    } while (0)
    SET(CURLOPT_PROTOCOLS_STR, protocols);
    SET(CURLOPT_REDIR_PROTOCOLS_STR, protocols);
    SET(CURLOPT_FOLLOWLOCATION, o->follow_redirects ? 1L : 0L);
    SET(CURLOPT_MAXREDIRS, (long)HTTP_REDIRECTS_MAX);
    SET(CURLOPT_AUTOREFERER, 0L);
    SET(CURLOPT_NOSIGNAL, 1L);
    SET(CURLOPT_TCP_KEEPALIVE, 1L);
    SET(CURLOPT_TCP_NODELAY, 1L);
    SET(CURLOPT_BUFFERSIZE, HTTP_BUFFER);
    if (o->connect_ms)
        SET(CURLOPT_CONNECTTIMEOUT_MS, (long)o->connect_ms);
    if (o->low_speed_s) {
        SET(CURLOPT_LOW_SPEED_LIMIT, 1L);
        SET(CURLOPT_LOW_SPEED_TIME, (long)o->low_speed_s);
    }
    SET(CURLOPT_HTTP_CONTENT_DECODING, 0L); /* the stored bytes are the served bytes */
    SET(CURLOPT_SUPPRESS_CONNECT_HEADERS, 1L);
    SET(CURLOPT_SSLVERSION, (long)CURL_SSLVERSION_TLSv1_2);
    SET(CURLOPT_USERAGENT, o->user_agent ? o->user_agent : "bimfs");
    SET(CURLOPT_NOPROGRESS, 0L);
    if (!o->proxy_from_env)
        SET(CURLOPT_PROXY, "");
    /* CAINFO replaces the bundle file; the system's hashed directory
     * (CAPATH, libcurl's default) stays trusted beside it */
    if (o->ca_pem) {
        struct curl_blob blob = {
            .data = (void *)o->ca_pem, .len = strlen(o->ca_pem), .flags = CURL_BLOB_COPY};
        SET(CURLOPT_CAINFO_BLOB, &blob);
    } else if (o->ca_file) {
        SET(CURLOPT_CAINFO, o->ca_file);
    }
    if (o->aws_sigv4) {
        SET(CURLOPT_AWS_SIGV4, o->aws_sigv4); /* also sets CURLOPT_HTTPAUTH */
        SET(CURLOPT_USERNAME, o->aws_key ? o->aws_key : "");
        SET(CURLOPT_PASSWORD, o->aws_secret ? o->aws_secret : "");
    }
#undef SET
    return cc;
}

int http_client_open(const struct http_client_options *opts, struct http_client **out)
{
    struct http_client *h = calloc(1, sizeof(*h));
    CURLcode cc;
    int rc = -ENOMEM;

    *out = NULL;
    if (!h)
        return -ENOMEM;
    h->stall_ms = opts->stall_ms;
    h->follow = opts->follow_redirects;
    h->signed_requests = opts->aws_sigv4 != NULL;
    snprintf(h->tls_hint, sizeof(h->tls_hint), " (for a private CA, %.64s)",
             opts->tls_hint ? opts->tls_hint : "start bimfs with --ca-file");
    h->easy = curl_easy_init();
    h->multi = curl_multi_init();
    if (!h->easy || !h->multi || http_client_auth(h, opts->token) < 0)
        goto out;
    cc = http_client_setopts(h->easy, opts);
    if (cc == CURLE_OK && opts->keep_connections &&
        curl_multi_setopt(h->multi, CURLMOPT_MAXCONNECTS, (long)opts->keep_connections) != CURLM_OK)
        cc = CURLE_BAD_FUNCTION_ARGUMENT;
    if (cc != CURLE_OK) {
        log_error("http: cannot set up libcurl: %s", curl_easy_strerror(cc));
        rc = -EINVAL;
        goto out;
    }
    *out = h;
    h = NULL;
    rc = 0;
out:
    http_client_close(h);
    return rc;
}

void http_client_close(struct http_client *h)
{
    if (!h)
        return;
    if (h->easy)
        curl_easy_cleanup(h->easy);
    if (h->multi)
        curl_multi_cleanup(h->multi);
    if (h->auth) {
        explicit_bzero(h->auth, strlen(h->auth));
        free(h->auth);
    }
    free(h);
}

bool http_status_transient(long status)
{
    return status == 408 || status == 429 || (status >= 500 && status <= 599);
}

bool http_cause_remote(enum http_cause cause)
{
    return cause != HTTP_CAUSE_NONE && cause != HTTP_CAUSE_CANCELLED &&
           cause != HTTP_CAUSE_CALLBACK && cause != HTTP_CAUSE_LOCAL;
}

/* ---- headers ---- */

/* The last value of a header of curl's current response, or NULL. */
static const char *http_header(CURL *curl, const char *name)
{
    struct curl_header *h = NULL;

    if (curl_easy_header(curl, name, 0, CURLH_HEADER, -1, &h) != CURLHE_OK || !h)
        return NULL;
    return h->value;
}

/* A decimal number without sign, whitespace or overflow; end is where it
 * stopped. */
static bool http_number(const char *s, uint64_t *out, const char **end)
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
bool http_content_range_parse(const char *value, uint64_t *first, uint64_t *last, int64_t *complete)
{
    const char *p;
    uint64_t total;

    if (strncmp(value, "bytes ", 6) != 0)
        return false;
    if (!http_number(value + 6, first, &p) || *p != '-' || !http_number(p + 1, last, &p) ||
        *p != '/' || *last < *first || *last > (uint64_t)INT64_MAX)
        return false;
    if (strcmp(p + 1, "*") == 0) {
        *complete = -1;
        return true;
    }
    if (!http_number(p + 1, &total, &p) || *p != '\0' || total <= *last ||
        total > (uint64_t)INT64_MAX)
        return false;
    *complete = (int64_t)total;
    return true;
}

/* Retry-After in seconds (the delta form only); 0 when absent or not a
 * number. */
static unsigned http_retry_after(CURL *curl)
{
    const char *v = http_header(curl, "Retry-After"), *end;
    uint64_t n;

    if (!v || !http_number(v, &n, &end) || *end != '\0')
        return 0;
    return n > HTTP_RETRY_AFTER_MAX_S ? HTTP_RETRY_AFTER_MAX_S : (unsigned)n;
}

/* Copy a header value if it fits; longer ones are treated as absent. */
static void http_value_copy(char *dst, size_t dstlen, const char *src)
{
    dst[0] = '\0';
    if (src && strlen(src) < dstlen)
        str_copy(dst, dstlen, src);
}

/* Fill resp from the headers of the response that just ended. */
static void http_response_read(struct http_call *call)
{
    struct http_response *r = call->resp;
    CURL *curl = call->h->easy;
    curl_off_t cl = -1;
    const char *v;

    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &r->status);
    if (curl_easy_getinfo(curl, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &cl) != CURLE_OK)
        cl = -1;
    r->length = cl >= 0 ? (int64_t)cl : -1;
    v = http_header(curl, "Content-Range");
    r->has_range =
        v && http_content_range_parse(v, &r->range_first, &r->range_last, &r->range_complete);
    http_value_copy(r->etag, sizeof(r->etag), http_header(curl, "ETag"));
    http_value_copy(r->last_modified, sizeof(r->last_modified), http_header(curl, "Last-Modified"));
    http_value_copy(r->date, sizeof(r->date), http_header(curl, "Date"));
    r->retry_after_s = http_retry_after(curl);
}

/* The reason phrase of a status line, printable ASCII only. */
static void http_reason(struct http_response *r, const char *line, size_t len)
{
    size_t i = 0, o = 0;
    int spaces = 0;

    /* "HTTP/1.1 404 Not Found\r\n": the phrase follows the second space */
    while (i < len && spaces < 2) {
        if (line[i++] == ' ')
            spaces++;
    }
    for (; i < len && o + 1 < sizeof(r->reason); i++) {
        if (line[i] == '\r' || line[i] == '\n')
            break;
        r->reason[o++] = line[i] >= 0x20 && line[i] < 0x7f ? line[i] : '?';
    }
    r->reason[o] = '\0';
}

/* Will curl follow this response to another URL? */
static bool http_redirecting(struct http_call *call, long status)
{
    return call->h->follow && status >= 300 && status < 400 && status != 304 &&
           http_header(call->h->easy, "Location") != NULL;
}

/* The first reason to end the request wins. */
static void http_call_stop(struct http_call *call, int rc, enum http_cause cause)
{
    if (call->rc == 0) {
        call->rc = rc;
        call->cause = cause;
    }
}

static size_t http_on_header(char *line, size_t size, size_t n, void *arg)
{
    struct http_call *call = arg;
    bool blank = (n == 2 && line[0] == '\r' && line[1] == '\n') || (n == 1 && line[0] == '\n');
    long status = 0;
    int rc;

    (void)size;
    if (n >= 5 && memcmp(line, "HTTP/", 5) == 0) {
        call->final = call->take = false;
        http_reason(call->resp, line, n);
        return n;
    }
    if (call->final || !blank)
        return n; /* a header line (read at the end), or a trailer */
    /* the end of a response's headers */
    curl_easy_getinfo(call->h->easy, CURLINFO_RESPONSE_CODE, &status);
    if (status < 200 || http_redirecting(call, status))
        return n; /* 100 Continue and friends, or a redirect: the real answer follows */
    http_response_read(call);
    call->final = true;
    rc = call->req->on_response(call->req->ctx, call->resp);
    if (rc < 0) {
        http_call_stop(call, rc, HTTP_CAUSE_CALLBACK);
        return 0; /* ends the transfer with CURLE_WRITE_ERROR */
    }
    call->take = rc == 0; /* > 0: the body is skipped (an error's text) */
    return n;
}

/* The PUT body, handed to curl as it asks. */
static size_t http_on_read(char *buf, size_t size, size_t n, void *arg)
{
    struct http_call *call = arg;
    size_t room = size * n, left = call->req->body_len - call->sent;
    size_t len = left < room ? left : room;

    if (len)
        memcpy(buf, (const char *)call->req->body + call->sent, len);
    call->sent += len;
    return len;
}

/* curl rewinds the body when it sends it again (a reused connection that
 * had gone away). */
static int http_on_seek(void *arg, curl_off_t offset, int origin)
{
    struct http_call *call = arg;

    if (origin != SEEK_SET || offset < 0 || (uint64_t)offset > call->req->body_len)
        return CURL_SEEKFUNC_FAIL;
    call->sent = (size_t)offset;
    return CURL_SEEKFUNC_OK;
}

static size_t http_on_data(char *buf, size_t size, size_t n, void *arg)
{
    struct http_call *call = arg;
    int rc;

    (void)size;
    if (!call->take)
        return n; /* the body of a response not taken */
    call->data_ms = clock_monotonic_ms();
    rc = call->req->on_data(call->req->ctx, buf, n);
    if (rc < 0) {
        http_call_stop(call, rc, HTTP_CAUSE_CALLBACK);
        return 0;
    }
    return n;
}

/* Cancel, the stall bound, the caller's progress: false ends the request. */
static bool http_tick(struct http_call *call)
{
    const struct http_request *req = call->req;
    uint64_t quiet =
        clock_monotonic_ms() - (call->data_ms > call->start_ms ? call->data_ms : call->start_ms);
    int rc;

    if (req->cancel && atomic_load(req->cancel)) {
        http_call_stop(call, -ECANCELED, HTTP_CAUSE_CANCELLED);
        return false;
    }
    if (call->h->stall_ms && quiet >= call->h->stall_ms) {
        call->quiet_ms = quiet;
        http_call_stop(call, -EAGAIN, HTTP_CAUSE_STALL);
        return false;
    }
    rc = req->on_progress ? req->on_progress(req->ctx, quiet) : 0;
    if (rc < 0) {
        http_call_stop(call, rc, HTTP_CAUSE_CALLBACK);
        return false;
    }
    return true;
}

static int http_on_progress(void *arg, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
                            curl_off_t ulnow)
{
    (void)dltotal;
    (void)dlnow;
    (void)ultotal;
    (void)ulnow;
    return http_tick(arg) ? 0 : 1;
}

/* curl_easy_perform, but calling into curl at least every HTTP_POLL_MS. */
static CURLcode http_perform(struct http_call *call)
{
    struct http_client *h = call->h;
    CURLcode code = CURLE_OK;
    CURLMcode mc;
    CURLMsg *msg;
    int running = 1, left;

    mc = curl_multi_add_handle(h->multi, h->easy);
    while (mc == CURLM_OK) {
        mc = curl_multi_perform(h->multi, &running);
        if (mc != CURLM_OK || !running)
            break;
        if (!http_tick(call)) {
            code = CURLE_ABORTED_BY_CALLBACK;
            break;
        }
        mc = curl_multi_poll(h->multi, NULL, 0, HTTP_POLL_MS, NULL);
    }
    if (mc != CURLM_OK) {
        log_error("http: libcurl: %s", curl_multi_strerror(mc));
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

static enum http_cause http_code_cause(CURLcode code)
{
    switch (code) {
    case CURLE_COULDNT_RESOLVE_PROXY:
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_CONNECT:
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_QUIC_CONNECT_ERROR:
    case CURLE_PROXY:
        return HTTP_CAUSE_CONNECT;
    case CURLE_OPERATION_TIMEDOUT:
        return HTTP_CAUSE_TIMEOUT;
    case CURLE_WEIRD_SERVER_REPLY:
    case CURLE_HTTP2:
    case CURLE_PARTIAL_FILE:
    case CURLE_GOT_NOTHING:
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
    case CURLE_HTTP2_STREAM:
    case CURLE_AGAIN:
    case CURLE_HTTP3:
        return HTTP_CAUSE_TRANSFER;
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_ISSUER_ERROR:
        return HTTP_CAUSE_TLS;
    case CURLE_UNSUPPORTED_PROTOCOL:
    case CURLE_TOO_MANY_REDIRECTS:
        return HTTP_CAUSE_REDIRECT;
    default:
        return HTTP_CAUSE_PROTOCOL;
    }
}

static bool http_cause_transient(enum http_cause cause)
{
    return cause == HTTP_CAUSE_CONNECT || cause == HTTP_CAUSE_TIMEOUT ||
           cause == HTTP_CAUSE_STALL || cause == HTTP_CAUSE_TRANSFER;
}

/* A user-readable cause for a transfer error, credentials removed. */
static int http_code_error(struct http_call *call, CURLcode code, struct bim_error *err)
{
    char text[CURL_ERROR_SIZE + 128], redirects[64];
    const char *hint = "";
    long os_errno = 0;
    size_t len;

    call->resp->cause = http_code_cause(code);
    snprintf(text, sizeof(text), "%s", call->errbuf[0] ? call->errbuf : curl_easy_strerror(code));
    if (code == CURLE_COULDNT_CONNECT &&
        curl_easy_getinfo(call->h->easy, CURLINFO_OS_ERRNO, &os_errno) == CURLE_OK && os_errno) {
        len = strlen(text);
        snprintf(text + len, sizeof(text) - len, " (%s)", strerror((int)os_errno));
    }
    http_url_redact(call->req->url, text, sizeof(text));
    switch (code) {
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_ISSUER_ERROR:
        hint = call->h->tls_hint;
        break;
    case CURLE_UNSUPPORTED_PROTOCOL:
        hint = " (only http and https are followed)";
        break;
    case CURLE_TOO_MANY_REDIRECTS:
        snprintf(redirects, sizeof(redirects), " (at most %d redirects are followed)",
                 HTTP_REDIRECTS_MAX);
        hint = redirects;
        break;
    case CURLE_PARTIAL_FILE:
        hint = " (the body ended early)";
        break;
    default:
        break;
    }
    return bim_error_set(err, http_cause_transient(call->resp->cause) ? -EAGAIN : -EPROTO, "%s%s",
                         text, hint);
}

/* ---- one request ---- */

enum http_method { HTTP_GET, HTTP_HEAD, HTTP_PUT, HTTP_DELETE };

static int http_method_parse(const char *name, enum http_method *out)
{
    static const char *const names[] = {"GET", "HEAD", "PUT", "DELETE"};

    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        if (!name || strcmp(name, names[i]) == 0) {
            *out = (enum http_method)i;
            return 0;
        }
    }
    return -EINVAL;
}

static bool http_slist_add(struct curl_slist **list, const char *line)
{
    struct curl_slist *next = curl_slist_append(*list, line);

    if (!next)
        return false;
    *list = next;
    return true;
}

/* The request headers: the token, If-Range, the caller's lines, no
 * 100-continue for an unsigned body. NULL with *oom on failure. */
static struct curl_slist *http_headers(struct http_client *h, const struct http_request *req,
                                       enum http_method method, bool *oom)
{
    char line[HTTP_VALIDATOR_MAX + 16];
    struct curl_slist *list = NULL;

    *oom = false;
    if (h->auth && !http_slist_add(&list, h->auth))
        goto oom;
    if (req->range && req->if_range && req->if_range[0]) {
        snprintf(line, sizeof(line), "If-Range: %s", req->if_range);
        if (!http_slist_add(&list, line))
            goto oom;
    }
    for (size_t i = 0; req->headers && req->headers[i]; i++) {
        if (!http_slist_add(&list, req->headers[i]))
            goto oom;
    }
    /* libcurl 7.88 signs an "Expect:" line that it then does not send: signed
     * requests keep curl's 100-continue (bodies over 1 MiB) */
    if (method == HTTP_PUT && !h->signed_requests && !http_slist_add(&list, "Expect:"))
        goto oom;
    return list;
oom:
    curl_slist_free_all(list);
    *oom = true;
    return NULL;
}

/* The method (the handle is reused: HTTPGET undoes NOBODY and UPLOAD). */
static CURLcode http_prepare_method(struct http_call *call, enum http_method method)
{
    CURL *curl = call->h->easy;
    CURLcode code = curl_easy_setopt(curl, CURLOPT_HTTPGET, 1L);

    if (code == CURLE_OK)
        code = curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST,
                                method == HTTP_DELETE ? "DELETE" : (char *)NULL);
    if (code == CURLE_OK && method == HTTP_HEAD)
        code = curl_easy_setopt(curl, CURLOPT_NOBODY, 1L);
    if (code == CURLE_OK && method == HTTP_PUT) {
        code = curl_easy_setopt(curl, CURLOPT_UPLOAD, 1L);
        if (code == CURLE_OK)
            code =
                curl_easy_setopt(curl, CURLOPT_INFILESIZE_LARGE, (curl_off_t)call->req->body_len);
        curl_easy_setopt(curl, CURLOPT_READFUNCTION, http_on_read);
        curl_easy_setopt(curl, CURLOPT_READDATA, call);
        curl_easy_setopt(curl, CURLOPT_SEEKFUNCTION, http_on_seek);
        curl_easy_setopt(curl, CURLOPT_SEEKDATA, call);
    }
    return code;
}

/* Set the handle up for req; the callbacks get call. */
static CURLcode http_prepare(struct http_call *call, struct curl_slist *headers,
                             enum http_method method)
{
    const struct http_request *req = call->req;
    CURL *curl = call->h->easy;
    char range[64];
    CURLcode code;

    if (req->range && req->range_last >= 0)
        snprintf(range, sizeof(range), "%" PRIu64 "-%" PRId64, req->range_first, req->range_last);
    else if (req->range)
        snprintf(range, sizeof(range), "%" PRIu64 "-", req->range_first);
    code = curl_easy_setopt(curl, CURLOPT_URL, req->url);
    if (code == CURLE_OK)
        code = http_prepare_method(call, method);
    if (code == CURLE_OK)
        code = curl_easy_setopt(curl, CURLOPT_RANGE, req->range ? range : NULL);
    if (code == CURLE_OK)
        code = curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
    if (code == CURLE_OK)
        code = curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, (long)req->timeout_ms);
    if (code == CURLE_OK)
        code = curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, call->errbuf);
    curl_easy_setopt(curl, CURLOPT_HEADERFUNCTION, http_on_header);
    curl_easy_setopt(curl, CURLOPT_HEADERDATA, call);
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, http_on_data);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, call);
    curl_easy_setopt(curl, CURLOPT_XFERINFOFUNCTION, http_on_progress);
    curl_easy_setopt(curl, CURLOPT_XFERINFODATA, call);
    return code;
}

/* The URL the request ended at, shown without credentials. */
static void http_effective_url(struct http_call *call)
{
    char *effective = NULL;
    bool creds;

    call->resp->effective_url[0] = '\0';
    if (curl_easy_getinfo(call->h->easy, CURLINFO_EFFECTIVE_URL, &effective) != CURLE_OK ||
        !effective ||
        http_url_check(effective, call->resp->effective_url, sizeof(call->resp->effective_url),
                       &creds, NULL) < 0)
        call->resp->effective_url[0] = '\0';
}

int http_client_request(struct http_client *h, const struct http_request *req,
                        struct http_response *resp, struct bim_error *err)
{
    struct http_call call = {.h = h, .req = req, .resp = resp};
    struct curl_slist *headers;
    enum http_method method;
    CURLcode code;
    bool oom;
    int rc = 0;

    memset(resp, 0, sizeof(*resp));
    resp->length = -1;
    if (http_method_parse(req->method, &method) < 0) {
        resp->cause = HTTP_CAUSE_LOCAL;
        return bim_error_set(err, -EINVAL, "unsupported HTTP method %.16s", req->method);
    }
    headers = http_headers(h, req, method, &oom);
    if (oom) {
        resp->cause = HTTP_CAUSE_LOCAL;
        return bim_error_set(err, -ENOMEM, "out of memory");
    }
    call.start_ms = clock_monotonic_ms();
    code = http_prepare(&call, headers, method);
    if (code == CURLE_OK)
        code = http_perform(&call);
    http_effective_url(&call);
    curl_easy_setopt(h->easy, CURLOPT_ERRORBUFFER, NULL);
    curl_easy_setopt(h->easy, CURLOPT_HTTPHEADER, NULL);
    curl_slist_free_all(headers);

    if (call.cause == HTTP_CAUSE_STALL) {
        resp->cause = call.cause;
        rc =
            bim_error_set(err, call.rc, "stalled: no data for %" PRIu64 " s", call.quiet_ms / 1000);
    } else if (call.rc < 0) {
        resp->cause = call.cause; /* a callback or cancel ended it: the caller knows why */
        rc = call.rc;
    } else if (code != CURLE_OK) {
        rc = http_code_error(&call, code, err);
    } else if (!call.final) {
        curl_easy_getinfo(h->easy, CURLINFO_RESPONSE_CODE, &resp->status);
        resp->cause = HTTP_CAUSE_STATUS;
        rc = bim_error_set(err, -EPROTO, "unexpected answer: HTTP %ld %s", resp->status,
                           resp->reason);
    }
    return rc;
}
