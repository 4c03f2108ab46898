/*
 * test_common.c - the checked size and offset helpers of common/common.h:
 * size_add and size_mul refuse to wrap, size_align_down and size_align_up
 * round to a power of two, and size_align_up refuses a result past
 * UINT64_MAX. Each test checks the edges: 0, exact multiples, one past, and
 * the last values before an overflow.
 */
#include "check.h"
#include "common.h"

#include <errno.h>
#include <stdint.h>

#define CHECK_U64(got, want)                                                                       \
    CHECK((got) == (want), "got %" PRIu64 ", want %" PRIu64, (uint64_t)(got), (uint64_t)(want))

static void test_size_add_sums_up_to_the_maximum(void)
{
    uint64_t out = 1;

    CHECK(size_add(0, 0, &out), "0 + 0 refused");
    CHECK_U64(out, 0);
    CHECK(size_add(UINT64_MAX - 5, 5, &out), "UINT64_MAX - 5 + 5 refused");
    CHECK_U64(out, UINT64_MAX);
    CHECK(size_add(UINT64_MAX, 0, &out), "UINT64_MAX + 0 refused");
    CHECK_U64(out, UINT64_MAX);
}

static void test_size_add_refuses_to_wrap(void)
{
    uint64_t out;

    CHECK(!size_add(UINT64_MAX, 1, &out), "UINT64_MAX + 1 accepted (got %" PRIu64 ")", out);
    CHECK(!size_add(UINT64_MAX - 5, 6, &out), "UINT64_MAX - 5 + 6 accepted");
    CHECK(!size_add(UINT64_MAX, UINT64_MAX, &out), "UINT64_MAX + UINT64_MAX accepted");
    CHECK(!size_add(UINT64_C(1) << 63, UINT64_C(1) << 63, &out), "2^63 + 2^63 accepted");
}

static void test_size_mul_multiplies_up_to_the_maximum(void)
{
    uint64_t out = 1;

    CHECK(size_mul(0, UINT64_MAX, &out), "0 * UINT64_MAX refused");
    CHECK_U64(out, 0);
    CHECK(size_mul(UINT64_MAX, 1, &out), "UINT64_MAX * 1 refused");
    CHECK_U64(out, UINT64_MAX);
    CHECK(size_mul(UINT64_C(1) << 32, (UINT64_C(1) << 32) - 1, &out), "2^32 * (2^32 - 1) refused");
    CHECK_U64(out, UINT64_MAX - UINT32_MAX);
    CHECK(size_mul(UINT32_MAX, 8, &out), "an L1 table of UINT32_MAX entries refused");
    CHECK_U64(out, (uint64_t)UINT32_MAX * 8);
}

static void test_size_mul_refuses_to_wrap(void)
{
    uint64_t out;

    CHECK(!size_mul(UINT64_C(1) << 32, UINT64_C(1) << 32, &out), "2^32 * 2^32 accepted");
    CHECK(!size_mul(UINT64_MAX, 2, &out), "UINT64_MAX * 2 accepted");
    CHECK(!size_mul((UINT64_MAX / 8) + 1, 8, &out), "(UINT64_MAX / 8 + 1) * 8 accepted");
}

static void test_size_align_down_rounds_to_the_multiple_below(void)
{
    CHECK_U64(size_align_down(0, 4096), 0);
    CHECK_U64(size_align_down(4095, 4096), 0);
    CHECK_U64(size_align_down(4096, 4096), 4096);
    CHECK_U64(size_align_down(4097, 4096), 4096);
    CHECK_U64(size_align_down(12345, 1), 12345);
    CHECK_U64(size_align_down(UINT64_MAX, 4096), UINT64_MAX - 4095);
    CHECK_U64(size_align_down(UINT64_MAX, UINT64_C(1) << 63), UINT64_C(1) << 63);
}

