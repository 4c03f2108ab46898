/*
 * test_qcow.c - qcow/: guest reads of qcow2 images equal `qemu-img convert
 * -O raw`, the map covers the disk, and unreadable images are rejected with
 * their reason. Images are made with qemu-img/qemu-io in a mkdtemp dir (the
 * test is skipped, exit 77, when qemu-img is missing).
 */
#include "check.h"
#include "qcow.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define MIB (UINT64_C(1) << 20)
#define GIB (UINT64_C(1) << 30)
#define ODD_SIZE (12 * MIB + 512)

static char work_dir[CHECK_DIR_MAX];

/* Run a shell command in work_dir (output discarded); true on exit 0. */
static bool sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static bool sh(const char *fmt, ...)
{
    char cmd[4096], full[4400];
    va_list ap;
    int rc;

    va_start(ap, fmt);
    vsnprintf(cmd, sizeof(cmd), fmt, ap);
    va_end(ap);
    snprintf(full, sizeof(full), "cd %s && (%s) >/dev/null 2>sh.err", work_dir, cmd);
    rc = system(full);
    if (rc != 0) {
        fprintf(stderr, "command failed (%d): %s\n", rc, cmd);
        snprintf(full, sizeof(full), "cat %s/sh.err >&2", work_dir);
        (void)!system(full);
    }
    return rc == 0;
}

static const char *path_of(const char *name)
{
    static _Thread_local char path[4][512];
    static _Thread_local int next;
    char *p = path[next++ % 4];

    snprintf(p, sizeof(path[0]), "%s/%s", work_dir, name);
    return p;
}

static void patch_be(const char *name, uint64_t off, uint64_t value, int bytes)
{
    uint8_t b[8];
    int fd = open(path_of(name), O_WRONLY);

    for (int i = 0; i < bytes; i++)
        b[i] = (uint8_t)(value >> (8 * (bytes - 1 - i)));
    CHECK(fd >= 0 && pwrite(fd, b, (size_t)bytes, (off_t)off) == bytes, "cannot patch %s", name);
    if (fd >= 0)
        close(fd);
}

static uint64_t read_be64(const char *name, uint64_t off)
{
    uint8_t b[8] = {0};
    uint64_t v = 0;
    int fd = open(path_of(name), O_RDONLY);

    CHECK(fd >= 0 && pread(fd, b, 8, (off_t)off) == 8, "cannot read %s", name);
    if (fd >= 0)
        close(fd);
    for (int i = 0; i < 8; i++)
        v = v << 8 | b[i];
    return v;
}

/* ---- comparing an image with its raw conversion ---- */

struct expected {
    const char *label;
    struct qcow_image *img;
    const uint8_t *raw; /* mmap of the qemu-img convert -O raw output */
    uint64_t size;
};

static bool range_matches(const struct expected *x, uint64_t off, size_t len, uint8_t *buf,
                          const char *how)
{
    ssize_t want = off >= x->size ? 0 : (ssize_t)(x->size - off < len ? x->size - off : len);
    ssize_t got = qcow_image_read(x->img, buf, len, off);

    if (got != want) {
        CHECK(got == want, "%s: %s read of %zu at %" PRIu64 " returned %zd, want %zd", x->label,
              how, len, off, got, want);
        return false;
    }
    for (ssize_t i = 0; i < got; i++) {
        if (buf[i] != x->raw[off + (uint64_t)i]) {
            CHECK(0,
                  "%s: %s read of %zu at %" PRIu64 ": byte at %" PRIu64 " is 0x%02x, want 0x%02x",
                  x->label, how, len, off, off + (uint64_t)i, buf[i], x->raw[off + (uint64_t)i]);
            return false;
        }
    }
    return true;
}

/* The segments from offset 0 are contiguous, non-empty, end at the virtual
 * size, and say the truth: ZERO is zeros, DATA is at file_offset in the fd. */
