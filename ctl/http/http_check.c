/*
 * http_check.c - what a request must be before it is routed (SPEC §8,
 * docs/http.md "Hostile clients"): its framing (Content-Length,
 * Transfer-Encoding), the names in its path (checked after our own
 * percent-decoding of the target as sent), and the bearer token.
 *
 * Threads: the libmicrohttpd pool thread serving the request; nothing here
 * is shared but the read-only token digest.
 */
#include "http.h"
#include "wire.h"

#include <errno.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <string.h>
#include <strings.h>

/* ---- framing ---- */

struct ctl_http_framing {
    unsigned lengths;   /* Content-Length headers */
    unsigned encodings; /* Transfer-Encoding headers */
    const char *length; /* the first Content-Length */
    bool conflict;      /* two Content-Length values differ */
    bool unknown;       /* a Transfer-Encoding other than chunked */
};

static enum MHD_Result ctl_http_framing_header(void *cls, enum MHD_ValueKind kind, const char *key,
                                               const char *value)
{
    struct ctl_http_framing *f = cls;

    (void)kind;
    if (!value)
        value = "";
    if (strcasecmp(key, MHD_HTTP_HEADER_CONTENT_LENGTH) == 0) {
        if (f->lengths++ == 0)
            f->length = value;
        else if (strcmp(value, f->length) != 0)
            f->conflict = true;
    } else if (strcasecmp(key, MHD_HTTP_HEADER_TRANSFER_ENCODING) == 0) {
        f->encodings++;
        if (strcasecmp(value, "chunked") != 0)
            f->unknown = true;
    }
    return MHD_YES;
}

const char *ctl_http_framing_error(struct MHD_Connection *conn)
{
    struct ctl_http_framing f = {0};

    MHD_get_connection_values(conn, MHD_HEADER_KIND, ctl_http_framing_header, &f);
    if (f.conflict)
        return "invalid request framing: Content-Length headers with different values";
    if (f.encodings > 1 || f.unknown)
        return "invalid request framing: the only Transfer-Encoding accepted is one chunked";
    if (f.encodings && f.lengths)
        return "invalid request framing: both Transfer-Encoding and Content-Length";
    return NULL;
}

/* ---- the path ---- */

bool ctl_http_target_has_nul(const char *target)
{
    for (const char *p = strchr(target, '%'); p; p = strchr(p + 1, '%')) {
        if (p[1] == '0' && p[2] == '0')
            return true;
    }
    return false;
}

static int ctl_http_hex(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

int ctl_http_decode_name(const char *segment, size_t len, char *out, size_t outlen)
{
    size_t n = 0;

    for (size_t i = 0; i < len; i++) {
        int c = (unsigned char)segment[i];

        if (c == '%') {
            int hi = i + 2 < len ? ctl_http_hex(segment[i + 1]) : -1;
            int lo = hi >= 0 ? ctl_http_hex(segment[i + 2]) : -1;

            if (lo < 0)
                return -EINVAL; /* a bad escape */
            c = hi * 16 + lo;
            i += 2;
        }
        if (c == '\0' || c == '/' || n + 1 >= outlen)
            return -EINVAL;
        out[n++] = (char)c;
    }
    out[n] = '\0';
    return wire_name_valid(out) ? 0 : -EINVAL;
}

/* ---- the token ---- */

void ctl_http_token_hash(const char *token, size_t len, unsigned char out[CTL_HTTP_TOKEN_HASH])
{
    unsigned int n = 0;

    if (EVP_Digest(token, len, out, &n, EVP_sha256(), NULL) != 1 || n != CTL_HTTP_TOKEN_HASH)
        memset(out, 0, CTL_HTTP_TOKEN_HASH); /* never equal to a real token's */
}

struct ctl_http_auth {
    unsigned count;     /* Authorization headers */
    const char *value;  /* the first */
    const char *method; /* the request head's first byte */
    size_t head_size;   /* its length (MHD_CONNECTION_INFO_REQUEST_HEADER_SIZE) */
    const char *next;   /* the first header key after value, if any */
};

static enum MHD_Result ctl_http_auth_header(void *cls, enum MHD_ValueKind kind, const char *key,
                                            const char *value)
{
    struct ctl_http_auth *a = cls;

    (void)kind;
    if (strcasecmp(key, MHD_HTTP_HEADER_AUTHORIZATION) == 0 && a->count++ == 0)
        a->value = value ? value : "";
    else if (a->value && !a->next && key > a->value)
        a->next = key;
    return MHD_YES;
}

/*
 * libmicrohttpd ends a header value at a NUL byte (it measures it with
 * strlen), so "Bearer <token>\0junk" would read as the token. The head is
 * parsed in place: after the value's end only the line's end (CR and LF or
 * LF, replaced by NULs) may come before the next header's name, plus the
 * empty line for the last header. Anything else was hidden behind a NUL.
 */
static bool ctl_http_auth_hides_bytes(const struct ctl_http_auth *a)
{
    const char *end = a->method + a->head_size;
    const char *p = a->value + strlen(a->value);
    const char *stop = a->next ? a->next : end;
    size_t max = a->next ? 2 : 4;

    if (a->value < a->method || p >= end || stop > end || stop < p)
        return true; /* not in the head as received (a folded line): refuse */
    if ((size_t)(stop - p) > max)
        return true;
    for (; p < stop; p++) {
        if (*p != '\0')
            return true;
    }
    return false;
}

bool ctl_http_authorized(struct ctl_http *http, struct MHD_Connection *conn, const char *method)
{
    const union MHD_ConnectionInfo *info;
    struct ctl_http_auth a = {.method = method};
    unsigned char got[CTL_HTTP_TOKEN_HASH];
    const char *token;

    if (!http->has_token)
        return true;
    info = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_REQUEST_HEADER_SIZE);
    if (!info)
        return false;
    a.head_size = info->header_size;
    MHD_get_connection_values(conn, MHD_HEADER_KIND, ctl_http_auth_header, &a);
    if (a.count != 1 || strncasecmp(a.value, "Bearer ", 7) != 0 || ctl_http_auth_hides_bytes(&a))
        return false;
    token = a.value + 7;
    /* digests compared with CRYPTO_memcmp: constant time, whatever the
     * lengths; a space or tab before or after the token makes it differ */
    ctl_http_token_hash(token, strlen(token), got);
    return CRYPTO_memcmp(got, http->token_hash, sizeof(got)) == 0;
}
