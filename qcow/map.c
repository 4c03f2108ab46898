/*
 * map.c - the cluster map: read the active L1 table and every L2 table once
 * and keep, per run of guest clusters, what a read of it returns (zeros, bytes
 * at a file offset, or compressed data). Entries are decoded as qemu does
 * (block/qcow2.h, qcow2_get_cluster_type): the zero flag (bit 0) wins over
 * the offset in any version; offset 0 without it is unallocated.
 *
 * Threads: qcow_map_build() runs once, in the opening thread; afterwards the
 * map is read-only and qcow_map_find() may run in any number of threads.
 *
 * Bounds: the L1 table is read in fixed chunks, one L2 table (one cluster,
 * at most 2 MiB) at a time; every offset is checked against the file size,
 * the number of L2 tables against what the file can hold (so a table shared
 * by many L1 entries cannot make the scan loop for hours) and the number of
 * extents against QCOW_MAX_EXTENTS.
 */
#include "internal.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#define L1_CHUNK_ENTRIES 8192
#define L1E_OFFSET_MASK UINT64_C(0x00fffffffffffe00)
#define L2E_OFFSET_MASK UINT64_C(0x00fffffffffffe00)
#define L2E_COMPRESSED (UINT64_C(1) << 62)
#define L2E_ZERO UINT64_C(1)

struct map_builder {
    int fd;
    const struct qcow_header *hdr;
    struct qcow_map *map;
    uint8_t *l2;            /* one L2 table */
    uint64_t l2_tables;     /* L2 tables seen so far */
    uint64_t l2_tables_max; /* how many the file can hold */
    struct bim_error *err;
};

static uint64_t qcow_be64_at(const uint8_t *p)
{
    uint64_t v = 0;

    for (int i = 0; i < 8; i++)
        v = v << 8 | p[i];
    return v;
}

/* Add guest cluster(s) starting at guest, merging with the last extent when
 * the kind is the same (and, for DATA, the file offset continues it). */
static int qcow_map_append(struct map_builder *b, uint64_t guest, enum qcow_segment_kind kind,
                           uint64_t host)
{
    struct qcow_map *map = b->map;

    if (map->count > 0) {
        const struct qcow_extent *last = &map->extents[map->count - 1];
        if (qcow_extent_kind(last) == kind &&
            (kind != QCOW_SEGMENT_DATA || qcow_extent_host(last) + (guest - last->guest) == host))
            return 0;
    }
    if (map->count == map->capacity) {
        size_t cap = map->capacity ? map->capacity * 2 : 64;
        struct qcow_extent *grown;
        if (map->count >= QCOW_MAX_EXTENTS)
            return bim_error_set(b->err, -EINVAL,
                                 "qcow2 image is too fragmented (more than %" PRIu64 " extents)",
                                 QCOW_MAX_EXTENTS);
        grown = realloc(map->extents, cap * sizeof(*grown));
        if (!grown)
            return bim_error_set(b->err, -ENOMEM, "out of memory for the qcow2 cluster map");
        map->extents = grown;
        map->capacity = cap;
    }
    map->extents[map->count].guest = guest;
    map->extents[map->count].host_kind = host | (uint64_t)kind;
    map->count++;
    return 0;
}

/* Decode one L2 entry for the cluster at guest and append it. */
static int qcow_map_add_l2_entry(struct map_builder *b, uint64_t guest, uint64_t entry)
{
    const struct qcow_header *hdr = b->hdr;
    uint64_t host, end, visible;

    if (entry & L2E_COMPRESSED) {
        unsigned csize_shift = 62 - (hdr->cluster_bits - 8);
        host = entry & ((UINT64_C(1) << csize_shift) - 1);
        if (host >= hdr->file_size)
            goto beyond;
        b->map->has_compressed = true;
        return qcow_map_append(b, guest, QCOW_SEGMENT_COMPRESSED, 0);
    }
    if (entry & L2E_ZERO)
        return qcow_map_append(b, guest, QCOW_SEGMENT_ZERO, 0);
    host = entry & L2E_OFFSET_MASK;
    if (host == 0)
        return qcow_map_append(b, guest, QCOW_SEGMENT_ZERO, 0);
    if (host & (hdr->cluster_size - 1))
        return bim_error_set(b->err, -EINVAL,
                             "qcow2 image is corrupt: cluster at guest offset %" PRIu64
                             " has an unaligned file offset 0x%" PRIx64,
                             guest, host);
    /* Only the part of the last cluster inside the virtual size is read. */
    visible = hdr->virtual_size - guest;
    if (visible > hdr->cluster_size)
        visible = hdr->cluster_size;
    if (!size_add(host, visible, &end) || end > hdr->file_size)
        goto beyond;
    return qcow_map_append(b, guest, QCOW_SEGMENT_DATA, host);
beyond:
    return bim_error_set(b->err, -EINVAL,
                         "qcow2 image is truncated or corrupt: cluster at guest offset %" PRIu64
                         " points beyond the end of the file",
                         guest);
}