static void check_map_covers(const struct expected *x, uint64_t *data_bytes)
{
    struct stat st;
    uint64_t off = 0;
    uint8_t *buf = malloc(MIB);
    int fd = qcow_image_fd(x->img);

    CHECK(fstat(fd, &st) == 0, "%s: fstat of the image fd failed", x->label);
    *data_bytes = 0;
    while (off < x->size) {
        struct qcow_segment seg;
        CHECK_INT(qcow_image_map(x->img, off, UINT64_MAX, &seg), 0);
        if (seg.length == 0) {
            CHECK(0, "%s: empty segment at %" PRIu64 " before the end %" PRIu64, x->label, off,
                  x->size);
            break;
        }
        for (uint64_t done = 0; done < seg.length; done += MIB) {
            size_t n = seg.length - done < MIB ? (size_t)(seg.length - done) : MIB;
            const uint8_t *want = x->raw + off + done;
            if (seg.kind == QCOW_SEGMENT_DATA) {
                CHECK(pread(fd, buf, n, (off_t)(seg.file_offset + done)) == (ssize_t)n &&
                          memcmp(buf, want, n) == 0,
                      "%s: DATA segment at %" PRIu64 " differs from the raw image", x->label,
                      off + done);
            } else if (seg.kind == QCOW_SEGMENT_ZERO) {
                memset(buf, 0, n);
                CHECK(memcmp(buf, want, n) == 0, "%s: ZERO segment at %" PRIu64 " is not zeros",
                      x->label, off + done);
            }
            if (x->size > 4 * GIB)
                break; /* the 64 GiB image: spot check only */
        }
        if (seg.kind == QCOW_SEGMENT_DATA) {
            *data_bytes += seg.length;
            CHECK(seg.file_offset + seg.length <= (uint64_t)st.st_size,
                  "%s: DATA segment at %" PRIu64 " ends past the end of the file", x->label, off);
        }
        off += seg.length;
    }
    CHECK(off == x->size, "%s: segments end at %" PRIu64 ", want %" PRIu64, x->label, off, x->size);
    free(buf);
}

static void check_whole_reads(const struct expected *x)
{
    static const size_t chunks[] = {512, 4096, 66048, MIB, 3 * MIB + 7};
    uint8_t *buf = malloc(3 * MIB + 7);
    /* instrumented (tools/test.sh sets BIMFS_TEST_SANITIZE), whole passes in
     * small chunks take minutes: the random reads still cover small sizes */
    size_t first = getenv("BIMFS_TEST_SANITIZE") ? 2 : 0;

    for (size_t c = first; c < sizeof(chunks) / sizeof(chunks[0]); c++)
        for (uint64_t off = 0; off < x->size; off += chunks[c])
            if (!range_matches(x, off, chunks[c], buf, "sequential"))
                break;
    free(buf);
}

/* Random offsets and lengths, some crossing the virtual end. */
static void check_random_reads(const struct expected *x, unsigned seed, int count)
{
    uint8_t *buf = malloc(4 * MIB);

    for (int i = 0; i < count; i++) {
        uint64_t off = ((uint64_t)rand_r(&seed) << 31 | (uint64_t)rand_r(&seed)) % (x->size + 4096);
        size_t len = (size_t)rand_r(&seed) % (4 * MIB) + 1;
        if (!range_matches(x, off, len, buf, "random"))
            break;
    }
    free(buf);
}

struct reader_arg {
    const struct expected *x;
    unsigned seed;
};

static void *reader_thread(void *p)
{
    struct reader_arg *a = p;

    check_random_reads(a->x, a->seed, 40);
    return NULL;
}

static void check_concurrent_reads(const struct expected *x)
{
    pthread_t threads[8];
    struct reader_arg args[8];

    for (int i = 0; i < 8; i++) {
        args[i] = (struct reader_arg){x, 1000u + (unsigned)i};
        CHECK_INT(pthread_create(&threads[i], NULL, reader_thread, &args[i]), 0);
    }
    for (int i = 0; i < 8; i++)
        pthread_join(threads[i], NULL);
}

/* Convert name to raw and open both; false (after a failed CHECK) if not. */
/* qcow_image_open() on a file opened by path (the image keeps its own fd). */
static int open_path(const char *path, unsigned flags, struct qcow_image **out,
                     struct bim_error *err)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    int ret;

    if (fd < 0) {
        *out = NULL;
        return bim_error_set(err, -errno, "cannot open %s", path);
    }
    ret = qcow_image_open(fd, flags, out, err);
    close(fd);
    return ret;
}

