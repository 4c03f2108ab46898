/*
 * s3.c - the s3 backup target, bk_s3_ops (backup/target.h; docs/backup.md "S3
 * targets"): s3://bucket@region/prefix/ mapped as Longhorn's backupstore maps
 * it (object key = <prefix>/<path>), over the project's HTTP client with
 * libcurl's AWS SigV4. Credentials, endpoint, CA and proxies come from the
 * daemon's environment when the target is opened.
 *
 * Calls: list = ListObjectsV2 with delimiter '/' and continuation tokens;
 * read = GetObject; write = one PutObject (atomic on S3); exists and mtime =
 * HeadObject; remove = DeleteObject of the key and of every key under
 * "<key>/"; now = the Date of a one-key listing.
 *
 * Threads: any number of threads may use one target at once. t->lock guards
 * the stack of idle HTTP clients (t->idle, t->idle_count) and nothing else; it
 * is never held across a request. Everything else in the target is set by
 * open and read-only until close, which runs when no call is in flight.
 */
#include "s3.h"

#include "../target.h"
#include "http/client.h"
#include "version.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define S3_IDLE_MAX 8       /* idle clients (kept-alive connections) kept per target */
#define S3_ATTEMPTS 3       /* tries of a request that failed in a way worth retrying */
#define S3_RETRY_MS 250     /* the first pause between tries; then 4 times longer */
#define S3_CONNECT_MS 10000 /* connect timeout */
#define S3_LOW_SPEED_S 10   /* under 1 byte/s this long ends a try (SPEC §4: 2 minutes) */
#define S3_SHOWN_MAX 512    /* bytes of the target as messages show it */
#define S3_REGION_MAX 64
#define S3_EMPTY_SHA256 "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

struct bk_target {
    char shown[S3_SHOWN_MAX]; /* "s3://bucket@region/prefix/": what messages name */
    char *base; /* "<endpoint>/<bucket>" or "https://<bucket>.<host>": URLs start so */
    char *root; /* the key prefix without a leading or trailing '/', maybe "" */
    char sigv4[S3_REGION_MAX + 16]; /* "aws:amz:<region>:s3" */
    char *key_id;
    char *secret;        /* zeroed when closed */
    char *session_token; /* "x-amz-security-token: ..." or NULL */
    char *ca_pem;        /* AWS_CERT as PEM text, or NULL */
    char *ca_file;       /* AWS_CERT as a path, or NULL */
    pthread_mutex_t lock;
    struct http_client *idle[S3_IDLE_MAX];
    size_t idle_count;
};

/* One request and what came back. */
struct s3_call {
    const char *method;
    const char *key;   /* the object key (not encoded); "" for the bucket */
    const char *query; /* canonical (s3_query_build), or NULL */
    const void *body;  /* PUT */
    size_t body_len;
    size_t max; /* bytes of a 2xx body kept at most (larger: -EFBIG) */
    /* the answer */
    long status;
    int64_t length;
    char date[HTTP_VALIDATOR_MAX];
    char last_modified[HTTP_VALIDATOR_MAX];
    char *buf; /* the body (2xx: up to max; else up to S3_ERROR_BODY_MAX), NUL-terminated */
    size_t len;
    size_t cap;
    size_t limit; /* the bound of this answer's body */
};

/* ---- the target: URL and environment ---- */

static void s3_secret_free(char *s)
{
    if (s) {
        explicit_bzero(s, strlen(s));
        free(s);
    }
}

static const char *s3_env(const char *name)
{
    const char *v = getenv(name);

    return v && v[0] ? v : NULL;
}

/* A bucket name as S3 allows it (3-63 of a-z 0-9 . -; we also take
 * uppercase and '_' as older buckets and other stores do). */
static bool s3_bucket_valid(const char *b, size_t len)
{
    if (len < 1 || len > 255)
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = b[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '-' || c == '_'))
            return false;
    }
    return true;
}

static bool s3_region_valid(const char *r, size_t len)
{
    if (len < 1 || len >= S3_REGION_MAX)
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = r[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_'))
            return false;
    }
    return true;
}

/* "s3://bucket@region/prefix/" or "s3://bucket/prefix/" (region from
 * AWS_REGION), the prefix may be empty or left out; a query
 * (?backingImage=...) is not part of the target. */
