/*
 * sign.c - the parts of an S3 request libcurl 7.88's SigV4 leaves to its
 * caller (s3.h): the encoding of keys and of the canonical query, the payload
 * hash, and the dates S3 answers with.
 *
 * Threads: any; no state.
 */
#include "s3.h"

#include <errno.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define S3_QUERY_PARAMS_MAX 8

static bool s3_unreserved(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '_' || c == '.' || c == '~';
}

int s3_uri_encode(const char *in, bool keep_slash, char *out, size_t outlen)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t o = 0;

    for (const unsigned char *p = (const unsigned char *)in; *p; p++) {
        if (s3_unreserved(*p) || (keep_slash && *p == '/')) {
            if (o + 1 >= outlen)
                return -ENAMETOOLONG;
            out[o++] = (char)*p;
            continue;
        }
        if (o + 3 >= outlen)
            return -ENAMETOOLONG;
        out[o++] = '%';
        out[o++] = hex[*p >> 4];
        out[o++] = hex[*p & 15];
    }
    if (o >= outlen)
        return -ENAMETOOLONG;
    out[o] = '\0';
    return 0;
}

struct s3_encoded_param {
    char name[64];
    char value[3 * S3_TEXT_MAX + 1];
};

static int s3_param_compare(const void *a, const void *b)
{
    const struct s3_encoded_param *x = a, *y = b;
    int c = strcmp(x->name, y->name);

    return c ? c : strcmp(x->value, y->value);
}

int s3_query_build(const struct s3_param *params, size_t count, char *out, size_t outlen)
{
    struct s3_encoded_param *enc = NULL;
    size_t o = 0;
    int rc = -EINVAL, n;

    if (count > S3_QUERY_PARAMS_MAX || outlen == 0)
        goto out;
    out[0] = '\0';
    if (count == 0) {
        rc = 0;
        goto out;
    }
    enc = calloc(count, sizeof(*enc));
    rc = -ENOMEM;
    if (!enc)
        goto out;
    for (size_t i = 0; i < count; i++) {
        rc = s3_uri_encode(params[i].name, false, enc[i].name, sizeof(enc[i].name));
        if (rc == 0)
            rc = s3_uri_encode(params[i].value, false, enc[i].value, sizeof(enc[i].value));
        if (rc < 0)
            goto out;
    }
    qsort(enc, count, sizeof(*enc), s3_param_compare);
    for (size_t i = 0; i < count; i++) {
        n = snprintf(out + o, outlen - o, "%s%s=%s", i ? "&" : "", enc[i].name, enc[i].value);
        if (n < 0 || (size_t)n >= outlen - o) {
            rc = -ENAMETOOLONG;
            goto out;
        }
        o += (size_t)n;
    }
    rc = 0;
out:
    free(enc);
    return rc;
}

int s3_sha256_hex(const void *buf, size_t len, char hex[65])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;

    if (EVP_Digest(buf, len, md, &mdlen, EVP_sha256(), NULL) != 1 || mdlen != 32)
        return -EIO;
    for (unsigned i = 0; i < mdlen; i++)
        snprintf(hex + 2 * i, 3, "%02x", md[i]);
    return 0;
}

/* ---- dates ---- */

static int s3_month(const char *name)
{
    static const char months[] = "JanFebMarAprMayJunJulAugSepOctNovDec";

    for (int i = 0; i < 12; i++) {
        if (strncmp(name, months + 3 * i, 3) == 0)
            return i + 1;
    }
    return 0;
}

/* Days from 1970-01-01 to y-m-d of the proleptic Gregorian calendar. */
static int64_t s3_days_from_civil(int64_t y, int m, int d)
{
    int64_t era, yoe, doy, doe;

    y -= m <= 2;
    era = (y >= 0 ? y : y - 399) / 400;
    yoe = y - era * 400;
    doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

int s3_http_date_parse(const char *text, int64_t *unix_s)
{
    char wday[16], mon[4], zone[4];
    int day, year, hh, mm, ss, n = 0, month;

    /* IMF-fixdate: "Sun, 06 Nov 1994 08:49:37 GMT" */
    if (sscanf(text, "%3[A-Za-z], %2d %3s %4d %2d:%2d:%2d %3s%n", wday, &day, mon, &year, &hh, &mm,
               &ss, zone, &n) == 8 &&
        text[n] == '\0' && strcmp(zone, "GMT") == 0)
        goto found;
    /* RFC 850: "Sunday, 06-Nov-94 08:49:37 GMT" */
    n = 0;
    if (sscanf(text, "%15[A-Za-z], %2d-%3s-%2d %2d:%2d:%2d %3s%n", wday, &day, mon, &year, &hh, &mm,
               &ss, zone, &n) == 8 &&
        text[n] == '\0' && strcmp(zone, "GMT") == 0) {
        year += year < 70 ? 2000 : 1900;
        goto found;
    }
    /* asctime: "Sun Nov  6 08:49:37 1994" */
    n = 0;
    if (sscanf(text, "%3[A-Za-z] %3s %2d %2d:%2d:%2d %4d%n", wday, mon, &day, &hh, &mm, &ss, &year,
               &n) == 7 &&
        text[n] == '\0')
        goto found;
    return -EINVAL;
found:
    month = s3_month(mon);
    if (!month || day < 1 || day > 31 || hh > 23 || mm > 59 || ss > 60 || year < 1970 || hh < 0 ||
        mm < 0 || ss < 0)
        return -EINVAL;
    *unix_s = s3_days_from_civil(year, month, day) * 86400 + hh * 3600 + mm * 60 + ss;
    return 0;
}