static bool expected_open(struct expected *x, const char *name, unsigned flags)
{
    struct bim_error err = {0};
    struct stat st;
    char raw_name[256];
    int fd, ret;

    memset(x, 0, sizeof(*x));
    x->label = name;
    if (!sh("qemu-img convert -O raw %s %s.raw", name, name))
        return false;
    ret = open_path(path_of(name), flags, &x->img, &err);
    CHECK(ret == 0, "%s: qcow_image_open returned %d: %s", name, ret, err.message);
    if (ret != 0)
        return false;
    snprintf(raw_name, sizeof(raw_name), "%s.raw", name);
    fd = open(path_of(raw_name), O_RDONLY);
    CHECK(fd >= 0 && fstat(fd, &st) == 0, "%s: cannot open the raw conversion", name);
    x->size = (uint64_t)st.st_size;
    x->raw = mmap(NULL, x->size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    CHECK(x->raw != MAP_FAILED, "%s: cannot mmap the raw conversion", name);
    CHECK(qcow_image_virtual_size(x->img) == x->size,
          "%s: virtual size %" PRIu64 ", qemu-img converts %" PRIu64 " bytes", name,
          qcow_image_virtual_size(x->img), x->size);
    return x->raw != MAP_FAILED && qcow_image_virtual_size(x->img) == x->size;
}

static void expected_close(struct expected *x)
{
    if (x->raw && x->raw != MAP_FAILED)
        munmap((void *)x->raw, x->size);
    qcow_image_close(x->img);
    sh("rm -f %s.raw", x->label);
}

static void check_image_all(const char *name, unsigned flags, bool want_compressed)
{
    struct expected x;
    uint64_t data_bytes;

    if (!expected_open(&x, name, flags)) {
        qcow_image_close(x.img);
        return;
    }
    CHECK(qcow_image_has_compressed(x.img) == want_compressed, "%s: has_compressed is %d", name,
          qcow_image_has_compressed(x.img));
    check_map_covers(&x, &data_bytes);
    check_whole_reads(&x);
    check_random_reads(&x, 7, 200);
    check_concurrent_reads(&x);
    expected_close(&x);
}

/* ---- the images ---- */

/* Data, zero-flag clusters (preallocated and not), unallocated ranges,
 * clusters written out of order (non-contiguous in the file), an odd tail. */
static bool make_mixed(const char *name, const char *compat, unsigned cluster)
{
    return sh("qemu-img create -q -f qcow2 -o compat=%s,cluster_size=%u %s %" PRIu64
              " && qemu-io -f qcow2 -c 'write -P 0xab 0 8M' -c 'write -z 1M 2M'"
              " -c 'write -z -u 5M 1M' -c 'write -P 0x3c 10368k 64k' -c 'write -P 0x2b 10304k 64k'"
              " -c 'write -P 0x1a 10240k 64k' -c 'write -P 0x77 12M 512' %s",
              compat, cluster, name, ODD_SIZE, name);
}

static void test_reads_match_qemu_img_for_v2_and_v3_all_cluster_sizes(void)
{
    static const char *compats[] = {"0.10", "1.1"};
    static const unsigned clusters[] = {512, 4096, 65536, 2 * 1024 * 1024};

    for (size_t c = 0; c < 2; c++) {
        for (size_t k = 0; k < 4; k++) {
            char name[64];
            snprintf(name, sizeof(name), "mixed-%s-%u.qcow2", compats[c], clusters[k]);
            if (make_mixed(name, compats[c], clusters[k]))
                check_image_all(name, 0, false);
        }
    }
}

static void test_zero_flag_clusters_read_as_zeros(void)
{
    struct qcow_image *img = NULL;
    struct qcow_segment seg;
    struct bim_error err = {0};
    uint8_t buf[4096];

    /* libqcow 20201213 returns 0xab here (stale data) and header bytes for -u. */
    if (!make_mixed("zeroflag.qcow2", "1.1", 65536))
        return;
    CHECK_INT(open_path(path_of("zeroflag.qcow2"), 0, &img, &err), 0);
    if (!img)
        return;
    CHECK_INT(qcow_image_map(img, 1 * MIB, 2 * MIB, &seg), 0);
    CHECK(seg.kind == QCOW_SEGMENT_ZERO && seg.length == 2 * MIB,
          "write -z 1M 2M: segment kind %d length %" PRIu64 ", want ZERO of 2 MiB", seg.kind,
          seg.length);
    CHECK_INT(qcow_image_map(img, 5 * MIB, MIB, &seg), 0);
    CHECK(seg.kind == QCOW_SEGMENT_ZERO, "write -z -u 5M 1M: segment kind %d, want ZERO", seg.kind);
    for (uint64_t off = MIB; off < 3 * MIB; off += sizeof(buf)) {
        uint8_t zero[4096] = {0};
        CHECK_INT(qcow_image_read(img, buf, sizeof(buf), off), sizeof(buf));
        if (memcmp(buf, zero, sizeof(buf)) != 0) {
            CHECK(0, "zero-flag cluster at %" PRIu64 " does not read as zeros", off);
            break;
        }
    }
    qcow_image_close(img);
}

static void test_compressed_images_read_through_libqcow(void)
{
    /* 2 MiB random, 2 MiB text, 2 MiB zeros, 512 random: compressed with -c;
     * then some clusters rewritten uncompressed and some zeroed. */
    if (!sh("head -c 2M /dev/urandom > src.raw && yes 'bimfs qcow2 compressible line' | "
            "head -c 2M >> src.raw && head -c 2M /dev/zero >> src.raw && "
            "head -c 512 /dev/urandom >> src.raw"))
        return;
    if (sh("qemu-img convert -c -O qcow2 src.raw comp.qcow2"))
        check_image_all("comp.qcow2", 0, true);
    if (sh("qemu-img convert -c -O qcow2 -o compat=0.10,cluster_size=4096 src.raw comp-v2.qcow2"))
        check_image_all("comp-v2.qcow2", 0, true);
    if (sh("qemu-img convert -c -O qcow2 -o cluster_size=2M src.raw comp-2m.qcow2"))
        check_image_all("comp-2m.qcow2", 0, true);
    if (sh("qemu-img convert -c -O qcow2 src.raw comp-mix.qcow2 && qemu-io -f qcow2 "
           "-c 'write -P 0x42 64k 128k' -c 'write -z 2M 64k' -c 'write -z -u 3M 64k' "
           "comp-mix.qcow2"))
        check_image_all("comp-mix.qcow2", 0, true);
}

static void test_large_sparse_image_stays_small(void)
{
    struct expected x;
    uint64_t data_bytes = 0;
    long rss_before = 0, rss_after = 0;
    FILE *f;

    if (!sh("qemu-img create -q -f qcow2 big.qcow2 64G && qemu-io -f qcow2 -c 'write -P 0x11 0 2M'"
            " -c 'write -P 0x22 30G 1M' -c 'write -P 0x33 65535M 1M' big.qcow2"))
        return;
    f = fopen("/proc/self/statm", "r");
    CHECK(f && fscanf(f, "%*d %ld", &rss_before) == 1, "cannot read /proc/self/statm");
    if (f)
        fclose(f);
    if (!expected_open(&x, "big.qcow2", 0)) {
        qcow_image_close(x.img);
        return;
    }
    f = fopen("/proc/self/statm", "r");
    CHECK(f && fscanf(f, "%*d %ld", &rss_after) == 1, "cannot read /proc/self/statm");
    if (f)
        fclose(f);
    CHECK((rss_after - rss_before) * sysconf(_SC_PAGESIZE) < (long)(8 * MIB),
          "opening a 64 GiB image grew RSS by %ld KiB",
          (rss_after - rss_before) * sysconf(_SC_PAGESIZE) / 1024);
    CHECK(qcow_image_extent_count(x.img) < 16, "64 GiB image with 3 written ranges has %zu extents",
          qcow_image_extent_count(x.img));
    check_map_covers(&x, &data_bytes);
    CHECK(data_bytes == 4 * MIB, "DATA segments hold %" PRIu64 " bytes, want 4 MiB", data_bytes);
    {
        uint8_t *buf = malloc(2 * MIB);
        range_matches(&x, 0, 2 * MIB, buf, "first 2M");
        range_matches(&x, 30 * GIB - 4096, 2 * MIB, buf, "around 30G");
        range_matches(&x, 64 * GIB - 2 * MIB + 512, 2 * MIB, buf, "tail");
        free(buf);
    }
    check_random_reads(&x, 3, 100);
    expected_close(&x);
}

/* ---- rejections ---- */

/* Opening name fails with code and a message containing want; when
 * header_level, qcow_header_check() on an fd says the same. */
static void expect_reject(const char *name, unsigned flags, int code, const char *want,
                          bool header_level)
{
    struct qcow_image *img = NULL;
    struct bim_error err = {0};
    int ret = open_path(path_of(name), flags, &img, &err);

    CHECK(ret == code && strstr(err.message, want),
          "%s: open returned %d \"%s\", want %d with \"%s\"", name, ret, err.message, code, want);
    CHECK(img == NULL, "%s: a failed open must leave *out NULL", name);
    if (header_level) {
        int fd = open(path_of(name), O_RDONLY);
        bim_error_clear(&err);
        ret = qcow_header_check(fd, NULL, &err);
        CHECK(ret == code && strstr(err.message, want),
              "%s: header check returned %d \"%s\", want %d with \"%s\"", name, ret, err.message,
              code, want);
        close(fd);
    }
}

static void test_rejects_images_that_are_not_self_contained(void)
{
    if (sh("qemu-img create -q -f qcow2 --object secret,id=s0,data=123456 "
           "-o encrypt.format=aes,encrypt.key-secret=s0 aes.qcow2 1M"))
        expect_reject("aes.qcow2", 0, -EINVAL, "qcow2 image is encrypted", true);
    if (sh("qemu-img create -q -f qcow2 --object secret,id=s0,data=123456 "
           "-o encrypt.format=luks,encrypt.key-secret=s0,encrypt.iter-time=10 luks.qcow2 1M"))
        expect_reject("luks.qcow2", 0, -EINVAL, "qcow2 image is encrypted", true);
    if (sh("qemu-img create -q -f qcow2 base.qcow2 1M && "
           "qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 overlay.qcow2"))
        expect_reject("overlay.qcow2", 0, -EINVAL,
                      "qcow2 image refers to a backing file (base.qcow2)", true);
    if (sh("qemu-img create -q -f qcow2 -o data_file=ext.data ext.qcow2 1M"))
        expect_reject("ext.qcow2", 0, -EINVAL, "qcow2 image uses an external data file", true);
    if (sh("qemu-img create -q -f qcow2 -o compression_type=zstd zstd.qcow2 1M"))
        expect_reject("zstd.qcow2", 0, -EINVAL, "qcow2 image uses zstd compression", true);
    if (sh("qemu-img create -q -f qcow2 -o extended_l2=on extl2.qcow2 1M"))
        expect_reject("extl2.qcow2", 0, -EINVAL, "qcow2 image uses extended L2 entries", true);
}

static void test_rejects_truncated_images(void)
{
    /* mixed image, 64 KiB clusters: header, refcounts, L1 at 0x30000, ... */
    if (!make_mixed("cut.qcow2", "1.1", 65536))
        return;
    sh("cp cut.qcow2 cut-half.qcow2 && truncate -s 2M cut-half.qcow2");
    expect_reject("cut-half.qcow2", 0, -EINVAL,
                  "qcow2 image is truncated or corrupt: cluster at guest offset", false);
    sh("cp cut.qcow2 cut-l1.qcow2 && truncate -s 128k cut-l1.qcow2");
    expect_reject("cut-l1.qcow2", 0, -EINVAL, "qcow2 image is truncated (L1 table", true);
    sh("cp cut.qcow2 cut-header.qcow2 && truncate -s 50 cut-header.qcow2");
    expect_reject("cut-header.qcow2", 0, -EINVAL, "qcow2 image is truncated", true);
    sh("cp cut.qcow2 cut-l2.qcow2 && truncate -s 256k cut-l2.qcow2");
    expect_reject("cut-l2.qcow2", 0, -EINVAL, "qcow2 image is truncated or corrupt: L2 table",
                  false);
}

static void test_rejects_damaged_headers(void)
{
    if (!sh("qemu-img create -q -f qcow2 good.qcow2 16M && head -c 1M /dev/zero > plain.raw"))
        return;
    expect_reject("plain.raw", 0, -EMEDIUMTYPE, "not a qcow2 image", true);
    sh("printf 'QFI\\373' > garbage.qcow2 && yes 'garbage' | head -c 4092 >> garbage.qcow2");
    expect_reject("garbage.qcow2", 0, -EINVAL, "unsupported qcow version", true);
#define PATCHED(name, off, value, bytes)                                                           \
    (sh("cp good.qcow2 " name), patch_be(name, off, value, bytes), name)
    expect_reject(PATCHED("l1-absurd.qcow2", 36, 0xffffffffu, 4), 0, -EINVAL,
                  "absurd L1 table size", true);
    expect_reject(PATCHED("size-absurd.qcow2", 24, UINT64_C(1) << 60, 8), 0, -EINVAL,
                  "absurd virtual size", true);
    expect_reject(PATCHED("size-l1.qcow2", 24, 1024 * GIB, 8), 0, -EINVAL,
                  "needs 2048 L1 entries but the L1 table has 1", true);
    expect_reject(PATCHED("cbits.qcow2", 20, 30, 4), 0, -EINVAL, "invalid cluster_bits 30", true);
    expect_reject(PATCHED("corrupt.qcow2", 72, 2, 8), 0, -EINVAL, "marked corrupt", true);
    expect_reject(PATCHED("unknown.qcow2", 72, UINT64_C(1) << 40, 8), 0, -EINVAL,
                  "unknown incompatible features 0x10000000000", true);
    expect_reject(PATCHED("v4.qcow2", 4, 4, 4), 0, -EINVAL, "unsupported qcow version 4", true);
    expect_reject(PATCHED("l1-unaligned.qcow2", 40, 0x30008, 8), 0, -EINVAL,
                  "L1 table offset 0x30008 is not cluster aligned", true);
}

static void test_rejects_corrupt_l2_entries(void)
{
    uint64_t l1_off, l2_off;

    if (!make_mixed("l2bad.qcow2", "1.1", 65536))
        return;
    l1_off = read_be64("l2bad.qcow2", 40);
    l2_off = read_be64("l2bad.qcow2", l1_off) & UINT64_C(0x00fffffffffffe00);
    /* Cluster 0 -> an unaligned offset, then cluster 0 -> far beyond EOF. */
    patch_be("l2bad.qcow2", l2_off, UINT64_C(0x8000000000000000) | 0x50200, 8);
    expect_reject("l2bad.qcow2", 0, -EINVAL, "cluster at guest offset 0 has an unaligned", false);
    patch_be("l2bad.qcow2", l2_off, UINT64_C(0x8000000000000000) | (UINT64_C(1) << 40), 8);
    expect_reject("l2bad.qcow2", 0, -EINVAL,
                  "cluster at guest offset 0 points beyond the end of the file", false);
}

static void test_libqcow_rejection_is_reported_with_its_reasons(void)
{
    struct qcow_image *img = NULL;
    struct bim_error err = {0};

    /* A header length libqcow does not accept (it takes 104 or 112 only). */
    if (!sh("qemu-img create -q -f qcow2 hlen.qcow2 1M"))
        return;
    patch_be("hlen.qcow2", 100, 120, 4);
    CHECK_INT(open_path(path_of("hlen.qcow2"), 0, &img, &err), 0);
    qcow_image_close(img);
    expect_reject("hlen.qcow2", QCOW_OPEN_CHECK_LIBQCOW, -EINVAL,
                  "qcow2 image cannot be opened: unsupported file header size: 120", false);
    CHECK_INT(open_path(path_of("good.qcow2"), QCOW_OPEN_CHECK_LIBQCOW, &img, &err), 0);
    qcow_image_close(img);
}

int main(void)
{
    if (system("qemu-img --version >/dev/null 2>&1 && qemu-io --version >/dev/null 2>&1") != 0) {
        fprintf(stderr, "skipped: qemu-img or qemu-io not found\n");
        return 77;
    }
    if (check_dir_make(work_dir, "qcow") < 0)
        return 1;
    RUN(test_reads_match_qemu_img_for_v2_and_v3_all_cluster_sizes);
    RUN(test_zero_flag_clusters_read_as_zeros);
    RUN(test_compressed_images_read_through_libqcow);
    RUN(test_large_sparse_image_stays_small);
    RUN(test_rejects_images_that_are_not_self_contained);
    RUN(test_rejects_truncated_images);
    RUN(test_rejects_damaged_headers);
    RUN(test_rejects_corrupt_l2_entries);
    RUN(test_libqcow_rejection_is_reported_with_its_reasons);
    check_dir_remove(work_dir);
    return check_exit();
}
