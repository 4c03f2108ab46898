/*
 * pieces.c - the piece digests of an image (SPEC §9): the SHA-256 of every
 * 4 MiB piece, holes read as zeros, kept durably in <name>-<uuid>/backing.pieces
 * beside backing. The file (docs/store.md, "Pieces"), little-endian:
 *
 *   0   "BIMPIECE"              magic
 *   8   u32 version (1)
 *   12  u32 piece size          STORE_PIECE_SIZE
 *   16  u64 image size          bytes of backing
 *   24  64 bytes                the image's SHA-512 (raw): the digests belong
 *                               to the image whose currentChecksum this is
 *   88  count x 32 bytes        SHA-256 of each piece, count = ceil(size / piece)
 *   ... 32 bytes                SHA-256 of everything before it
 *
 * A file whose size, SHA-512 or trailer does not match is not used (the
 * digests are computed again); Longhorn ignores the file.
 *
 * A piece with no data (SEEK_DATA finds none in it) has the digest of its
 * length of zeros, computed once per length and never read from the disk.
 *
 * Threads: any. The zero digest of a whole piece is computed once
 * (pthread_once); everything else works on the caller's structures.
 */
#include "store_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define PIECES_MAGIC "BIMPIECE"
#define PIECES_VERSION 1u
#define PIECES_HEAD 88u
#define PIECES_TRAILER 32u

static pthread_once_t store_zero_once = PTHREAD_ONCE_INIT;
static uint8_t store_zero_piece[32];
static int store_zero_piece_rc = -EIO;

uint64_t store_pieces_count(uint64_t size)
{
    return size / STORE_PIECE_SIZE + (size % STORE_PIECE_SIZE != 0);
}

uint64_t store_piece_length(uint64_t size, uint64_t index)
{
    uint64_t off = index * STORE_PIECE_SIZE;

    if (off >= size)
        return 0;
    return size - off < STORE_PIECE_SIZE ? size - off : STORE_PIECE_SIZE;
}

void store_piece_hex(const uint8_t digest[32], char out[STORE_PIECE_HEX + 1])
{
    static const char hex[] = "0123456789abcdef";

    for (int i = 0; i < 32; i++) {
        out[2 * i] = hex[digest[i] >> 4];
        out[2 * i + 1] = hex[digest[i] & 15];
    }
    out[STORE_PIECE_HEX] = '\0';
}

static int store_pieces_zeros(uint64_t len, uint8_t out[32])
{
    struct store_digest_ctx d;
    int rc = store_digest_init_sha256(&d);

    if (rc == 0)
        rc = store_digest_zeros(&d, len);
    if (rc == 0)
        rc = store_digest_final_sha256(&d, out);
    store_digest_free(&d);
    return rc;
}

static void store_pieces_zero_init(void)
{
    store_zero_piece_rc = store_pieces_zeros(STORE_PIECE_SIZE, store_zero_piece);
}

int store_piece_zero_digest(uint64_t len, uint8_t out[32])
{
    if (len != STORE_PIECE_SIZE)
        return store_pieces_zeros(len, out);
    pthread_once(&store_zero_once, store_pieces_zero_init);
    memcpy(out, store_zero_piece, 32);
    return store_zero_piece_rc;
}

int store_piece_digest_buf(const void *buf, size_t len, uint8_t out[32])
{
    struct store_digest_ctx d;
    int rc = store_digest_init_sha256(&d);

    if (rc == 0)
        rc = store_digest_update(&d, buf, len);
    if (rc == 0)
        rc = store_digest_final_sha256(&d, out);
    store_digest_free(&d);
    return rc;
}

int store_piece_digest_fd(struct store_digest_ctx *d, int fd, uint64_t off, uint64_t len, void *buf,
                          uint8_t out[32])
{
    uint64_t data_end, hole_end;
    int rc;

    rc = store_digest_find_extent(fd, off, off + len, &data_end, &hole_end);
    if (rc < 0)
        return rc;
    if (hole_end >= off + len) /* no data in the piece: not read */
        return store_piece_zero_digest(len, out);
    rc = store_digest_reset(d);
    if (rc == 0)
        rc = store_digest_feed_fd(d, fd, off, off + len, buf, NULL, NULL);
    if (rc == 0)
        rc = store_digest_final_sha256(d, out);
    return rc;
}

int store_pieces_alloc(struct store_pieces *p, uint64_t size)
{
    p->size = size;
    p->count = store_pieces_count(size);
    p->sha256 = NULL;
    if (p->count > STORE_PIECES_MAX)
        return -EFBIG;
    p->sha256 = calloc(p->count ? p->count : 1, 32);
    return p->sha256 ? 0 : -ENOMEM;
}

void store_pieces_free(struct store_pieces *p)
{
    free(p->sha256);
    p->sha256 = NULL;
    p->count = p->size = 0;
}

static void store_put_u32(uint8_t *at, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        at[i] = (uint8_t)(v >> (8 * i));
}