static int s3_url_parse(struct bk_target *t, const char *url, char *bucket, size_t bucket_len,
                        struct bim_error *err)
{
    const char *p, *host, *slash, *at, *query, *region;
    size_t host_len, region_len, root_len;

    if (strncmp(url, "s3://", 5) != 0)
        return bim_error_set(err, -EINVAL, "not an s3 target: it must start with s3://");
    host = url + 5;
    query = strchr(host, '?');
    slash = strchr(host, '/');
    /* no path: the bucket's root (s3://bucket@region, as Go's URL parser
     * and so Longhorn take it) */
    if (!slash || (query && query < slash))
        slash = query ? query : host + strlen(host);
    host_len = (size_t)(slash - host);
    if (host_len == 0 || host[0] == '@')
        return bim_error_set(err, -EINVAL,
                             "invalid s3 target: no bucket (s3://bucket@region/path/)");
    at = memchr(host, '@', host_len);
    if (at) {
        region = at + 1;
        region_len = (size_t)(slash - region);
        host_len = (size_t)(at - host);
    } else {
        region = s3_env("AWS_REGION");
        region_len = region ? strlen(region) : 0;
        if (!region)
            return bim_error_set(err, -EINVAL,
                                 "s3 target without a region: write s3://bucket@region/path/ or "
                                 "set AWS_REGION in the daemon's environment");
    }
    if (!s3_bucket_valid(host, host_len) || host_len >= bucket_len)
        return bim_error_set(err, -EINVAL, "invalid s3 target: bad bucket name \"%.*s\"",
                             (int)(host_len > 64 ? 64 : host_len), host);
    if (!s3_region_valid(region, region_len))
        return bim_error_set(err, -EINVAL, "invalid s3 target: bad region \"%.*s\"",
                             (int)(region_len > 64 ? 64 : region_len), region);
    memcpy(bucket, host, host_len);
    bucket[host_len] = '\0';
    snprintf(t->sigv4, sizeof(t->sigv4), "aws:amz:%.*s:s3", (int)region_len, region);
    /* the prefix: leading and trailing '/' do not count (Longhorn trims them) */
    p = slash;
    while (*p == '/')
        p++;
    root_len = query ? (size_t)(query - p) : strlen(p);
    while (root_len > 0 && p[root_len - 1] == '/')
        root_len--;
    if (root_len > S3_KEY_MAX / 2)
        return bim_error_set(err, -EINVAL, "invalid s3 target: the path is too long");
    for (size_t i = 0; i < root_len; i++) {
        if ((unsigned char)p[i] < 0x20 || p[i] == 0x7f)
            return bim_error_set(err, -EINVAL, "invalid s3 target: a control byte in the path");
    }
    t->root = strndup(p, root_len);
    if (!t->root)
        return bim_error_set(err, -ENOMEM, "out of memory");
    snprintf(t->shown, sizeof(t->shown), "s3://%s@%.*s/%s%s", bucket, (int)region_len, region,
             t->root, t->root[0] ? "/" : "");
    return 0;
}

/* Where requests go: AWS_ENDPOINTS (path-style unless VIRTUAL_HOSTED_STYLE=true)
 * or AWS itself (virtual-hosted unless VIRTUAL_HOSTED_STYLE=false). */
static int s3_base_build(struct bk_target *t, const char *bucket, struct bim_error *err)
{
    const char *endpoint = s3_env("AWS_ENDPOINTS"), *style = s3_env("VIRTUAL_HOSTED_STYLE");
    const char *region = t->sigv4 + strlen("aws:amz:");
    char aws[S3_REGION_MAX + 64], shown[HTTP_URL_MAX + 1], *base;
    size_t elen, rlen = strlen(region) - strlen(":s3");
    bool creds, virtual_hosted;
    const char *scheme_end, *host;
    int rc;

    if (!endpoint) {
        snprintf(aws, sizeof(aws), "https://s3.%.*s.amazonaws.com", (int)rlen, region);
        endpoint = aws;
    }
    rc = http_url_check(endpoint, shown, sizeof(shown), &creds, err);
    if (rc < 0 || creds)
        return bim_error_set(err, -EINVAL,
                             "AWS_ENDPOINTS must be an http or https URL without user info");
    elen = strlen(endpoint);
    while (elen > 0 && endpoint[elen - 1] == '/')
        elen--;
    virtual_hosted = style ? strcmp(style, "true") == 0 : endpoint == aws;
    base = malloc(elen + strlen(bucket) + 3);
    if (!base)
        return bim_error_set(err, -ENOMEM, "out of memory");
    if (virtual_hosted) {
        scheme_end = strstr(endpoint, "://");
        host = scheme_end + 3;
        sprintf(base, "%.*s%s.%.*s", (int)(host - endpoint), endpoint, bucket,
                (int)(elen - (size_t)(host - endpoint)), host);
    } else {
        sprintf(base, "%.*s/%s", (int)elen, endpoint, bucket);
    }
    t->base = base;
    return 0;
}

