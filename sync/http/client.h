/*
 * client.h - the HTTP client of bimfs (docs/sync.md, "The HTTP client"): GETs over
 * libcurl for downloads (sync/download.c) and peer sync (sync/peer*.c), and
 * GET/HEAD/PUT/DELETE signed with AWS SigV4 for the s3 backup target
 * (backup/s3/). It is the only code built against libcurl's headers; its
 * users see the options, one request, one response, three callbacks and
 * -errno with a message and a cause.
 *
 * What the client owns: the handle's options, request headers (Range,
 * If-Range, the bearer token, the caller's extra lines), the request body, the
 * signature, the headers of the final response, the cancel flag and the stall
 * bound, what a transfer error means (worth retrying or not) and messages
 * without URL credentials. What its users own: every policy (which status is
 * good, retry or fail, resume).
 *
 * Threads: a client is used by one thread at a time; its callbacks run in
 * that thread, inside http_client_request(). http_client_global_init() runs
 * once, before any other thread starts.
 */
#ifndef BIMFS_HTTP_CLIENT_H
#define BIMFS_HTTP_CLIENT_H

#include "common.h"

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define HTTP_URL_MAX BIM_URL_MAX /* bytes of a URL (common.h) */

#define HTTP_URL_SECRET_MIN 4  /* shorter user names/passwords are redacted only as user info */
#define HTTP_VALIDATOR_MAX 256 /* longer ETag / Last-Modified values are treated as absent */
#define HTTP_REASON_MAX 64     /* bytes of a reason phrase kept */
#define HTTP_REDIRECTS_MAX 10  /* followed at most */
#define HTTP_RETRY_AFTER_MAX_S 3600 /* a longer Retry-After is cut to this */
#define HTTP_POLL_MS 200            /* progress and cancel are looked at least this often */
#define HTTP_BUFFER (512L << 10)    /* libcurl's receive buffer */

/* libcurl's global state: once at start (0, or -EIO), once at exit. */
int http_client_global_init(void);
void http_client_global_cleanup(void);

/* ---- URLs (libcurl's parser: the URL judged is the URL fetched) ---- */

/* http or https with a host, at most HTTP_URL_MAX bytes. *shown gets the URL
 * as written without user name, password and login options; *has_credentials
 * whether it had any. -EINVAL with a message otherwise (err may be NULL). */
int http_url_check(const char *url, char *shown, size_t shown_len, bool *has_credentials,
                   struct bim_error *err);

/* Replace the user info of url, and its user name and password where they
 * are at least HTTP_URL_SECRET_MIN bytes, by "***" wherever they occur in
 * text (a buffer of text_len bytes). */
void http_url_redact(const char *url, char *text, size_t text_len);

/* ---- a client ---- */

struct http_client; /* a libcurl handle and its kept-alive connections */

struct http_client_options {
    const char *user_agent;
    bool https;            /* https besides http (also on redirects) */
    bool follow_redirects; /* at most HTTP_REDIRECTS_MAX, no Referer */
    bool proxy_from_env;   /* false: always direct, whatever the environment says */
    const char *ca_file;   /* PEM trusted besides the system's CAs, or NULL */
    const char *ca_pem;    /* PEM text trusted besides the system's CAs (instead of ca_file) */
    const char *tls_hint;  /* how to trust a private CA, for messages; NULL: "start bimfs with
                            * --ca-file" */
    /* "aws:amz:<region>:<service>": every request is signed with AWS SigV4
     * (libcurl's; the caller sends x-amz-content-sha256 and a canonical query,
     * docs/backup.md "S3 targets"), with aws_key:aws_secret; NULL: none */
    const char *aws_sigv4;
    const char *aws_key;    /* the access key id */
    const char *aws_secret; /* the secret key: never in a message, zeroed on close */
    const char *token;      /* sent as "Authorization: Bearer"; NULL or "": none */
    unsigned connect_ms;    /* 0: libcurl's default */
    unsigned stall_ms;      /* > 0: no response body byte this long ends a GET (HTTP_CAUSE_STALL);
                             * not for PUTs, whose answers have no body to wait for */
    unsigned
        low_speed_s; /* > 0: under 1 byte/s (either way) this long ends a request (..._TIMEOUT) */
    unsigned keep_connections; /* > 0: idle connections kept for reuse (libcurl keeps 4),
                                * for a client that asks many hosts in turn */
};

/* Always: no content decoding (the bytes kept are the bytes served), TLS 1.2
 * or later, TCP keepalive, no signals. -ENOMEM, or -EINVAL (logged) when
 * libcurl refuses an option. */
int http_client_open(const struct http_client_options *opts, struct http_client **out);
void http_client_close(struct http_client *h); /* NULL is fine */

