/*
 * header.c - parse and validate the qcow2 header (v2 and v3, big-endian).
 * Layout: docs/qcow2.md and qemu's docs/interop/qcow2.txt.
 *
 * Threads: any; no shared state. Everything read from the file is bounded:
 * the header is read into a fixed buffer and all offset arithmetic is checked.
 */
#include "internal.h"

#include <errno.h>
#include <inttypes.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Bytes of the fixed header we read: v3 with the compression type byte. */
#define HEADER_READ 112
#define HEADER_V2_LENGTH 72
#define HEADER_V3_MIN_LENGTH 104
/* qemu refuses longer backing file names (1023 bytes). */
#define BACKING_NAME_MAX 1023
/* How much of a backing file name goes into a message. */
#define BACKING_NAME_SHOWN 200

/* v3 incompatible feature bits. */
#define INCOMPAT_DIRTY (UINT64_C(1) << 0)
#define INCOMPAT_CORRUPT (UINT64_C(1) << 1)
#define INCOMPAT_DATA_FILE (UINT64_C(1) << 2)
#define INCOMPAT_COMPRESSION (UINT64_C(1) << 3)
#define INCOMPAT_EXTL2 (UINT64_C(1) << 4)

static uint32_t qcow_be32_at(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

static uint64_t qcow_be64_at(const uint8_t *p)
{
    return (uint64_t)qcow_be32_at(p) << 32 | qcow_be32_at(p + 4);
}

int qcow_pread_exact(int fd, void *buf, size_t len, uint64_t off)
{
    size_t got;
    int ret = fd_pread_full(fd, buf, len, off, &got);

    return ret < 0 ? ret : got < len ? -EIO : 0;
}

/* "qcow2 image refers to a backing file (<name>)", the name made printable. */
static int qcow_header_reject_backing(int fd, uint64_t file_size, uint64_t name_off,
                                      uint32_t name_len, struct bim_error *err)
{
    char raw[BACKING_NAME_SHOWN];
    char shown[BACKING_NAME_SHOWN + 4];
    uint64_t end;
    size_t n = name_len < sizeof(raw) ? name_len : sizeof(raw);
    size_t i;

    if (name_len > BACKING_NAME_MAX || !size_add(name_off, n, &end) || end > file_size ||
        qcow_pread_exact(fd, raw, n, name_off) != 0)
        return bim_error_set(err, -EINVAL,
                             "qcow2 image refers to a backing file (name unreadable)");
    for (i = 0; i < n; i++)
        shown[i] = (raw[i] >= 0x20 && raw[i] < 0x7f) ? raw[i] : '?';
    shown[n] = '\0';
    if (n < name_len)
        strcat(shown, "...");
    return bim_error_set(err, -EINVAL, "qcow2 image refers to a backing file (%s)", shown);
}

/* The v3 fields: incompatible features, refcount order, header length. */
static int qcow_header_check_v3(const uint8_t *h, uint64_t file_size, struct qcow_header *hdr,
                                struct bim_error *err)
{
    uint64_t known = INCOMPAT_DIRTY | INCOMPAT_CORRUPT | INCOMPAT_DATA_FILE | INCOMPAT_COMPRESSION |
                     INCOMPAT_EXTL2;
    uint64_t incompat = qcow_be64_at(h + 72);
    uint8_t compression = 0;

    hdr->incompatible = incompat;
    hdr->refcount_order = qcow_be32_at(h + 96);
    hdr->header_length = qcow_be32_at(h + 100);
    if (hdr->header_length < HEADER_V3_MIN_LENGTH || hdr->header_length > hdr->cluster_size)
        return bim_error_set(err, -EINVAL, "qcow2 image has an invalid header length %" PRIu32,
                             hdr->header_length);
    if (hdr->header_length > file_size)
        return bim_error_set(err, -EINVAL,
                             "qcow2 image is truncated (header of %" PRIu32
                             " bytes, file of %" PRIu64 ")",
                             hdr->header_length, file_size);
    if (hdr->header_length > HEADER_V3_MIN_LENGTH)
        compression = h[104];

    if (incompat & INCOMPAT_CORRUPT)
        return bim_error_set(err, -EINVAL, "qcow2 image is marked corrupt");
    if (incompat & INCOMPAT_DATA_FILE)
        return bim_error_set(err, -EINVAL, "qcow2 image uses an external data file");
    if (incompat & INCOMPAT_COMPRESSION) {
        if (compression == 1)
            return bim_error_set(err, -EINVAL, "qcow2 image uses zstd compression");
        return bim_error_set(err, -EINVAL, "qcow2 image uses unknown compression type %u",
                             compression);
    }
    if (compression != 0)
        return bim_error_set(err, -EINVAL,
                             "qcow2 image is corrupt: compression type %u without its feature bit",
                             compression);
    if (incompat & INCOMPAT_EXTL2)
        return bim_error_set(err, -EINVAL, "qcow2 image uses extended L2 entries (subclusters)");
    if (incompat & ~known)
        return bim_error_set(err, -EINVAL,
                             "qcow2 image has unknown incompatible features 0x%" PRIx64,
                             incompat & ~known);
    if (hdr->refcount_order > 6)
        return bim_error_set(err, -EINVAL, "qcow2 image has an invalid refcount order %" PRIu32,
                             hdr->refcount_order);
    return 0;
}

/* The active L1 table and the virtual size it must describe. */
static int qcow_header_check_l1(uint64_t file_size, struct qcow_header *hdr, struct bim_error *err)
{
    /* One L1 entry maps cluster_size/8 clusters: 2^(2*cluster_bits-3) bytes. */
    unsigned shift = 2 * hdr->cluster_bits - 3;
    uint64_t needed, l1_bytes, l1_end;

    if (hdr->virtual_size > QCOW_MAX_VIRTUAL_SIZE)
        return bim_error_set(err, -EINVAL,
                             "qcow2 image has an absurd virtual size %" PRIu64
                             " (more than 2^56 bytes)",
                             hdr->virtual_size);
    if (!size_add(hdr->virtual_size, (UINT64_C(1) << shift) - 1, &needed))
        return bim_error_set(err, -EINVAL, "qcow2 image has an absurd virtual size");
    needed >>= shift;
    if (hdr->l1_size > QCOW_MAX_L1_ENTRIES || needed > QCOW_MAX_L1_ENTRIES)
        return bim_error_set(err, -EINVAL,
                             "qcow2 image has an absurd L1 table size (%" PRIu32
                             " entries, %" PRIu64 " needed, at most %" PRIu32 ")",
                             hdr->l1_size, needed, QCOW_MAX_L1_ENTRIES);
    if (hdr->l1_size < needed)
        return bim_error_set(err, -EINVAL,
                             "qcow2 image is corrupt: virtual size %" PRIu64 " needs %" PRIu64
                             " L1 entries but the L1 table has %" PRIu32,
                             hdr->virtual_size, needed, hdr->l1_size);
    hdr->l1_entries = (uint32_t)needed;
    if (hdr->l1_size == 0)
        return 0;
    if (hdr->l1_table_offset & (hdr->cluster_size - 1))
        return bim_error_set(err, -EINVAL,
                             "qcow2 image is corrupt: L1 table offset 0x%" PRIx64
                             " is not cluster aligned",
                             hdr->l1_table_offset);
    if (!size_mul(hdr->l1_size, 8, &l1_bytes) ||
        !size_add(hdr->l1_table_offset, l1_bytes, &l1_end) || l1_end > file_size)
        return bim_error_set(err, -EINVAL,
                             "qcow2 image is truncated (L1 table at 0x%" PRIx64
                             " beyond the end of the %" PRIu64 "-byte file)",
                             hdr->l1_table_offset, file_size);
    return 0;
}

int qcow_header_parse(int fd, uint64_t file_size, struct qcow_header *out, struct bim_error *err)
{
    uint8_t h[HEADER_READ];
    struct qcow_header hdr = {.file_size = file_size};
    size_t avail = file_size < sizeof(h) ? (size_t)file_size : sizeof(h);
    uint64_t backing_off;
    int ret;

    memset(h, 0, sizeof(h));
    if (avail < 4)
        return bim_error_set(err, -EMEDIUMTYPE, "not a qcow2 image (file too short)");
    ret = qcow_pread_exact(fd, h, avail, 0);
    if (ret < 0)
        return bim_error_set(err, ret, "cannot read the qcow2 header: %s", strerror(-ret));
    if (qcow_be32_at(h) != QCOW_MAGIC)
        return bim_error_set(err, -EMEDIUMTYPE, "not a qcow2 image (no qcow magic)");
    if (avail < HEADER_V2_LENGTH)
        return bim_error_set(err, -EINVAL, "qcow2 image is truncated (header of %zu bytes)", avail);

    hdr.version = qcow_be32_at(h + 4);
    if (hdr.version != 2 && hdr.version != 3)
        return bim_error_set(err, -EINVAL, "unsupported qcow version %" PRIu32 " (need 2 or 3)",
                             hdr.version);
    if (hdr.version == 3 && avail < HEADER_V3_MIN_LENGTH)
        return bim_error_set(err, -EINVAL, "qcow2 image is truncated (header of %zu bytes)", avail);
    hdr.cluster_bits = qcow_be32_at(h + 20);
    if (hdr.cluster_bits < 9 || hdr.cluster_bits > 21)
        return bim_error_set(err, -EINVAL,
                             "qcow2 image has an invalid cluster_bits %" PRIu32 " (need 9..21)",
                             hdr.cluster_bits);
    hdr.cluster_size = UINT64_C(1) << hdr.cluster_bits;
    hdr.virtual_size = qcow_be64_at(h + 24);
    hdr.l1_size = qcow_be32_at(h + 36);
    hdr.l1_table_offset = qcow_be64_at(h + 40);

    if (qcow_be32_at(h + 32) != 0)
        return bim_error_set(err, -EINVAL, "qcow2 image is encrypted");
    backing_off = qcow_be64_at(h + 8);
    if (backing_off != 0)
        return qcow_header_reject_backing(fd, file_size, backing_off, qcow_be32_at(h + 16), err);

    if (hdr.version == 3) {
        ret = qcow_header_check_v3(h, file_size, &hdr, err);
        if (ret < 0)
            return ret;
    } else {
        hdr.header_length = HEADER_V2_LENGTH;
        hdr.refcount_order = 4;
    }
    ret = qcow_header_check_l1(file_size, &hdr, err);
    if (ret < 0)
        return ret;
    if (out)
        *out = hdr;
    return 0;
}

int qcow_header_check(int fd, struct qcow_header *out, struct bim_error *err)
{
    struct stat st;

    if (fstat(fd, &st) < 0) {
        int ret = -errno;
        return bim_error_set(err, ret, "cannot stat the image: %s", strerror(-ret));
    }
    if (!S_ISREG(st.st_mode))
        return bim_error_set(err, -EINVAL, "the image is not a regular file");
    return qcow_header_parse(fd, (uint64_t)st.st_size, out, err);
}
