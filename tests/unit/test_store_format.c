/*
 * test_store_format.c - format detection: raw, qcow2 made by qemu-img (test
 * tooling only), and the qcow2 images bimfs refuses, each with its reason.
 */
#include "check.h"
#include "store.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#define MiB (1024 * 1024)

static char tmpdir[CHECK_DIR_MAX];

static void path_of(char *out, size_t len, const char *file)
{
    snprintf(out, len, "%s/%s", tmpdir, file);
}

/* Run a qemu-img command line in tmpdir; false (with a failed check) if it
 * did not work. */
static bool qemu_img(const char *args)
{
    char cmd[1024];
    int rc;

    snprintf(cmd, sizeof(cmd), "cd '%s' && qemu-img %s >/dev/null", tmpdir, args);
    rc = system(cmd);
    CHECK(rc == 0, "qemu-img %s failed (%d)", args, rc);
    return rc == 0;
}

static uint64_t file_size(const char *path)
{
    struct stat st;

    return stat(path, &st) == 0 ? (uint64_t)st.st_size : 0;
}

/* Detect path; returns rc and fills info/err. */
static int detect(const char *file, struct store_format_info *info, struct bim_error *err)
{
    char path[256];

    path_of(path, sizeof(path), file);
    err->message[0] = '\0';
    return store_format_detect(path, file_size(path), info, err);
}

static void expect_refused(const char *file, const char *message)
{
    struct store_format_info info;
    struct bim_error err;

    CHECK(detect(file, &info, &err) == -EINVAL, "%s should be refused", file);
    CHECK(strstr(err.message, message) != NULL, "%s: message \"%s\" lacks \"%s\"", file,
          err.message, message);
}

static void write_bytes(const char *file, const void *buf, size_t len)
{
    char path[256];
    int fd;

    path_of(path, sizeof(path), file);
    fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    CHECK(fd >= 0 && write(fd, buf, len) == (ssize_t)len, "cannot write %s", path);
    close(fd);
}

/* The whole of file (malloc'd, *size bytes). */
static unsigned char *read_whole(const char *file, size_t *size)
{
    char path[256];
    unsigned char *buf;
    FILE *f;

    path_of(path, sizeof(path), file);
    *size = (size_t)file_size(path);
    buf = calloc(1, *size + 1);
    f = fopen(path, "rb");
    CHECK(f && fread(buf, 1, *size, f) == *size, "cannot read %s", path);
    if (f)
        fclose(f);
    return buf;
}

/* Copy file to copy and patch len bytes at off. */
static void patch_copy(const char *file, const char *copy, size_t off, const void *bytes,
                       size_t len)
{
    size_t size;
    unsigned char *buf = read_whole(file, &size);

    if (size < off + len)
        size = 0; /* base.qcow2 is missing: nothing to patch */
    else
        memcpy(buf + off, bytes, len);
    write_bytes(copy, buf, size);
    free(buf);
}

static void test_raw_is_detected_with_its_size(void)
{
    struct store_format_info info;
    struct bim_error err;
    char *buf = calloc(1, MiB);

    memset(buf, 0x5a, 4096);
    write_bytes("disk.raw", buf, MiB);
    CHECK(detect("disk.raw", &info, &err) == 0, "raw refused: %s", err.message);
    CHECK_INT(info.format, STORE_FORMAT_RAW);
    CHECK_INT(info.virtual_size, MiB);
    free(buf);
}

static void test_raw_size_not_multiple_of_512(void)
{
    char buf[1000] = {1};

    write_bytes("odd.raw", buf, sizeof(buf));
    expect_refused("odd.raw", "raw image size 1000 is not a multiple of 512 bytes");
}

static void test_qcow2_from_qemu_img(void)
{
    struct store_format_info info;
    struct bim_error err;

    if (!qemu_img("create -f qcow2 base.qcow2 64M"))
        return;
    CHECK(detect("base.qcow2", &info, &err) == 0, "qcow2 refused: %s", err.message);
    CHECK_INT(info.format, STORE_FORMAT_QCOW2);
    CHECK_INT(info.virtual_size, 64 * MiB);
}

static void test_qcow2_with_backing_file_refused(void)
{
    if (qemu_img("create -f qcow2 -b base.qcow2 -F qcow2 child.qcow2"))
        expect_refused("child.qcow2", "qcow2 image refers to a backing file (base.qcow2)");
}

