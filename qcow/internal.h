/*
 * internal.h - private declarations shared by the qcow/ source files: the
 * cluster map (map.c), the libqcow handle pool (pool.c) and small I/O
 * helpers (header.c). Not for use outside qcow/.
 */
#ifndef BIMFS_QCOW_INTERNAL_H
#define BIMFS_QCOW_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common.h"
#include "qcow.h"

/* ---- header.c ---- */

/* Read exactly len bytes at off: 0, -EIO when the file ends first, or -errno. */
int qcow_pread_exact(int fd, void *buf, size_t len, uint64_t off);

/* qcow_header_check() with the file size already known (from fstat). */
int qcow_header_parse(int fd, uint64_t file_size, struct qcow_header *out, struct bim_error *err);

/* ---- map.c ---- */

/*
 * One run of guest clusters of one kind. The run starts at `guest` and ends
 * where the next extent starts (the last one at the virtual size), so the
 * extents of a map cover the disk without gaps. `host_kind` holds the kind
 * in its low 2 bits and, for DATA, the cluster-aligned file offset of
 * `guest` in the other bits (cluster offsets are multiples of 512).
 */
struct qcow_extent {
    uint64_t guest;
    uint64_t host_kind;
};

#define QCOW_EXTENT_KIND_MASK UINT64_C(3)

static inline enum qcow_segment_kind qcow_extent_kind(const struct qcow_extent *e)
{
    return (enum qcow_segment_kind)(e->host_kind & QCOW_EXTENT_KIND_MASK);
}

static inline uint64_t qcow_extent_host(const struct qcow_extent *e)
{
    return e->host_kind & ~QCOW_EXTENT_KIND_MASK;
}

struct qcow_map {
    struct qcow_extent *extents; /* sorted by guest, extents[0].guest == 0 */
    size_t count;
    size_t capacity;
    uint64_t virtual_size;
    bool has_compressed;
};

/* Read the L1 table and every L2 table of the image described by hdr and
 * build *map. 0, or -EINVAL (corrupt, with err), -ENOMEM, -errno. */
int qcow_map_build(int fd, const struct qcow_header *hdr, struct qcow_map *map,
                   struct bim_error *err);

/* Index of the extent that holds guest offset off (< map->virtual_size). */
size_t qcow_map_find(const struct qcow_map *map, uint64_t off);

/* Guest offset where extent i ends. */
uint64_t qcow_map_extent_end(const struct qcow_map *map, size_t i);

void qcow_map_free(struct qcow_map *map);

/* ---- pool.c ---- */

/* A few libqcow handles on one file, each used by one thread at a time. */
struct qcow_pool {
    pthread_mutex_t lock;                /* guards busy[] */
    pthread_cond_t freed;                /* signalled when a handle becomes free */
    void *handles[QCOW_LIBQCOW_HANDLES]; /* libqcow_file_t * */
    bool busy[QCOW_LIBQCOW_HANDLES];
    size_t count;
    bool initialized;
};

/* Open `count` (1..QCOW_LIBQCOW_HANDLES) libqcow handles on path and check
 * that libqcow reports virtual_size. 0, or -EINVAL with "qcow2 image cannot
 * be opened: <libqcow's error chain>", -ENOMEM. */
int qcow_pool_open(struct qcow_pool *pool, const char *path, size_t count, uint64_t virtual_size,
                   struct bim_error *err);

/* Read len bytes at guest off with a free handle (waits for one).
 * 0, or -EIO (logged with libqcow's reasons). */
int qcow_pool_read(struct qcow_pool *pool, void *buf, size_t len, uint64_t off);

/* Close all handles. Safe on a pool that was never opened (zeroed). */
void qcow_pool_close(struct qcow_pool *pool);

#endif