/* AWS_CERT: PEM text (as Longhorn's secret holds it) or the path of a PEM file. */
static int s3_ca_load(struct bk_target *t, struct bim_error *err)
{
    const char *cert = s3_env("AWS_CERT");

    if (!cert)
        return 0;
    if (strstr(cert, "-----BEGIN"))
        t->ca_pem = strdup(cert);
    else
        t->ca_file = strdup(cert);
    if (!t->ca_pem && !t->ca_file)
        return bim_error_set(err, -ENOMEM, "out of memory");
    if (t->ca_file && access(t->ca_file, R_OK) != 0)
        return bim_error_set(err, -EINVAL,
                             "AWS_CERT is neither PEM text nor a readable file: %s (%s)",
                             t->ca_file, strerror(errno));
    return 0;
}

static int s3_credentials_load(struct bk_target *t, struct bim_error *err)
{
    const char *id = s3_env("AWS_ACCESS_KEY_ID"), *secret = s3_env("AWS_SECRET_ACCESS_KEY");
    const char *token = s3_env("AWS_SESSION_TOKEN");
    size_t len;

    if (!id || !secret)
        return bim_error_set(err, -EINVAL,
                             "%s needs AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY in the "
                             "daemon's environment",
                             t->shown);
    t->key_id = strdup(id);
    t->secret = strdup(secret);
    if (token) {
        len = strlen("x-amz-security-token: ") + strlen(token) + 1;
        t->session_token = malloc(len);
        if (t->session_token)
            snprintf(t->session_token, len, "x-amz-security-token: %s", token);
    }
    if (!t->key_id || !t->secret || (token && !t->session_token))
        return bim_error_set(err, -ENOMEM, "out of memory");
    return 0;
}

static void s3_close(struct bk_target *t)
{
    if (!t)
        return;
    for (size_t i = 0; i < t->idle_count; i++)
        http_client_close(t->idle[i]);
    pthread_mutex_destroy(&t->lock);
    free(t->base);
    free(t->root);
    free(t->key_id);
    s3_secret_free(t->secret);
    s3_secret_free(t->session_token);
    free(t->ca_pem);
    free(t->ca_file);
    free(t);
}

/* No request is made: a target that cannot be reached fails its first call. */
static int s3_open(const char *url, struct bk_target **out, struct bim_error *err)
{
    struct bk_target *t = calloc(1, sizeof(*t));
    char bucket[256];
    int rc = -ENOMEM;

    *out = NULL;
    if (!t)
        return bim_error_set(err, rc, "out of memory");
    pthread_mutex_init(&t->lock, NULL);
    rc = s3_url_parse(t, url, bucket, sizeof(bucket), err);
    if (rc == 0)
        rc = s3_base_build(t, bucket, err);
    if (rc == 0)
        rc = s3_credentials_load(t, err);
    if (rc == 0)
        rc = s3_ca_load(t, err);
    if (rc < 0)
        goto out;
    *out = t;
    t = NULL;
out:
    s3_close(t);
    return rc;
}

/* ---- clients ---- */

static int s3_client_get(struct bk_target *t, struct http_client **out, struct bim_error *err)
{
    struct http_client_options opts = {
        .user_agent = "bimfs/" BIMFS_VERSION,
        .https = true,
        .follow_redirects = false,
        .proxy_from_env = true,
        .ca_file = t->ca_file,
        .ca_pem = t->ca_pem,
        .tls_hint = "put its PEM in AWS_CERT",
        .aws_sigv4 = t->sigv4,
        .aws_key = t->key_id,
        .aws_secret = t->secret,
        .connect_ms = S3_CONNECT_MS,
        .low_speed_s = S3_LOW_SPEED_S,
    };
    int rc;

    *out = NULL;
    pthread_mutex_lock(&t->lock);
    if (t->idle_count > 0)
        *out = t->idle[--t->idle_count];
    pthread_mutex_unlock(&t->lock);
    if (*out)
        return 0;
    rc = http_client_open(&opts, out);
    if (rc < 0)
        return bim_error_set(err, rc, "%s: cannot set up the HTTP client", t->shown);
    return 0;
}