static void test_encrypted_qcow2_refused(void)
{
    if (qemu_img("create -f qcow2 -o encrypt.format=aes,encrypt.key-secret=sec0 "
                 "--object secret,id=sec0,data=123456 enc.qcow2 64M"))
        expect_refused("enc.qcow2", "qcow2 image is encrypted");
}

static void test_unsupported_qcow2_features_refused(void)
{
    if (qemu_img("create -f qcow2 -o compression_type=zstd zstd.qcow2 64M"))
        expect_refused("zstd.qcow2", "qcow2 image uses zstd compression");
    if (qemu_img("create -f qcow2 -o extended_l2=on extl2.qcow2 64M"))
        expect_refused("extl2.qcow2", "qcow2 image uses extended L2 entries");
    if (qemu_img("create -f qcow2 -o data_file=data.raw ext.qcow2 64M"))
        expect_refused("ext.qcow2", "qcow2 image uses an external data file");
}

static void test_corrupt_bit_refused(void)
{
    unsigned char corrupt = 0x02; /* incompatible_features bit 1, last byte of the field */

    patch_copy("base.qcow2", "corrupt.qcow2", 79, &corrupt, 1);
    expect_refused("corrupt.qcow2", "qcow2 image is marked corrupt");
}

static void test_truncated_qcow2_refused(void)
{
    size_t size;
    unsigned char *buf = read_whole("base.qcow2", &size);

    write_bytes("short.qcow2", buf, size < 50 ? size : 50);
    expect_refused("short.qcow2", "qcow2 image is truncated");
    free(buf);
}

static void test_libqcow_failure_is_reported(void)
{
    /* header_length 120: fine for qemu's rules, but libqcow only knows 104/112 */
    unsigned char len[4] = {0, 0, 0, 120};

    patch_copy("base.qcow2", "odd-header.qcow2", 100, len, 4);
    expect_refused("odd-header.qcow2", "qcow2 image cannot be opened: ");
}

static void test_commit_detects_qcow2(void)
{
    struct bim_error err = {0};
    struct store_checksum none = {0};
    struct store_result res;
    struct store_writer *w = NULL;
    struct store_cfg cfg = {0};
    struct store *store = NULL;
    char path[256];
    size_t size;
    unsigned char *buf = read_whole("base.qcow2", &size);

    CHECK_INT(store_open(tmpdir, &store, &err), 0);
    CHECK_INT(store_image_prepare(store, "vm", "q1", &cfg, &err), 0);
    CHECK_INT(store_writer_open(store, "vm", "q1", &none, STORE_WRITER_NEW, &w, &err), 0);
    if (w) {
        CHECK_INT(store_writer_pwrite(w, buf, size, 0), 0);
        CHECK(store_writer_commit(w, size, "upload", &res, &err) == 0, "commit: %s", err.message);
        CHECK_INT(res.format, STORE_FORMAT_QCOW2);
        CHECK_INT(res.virtual_size, 64 * MiB);
        CHECK_INT(res.size, size);
    }
    /* a refused format fails the commit and renames nothing */
    w = NULL;
    CHECK_INT(store_image_prepare(store, "vm2", "q2", &cfg, &err), 0);
    CHECK_INT(store_writer_open(store, "vm2", "q2", &none, STORE_WRITER_NEW, &w, &err), 0);
    if (w) {
        CHECK_INT(store_writer_pwrite(w, buf, 1000, 0), 0);
        CHECK_INT(store_writer_commit(w, 1000, "upload", &res, &err), -EINVAL);
        CHECK(strstr(err.message, "qcow2 image is truncated") != NULL,
              "a 1000-byte qcow2 head should be refused as truncated, got \"%s\"", err.message);
        store_image_path(store, "vm2", "q2", "backing", path, sizeof(path));
        CHECK(access(path, F_OK) != 0, "backing exists after a refused format");
        store_writer_abort(w);
    }
    store_close(store);
    free(buf);
}

int main(void)
{
    if (check_dir_make(tmpdir, "format") < 0)
        return 1;
    RUN(test_raw_is_detected_with_its_size);
    RUN(test_raw_size_not_multiple_of_512);
    RUN(test_qcow2_from_qemu_img);
    RUN(test_qcow2_with_backing_file_refused);
    RUN(test_encrypted_qcow2_refused);
    RUN(test_unsupported_qcow2_features_refused);
    RUN(test_corrupt_bit_refused);
    RUN(test_truncated_qcow2_refused);
    RUN(test_libqcow_failure_is_reported);
    RUN(test_commit_detects_qcow2);
    check_dir_remove(tmpdir);
    return check_exit();
}
