/*
 * s3.h - the private header of the s3 backup target (backup/s3/): the pure
 * pieces s3.c builds its requests from and reads its answers with, each unit
 * tested on its own (tests/unit/test_s3.c). The target itself is bk_s3_ops
 * (backup/target.h); docs/backup.md "S3 targets" says what it needs.
 *
 * Threads: everything here is reentrant and holds no state between calls.
 */
#ifndef BIMFS_BACKUP_S3_H
#define BIMFS_BACKUP_S3_H

#include "common.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define S3_KEY_MAX 1024         /* bytes of an object key (S3's own limit) */
#define S3_TEXT_MAX 2048        /* bytes of one XML text value kept (keys, tokens, codes) */
#define S3_LIST_MAX (1u << 20)  /* names one listing returns at most */
#define S3_ERROR_BODY_MAX 16384 /* bytes of an error answer read */

/* ---- sign.c: what SigV4 over libcurl 7.88 needs from the caller ---- */

/* Percent-encode in as RFC 3986 (and SigV4) wants: A-Z a-z 0-9 - _ . ~ are
 * kept, '/' too when keep_slash, every other byte is %XX (uppercase).
 * -ENAMETOOLONG when out (outlen bytes, NUL included) is too small. */
int s3_uri_encode(const char *in, bool keep_slash, char *out, size_t outlen);

struct s3_param {
    const char *name;
    const char *value; /* "" for a parameter without a value */
};

/* The canonical query string of SigV4 (names and values encoded, sorted by
 * encoded name, then value): libcurl 7.88 signs the query exactly as it is
 * sent, so the query sent is this one. -ENAMETOOLONG, -EINVAL (more than 8). */
int s3_query_build(const struct s3_param *params, size_t count, char *out, size_t outlen);

/* SHA-256 of buf as 64 lowercase hex (x-amz-content-sha256). 0 or -EIO. */
int s3_sha256_hex(const void *buf, size_t len, char hex[65]);

/* An HTTP date (RFC 9110 IMF-fixdate, "Wed, 02 Dec 2026 10:00:00 GMT"; the
 * obsolete RFC 850 and asctime forms too) as Unix seconds. -EINVAL. */
int s3_http_date_parse(const char *text, int64_t *unix_s);

/* ---- xml.c: the answers of S3 (expat) ---- */

/* What a ListObjectsV2 page adds to a listing. */
struct s3_listing {
    const char *strip; /* the prefix asked for: taken off each name */
    char **names;      /* Contents/Key and CommonPrefixes/Prefix (without its trailing '/') */
    size_t count;
    size_t cap;
    bool truncated;               /* IsTruncated: another page follows */
    char next_token[S3_TEXT_MAX]; /* NextContinuationToken, or "" */
};

/* Parse one page of ListObjectsV2 XML into l (names appended). A name that
 * does not start with l->strip or is empty once stripped is skipped. -EPROTO
 * with a message for XML that is not such a page (or has a DTD), -E2BIG past
 * S3_LIST_MAX names, -ENOMEM. */
int s3_listing_parse(struct s3_listing *l, const char *xml, size_t len, struct bim_error *err);

/* Free the names of l (l itself is the caller's). */
void s3_listing_free(struct s3_listing *l);

/* The Code and Message of an S3 error answer (<Error><Code>..</Code>
 * <Message>..</Message></Error>), printable ASCII only; "" for what is
 * missing or when the body is not such XML. */
void s3_error_parse(const char *xml, size_t len, char *code, size_t code_len, char *message,
                    size_t message_len);

#endif