static void s3_client_put(struct bk_target *t, struct http_client *h)
{
    pthread_mutex_lock(&t->lock);
    if (t->idle_count < S3_IDLE_MAX) {
        t->idle[t->idle_count++] = h;
        h = NULL;
    }
    pthread_mutex_unlock(&t->lock);
    http_client_close(h);
}

/* ---- one request ---- */

static int s3_on_response(void *ctx, const struct http_response *resp)
{
    struct s3_call *c = ctx;
    bool ok = resp->status >= 200 && resp->status < 300;

    c->status = resp->status;
    c->length = resp->length;
    str_copy(c->date, sizeof(c->date), resp->date);
    str_copy(c->last_modified, sizeof(c->last_modified), resp->last_modified);
    c->len = 0;
    c->limit = ok ? c->max : S3_ERROR_BODY_MAX;
    if (ok && strcmp(c->method, "HEAD") != 0 && resp->length > 0 && (uint64_t)resp->length > c->max)
        return -EFBIG;
    return 0;
}

static int s3_on_data(void *ctx, const void *buf, size_t len)
{
    struct s3_call *c = ctx;
    size_t need, cap;
    char *grown;

    if (len > c->limit - c->len) {
        if (c->status >= 200 && c->status < 300)
            return -EFBIG;
        len = c->limit - c->len; /* the start of an error is enough */
        if (!len)
            return 0;
    }
    need = c->len + len + 1;
    if (need > c->cap) {
        cap = c->cap ? c->cap : 4096;
        while (cap < need)
            cap *= 2;
        grown = realloc(c->buf, cap);
        if (!grown)
            return -ENOMEM;
        c->buf = grown;
        c->cap = cap;
    }
    memcpy(c->buf + c->len, buf, len);
    c->len += len;
    c->buf[c->len] = '\0';
    return 0;
}

static void s3_sleep_ms(unsigned ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};

    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

/* The URL of c: base, the encoded key, the query. */
static int s3_url_build(struct bk_target *t, const struct s3_call *c, char *url, size_t url_len)
{
    char encoded[3 * S3_KEY_MAX + 1];
    int n, rc = s3_uri_encode(c->key, true, encoded, sizeof(encoded));

    if (rc < 0)
        return rc;
    n = snprintf(url, url_len, "%s/%s%s%s", t->base, encoded, c->query ? "?" : "",
                 c->query ? c->query : "");
    return n < 0 || (size_t)n >= url_len ? -ENAMETOOLONG : 0;
}

/* One request, tried again (S3_ATTEMPTS) when the network failed or the
 * status says to (408, 429, 5xx). 0 when an answer arrived (c->status; any
 * status once the tries are used up), else -errno with a message. */
