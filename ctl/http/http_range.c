/*
 * http_range.c - the Range request header (RFC 9110 14.2), one range of
 * bytes; every number is parsed with overflow checks.
 *
 * Threads: pure functions, no state.
 */
#include "http.h"

#include <string.h>

/* Skip optional whitespace. */
static const char *ctl_http_range_ows(const char *p)
{
    while (*p == ' ' || *p == '\t')
        p++;
    return p;
}

/* A decimal number (at least one digit, no sign, no overflow). */
static bool ctl_http_range_number(const char **pp, uint64_t *out)
{
    const char *p = *pp;
    uint64_t v = 0;

    if (*p < '0' || *p > '9')
        return false;
    while (*p >= '0' && *p <= '9') {
        if (!size_mul(v, 10, &v) || !size_add(v, (uint64_t)(*p - '0'), &v))
            return false;
        p++;
    }
    *pp = p;
    *out = v;
    return true;
}

enum ctl_http_range_result ctl_http_range_parse(const char *value, uint64_t size, uint64_t *first,
                                                uint64_t *last)
{
    const char *p;
    uint64_t a = 0, b = 0;
    bool has_a, has_b;

    if (!value)
        return CTL_HTTP_RANGE_NONE;
    p = ctl_http_range_ows(value);
    if (strncmp(p, "bytes=", 6) != 0)
        return CTL_HTTP_RANGE_NONE;
    p = ctl_http_range_ows(p + 6);
    has_a = ctl_http_range_number(&p, &a);
    if (*p != '-')
        return CTL_HTTP_RANGE_NONE;
    p++;
    has_b = ctl_http_range_number(&p, &b);
    p = ctl_http_range_ows(p);
    if (*p != '\0' || (!has_a && !has_b))
        return CTL_HTTP_RANGE_NONE; /* several ranges, or garbage: ignored */
    if (has_a && has_b && b < a)
        return CTL_HTTP_RANGE_NONE; /* invalid: ignored (RFC 9110 14.1.1) */
    if (!has_a) {
        /* the last b bytes */
        if (b == 0 || size == 0)
            return CTL_HTTP_RANGE_UNSATISFIABLE;
        *first = b >= size ? 0 : size - b;
        *last = size - 1;
        return CTL_HTTP_RANGE_PARTIAL;
    }
    if (a >= size)
        return CTL_HTTP_RANGE_UNSATISFIABLE;
    *first = a;
    *last = !has_b || b >= size ? size - 1 : b;
    return CTL_HTTP_RANGE_PARTIAL;
}
