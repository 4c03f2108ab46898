/*
 * format.c - format detection (SPEC §3). A file that starts with the qcow
 * magic is a qcow2: its header is read here first so that the images bimfs
 * refuses get a specific reason, then libqcow must open it and gives the
 * virtual size. Anything else is raw and must be a multiple of 512 bytes.
 *
 * Threads: any; each call has its own libqcow handle.
 */
#include "store_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <libqcow.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define QCOW_MAGIC 0x514649fbu /* "QFI\xfb" */
#define QCOW2_V2_HEADER 72
#define QCOW2_V3_HEADER 104
#define QCOW2_BACKING_NAME_MAX 1023 /* qemu's limit */

#define QCOW2_INCOMPAT_DIRTY (1ull << 0)
#define QCOW2_INCOMPAT_CORRUPT (1ull << 1)
#define QCOW2_INCOMPAT_DATA_FILE (1ull << 2)
#define QCOW2_INCOMPAT_COMPRESSION (1ull << 3)
#define QCOW2_INCOMPAT_EXTL2 (1ull << 4)
#define QCOW2_COMPRESSION_ZLIB 0
#define QCOW2_COMPRESSION_ZSTD 1

struct qcow2_header {
    uint32_t version;
    uint64_t backing_file_offset;
    uint32_t backing_file_size;
    uint64_t size;
    uint32_t crypt_method;
    uint64_t incompatible_features;
    uint32_t header_length;
    uint8_t compression_type;
};

static uint32_t be32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static uint64_t be64(const unsigned char *p)
{
    return (uint64_t)be32(p) << 32 | be32(p + 4);
}

/* Parse the header in buf (got bytes of the file). */
static int qcow2_header_parse(const unsigned char *buf, size_t got, struct qcow2_header *h,
                              struct bim_error *err)
{
    memset(h, 0, sizeof(*h));
    if (got < 8)
        return bim_error_set(err, -EINVAL, "qcow2 image is truncated");
    h->version = be32(buf + 4);
    if (h->version != 2 && h->version != 3)
        return bim_error_set(err, -EINVAL, "qcow image version %u is not supported", h->version);
    if (got < (h->version == 2 ? QCOW2_V2_HEADER : QCOW2_V3_HEADER))
        return bim_error_set(err, -EINVAL, "qcow2 image is truncated");
    h->backing_file_offset = be64(buf + 8);
    h->backing_file_size = be32(buf + 16);
    h->size = be64(buf + 24);
    h->crypt_method = be32(buf + 32);
    if (h->version == 2)
        return 0;
    h->incompatible_features = be64(buf + 72);
    h->header_length = be32(buf + 100);
    if (h->header_length > QCOW2_V3_HEADER) {
        if (got <= QCOW2_V3_HEADER)
            return bim_error_set(err, -EINVAL, "qcow2 image is truncated");
        h->compression_type = buf[104];
    }
    return 0;
}

/* "(<name>)" of the backing file, with unprintable bytes shown as '?'. */
static void qcow2_backing_name(int fd, const struct qcow2_header *h, char *out, size_t outlen)
{
    unsigned char name[QCOW2_BACKING_NAME_MAX];
    size_t len = h->backing_file_size, got = 0, i;

    if (len > sizeof(name))
        len = sizeof(name);
    if (store_pread_full(fd, name, len, h->backing_file_offset, &got) < 0)
        got = 0;
    if (got >= outlen)
        got = outlen - 1;
    for (i = 0; i < got; i++)
        out[i] = (name[i] >= 0x20 && name[i] < 0x7f) ? (char)name[i] : '?';
    out[i] = '\0';
}

/* The refusals that the header alone can tell. */
static int qcow2_header_check(int fd, const struct qcow2_header *h, struct bim_error *err)
{
    uint64_t known = QCOW2_INCOMPAT_DIRTY | QCOW2_INCOMPAT_CORRUPT | QCOW2_INCOMPAT_DATA_FILE |
                     QCOW2_INCOMPAT_COMPRESSION | QCOW2_INCOMPAT_EXTL2;
    char backing[256];

    if (h->incompatible_features & QCOW2_INCOMPAT_CORRUPT)
        return bim_error_set(err, -EINVAL, "qcow2 image is marked corrupt");
    if (h->crypt_method != 0)
        return bim_error_set(err, -EINVAL, "qcow2 image is encrypted");
    if (h->backing_file_offset != 0 && h->backing_file_size != 0) {
        qcow2_backing_name(fd, h, backing, sizeof(backing));
        return bim_error_set(err, -EINVAL, "qcow2 image refers to a backing file (%s)", backing);
    }
    if (h->incompatible_features & QCOW2_INCOMPAT_DATA_FILE)
        return bim_error_set(err, -EINVAL, "qcow2 image uses an external data file");
    if (h->compression_type == QCOW2_COMPRESSION_ZSTD)
        return bim_error_set(err, -EINVAL,
                             "qcow2 image uses zstd compression, which is not supported");
    if (h->compression_type != QCOW2_COMPRESSION_ZLIB)
        return bim_error_set(err, -EINVAL, "qcow2 image uses an unknown compression type (%u)",
                             h->compression_type);
    if (h->incompatible_features & QCOW2_INCOMPAT_EXTL2)
        return bim_error_set(err, -EINVAL,
                             "qcow2 image uses extended L2 entries, which are not supported");
    if (h->incompatible_features & ~known)
        return bim_error_set(err, -EINVAL,
                             "qcow2 image uses unsupported incompatible features (0x%llx)",
                             (unsigned long long)(h->incompatible_features & ~known));
    return 0;
}