static int s3_request(struct bk_target *t, struct s3_call *c, struct bim_error *err)
{
    char url[HTTP_URL_MAX + 1], sha[65];
    const char *headers[4] = {NULL};
    struct http_client *h = NULL;
    struct http_response resp;
    struct http_request req = {0};
    unsigned pause = S3_RETRY_MS;
    size_t n = 0;
    int rc;

    rc = s3_url_build(t, c, url, sizeof(url));
    if (rc < 0)
        return bim_error_set(err, rc, "%s: the key %.200s is too long", t->shown, c->key);
    rc = c->body_len ? s3_sha256_hex(c->body, c->body_len, sha) : 0;
    if (rc < 0)
        return bim_error_set(err, rc, "%s: cannot hash the body of %s", t->shown, c->key);
    char payload[96];
    snprintf(payload, sizeof(payload), "x-amz-content-sha256: %s",
             c->body_len ? sha : S3_EMPTY_SHA256);
    headers[n++] = payload;
    if (t->session_token)
        headers[n++] = t->session_token;
    req.url = url;
    req.method = c->method;
    req.body = c->body;
    req.body_len = c->body_len;
    req.headers = headers;
    req.on_response = s3_on_response;
    req.on_data = s3_on_data;
    req.ctx = c;
    for (int attempt = 1;; attempt++) {
        c->status = 0;
        c->len = 0;
        rc = s3_client_get(t, &h, err);
        if (rc < 0)
            return rc;
        rc = http_client_request(h, &req, &resp, err);
        if (rc < 0 && resp.cause != HTTP_CAUSE_CALLBACK) {
            http_client_close(h); /* its connection may be in any state */
            h = NULL;
        } else {
            s3_client_put(t, h);
            h = NULL;
        }
        if (attempt >= S3_ATTEMPTS ||
            !(rc == -EAGAIN || (rc == 0 && (http_status_transient(c->status)))))
            break;
        s3_sleep_ms(pause);
        pause *= 4;
    }
    if (rc == -EFBIG)
        return bim_error_set(err, rc, "%s: %s is larger than %zu bytes", t->shown, c->key, c->max);
    if (rc == -ENOMEM)
        return bim_error_set(err, rc, "out of memory");
    if (rc < 0) {
        char cause[BIM_ERROR_MAX];
        str_copy(cause, sizeof(cause), err ? err->message : "");
        return bim_error_set(err, rc, "%s: %s %s: %s", t->shown, c->method,
                             c->key[0] ? c->key : "(listing)", cause);
    }
    return 0;
}

/* The error for an answer that is not 2xx: its status, S3's Code and
 * Message. 404 is -ENOENT, 403 -EACCES, transient ones -EAGAIN, else -EIO. */
static int s3_status_error(struct bk_target *t, const struct s3_call *c, struct bim_error *err)
{
    char code[64], message[200];
    int rc = c->status == 404                   ? -ENOENT
             : c->status == 403                 ? -EACCES
             : http_status_transient(c->status) ? -EAGAIN
                                                : -EIO;

    s3_error_parse(c->buf, c->len, code, sizeof(code), message, sizeof(message));
    if (!code[0] && c->status == 403)
        str_copy(code, sizeof(code), "AccessDenied");
    if (!code[0] && c->status == 404)
        str_copy(code, sizeof(code), "NotFound");
    return bim_error_set(err, rc, "%s: %s %s: HTTP %ld%s%s%s%s", t->shown, c->method,
                         c->key[0] ? c->key : "(listing)", c->status, code[0] ? " " : "", code,
                         message[0] ? ": " : "", message);
}

static void s3_call_free(struct s3_call *c)
{
    free(c->buf);
    c->buf = NULL;
}

/* <root>/<path>: the object key of a target path ('/' at either end does
 * not count). */
static int s3_key(struct bk_target *t, const char *path, char *key, size_t key_len,
                  struct bim_error *err)
{
    size_t len;
    int n;

    while (*path == '/')
        path++;
    len = strlen(path);
    while (len > 0 && path[len - 1] == '/')
        len--;
    for (size_t i = 0; i < len; i++) {
        if ((unsigned char)path[i] < 0x20 || path[i] == 0x7f)
            return bim_error_set(err, -EINVAL, "%s: a control byte in a path", t->shown);
    }
    n = snprintf(key, key_len, "%s%s%.*s", t->root, t->root[0] && len ? "/" : "", (int)len, path);
    if (n < 0 || (size_t)n >= key_len || (size_t)n > S3_KEY_MAX)
        return bim_error_set(err, -ENAMETOOLONG, "%s: the path %.200s is too long", t->shown, path);
    return 0;
}

/* ---- the operations ---- */

/* Every name under prefix (keys and, with a delimiter, common prefixes),
 * the prefix taken off, over as many pages as S3 gives. */
static int s3_list_all(struct bk_target *t, const char *prefix, bool delimiter,
                       struct s3_listing *l, struct bim_error *err)
{
    char query[4 * S3_TEXT_MAX + 4 * S3_KEY_MAX];
    char token[S3_TEXT_MAX] = "";
    struct s3_param params[4];
    struct s3_call c = {.method = "GET", .key = "", .max = 16u << 20};
    size_t n;
    int rc;

