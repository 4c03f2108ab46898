/*
 * durable.c - small files (cfg): the one way they are written (<file>.tmp,
 * fsync, rename over <file>, fsync the directory: a crash leaves the old or
 * the new file, never a torn one), a bounded read, and a pread loop.
 *
 * Threads: any; callers must not write the same file from two threads.
 */
#include "store_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

int store_durable_sync_dir(int dirfd)
{
    if (fsync(dirfd) < 0)
        return -errno;
    return 0;
}

int store_durable_write(int dirfd, const char *file, const void *data, size_t len)
{
    char tmp[NAME_MAX + 1];

    if (snprintf(tmp, sizeof(tmp), "%s.tmp", file) >= (int)sizeof(tmp))
        return -ENAMETOOLONG;
    return fd_durable_write_at(dirfd, file, tmp, data, len);
}

int store_file_read_at(int dirfd, const char *file, size_t max, char **text, size_t *len)
{
    char *buf;
    size_t got = 0;
    int fd, rc = 0;

    *text = NULL;
    *len = 0;
    fd = openat(dirfd, file, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return -errno;
    buf = malloc(max + 1);
    if (!buf) {
        rc = -ENOMEM;
        goto out;
    }
    for (;;) {
        ssize_t n = read(fd, buf + got, max + 1 - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            rc = -errno;
            goto out;
        }
        if (n == 0)
            break;
        got += (size_t)n;
        if (got > max) {
            rc = -EFBIG;
            goto out;
        }
    }
    buf[got] = '\0';
    *text = buf;
    *len = got;
    buf = NULL;
out:
    free(buf);
    close(fd);
    return rc;
}
