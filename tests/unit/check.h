/*
 * check.h - the assertions of the C unit tests. A failed check prints the
 * file, line, the expression and a message saying what went wrong, and the
 * test executable exits 1 at the end (check_exit()).
 */
#ifndef BIMFS_CHECK_H
#define BIMFS_CHECK_H

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

static int check_failures;

#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: CHECK(%s) failed: ", __FILE__, __LINE__, #cond);               \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fputc('\n', stderr);                                                                   \
            check_failures++;                                                                      \
        }                                                                                          \
    } while (0)

#define CHECK_STR(got, want)                                                                       \
    CHECK(strcmp((got), (want)) == 0, "got \"%s\", want \"%s\"", (got), (want))

#define CHECK_INT(got, want)                                                                       \
    CHECK((long long)(got) == (long long)(want), "got %lld, want %lld", (long long)(got),          \
          (long long)(want))

#define RUN(test_fn)                                                                               \
    do {                                                                                           \
        int before_ = check_failures;                                                              \
        test_fn();                                                                                 \
        fprintf(stderr, "%s %s\n", check_failures == before_ ? "ok  " : "FAIL", #test_fn);         \
    } while (0)

static inline int check_exit(void)
{
    if (check_failures)
        fprintf(stderr, "%d check(s) failed\n", check_failures);
    return check_failures ? 1 : 0;
}

#endif