    memset(l, 0, sizeof(*l));
    l->strip = prefix;
    for (;;) {
        n = 0;
        params[n++] = (struct s3_param){"list-type", "2"};
        params[n++] = (struct s3_param){"prefix", prefix};
        if (delimiter)
            params[n++] = (struct s3_param){"delimiter", "/"};
        if (token[0])
            params[n++] = (struct s3_param){"continuation-token", token};
        rc = s3_query_build(params, n, query, sizeof(query));
        if (rc < 0) {
            rc = bim_error_set(err, rc, "%s: the listing of %.200s is too long", t->shown, prefix);
            goto out;
        }
        c.query = query;
        rc = s3_request(t, &c, err);
        if (rc == 0 && (c.status < 200 || c.status > 299))
            rc = s3_status_error(t, &c, err);
        if (rc < 0)
            goto out;
        rc = s3_listing_parse(l, c.buf ? c.buf : "", c.len, err);
        if (rc < 0) {
            char cause[BIM_ERROR_MAX];
            str_copy(cause, sizeof(cause), err ? err->message : "");
            rc = bim_error_set(err, rc, "%s: list %s: %s", t->shown, prefix, cause);
            goto out;
        }
        if (!l->truncated)
            break;
        if (strcmp(token, l->next_token) == 0) {
            rc = bim_error_set(err, -EPROTO, "%s: list %s: the same continuation token twice",
                               t->shown, prefix);
            goto out;
        }
        str_copy(token, sizeof(token), l->next_token);
    }
    rc = 0;
out:
    s3_call_free(&c);
    if (rc < 0)
        s3_listing_free(l);
    return rc;
}

/* The prefix of a directory: its key and '/', or "" for the root of the bucket. */
static int s3_dir_prefix(struct bk_target *t, const char *dir, char *prefix, size_t len,
                         struct bim_error *err)
{
    int rc = s3_key(t, dir, prefix, len - 1, err);

    if (rc == 0 && prefix[0])
        strcat(prefix, "/");
    return rc;
}

static int s3_list(struct bk_target *t, const char *dir, char ***names, size_t *count,
                   struct bim_error *err)
{
    char prefix[S3_KEY_MAX + 2];
    struct s3_listing l;
    int rc;

    *names = NULL;
    *count = 0;
    rc = s3_dir_prefix(t, dir, prefix, sizeof(prefix), err);
    if (rc == 0)
        rc = s3_list_all(t, prefix, true, &l, err);
    if (rc < 0)
        return rc;
    *names = l.names;
    *count = l.count;
    return 0;
}

static int s3_read(struct bk_target *t, const char *path, size_t max, void **buf, size_t *len,
                   struct bim_error *err)
{
    char key[S3_KEY_MAX + 1];
    struct s3_call c = {.method = "GET", .key = key, .max = max};
    int rc;

    *buf = NULL;
    *len = 0;
    rc = s3_key(t, path, key, sizeof(key), err);
    if (rc == 0)
        rc = s3_request(t, &c, err);
    if (rc == 0 && (c.status < 200 || c.status > 299))
        rc = s3_status_error(t, &c, err);
    if (rc < 0)
        goto out;
    if (!c.buf) {
        c.buf = malloc(1); /* an empty object is an empty buffer, not NULL */
        if (!c.buf) {
            rc = bim_error_set(err, -ENOMEM, "out of memory");
            goto out;
        }
    }
    *buf = c.buf;
    *len = c.len;
    c.buf = NULL;
out:
    s3_call_free(&c);
    return rc;
}

static int s3_write(struct bk_target *t, const char *path, const void *buf, size_t len,
                    struct bim_error *err)
{
    char key[S3_KEY_MAX + 1];
    struct s3_call c = {.method = "PUT", .key = key, .body = buf, .body_len = len, .max = 4096};
    int rc;

    rc = s3_key(t, path, key, sizeof(key), err);
    if (rc == 0 && !key[0])
        rc = bim_error_set(err, -EINVAL, "%s: write needs a path", t->shown);
    if (rc == 0)
        rc = s3_request(t, &c, err);
    if (rc == 0 && (c.status < 200 || c.status > 299))
        rc = s3_status_error(t, &c, err);
    s3_call_free(&c);
    return rc;
}

/* HEAD of path: 0 with c->status 200, -ENOENT when missing (message set),
 * else -errno. */
static int s3_head(struct bk_target *t, const char *path, char *key, size_t key_len,
                   struct s3_call *c, struct bim_error *err)
{
    int rc = s3_key(t, path, key, key_len, err);

