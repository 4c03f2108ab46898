/*
 * qcow.h - read the guest disk of a self-contained qcow2 image (v2 and v3).
 *
 * bimfs decodes qcow2 itself for everything but compressed clusters: the
 * header is parsed and validated here, the L1/L2 tables are read once at open
 * into a compact in-memory cluster map (run-length extents), and reads are
 * answered from that map: uncompressed clusters with pread(2) on the image
 * file, zero and unallocated clusters with zeros, and only compressed
 * clusters through libqcow (whose 20201213 release ignores the v3 zero flag;
 * see docs/qcow2.md). The map also lets a FUSE read handler answer data
 * straight from the image fd (qcow_image_map + qcow_image_fd).
 *
 * Images that are not self-contained or that this code cannot decode are
 * rejected at open with a message (struct bim_error) naming the reason:
 * encryption, a backing file, an external data file, zstd compression,
 * extended L2 entries, the corrupt bit, unknown incompatible features,
 * truncation and inconsistent tables.
 *
 * Threads: a struct qcow_image is immutable after qcow_image_open() except for
 * its pool of libqcow handles, which has its own lock. qcow_image_map(),
 * qcow_image_read() and the getters may be called from any number of threads
 * at once; qcow_image_close() must not run concurrently with anything else on
 * the same image.
 */
#ifndef BIMFS_QCOW_H
#define BIMFS_QCOW_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "common.h"

/* The 4 bytes every qcow file starts with: "QFI\xfb". */
#define QCOW_MAGIC 0x514649fbu

/* Upper limit of a guest disk this module accepts (qemu's own limit is lower). */
#define QCOW_MAX_VIRTUAL_SIZE (UINT64_C(1) << 56)

/* Largest L1 table accepted, in entries (qemu's QCOW_MAX_L1_SIZE: 32 MiB). */
#define QCOW_MAX_L1_ENTRIES (UINT32_C(32) * 1024 * 1024 / 8)

/* Most extents the cluster map may hold (16 bytes each: 64 MiB). An image that
 * is fragmented beyond this is rejected at open. */
#define QCOW_MAX_EXTENTS (UINT64_C(1) << 22)

/* Number of libqcow handles an image with compressed clusters keeps open. */
#define QCOW_LIBQCOW_HANDLES 2

/* What qcow_header_check() learned from a valid header. */
struct qcow_header {
    uint32_t version;         /* 2 or 3 */
    uint32_t cluster_bits;    /* 9..21 */
    uint64_t cluster_size;    /* 1 << cluster_bits */
    uint64_t virtual_size;    /* guest disk size in bytes */
    uint64_t l1_table_offset; /* file offset of the L1 table */
    uint32_t l1_size;         /* entries in the L1 table (as stored) */
    uint32_t l1_entries;      /* entries needed to describe virtual_size */
    uint64_t incompatible;    /* v3 incompatible feature bits (0 for v2) */
    uint32_t header_length;   /* 72 for v2 */
    uint32_t refcount_order;  /* 4 for v2 */
    uint64_t file_size;       /* size of the image file when checked */
};

/*
 * Read and validate the qcow2 header of the open file `fd` (read with pread;
 * the file offset is not used). Checks: magic, version 2 or 3, cluster_bits
 * 9..21, no encryption, no backing file, v3 incompatible features (dirty is
 * accepted; corrupt, external data file, zstd compression, extended L2 and
 * unknown bits are not), header length, refcount order, the L1 table (large
 * enough for the virtual size, at most QCOW_MAX_L1_ENTRIES, aligned, inside
 * the file) and the virtual size (at most QCOW_MAX_VIRTUAL_SIZE). The L2
 * tables are not read; qcow_image_open() checks those.
 *
 * Returns 0 and fills *out (which may be NULL) for an image this module can
 * read. Errors:
 *   -EMEDIUMTYPE  the file does not start with the qcow magic (not a qcow
 *                 file at all; a format detector treats it as raw);
 *   -EINVAL       a qcow file this module rejects; err says why, e.g.
 *                 "qcow2 image is encrypted", "qcow2 image refers to a
 *                 backing file (base.img)", "qcow2 image is truncated";
 *   -errno        fstat/pread failed (err says so).
 */
int qcow_header_check(int fd, struct qcow_header *out, struct bim_error *err);

/* An open image. Opaque. */
struct qcow_image;

