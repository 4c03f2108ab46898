/*
 * test_http_range.c - the HTTP server's Range header parser (ctl/http/http_range.c)
 * against RFC 9110 14.2: single byte ranges, suffixes, clipping at the end,
 * unsatisfiable ranges, and headers that must be ignored.
 */
#include "check.h"
#include "http.h"

#include <stdint.h>

/* Expect a partial range [first, last] for value against size. */
static void expect_partial(const char *value, uint64_t size, uint64_t first, uint64_t last)
{
    uint64_t a = UINT64_MAX, b = UINT64_MAX;
    enum ctl_http_range_result r = ctl_http_range_parse(value, size, &a, &b);

    CHECK(r == CTL_HTTP_RANGE_PARTIAL, "\"%s\" of %" PRIu64 ": got result %d, want PARTIAL", value,
          size, (int)r);
    CHECK(a == first && b == last,
          "\"%s\" of %" PRIu64 ": got %" PRIu64 "-%" PRIu64 ", want %" PRIu64 "-%" PRIu64, value,
          size, a, b, first, last);
}

static void expect_result(const char *value, uint64_t size, enum ctl_http_range_result want)
{
    uint64_t a, b;
    enum ctl_http_range_result r = ctl_http_range_parse(value, size, &a, &b);

    CHECK(r == want, "\"%s\" of %" PRIu64 ": got result %d, want %d", value, size, (int)r,
          (int)want);
}

static void test_single_ranges(void)
{
    expect_partial("bytes=0-0", 10, 0, 0);
    expect_partial("bytes=100-199", 1000, 100, 199);
    expect_partial("bytes=5-", 10, 5, 9);
    expect_partial(" bytes=5-6 ", 10, 5, 6);
}

static void test_clipped_at_the_end(void)
{
    expect_partial("bytes=5-1000", 10, 5, 9);
    expect_partial("bytes=0-18446744073709551615", 10, 0, 9);
}

static void test_suffix(void)
{
    expect_partial("bytes=-3", 10, 7, 9);
    expect_partial("bytes=-100", 10, 0, 9); /* longer than the file: all of it */
}

static void test_unsatisfiable(void)
{
    expect_result("bytes=10-", 10, CTL_HTTP_RANGE_UNSATISFIABLE);
    expect_result("bytes=10-20", 10, CTL_HTTP_RANGE_UNSATISFIABLE);
    expect_result("bytes=0-", 0, CTL_HTTP_RANGE_UNSATISFIABLE);
    expect_result("bytes=-5", 0, CTL_HTTP_RANGE_UNSATISFIABLE);
    expect_result("bytes=-0", 10, CTL_HTTP_RANGE_UNSATISFIABLE);
}

static void test_ignored(void)
{
    expect_result(NULL, 10, CTL_HTTP_RANGE_NONE);
    expect_result("", 10, CTL_HTTP_RANGE_NONE);
    expect_result("items=0-5", 10, CTL_HTTP_RANGE_NONE);
    expect_result("bytes=0-1,3-4", 10, CTL_HTTP_RANGE_NONE); /* several ranges */
    expect_result("bytes=5-2", 10, CTL_HTTP_RANGE_NONE);     /* last < first */
    expect_result("bytes=-", 10, CTL_HTTP_RANGE_NONE);
    expect_result("bytes=a-b", 10, CTL_HTTP_RANGE_NONE);
    expect_result("bytes=+1-2", 10, CTL_HTTP_RANGE_NONE);
    expect_result("bytes=1-2x", 10, CTL_HTTP_RANGE_NONE);
    /* a number that overflows 64 bits is not a number */
    expect_result("bytes=18446744073709551616-", 10, CTL_HTTP_RANGE_NONE);
}

int main(void)
{
    RUN(test_single_ranges);
    RUN(test_clipped_at_the_end);
    RUN(test_suffix);
    RUN(test_unsatisfiable);
    RUN(test_ignored);
    return check_exit();
}
