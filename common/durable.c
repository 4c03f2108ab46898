/*
 * durable.c - the one way bimfs replaces a small file: write a tmp file beside
 * it, fsync, rename over the file, fsync the directory. A crash leaves the old
 * or the new file, never a torn one. Used by the store's cfg (store/durable.c)
 * and by the vfs backup target (backup/vfs.c).
 *
 * Threads: any; two threads writing the same file must use different tmp names.
 */
#include "common.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>

int fd_durable_write_at(int dirfd, const char *file, const char *tmp, const void *data, size_t len)
{
    int fd, rc;

    fd = openat(dirfd, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644);
    if (fd < 0)
        return -errno;
    rc = fd_write_all(fd, data, len);
    if (rc == 0 && fsync(fd) < 0)
        rc = -errno;
    if (close(fd) < 0 && rc == 0)
        rc = -errno;
    if (rc == 0 && renameat(dirfd, tmp, dirfd, file) < 0)
        rc = -errno;
    if (rc < 0) {
        unlinkat(dirfd, tmp, 0);
        return rc;
    }
    if (fsync(dirfd) < 0)
        return -errno;
    return 0;
}
