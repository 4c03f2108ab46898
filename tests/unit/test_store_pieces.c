/*
 * test_store_pieces.c - piece digests (SPEC §9): computed by the writer while
 * it writes (data, holes, a short last piece, out-of-order ranges), kept in
 * backing.pieces with the image, refused when stale or corrupt, computed
 * again from an adopted backing, and the digests checked against OpenSSL's
 * one-shot SHA-256 of the bytes (holes as zeros).
 */
#include "check.h"
#include "store.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#define MiB (1024u * 1024u)
#define PIECE (4 * MiB)
/* 3 whole pieces and a short one: data, a hole piece, data with a hole
 * inside, a short tail of data */
#define IMAGE_SIZE (3 * PIECE + MiB + 512)

static char tmpdir[64];
static struct store *store;
static unsigned char *image;

static void sha256_of(const void *buf, size_t len, uint8_t out[32])
{
    unsigned int n = 0;

    EVP_Digest(buf, len, out, &n, EVP_sha256(), NULL);
}

static void image_build(void)
{
    uint64_t x = 0x9e3779b97f4a7c15ull;

    image = calloc(1, IMAGE_SIZE);
    for (size_t i = 0; i < IMAGE_SIZE; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        image[i] = (unsigned char)(x | 1);
    }
    memset(image + PIECE, 0, PIECE);             /* piece 1: all zeros */
    memset(image + 2 * PIECE + MiB, 0, 2 * MiB); /* a hole inside piece 2 */
}

static struct store_writer *writer_new(const char *name, const char *uuid)
{
    struct store_cfg cfg = {0};
    struct store_writer *w = NULL;
    struct bim_error err = {0};

    strcpy(cfg.state, "in-progress");
    CHECK_INT(store_image_prepare(store, name, uuid, &cfg, &err), 0);
    CHECK(store_writer_open(store, name, uuid, NULL, STORE_WRITER_NEW, &w, &err) == 0, "store_writer_open: %s",
          err.message);
    return w;
}

/* The digests OpenSSL gives for the image's pieces match p. */
static void check_pieces(const struct store_pieces *p, const char *what)
{
    CHECK_INT(p->size, IMAGE_SIZE);
    CHECK_INT(p->count, 4);
    for (uint64_t i = 0; i < p->count && p->sha256; i++) {
        uint8_t want[32];

        sha256_of(image + i * PIECE, store_piece_length(IMAGE_SIZE, i), want);
        CHECK(memcmp(p->sha256[i], want, 32) == 0, "%s: piece %llu has the wrong digest", what,
              (unsigned long long)i);
    }
}

/* Write the image out of order: the tail first, the hole piece skipped. */
static void write_image(struct store_writer *w)
{
    CHECK_INT(store_writer_pwrite(w, image + 2 * PIECE, IMAGE_SIZE - 2 * PIECE, 2 * PIECE), 0);
    CHECK_INT(store_writer_skip(w, PIECE, PIECE), 0);
    CHECK_INT(store_writer_pwrite(w, image, PIECE, 0), 0);
}

static void test_writer_computes_and_keeps_the_digests(void)
{
    struct store_writer *w = writer_new("img", "u1");
    struct store_result res;
    struct store_pieces p;
    struct bim_error err = {0};
    uint8_t d[32];
    char path[512];
    struct stat st;

    write_image(w);
    /* the whole pieces get their digests before commit; the short one waits */
    for (int i = 0; i < 10000 && store_writer_pieced(w) < 3 * PIECE; i++)
        usleep(1000);
    CHECK_INT(store_writer_pieced(w), 3 * PIECE);
    CHECK_INT(store_writer_piece_digest(w, 1, d), 0);
    CHECK_INT(store_writer_piece_digest(w, 3, d), -ENODATA);
    CHECK(store_writer_commit(w, IMAGE_SIZE, "upload", &res, &err) == 0, "commit: %s", err.message);
    CHECK_INT(store_image_load_pieces(store, "img", "u1", IMAGE_SIZE, res.checksum, &p), 0);
    check_pieces(&p, "written");
    store_pieces_free(&p);
    store_image_path(store, "img", "u1", STORE_PIECES, path, sizeof(path));
    CHECK(stat(path, &st) == 0 && st.st_size == 88 + 4 * 32 + 32, "backing.pieces: %lld bytes",
          (long long)st.st_size);
}

