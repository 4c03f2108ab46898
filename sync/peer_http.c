/*
 * peer_http.c - the client side of the peer API (SPEC §8) with libcurl's
 * easy interface: one handle per fetcher thread (connections are kept
 * alive), plain http to host:port, the bearer token, a Range of bytes, the
 * headers a fetcher judges (status, Content-Range, ETag, Retry-After), and
 * small JSON bodies (the image, its extents) read into a bounded buffer.
 *
 * The policy (which source, retry or give up) is peer.c's and
 * peer_fetch.c's; this file only speaks HTTP.
 *
 * Threads: the thread that owns the handle, inside curl_easy_perform.
 */
#include "sync_internal.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* What one GET carries through curl's callbacks. */
struct sync_peer_get {
    CURL *curl;
    const struct sync_peer_call *call;
    struct sync_peer_reply *reply;
    bool accepted; /* call->accept took the response: body bytes go to call->data */
    int rc;        /* a callback's -errno that ended the GET */
};

int sync_peer_http_open(unsigned low_speed_s, CURL **out)
{
    CURL *c = curl_easy_init();
    CURLcode cc = CURLE_OK;

    *out = NULL;
    if (!c)
        return -ENOMEM;
#define SET(opt, val)                                                                              \
    do {                                                                                           \
        if (cc == CURLE_OK)                                                                        \
            cc = curl_easy_setopt(c, opt, val);                                                    \
    } while (0)
    SET(CURLOPT_PROTOCOLS_STR, "http");
    SET(CURLOPT_FOLLOWLOCATION, 0L);
    SET(CURLOPT_NOSIGNAL, 1L);
    SET(CURLOPT_TCP_KEEPALIVE, 1L);
    SET(CURLOPT_TCP_NODELAY, 1L);
    SET(CURLOPT_BUFFERSIZE, (long)SYNC_HTTP_BUFFER);
    SET(CURLOPT_CONNECTTIMEOUT_MS, (long)SYNC_PEER_CONNECT_MS);
    /* a source that stops sending: the piece goes elsewhere */
    SET(CURLOPT_LOW_SPEED_LIMIT, 1L);
    SET(CURLOPT_LOW_SPEED_TIME, (long)low_speed_s);
    SET(CURLOPT_HTTP_CONTENT_DECODING, 0L);
    SET(CURLOPT_USERAGENT, "bimfs-peer");
    SET(CURLOPT_NOPROGRESS, 0L);
    SET(CURLOPT_PROXY, ""); /* peers are reached directly, whatever the environment says */
#undef SET
    if (cc != CURLE_OK) {
        log_error("sync: cannot set up libcurl for peers: %s", curl_easy_strerror(cc));
        curl_easy_cleanup(c);
        return -EINVAL;
    }
    *out = c;
    return 0;
}

/* Fill the reply from the headers of the response that just ended. */
static void sync_peer_reply_read(struct sync_peer_get *get)
{
    struct sync_peer_reply *r = get->reply;
    const char *v;

    curl_easy_getinfo(get->curl, CURLINFO_RESPONSE_CODE, &r->status);
    v = sync_http_header(get->curl, "Content-Range");
    r->has_range =
        v && sync_http_content_range_parse(v, &r->range_first, &r->range_last, &r->range_complete);
    v = sync_http_header(get->curl, "ETag");
    r->etag[0] = '\0';
    if (v && strlen(v) < sizeof(r->etag))
        str_copy(r->etag, sizeof(r->etag), v);
    r->retry_after_s = sync_http_retry_after(get->curl, SYNC_PEER_RETRY_AFTER_MAX_S);
}

static size_t sync_peer_on_header(char *line, size_t size, size_t n, void *arg)
{
    struct sync_peer_get *get = arg;
    bool blank = (n == 2 && line[0] == '\r' && line[1] == '\n') || (n == 1 && line[0] == '\n');
    long status = 0;
    int rc;

    (void)size;
    if (n >= 5 && memcmp(line, "HTTP/", 5) == 0) {
        get->accepted = false;
        return n;
    }
    if (!blank)
        return n;
    curl_easy_getinfo(get->curl, CURLINFO_RESPONSE_CODE, &status);
    if (status < 200)
        return n; /* 100 Continue and friends: the real answer follows */
    sync_peer_reply_read(get);
    rc = get->call->accept ? get->call->accept(get->call->ctx, get->reply) : 0;
    if (rc < 0) {
        get->rc = rc;
        return 0; /* ends the transfer with CURLE_WRITE_ERROR */
    }
    get->accepted = rc == 0; /* > 0: the body is skipped */
    return n;
}

static size_t sync_peer_on_data(char *buf, size_t size, size_t n, void *arg)
{
    struct sync_peer_get *get = arg;

    (void)size;
    if (!get->accepted)
        return n; /* the body of an answer we do not take: an error text */
    get->rc = get->call->data(get->call->ctx, buf, n);
    return get->rc < 0 ? 0 : n;
}