    c->method = "HEAD";
    c->key = key;
    if (rc == 0 && !key[0])
        rc = bim_error_set(err, -EINVAL, "%s: HEAD needs a path", t->shown);
    if (rc == 0)
        rc = s3_request(t, c, err);
    if (rc == 0 && (c->status < 200 || c->status > 299))
        rc = s3_status_error(t, c, err);
    return rc;
}

static int s3_exists(struct bk_target *t, const char *path, struct bim_error *err)
{
    char key[S3_KEY_MAX + 1];
    struct s3_call c = {0};
    int rc = s3_head(t, path, key, sizeof(key), &c, err);

    s3_call_free(&c);
    if (rc == -ENOENT) {
        bim_error_clear(err);
        return 0;
    }
    return rc < 0 ? rc : 1;
}

static int s3_mtime(struct bk_target *t, const char *path, int64_t *unix_s, struct bim_error *err)
{
    char key[S3_KEY_MAX + 1];
    struct s3_call c = {0};
    int rc = s3_head(t, path, key, sizeof(key), &c, err);

    if (rc == 0 && s3_http_date_parse(c.last_modified, unix_s) < 0)
        rc = bim_error_set(err, -EPROTO, "%s: HEAD %s: no valid Last-Modified in the answer",
                           t->shown, key);
    s3_call_free(&c);
    return rc;
}

static int s3_delete_key(struct bk_target *t, const char *key, struct bim_error *err)
{
    struct s3_call c = {.method = "DELETE", .key = key, .max = 4096};
    int rc = s3_request(t, &c, err);

    if (rc == 0 && c.status != 404 && (c.status < 200 || c.status > 299))
        rc = s3_status_error(t, &c, err);
    s3_call_free(&c);
    return rc;
}

/* The object, and everything under "<path>/" (rm -rf, as Longhorn's Remove). */
static int s3_remove(struct bk_target *t, const char *path, struct bim_error *err)
{
    char key[S3_KEY_MAX + 1], prefix[S3_KEY_MAX + 2], child[2 * S3_KEY_MAX + 2];
    struct s3_listing l = {0};
    int rc;

    rc = s3_key(t, path, key, sizeof(key), err);
    if (rc == 0 && !key[0])
        rc = bim_error_set(err, -EINVAL, "%s: remove needs a path", t->shown);
    if (rc == 0)
        rc = s3_delete_key(t, key, err);
    if (rc == 0)
        rc = s3_dir_prefix(t, path, prefix, sizeof(prefix), err);
    if (rc == 0)
        rc = s3_list_all(t, prefix, false, &l, err);
    for (size_t i = 0; rc == 0 && i < l.count; i++) {
        snprintf(child, sizeof(child), "%s%s", prefix, l.names[i]);
        rc = s3_delete_key(t, child, err);
    }
    s3_listing_free(&l);
    return rc;
}

/* The server's clock: the Date of an answer that proves the keys work. */
static int s3_now(struct bk_target *t, int64_t *unix_s, struct bim_error *err)
{
    char prefix[S3_KEY_MAX + 2], query[3 * S3_KEY_MAX + 64];
    struct s3_param params[3] = {{"list-type", "2"}, {"max-keys", "1"}, {"prefix", ""}};
    struct s3_call c = {.method = "GET", .key = "", .max = 1u << 20};
    int rc;

    rc = s3_dir_prefix(t, "", prefix, sizeof(prefix), err);
    params[2].value = prefix;
    if (rc == 0)
        rc = s3_query_build(params, 3, query, sizeof(query));
    c.query = query;
    if (rc == 0)
        rc = s3_request(t, &c, err);
    if (rc == 0 && (c.status < 200 || c.status > 299))
        rc = s3_status_error(t, &c, err);
    if (rc == 0 && s3_http_date_parse(c.date, unix_s) < 0)
        rc = bim_error_set(err, -EPROTO, "%s: the server's answer has no valid Date", t->shown);
    s3_call_free(&c);
    return rc;
}

const struct bk_target_ops bk_s3_ops = {
    .scheme = "s3",
    .open = s3_open,
    .list = s3_list,
    .read = s3_read,
    .write = s3_write,
    .exists = s3_exists,
    .remove = s3_remove,
    .mtime = s3_mtime,
    .now = s3_now,
    .close = s3_close,
};