/* Why a request ended without success. */
enum http_cause {
    HTTP_CAUSE_NONE,      /* it did not fail */
    HTTP_CAUSE_CONNECT,   /* name, proxy, connection refused, TLS handshake (-EAGAIN); the
                           * message names the system's reason ("Connection refused") */
    HTTP_CAUSE_TIMEOUT,   /* connect timeout, request timeout, low speed (-EAGAIN) */
    HTTP_CAUSE_STALL,     /* no body byte for stall_ms (-EAGAIN) */
    HTTP_CAUSE_TRANSFER,  /* reset, cut short, a garbled answer, nothing (-EAGAIN) */
    HTTP_CAUSE_TLS,       /* the certificate was not trusted (-EPROTO) */
    HTTP_CAUSE_REDIRECT,  /* too many redirects or to another scheme (-EPROTO) */
    HTTP_CAUSE_STATUS,    /* no final response arrived to judge (-EPROTO) */
    HTTP_CAUSE_PROTOCOL,  /* any other libcurl error (-EPROTO) */
    HTTP_CAUSE_CANCELLED, /* the request's cancel flag was set (-ECANCELED) */
    HTTP_CAUSE_CALLBACK,  /* a callback returned -errno (that, err untouched) */
    HTTP_CAUSE_LOCAL,     /* out of memory on this side (-ENOMEM) */
};

/* The server or the network failed (not a callback, cancel or this side). */
bool http_cause_remote(enum http_cause cause);

/* 408, 429 and 5xx are worth retrying. */
bool http_status_transient(long status);

/* Parse "bytes first-last/complete" or "bytes first-last/\*" (-1). */
bool http_content_range_parse(const char *value, uint64_t *first, uint64_t *last,
                              int64_t *complete);

/* The final response of one request (after followed redirects). */
struct http_response {
    long status;                  /* 0 until a response arrived */
    char reason[HTTP_REASON_MAX]; /* reason phrase, printable ASCII only */
    int64_t length;               /* Content-Length of this body, -1 if none */
    bool has_range;               /* a valid Content-Range: bytes first-last/complete */
    uint64_t range_first;
    uint64_t range_last;
    int64_t range_complete;                 /* -1 for '*' */
    char etag[HTTP_VALIDATOR_MAX];          /* as sent ("W/" for weak, quotes included) or "" */
    char last_modified[HTTP_VALIDATOR_MAX]; /* or "" */
    char date[HTTP_VALIDATOR_MAX];          /* the Date header (the server's clock) or "" */
    unsigned retry_after_s;                 /* delta seconds (<= HTTP_RETRY_AFTER_MAX_S), 0: none */
    char effective_url[HTTP_URL_MAX + 1];   /* the last URL asked, without credentials, or "" */
    enum http_cause cause;                  /* why http_client_request() failed */
};

/*
 * One request (a GET unless method says otherwise). The callbacks run inside
 * http_client_request(); one returning -errno ends the request, which returns
 * that (cause HTTP_CAUSE_CALLBACK).
 */
struct http_request {
    const char *url;    /* credentials allowed: messages never show them */
    const char *method; /* NULL or "GET", "HEAD" (no body read), "PUT" (body sent), "DELETE" */
    /* PUT: body_len bytes sent with a Content-Length; without 100-continue
     * unless signed (libcurl's SigV4 would sign the line that turns it off) */
    const void *body;
    size_t body_len;
    const char *const *headers; /* NULL-terminated "Name: value" lines sent besides, or NULL */
    bool range;                 /* Range: bytes=range_first-range_last */
    uint64_t range_first;
    int64_t range_last;        /* -1: to the end */
    const char *if_range;      /* with a range: If-Range value, or NULL */
    unsigned timeout_ms;       /* > 0: the whole request at most this long (HTTP_CAUSE_TIMEOUT) */
    const atomic_bool *cancel; /* set: the request ends with -ECANCELED; NULL: never */
    /* the final response's headers are in resp: 0 takes its body (to
     * on_data), > 0 skips it */
    int (*on_response)(void *ctx, const struct http_response *resp);
    int (*on_data)(void *ctx, const void *buf, size_t len);
    /* NULL, or at least every HTTP_POLL_MS while the request runs; quiet_ms:
     * since the last body byte taken (or the start) */
    int (*on_progress)(void *ctx, uint64_t quiet_ms);
    void *ctx;
};

/*
 * 0: a final response arrived (resp; any status) and, when taken, its body
 * arrived whole as far as HTTP tells (Content-Length, chunked framing). Else
 * resp->cause says why: a callback's -errno, -ECANCELED, -ENOMEM, -EINVAL (a
 * method not listed above), or a transfer error with a message (credentials
 * removed): -EAGAIN when worth retrying, else -EPROTO.
 */
int http_client_request(struct http_client *h, const struct http_request *req,
                        struct http_response *resp, struct bim_error *err);

/* The name downloads and peer sync use for their GETs: the same call. */
static inline int http_client_get(struct http_client *h, const struct http_request *req,
                                  struct http_response *resp, struct bim_error *err)
{
    return http_client_request(h, req, resp, err);
}

#endif