static int sync_peer_on_tick(void *arg, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
                             curl_off_t ulnow)
{
    struct sync_peer_get *get = arg;

    (void)dltotal;
    (void)dlnow;
    (void)ultotal;
    (void)ulnow;
    if (get->call->cancel && atomic_load(get->call->cancel)) {
        get->rc = -ECANCELED;
        return 1;
    }
    return 0;
}

/* The request headers: the token and the range. NULL: out of memory. */
static struct curl_slist *sync_peer_headers(const struct sync_peer_call *call, bool *oom)
{
    struct curl_slist *list = NULL, *next;
    char line[SYNC_PEER_TOKEN_MAX + 32];

    *oom = false;
    if (call->token && call->token[0]) {
        snprintf(line, sizeof(line), "Authorization: Bearer %s", call->token);
        next = curl_slist_append(list, line);
        explicit_bzero(line, sizeof(line));
        if (!next) {
            *oom = true;
            return list;
        }
        list = next;
    }
    return list;
}

int sync_peer_http_get(CURL *curl, const struct sync_peer_call *call, struct sync_peer_reply *reply,
                       struct bim_error *err)
{
    struct sync_peer_get get = {.curl = curl, .call = call, .reply = reply};
    char errbuf[CURL_ERROR_SIZE] = "", range[64];
    struct curl_slist *headers;
    CURLcode code;
    bool oom;

    memset(reply, 0, sizeof(*reply));
    headers = sync_peer_headers(call, &oom);
    if (oom) {
        curl_slist_free_all(headers);
        return bim_error_set(err, -ENOMEM, "out of memory");
    }
    if (call->range)
        snprintf(range, sizeof(range), "%" PRIu64 "-%" PRIu64, call->first, call->last);
    code = curl_easy_setopt(curl, CURLOPT_URL, call->url);
    if (code == CURLE_OK)
        code = curl_easy_setopt(curl, CURLOPT_RANGE, call->range ? range : NULL);
    if (code == CURLE_OK)
        code = curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(curl, CURLOPT_HEADERFUNCTION, sync_peer_on_header);
    curl_easy_setopt(curl, CURLOPT_HEADERDATA, &get);
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, sync_peer_on_data);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, &get);
    curl_easy_setopt(curl, CURLOPT_XFERINFOFUNCTION, sync_peer_on_tick);
    curl_easy_setopt(curl, CURLOPT_XFERINFODATA, &get);
    if (code == CURLE_OK)
        code = curl_easy_perform(curl);
    curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, NULL);
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, NULL);
    curl_slist_free_all(headers);

    if (get.rc < 0)
        return get.rc; /* a callback ended it: the caller knows why */
    if (code != CURLE_OK)
        return bim_error_set(err, -EAGAIN, "%s", errbuf[0] ? errbuf : curl_easy_strerror(code));
    if (!get.reply->status)
        sync_peer_reply_read(&get); /* no header callback reached the end */
    return 0;
}

/* ---- small JSON bodies ---- */

struct sync_peer_body {
    char *buf;
    size_t len;
    size_t max;
};

static int sync_peer_body_accept(void *ctx, const struct sync_peer_reply *reply)
{
    (void)ctx;
    /* an error's body is not read: the status says enough */
    return reply->status == 200 ? 0 : 1;
}

static int sync_peer_body_add(void *ctx, const void *data, size_t n)
{
    struct sync_peer_body *b = ctx;
    char *buf;

    if (n > b->max - b->len)
        return -EFBIG;
    buf = realloc(b->buf, b->len + n + 1);
    if (!buf)
        return -ENOMEM;
    memcpy(buf + b->len, data, n);
    b->buf = buf;
    b->len += n;
    b->buf[b->len] = '\0';
    return 0;
}

int sync_peer_http_get_json(CURL *curl, const char *url, const char *token, size_t max,
                            const atomic_bool *cancel, struct sync_peer_reply *reply, json_t **out,
                            struct bim_error *err)
{
    struct sync_peer_body body = {.max = max};
    struct sync_peer_call call = {
        .url = url,
        .token = token,
        .accept = sync_peer_body_accept,
        .data = sync_peer_body_add,
        .ctx = &body,
        .cancel = cancel,
    };
    json_error_t jerr;
    int rc;

    *out = NULL;
    /* a small answer: a source that hangs is given up on sooner than a
     * piece would be */
    curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, (long)SYNC_PEER_JSON_TIMEOUT_MS);
    rc = sync_peer_http_get(curl, &call, reply, err);
    curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, 0L);
    if (rc == -EFBIG)
        rc = bim_error_set(err, -EPROTO, "its answer is larger than %zu bytes", max);
    if (rc == 0 && reply->status == 200) {
        *out = json_loadb(body.buf ? body.buf : "", body.len, JSON_REJECT_DUPLICATES, &jerr);
        if (!*out)
            rc = bim_error_set(err, -EPROTO, "its answer is not JSON: %s", jerr.text);
    }
    free(body.buf);
    return rc;
}
