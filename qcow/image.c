/*
 * image.c - an open qcow2 image: its fd, header, cluster map and (only when
 * it has compressed clusters, or the caller asks) a pool of libqcow handles;
 * guest reads answered from the map.
 *
 * Threads: qcow_image_open() and qcow_image_close() run in one thread each,
 * with no reader active. Everything else may run in any number of threads at
 * once: the fd, header and map never change after open (pread needs no
 * lock), and the libqcow pool has its own lock (pool.c).
 */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct qcow_image {
    int fd;
    struct qcow_header header;
    struct qcow_map map;
    struct qcow_pool pool; /* count == 0 unless opened */
};

int qcow_image_open(int fd, unsigned flags, struct qcow_image **out, struct bim_error *err)
{
    struct qcow_image *img;
    char path[64]; /* libqcow opens by path only: the fd's /proc link */
    int ret;

    *out = NULL;
    img = calloc(1, sizeof(*img));
    if (!img)
        return bim_error_set(err, -ENOMEM, "out of memory");
    img->fd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
    if (img->fd < 0) {
        ret = -errno;
        bim_error_set(err, ret, "cannot open the image: %s", strerror(-ret));
        goto out;
    }
    snprintf(path, sizeof(path), "/proc/self/fd/%d", img->fd);
    ret = qcow_header_check(img->fd, &img->header, err);
    if (ret < 0)
        goto out;
    ret = qcow_map_build(img->fd, &img->header, &img->map, err);
    if (ret < 0)
        goto out;
    if (img->map.has_compressed)
        ret = qcow_pool_open(&img->pool, path, QCOW_LIBQCOW_HANDLES, img->header.virtual_size, err);
    else if (flags & QCOW_OPEN_CHECK_LIBQCOW)
        ret = qcow_pool_open(&img->pool, path, 1, img->header.virtual_size, err);
out:
    if (ret < 0) {
        qcow_image_close(img);
        return ret;
    }
    *out = img;
    return 0;
}

void qcow_image_close(struct qcow_image *img)
{
    if (!img)
        return;
    qcow_pool_close(&img->pool);
    qcow_map_free(&img->map);
    if (img->fd >= 0)
        close(img->fd);
    free(img);
}

uint64_t qcow_image_virtual_size(const struct qcow_image *img)
{
    return img->header.virtual_size;
}

uint64_t qcow_image_cluster_size(const struct qcow_image *img)
{
    return img->header.cluster_size;
}

bool qcow_image_has_compressed(const struct qcow_image *img)
{
    return img->map.has_compressed;
}

size_t qcow_image_extent_count(const struct qcow_image *img)
{
    return img->map.count;
}

int qcow_image_fd(const struct qcow_image *img)
{
    return img->fd;
}

int qcow_image_map(const struct qcow_image *img, uint64_t off, uint64_t len,
                   struct qcow_segment *seg)
{
    const struct qcow_map *map = &img->map;
    const struct qcow_extent *e;
    uint64_t end;
    size_t i;

    memset(seg, 0, sizeof(*seg));
    if (len == 0 || off >= map->virtual_size)
        return 0;
    i = qcow_map_find(map, off);
    e = &map->extents[i];
    end = qcow_map_extent_end(map, i);
    seg->kind = qcow_extent_kind(e);
    seg->length = end - off < len ? end - off : len;
    if (seg->kind == QCOW_SEGMENT_DATA)
        seg->file_offset = qcow_extent_host(e) + (off - e->guest);
    return 0;
}

/* One segment into buf: 0 or -errno. */
static int qcow_image_read_segment(struct qcow_image *img, const struct qcow_segment *seg,
                                   void *buf, uint64_t off)
{
    switch (seg->kind) {
    case QCOW_SEGMENT_DATA:
        /* -EIO also when the file shrank after open. */
        return qcow_pread_exact(img->fd, buf, seg->length, seg->file_offset);
    case QCOW_SEGMENT_COMPRESSED:
        return qcow_pool_read(&img->pool, buf, seg->length, off);
    case QCOW_SEGMENT_ZERO:
    default:
        memset(buf, 0, seg->length);
        return 0;
    }
}

ssize_t qcow_image_read(struct qcow_image *img, void *buf, size_t len, uint64_t off)
{
    uint8_t *p = buf;
    size_t done = 0;

    if (len > SSIZE_MAX)
        return -EINVAL;
    while (done < len) {
        struct qcow_segment seg;
        int ret;

        qcow_image_map(img, off + done, len - done, &seg);
        if (seg.length == 0)
            break; /* the virtual end */
        ret = qcow_image_read_segment(img, &seg, p + done, off + done);
        if (ret < 0)
            return ret;
        done += seg.length;
    }
    return (ssize_t)done;
}