/* Length of a leading "function_name: " on a backtrace line, or 0. */
static size_t qcow_error_prefix(const char *line)
{
    size_t n = strspn(line, "abcdefghijklmnopqrstuvwxyz0123456789_");

    return (n > 0 && line[n] == ':' && line[n + 1] == ' ') ? n + 2 : 0;
}

/* Join the lines of a libqcow backtrace with spaces, without the function
 * names that start them, in place. */
static void qcow_error_flatten(char *s)
{
    bool sep = false, line_start = true;
    char *w = s;

    for (const char *r = s; *r; r++) {
        if (*r == '\n' || *r == '\r' || *r == '\t') {
            sep = w != s; /* at least one byte skipped: w < r below */
            line_start = true;
            continue;
        }
        if (line_start) {
            line_start = false;
            r += qcow_error_prefix(r);
            if (!*r)
                break;
        }
        if (sep) {
            *w++ = ' ';
            sep = false;
        }
        *w++ = *r;
    }
    *w = '\0';
}

/* Message "<prefix>: <flattened libqcow error chain>", then free the chain. */
static int qcow_error(libqcow_error_t **error, struct bim_error *err, const char *prefix)
{
    char chain[BIM_ERROR_MAX] = "";

    if (*error) {
        if (libqcow_error_backtrace_sprint(*error, chain, sizeof(chain)) < 0)
            libqcow_error_sprint(*error, chain, sizeof(chain));
        libqcow_error_free(error);
    }
    chain[sizeof(chain) - 1] = '\0';
    qcow_error_flatten(chain);
    return bim_error_set(err, -EINVAL, "%s: %s", prefix, chain[0] ? chain : "unknown error");
}

/* Open path with libqcow and read its virtual size. */
static int qcow2_media_size(const char *path, uint64_t *size, struct bim_error *err)
{
    libqcow_error_t *error = NULL;
    libqcow_file_t *file = NULL;
    size64_t media = 0;
    int rc = 0;

    if (libqcow_file_initialize(&file, &error) != 1)
        return qcow_error(&error, err, "qcow2 image cannot be opened");
    if (libqcow_file_open(file, path, LIBQCOW_OPEN_READ, &error) != 1) {
        rc = qcow_error(&error, err, "qcow2 image cannot be opened");
        goto out;
    }
    if (libqcow_file_get_media_size(file, &media, &error) != 1)
        rc = qcow_error(&error, err, "qcow2 image cannot be opened");
    else
        *size = media;
    libqcow_file_close(file, NULL);
out:
    libqcow_file_free(&file, NULL);
    return rc;
}

int store_format_detect(const char *path, uint64_t size, struct store_format_info *out,
                        struct bim_error *err)
{
    unsigned char buf[QCOW2_V3_HEADER + 8];
    struct qcow2_header h;
    size_t got;
    int fd, rc;

    memset(out, 0, sizeof(*out));
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return bim_error_set(err, -errno, "cannot open the image: %s", strerror(errno));
    rc = store_pread_full(fd, buf, sizeof(buf) < size ? sizeof(buf) : (size_t)size, 0, &got);
    if (rc < 0) {
        bim_error_set(err, rc, "cannot read the image: %s", strerror(-rc));
        goto out;
    }
    if (got < 4 || be32(buf) != QCOW_MAGIC) {
        if (size % 512 != 0) {
            rc = bim_error_set(err, -EINVAL, "raw image size %llu is not a multiple of 512 bytes",
                               (unsigned long long)size);
            goto out;
        }
        out->format = STORE_FORMAT_RAW;
        out->virtual_size = size;
        goto out;
    }
    rc = qcow2_header_parse(buf, got, &h, err);
    if (rc == 0)
        rc = qcow2_header_check(fd, &h, err);
    if (rc == 0)
        rc = qcow2_media_size(path, &out->virtual_size, err);
    if (rc == 0)
        out->format = STORE_FORMAT_QCOW2;
out:
    close(fd);
    return rc;
}