static void test_size_align_up_rounds_to_the_multiple_above(void)
{
    uint64_t out = 1;

    CHECK(size_align_up(0, 4096, &out), "0 refused");
    CHECK_U64(out, 0);
    CHECK(size_align_up(1, 4096, &out), "1 refused");
    CHECK_U64(out, 4096);
    CHECK(size_align_up(4096, 4096, &out), "4096 refused");
    CHECK_U64(out, 4096);
    CHECK(size_align_up(4097, 4096, &out), "4097 refused");
    CHECK_U64(out, 8192);
    CHECK(size_align_up(12345, 1, &out), "alignment 1 refused");
    CHECK_U64(out, 12345);
    CHECK(size_align_up(UINT64_MAX, 1, &out), "UINT64_MAX with alignment 1 refused");
    CHECK_U64(out, UINT64_MAX);
}

static void test_size_align_up_accepts_the_last_multiple(void)
{
    uint64_t last = UINT64_MAX - 4095; /* the largest multiple of 4096 */
    uint64_t out = 0;

    CHECK(size_align_up(last, 4096, &out), "the last multiple of 4096 refused");
    CHECK_U64(out, last);
    CHECK(size_align_up(last - 1, 4096, &out), "one below the last multiple refused");
    CHECK_U64(out, last);
    CHECK(size_align_up(UINT64_C(1) << 63, UINT64_C(1) << 63, &out),
          "2^63 aligned to 2^63 refused");
    CHECK_U64(out, UINT64_C(1) << 63);
}

static void test_size_align_up_refuses_a_result_past_the_maximum(void)
{
    uint64_t out;

    CHECK(!size_align_up(UINT64_MAX - 4095 + 1, 4096, &out),
          "one past the last multiple of 4096 accepted (got %" PRIu64 ")", out);
    CHECK(!size_align_up(UINT64_MAX, 4096, &out), "UINT64_MAX aligned up to 4096 accepted");
    CHECK(!size_align_up(UINT64_MAX, 2, &out), "UINT64_MAX aligned up to 2 accepted");
    CHECK(!size_align_up((UINT64_C(1) << 63) + 1, UINT64_C(1) << 63, &out),
          "2^63 + 1 aligned up to 2^63 accepted");
}

static void test_rfc3339_round_trip(void)
{
    char text[BIM_TIME_MAX];
    int64_t sec = -1;

    bim_time_rfc3339(1777638896, text);
    CHECK_STR(text, "2026-05-01T12:34:56Z");
    CHECK_INT(bim_time_rfc3339_parse(text, &sec), 0);
    CHECK_INT(sec, 1777638896);
    CHECK_INT(bim_time_rfc3339_parse("2026-05-01T12:34:56.25Z", &sec), 0);
    CHECK_INT(sec, 1777638896);
}

static void test_rfc3339_empty_is_no_time(void)
{
    char text[BIM_TIME_MAX] = "x";
    int64_t sec = 5;

    bim_time_rfc3339(0, text);
    CHECK_STR(text, "");
    CHECK_INT(bim_time_rfc3339_parse("", &sec), 0);
    CHECK_INT(sec, 0);
}

static void test_rfc3339_refuses_other_text(void)
{
    const char *bad[] = {"2026-05-01",
                         "2026-05-01T12:34:56",
                         "2026-05-01T12:34:56+02:00",
                         "2026-05-01 12:34:56 +0000 UTC",
                         "2026-05-01T12:34:56.Z",
                         "soon"};
    int64_t sec;

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        CHECK(bim_time_rfc3339_parse(bad[i], &sec) == -EINVAL, "\"%s\" accepted", bad[i]);
}

int main(void)
{
    RUN(test_size_add_sums_up_to_the_maximum);
    RUN(test_size_add_refuses_to_wrap);
    RUN(test_size_mul_multiplies_up_to_the_maximum);
    RUN(test_size_mul_refuses_to_wrap);
    RUN(test_size_align_down_rounds_to_the_multiple_below);
    RUN(test_size_align_up_rounds_to_the_multiple_above);
    RUN(test_size_align_up_accepts_the_last_multiple);
    RUN(test_size_align_up_refuses_a_result_past_the_maximum);
    RUN(test_rfc3339_round_trip);
    RUN(test_rfc3339_empty_is_no_time);
    RUN(test_rfc3339_refuses_other_text);
    return check_exit();
}