static void test_hole_piece_digest_is_that_of_zeros(void)
{
    static unsigned char zeros[PIECE];
    uint8_t want[32], got[32];

    sha256_of(zeros, PIECE, want);
    CHECK_INT(store_piece_zero_digest(PIECE, got), 0);
    CHECK(memcmp(want, got, 32) == 0, "the zero piece digest is wrong");
    sha256_of(zeros, 1000, want);
    CHECK_INT(store_piece_zero_digest(1000, got), 0);
    CHECK(memcmp(want, got, 32) == 0, "the digest of 1000 zeros is wrong");
}

static void test_stale_or_corrupt_digests_are_refused(void)
{
    char path[512], other[129];
    struct store_result res;
    struct store_pieces p;
    struct bim_error err = {0};
    struct store_writer *w = writer_new("stale", "s1");
    int fd;

    write_image(w);
    CHECK(store_writer_commit(w, IMAGE_SIZE, "upload", &res, &err) == 0, "commit: %s", err.message);
    memset(other, 'a', 128);
    other[128] = '\0';
    CHECK_INT(store_image_load_pieces(store, "stale", "s1", IMAGE_SIZE, other, &p), -ESTALE);
    CHECK_INT(store_image_load_pieces(store, "stale", "s1", IMAGE_SIZE - 1, res.checksum, &p),
              -ESTALE);
    /* flip one byte of a digest: the trailer no longer matches */
    store_image_path(store, "stale", "s1", STORE_PIECES, path, sizeof(path));
    fd = open(path, O_RDWR);
    CHECK(fd >= 0 && pwrite(fd, "X", 1, 100) == 1, "cannot write %s", path);
    if (fd >= 0)
        close(fd);
    CHECK_INT(store_image_load_pieces(store, "stale", "s1", IMAGE_SIZE, res.checksum, &p), -ESTALE);

    /* computed again from backing, as for an adopted image */
    CHECK(store_image_compute_pieces(store, "stale", "s1", res.checksum, NULL, NULL, &err) == 0,
          "compute: %s", err.message);
    CHECK_INT(store_image_load_pieces(store, "stale", "s1", IMAGE_SIZE, res.checksum, &p), 0);
    check_pieces(&p, "computed");
    store_pieces_free(&p);

    unlink(path);
    CHECK_INT(store_image_load_pieces(store, "stale", "s1", IMAGE_SIZE, res.checksum, &p), -ENOENT);
}

static void test_aborted_writer_keeps_no_digests(void)
{
    struct store_writer *w = writer_new("gone", "g1");
    char path[512];

    write_image(w);
    store_writer_abort(w);
    store_image_path(store, "gone", "g1", STORE_PIECES, path, sizeof(path));
    CHECK(access(path, F_OK) != 0, "an aborted writer left %s", path);
}

int main(void)
{
    struct bim_error err = {0};
    char cmd[128];

    strcpy(tmpdir, "/tmp/bimfs-pieces-XXXXXX");
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 1;
    }
    if (store_open(tmpdir, &store, &err) < 0) {
        fprintf(stderr, "store_open: %s\n", err.message);
        return 1;
    }
    image_build();
    RUN(test_writer_computes_and_keeps_the_digests);
    RUN(test_hole_piece_digest_is_that_of_zeros);
    RUN(test_stale_or_corrupt_digests_are_refused);
    RUN(test_aborted_writer_keeps_no_digests);
    store_close(store);
    free(image);
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0)
        fprintf(stderr, "cannot remove %s\n", tmpdir);
    return check_exit();
}