/* Flags for qcow_image_open(). */
enum {
    /* Also open the file with libqcow when it has no compressed clusters,
     * and fail the open if libqcow rejects it or disagrees on the virtual
     * size (format detection uses this: SPEC says a qcow2 libqcow cannot
     * open is failed). The handle is kept for reads of compressed clusters
     * only, so reads are the same with or without this flag. */
    QCOW_OPEN_CHECK_LIBQCOW = 1u << 0,
};

/*
 * Open the qcow2 image open as `fd` (readable; the caller keeps it, the image
 * holds a duplicate) for reading its guest disk: run qcow_header_check(), read the L1 table and
 * every L2 table once and build the cluster map. Every L2 entry is validated: host offsets aligned
 * and inside the file (else "qcow2 image is truncated or corrupt: cluster at guest offset X points
 * beyond the end of the file"), L2 tables aligned and inside the file, and no more L2 tables than
 * the file can hold (bounds the scan). L2 entries are decoded as qemu does: the zero flag wins in
 * v2 and v3, offset 0 is unallocated (zeros). libqcow is opened (a pool of QCOW_LIBQCOW_HANDLES
 * handles) only when the image has compressed clusters or `flags` has QCOW_OPEN_CHECK_LIBQCOW; its
 * handles open the duplicate's /proc/self/fd link (libqcow opens by path only), which reaches the
 * same file even if it was renamed or deleted.
 *
 * The image file must not change while it is open; reads of a file that
 * shrank behind our back fail with -EIO.
 *
 * Returns 0 and sets *out, or:
 *   the errors of qcow_header_check();
 *   -EINVAL  corrupt tables, too many extents, or libqcow rejects the file
 *            ("qcow2 image cannot be opened: <libqcow's reasons>");
 *   -ENOMEM;
 *   -errno   dup/read of the file failed.
 * err (may be NULL) gets a message on every error.
 */
int qcow_image_open(int fd, unsigned flags, struct qcow_image **out, struct bim_error *err);

/* Close the image, its fd and its libqcow handles. NULL is accepted. No
 * other call on `img` may be running or follow. */
void qcow_image_close(struct qcow_image *img);

/* Guest disk size in bytes (the size of the `raw` view). */
uint64_t qcow_image_virtual_size(const struct qcow_image *img);

/* Cluster size in bytes. */
uint64_t qcow_image_cluster_size(const struct qcow_image *img);

/* True when some cluster is compressed (reads of it go through libqcow). */
bool qcow_image_has_compressed(const struct qcow_image *img);

/* Number of extents in the cluster map (for logs and tests). */
size_t qcow_image_extent_count(const struct qcow_image *img);

/* The image file's read-only fd, owned by the image (do not close it). Use it
 * with the file offsets of QCOW_SEGMENT_DATA segments. */
int qcow_image_fd(const struct qcow_image *img);

enum qcow_segment_kind {
    QCOW_SEGMENT_ZERO,       /* reads as zeros (zero flag or unallocated) */
    QCOW_SEGMENT_DATA,       /* the bytes are in the image file at file_offset */
    QCOW_SEGMENT_COMPRESSED, /* compressed clusters: use qcow_image_read() */
};

struct qcow_segment {
    enum qcow_segment_kind kind;
    uint64_t length;      /* bytes, > 0 unless off is at or past the end */
    uint64_t file_offset; /* QCOW_SEGMENT_DATA only: where guest `off` is stored */
};

/*
 * Describe the guest bytes starting at `off`: the longest run of one kind
 * that starts there, clipped to `len` and to the virtual size. Adjacent
 * clusters of one kind are one segment (for DATA only while they are also
 * contiguous in the file), so a caller walks a range with few calls and can
 * use the end of a ZERO segment for SEEK_DATA. Does no I/O, never blocks.
 *
 * Returns 0 and fills *seg; seg->length is 0 when len is 0 or off is at or
 * past the virtual size.
 */
int qcow_image_map(const struct qcow_image *img, uint64_t off, uint64_t len,
                   struct qcow_segment *seg);

/*
 * Read `len` guest bytes at `off` into `buf`: DATA with pread on the image
 * fd, ZERO with memset, COMPRESSED through one of the image's libqcow handles
 * (waiting for a free one). Safe to call from many threads at once.
 *
 * Returns the number of bytes read, which is less than len only when the read
 * reaches the virtual size (0 at or past it), or:
 *   -EIO     the image file is shorter than its tables say, or libqcow
 *            failed (logged with libqcow's reasons);
 *   -EINVAL  len is larger than SSIZE_MAX;
 *   -errno   pread failed.
 */
ssize_t qcow_image_read(struct qcow_image *img, void *buf, size_t len, uint64_t off);

#endif