static void store_put_u64(uint8_t *at, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        at[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t store_get_u32(const uint8_t *at)
{
    uint32_t v = 0;

    for (int i = 3; i >= 0; i--)
        v = v << 8 | at[i];
    return v;
}

static uint64_t store_get_u64(const uint8_t *at)
{
    uint64_t v = 0;

    for (int i = 7; i >= 0; i--)
        v = v << 8 | at[i];
    return v;
}

/* 128 hex digits into 64 bytes; -EINVAL if they are not. */
static int store_sha512_raw(const char *hex, uint8_t out[64])
{
    if (strlen(hex) != STORE_CHECKSUM_HEX)
        return -EINVAL;
    for (int i = 0; i < 64; i++) {
        unsigned int byte;

        if (sscanf(hex + 2 * i, "%2x", &byte) != 1)
            return -EINVAL;
        out[i] = (uint8_t)byte;
    }
    return 0;
}

int store_pieces_save_at(int dirfd, const char *sha512_hex, const struct store_pieces *p)
{
    size_t len = PIECES_HEAD + (size_t)p->count * 32 + PIECES_TRAILER;
    uint8_t *file;
    int rc;

    if (p->count != store_pieces_count(p->size))
        return -EINVAL;
    file = malloc(len);
    if (!file)
        return -ENOMEM;
    memcpy(file, PIECES_MAGIC, 8);
    store_put_u32(file + 8, PIECES_VERSION);
    store_put_u32(file + 12, STORE_PIECE_SIZE);
    store_put_u64(file + 16, p->size);
    rc = store_sha512_raw(sha512_hex, file + 24);
    if (rc < 0)
        goto out;
    if (p->count)
        memcpy(file + PIECES_HEAD, p->sha256, (size_t)p->count * 32);
    rc = store_piece_digest_buf(file, len - PIECES_TRAILER, file + len - PIECES_TRAILER);
    if (rc == 0)
        rc = store_durable_write(dirfd, STORE_PIECES, file, len);
out:
    free(file);
    return rc;
}

int store_pieces_load_at(int dirfd, uint64_t size, const char *sha512_hex, struct store_pieces *out)
{
    uint8_t sha512[64], trailer[32];
    size_t len = 0, want;
    char *text = NULL;
    uint8_t *file;
    int rc;

    memset(out, 0, sizeof(*out));
    if (store_pieces_count(size) > STORE_PIECES_MAX || store_sha512_raw(sha512_hex, sha512) < 0)
        return -ESTALE;
    want = PIECES_HEAD + (size_t)store_pieces_count(size) * 32 + PIECES_TRAILER;
    rc = store_file_read_at(dirfd, STORE_PIECES, want, &text, &len);
    if (rc == -EFBIG)
        return -ESTALE;
    if (rc < 0)
        return rc;
    file = (uint8_t *)text;
    rc = -ESTALE;
    if (len != want || memcmp(file, PIECES_MAGIC, 8) != 0 ||
        store_get_u32(file + 8) != PIECES_VERSION || store_get_u32(file + 12) != STORE_PIECE_SIZE ||
        store_get_u64(file + 16) != size || memcmp(file + 24, sha512, 64) != 0)
        goto out;
    if (store_piece_digest_buf(file, len - PIECES_TRAILER, trailer) < 0 ||
        memcmp(trailer, file + len - PIECES_TRAILER, 32) != 0)
        goto out;
    rc = store_pieces_alloc(out, size);
    if (rc == 0)
        memcpy(out->sha256, file + PIECES_HEAD, (size_t)out->count * 32);
out:
    free(text);
    return rc;
}

int store_image_load_pieces(struct store *store, const char *name, const char *uuid, uint64_t size,
                            const char *sha512_hex, struct store_pieces *out)
{
    int dirfd, rc;

    memset(out, 0, sizeof(*out));
    rc = store_image_dir_open(store, name, uuid, &dirfd);
    if (rc < 0)
        return rc;
    rc = store_pieces_load_at(dirfd, size, sha512_hex, out);
    close(dirfd);
    return rc;
}

int store_image_compute_pieces(struct store *store, const char *name, const char *uuid,
                               const char *sha512_hex, const atomic_bool *cancel,
                               _Atomic uint64_t *progress, struct bim_error *err)
{
    struct store_digest_ctx d = {NULL, NULL};
    struct store_pieces p = {0};
    void *buf = NULL;
    struct stat st;
    int fd = -1, dirfd = -1, rc;

    rc = store_image_open_backing(store, name, uuid, &fd);
    if (rc < 0)
        return bim_error_set(err, rc, "cannot open backing: %s", strerror(-rc));
    if (fstat(fd, &st) < 0) {
        rc = bim_error_set(err, -errno, "cannot stat backing: %s", strerror(errno));
        goto out;
    }
    posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
    buf = malloc(STORE_CHUNK);
    rc = buf ? store_pieces_alloc(&p, (uint64_t)st.st_size) : -ENOMEM;
    if (rc == 0)
        rc = store_digest_init_sha256(&d);
    if (rc < 0) {
        bim_error_set(err, rc, "cannot start computing the piece digests: %s", strerror(-rc));
        goto out;
    }
    for (uint64_t i = 0; i < p.count; i++) {
        if (cancel && atomic_load(cancel)) {
            rc = bim_error_set(err, -ECANCELED, "computing the piece digests was cancelled");
            goto out;
        }
        rc = store_piece_digest_fd(&d, fd, i * STORE_PIECE_SIZE, store_piece_length(p.size, i), buf,
                                   p.sha256[i]);
        if (rc < 0) {
            bim_error_set(err, rc, "cannot read backing: %s", strerror(-rc));
            goto out;
        }
        if (progress)
            atomic_store(progress, i * STORE_PIECE_SIZE + store_piece_length(p.size, i));
    }
    rc = store_image_dir_open(store, name, uuid, &dirfd);
    if (rc == 0)
        rc = store_pieces_save_at(dirfd, sha512_hex, &p);
    if (rc < 0)
        bim_error_set(err, rc, "cannot write backing.pieces: %s", strerror(-rc));
out:
    if (dirfd >= 0)
        close(dirfd);
    store_digest_free(&d);
    store_pieces_free(&p);
    free(buf);
    close(fd);
    return rc;
}
