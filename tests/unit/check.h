/*
 * check.h - the assertions of the C unit tests. A failed check prints the
 * file, line, the expression and a message saying what went wrong, and the
 * test executable exits 1 at the end (check_exit()).
 */
#ifndef BIMFS_CHECK_H
#define BIMFS_CHECK_H

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
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

/* The size of a directory name check_dir_make() writes. */
#define CHECK_DIR_MAX 64

/* A new empty directory /tmp/bimfs-<what>-XXXXXX for one test executable,
 * its name written to dir (CHECK_DIR_MAX bytes): 0, or -1 after saying why. */
static inline int check_dir_make(char dir[CHECK_DIR_MAX], const char *what)
{
    if (snprintf(dir, CHECK_DIR_MAX, "/tmp/bimfs-%s-XXXXXX", what) >= CHECK_DIR_MAX) {
        fprintf(stderr, "%s: name too long for a test directory\n", what);
        return -1;
    }
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return -1;
    }
    return 0;
}

/* Remove a directory check_dir_make() made, with all it holds. */
static inline void check_dir_remove(const char *dir)
{
    char cmd[CHECK_DIR_MAX + 16];

    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "cannot remove %s\n", dir);
}

static inline int check_exit(void)
{
    if (check_failures)
        fprintf(stderr, "%d check(s) failed\n", check_failures);
    return check_failures ? 1 : 0;
}

#endif
