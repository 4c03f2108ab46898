/*
 * fuzz_qcow.c - a qcow2 image file from memory (a memfd holds the input):
 * the header (qcow_header_parse) and, when it passes, the L1/L2 tables into
 * the cluster map (qcow_map_build). libqcow is not involved: compressed
 * clusters are only mapped here.
 *
 * Checks beyond the sanitizers, the map's contract (qcow/internal.h): the
 * extents start at 0, are sorted, lie inside the virtual size, never repeat
 * a kind that could have been merged, and data extents lie inside the file;
 * qcow_map_find agrees with them. An error has a message.
 */
#include "internal.h"

#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int memfd = -1;

static void fuzz_map_check(const struct qcow_header *hdr, const struct qcow_map *map)
{
    if (hdr->virtual_size == 0)
        return;
    if (map->count == 0 || map->extents[0].guest != 0)
        abort();
    for (size_t i = 0; i < map->count; i++) {
        const struct qcow_extent *e = &map->extents[i];
        uint64_t end = qcow_map_extent_end(map, i);

        if (e->guest >= end || end > hdr->virtual_size)
            abort(); /* empty, unsorted or outside the disk */
        if (e->guest & (hdr->cluster_size - 1))
            abort();
        if (qcow_extent_kind(e) == QCOW_SEGMENT_DATA) {
            uint64_t host = qcow_extent_host(e), last;
            if (host & (hdr->cluster_size - 1) || !size_add(host, end - e->guest, &last) ||
                last > hdr->file_size)
                abort(); /* data the file does not hold */
        } else if (qcow_extent_host(e) != 0) {
            abort();
        }
        if (i > 0 && qcow_extent_kind(e) == qcow_extent_kind(e - 1) &&
            qcow_extent_kind(e) != QCOW_SEGMENT_DATA)
            abort(); /* two zero (or compressed) runs in a row */
        if (qcow_map_find(map, e->guest) != i || qcow_map_find(map, end - 1) != i)
            abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct qcow_header hdr;
    struct qcow_map map;
    struct bim_error err = {0};
    int rc;

    if (memfd < 0 && (memfd = memfd_create("fuzz_qcow", MFD_CLOEXEC)) < 0)
        abort();
    if (ftruncate(memfd, 0) < 0 || pwrite(memfd, data, size, 0) != (ssize_t)size)
        abort();
    rc = qcow_header_parse(memfd, size, &hdr, &err);
    if (rc < 0) {
        if (err.message[0] == '\0')
            abort();
        return 0;
    }
    if (hdr.cluster_size != (UINT64_C(1) << hdr.cluster_bits) || hdr.l1_entries > hdr.l1_size ||
        hdr.virtual_size > QCOW_MAX_VIRTUAL_SIZE)
        abort();
    rc = qcow_map_build(memfd, &hdr, &map, &err);
    if (rc < 0) {
        if (err.message[0] == '\0')
            abort();
        return 0;
    }
    fuzz_map_check(&hdr, &map);
    qcow_map_free(&map);
    return 0;
}