/* Read the L2 table at l2_off and append the clusters it maps from guest on. */
static int qcow_map_add_l2_table(struct map_builder *b, uint64_t guest, uint64_t l2_off)
{
    const struct qcow_header *hdr = b->hdr;
    uint64_t per_table = hdr->cluster_size / 8, end, clusters;
    int ret;

    if (l2_off & (hdr->cluster_size - 1))
        return bim_error_set(b->err, -EINVAL,
                             "qcow2 image is corrupt: L2 table for guest offset %" PRIu64
                             " has an unaligned file offset 0x%" PRIx64,
                             guest, l2_off);
    if (!size_add(l2_off, hdr->cluster_size, &end) || end > hdr->file_size)
        return bim_error_set(
            b->err, -EINVAL,
            "qcow2 image is truncated or corrupt: L2 table for guest offset %" PRIu64
            " lies beyond the end of the file",
            guest);
    if (++b->l2_tables > b->l2_tables_max)
        return bim_error_set(b->err, -EINVAL,
                             "qcow2 image is corrupt: more L2 tables than the file can hold");
    ret = qcow_pread_exact(b->fd, b->l2, hdr->cluster_size, l2_off);
    if (ret < 0)
        return bim_error_set(b->err, ret, "cannot read a qcow2 L2 table: %s", strerror(-ret));

    /* Clusters of this table inside the virtual size (guest < virtual_size). */
    clusters = (hdr->virtual_size - guest + hdr->cluster_size - 1) >> hdr->cluster_bits;
    if (clusters > per_table)
        clusters = per_table;
    for (uint64_t i = 0; i < clusters; i++) {
        ret =
            qcow_map_add_l2_entry(b, guest + (i << hdr->cluster_bits), qcow_be64_at(b->l2 + i * 8));
        if (ret < 0)
            return ret;
    }
    return 0;
}

int qcow_map_build(int fd, const struct qcow_header *hdr, struct qcow_map *map,
                   struct bim_error *err)
{
    struct map_builder b = {.fd = fd, .hdr = hdr, .map = map, .err = err};
    uint64_t per_l1 = UINT64_C(1) << (2 * hdr->cluster_bits - 3); /* guest bytes per L1 entry */
    uint8_t *l1 = NULL;
    int ret = 0;

    memset(map, 0, sizeof(*map));
    map->virtual_size = hdr->virtual_size;
    b.l2_tables_max = hdr->file_size >> hdr->cluster_bits;
    b.l2 = malloc(hdr->cluster_size);
    l1 = malloc(L1_CHUNK_ENTRIES * 8);
    if (!b.l2 || !l1) {
        ret = bim_error_set(err, -ENOMEM, "out of memory for the qcow2 tables");
        goto out;
    }
    for (uint32_t first = 0; first < hdr->l1_entries; first += L1_CHUNK_ENTRIES) {
        uint32_t n = hdr->l1_entries - first;
        if (n > L1_CHUNK_ENTRIES)
            n = L1_CHUNK_ENTRIES;
        /* header.c checked that the whole L1 table lies inside the file. */
        ret = qcow_pread_exact(fd, l1, (size_t)n * 8, hdr->l1_table_offset + (uint64_t)first * 8);
        if (ret < 0) {
            bim_error_set(err, ret, "cannot read the qcow2 L1 table: %s", strerror(-ret));
            goto out;
        }
        for (uint32_t i = 0; i < n; i++) {
            uint64_t guest = (uint64_t)(first + i) * per_l1;
            uint64_t l2_off = qcow_be64_at(l1 + (size_t)i * 8) & L1E_OFFSET_MASK;
            if (l2_off == 0)
                ret = qcow_map_append(&b, guest, QCOW_SEGMENT_ZERO, 0);
            else
                ret = qcow_map_add_l2_table(&b, guest, l2_off);
            if (ret < 0)
                goto out;
        }
    }
    /* Give back the unused tail of the doubling. */
    if (map->count > 0 && map->count < map->capacity) {
        struct qcow_extent *fit = realloc(map->extents, map->count * sizeof(*fit));
        if (fit) {
            map->extents = fit;
            map->capacity = map->count;
        }
    }
out:
    free(l1);
    free(b.l2);
    if (ret < 0)
        qcow_map_free(map);
    return ret;
}

size_t qcow_map_find(const struct qcow_map *map, uint64_t off)
{
    size_t lo = 0, hi = map->count;

    /* The last extent with guest <= off; extents[0].guest == 0. */
    while (hi - lo > 1) {
        size_t mid = lo + (hi - lo) / 2;
        if (map->extents[mid].guest <= off)
            lo = mid;
        else
            hi = mid;
    }
    return lo;
}

uint64_t qcow_map_extent_end(const struct qcow_map *map, size_t i)
{
    return i + 1 < map->count ? map->extents[i + 1].guest : map->virtual_size;
}

void qcow_map_free(struct qcow_map *map)
{
    free(map->extents);
    map->extents = NULL;
    map->count = 0;
    map->capacity = 0;
}
