/*
 * test_store_pieces.c - piece digests (SPEC §9): computed by the writer while
 * it writes (data, holes, a short last piece, out-of-order ranges), kept in
 * backing.pieces with the image, refused when stale or corrupt, computed
 * again from an adopted backing, and the digests checked against OpenSSL's
 * one-shot SHA-256 of the bytes (holes as zeros); a receiver's pieces
 * (pending writes, discard, trusted digests, a kept backing.tmp judged
 * piece by piece); a writer fed through its ring of buffers (store/ring.c),
 * from the start and after a kept prefix.
 */
#include "check.h"
#include "store.h"

#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#define MiB (1024u * 1024u)
#define PIECE (4 * MiB)
/* 3 whole pieces and a short one: data, a hole piece, data with a hole
 * inside, a short tail of data */
#define IMAGE_SIZE (3 * PIECE + MiB + 512)

static char tmpdir[CHECK_DIR_MAX];
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
    CHECK(store_writer_open(store, name, uuid, NULL, STORE_WRITER_NEW, &w, &err) == 0,
          "store_writer_open: %s", err.message);
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

/* The manifest a receiver would have: OpenSSL's digests of the image. */
static void manifest_of_image(struct store_pieces *m)
{
    CHECK_INT(store_pieces_alloc(m, IMAGE_SIZE), 0);
    for (uint64_t i = 0; i < m->count; i++)
        sha256_of(image + i * PIECE, store_piece_length(IMAGE_SIZE, i), m->sha256[i]);
}

static void test_pending_pieces_count_only_once_marked(void)
{
    struct store_writer *w = writer_new("recv", "r1");
    struct store_piece_hash *h = NULL;
    struct store_pieces m, p;
    struct store_result res;
    struct bim_error err = {0};
    unsigned char *junk = malloc(PIECE);
    uint8_t d[32];

    manifest_of_image(&m);
    CHECK_INT(store_writer_trust_pieces(w, &m, NULL), 0);
    /* piece 0 arrives wrong first: written, checked, dropped */
    memset(junk, 0x77, PIECE);
    CHECK_INT(store_writer_pwrite_pending(w, junk, PIECE, 0), 0);
    CHECK_INT(store_writer_written(w), 0);
    CHECK_INT(store_piece_hash_open(&h), 0);
    CHECK_INT(store_piece_hash_update(h, junk, PIECE / 2), 0);
    CHECK_INT(store_piece_hash_update(h, junk + PIECE / 2, PIECE / 2), 0);
    CHECK_INT(store_piece_hash_final(h, d), 0);
    CHECK(memcmp(d, m.sha256[0], 32) != 0, "a junk piece matched");
    CHECK_INT(store_writer_discard(w, 0, PIECE), 0);
    /* then right: streamed digest equals the manifest's, marked */
    CHECK_INT(store_piece_hash_reset(h), 0);
    CHECK_INT(store_piece_hash_update(h, image, PIECE), 0);
    CHECK_INT(store_piece_hash_final(h, d), 0);
    CHECK(memcmp(d, m.sha256[0], 32) == 0, "the streamed digest differs from OpenSSL's");
    CHECK_INT(store_writer_pwrite_pending(w, image, PIECE, 0), 0);
    CHECK_INT(store_writer_skip(w, 0, PIECE), 0);
    CHECK_INT(store_writer_written(w), PIECE);
    CHECK_INT(store_writer_skip(w, PIECE, PIECE), 0); /* the hole piece */
    CHECK_INT(store_writer_pwrite_pending(w, image + 2 * PIECE, IMAGE_SIZE - 2 * PIECE, 2 * PIECE),
              0);
    CHECK_INT(store_writer_skip(w, 2 * PIECE, IMAGE_SIZE - 2 * PIECE), 0);
    CHECK(store_writer_commit(w, IMAGE_SIZE, "sync:x:1", &res, &err) == 0, "commit: %s",
          err.message);
    CHECK_INT(store_image_load_pieces(store, "recv", "r1", IMAGE_SIZE, res.checksum, &p), 0);
    check_pieces(&p, "trusted");
    store_pieces_free(&p);
    store_pieces_free(&m);
    store_piece_hash_close(h);
    free(junk);
}

static void test_kept_tmp_is_judged_piece_by_piece(void)
{
    struct store_writer *w = writer_new("kept", "k1");
    struct store_pieces m;
    struct bim_error err = {0};
    bool has_data, match;
    unsigned char *bad = malloc(PIECE);

    manifest_of_image(&m);
    /* what a cut sync left: piece 0 right, piece 2 half written, the tail wrong */
    memcpy(bad, image + 3 * PIECE, IMAGE_SIZE - 3 * PIECE);
    bad[10] ^= 1;
    CHECK_INT(store_writer_pwrite_pending(w, image, PIECE, 0), 0);
    CHECK_INT(store_writer_pwrite_pending(w, image + 2 * PIECE, MiB, 2 * PIECE), 0);
    CHECK_INT(store_writer_pwrite_pending(w, bad, IMAGE_SIZE - 3 * PIECE, 3 * PIECE), 0);
    store_writer_close(w);
    CHECK_INT(store_writer_open(store, "kept", "k1", NULL, STORE_WRITER_KEEP, &w, &err), 0);
    CHECK_INT(store_writer_written(w), 0);
    CHECK_INT(store_writer_piece_check(w, IMAGE_SIZE, 0, m.sha256[0], &has_data, &match), 0);
    CHECK(has_data && match, "piece 0: data %d match %d", has_data, match);
    CHECK_INT(store_writer_piece_check(w, IMAGE_SIZE, 1, m.sha256[1], &has_data, &match), 0);
    CHECK(!has_data && match, "the hole piece: data %d match %d", has_data, match);
    CHECK_INT(store_writer_piece_check(w, IMAGE_SIZE, 2, m.sha256[2], &has_data, &match), 0);
    CHECK(has_data && !match, "the half piece: data %d match %d", has_data, match);
    CHECK_INT(store_writer_piece_check(w, IMAGE_SIZE, 3, m.sha256[3], &has_data, &match), 0);
    CHECK(has_data && !match, "the wrong tail: data %d match %d", has_data, match);
    CHECK_INT(store_writer_discard(w, 2 * PIECE, PIECE), 0);
    CHECK_INT(store_writer_piece_check(w, IMAGE_SIZE, 2, m.sha256[2], &has_data, &match), 0);
    CHECK(!has_data && !match, "a discarded piece: data %d match %d", has_data, match);
    store_writer_abort(w);
    store_pieces_free(&m);
    free(bad);
}

/* ---- the ring (store/ring.c) ---- */

static void sha512_hex_of(const void *buf, size_t len, char hex[129])
{
    uint8_t md[64];
    unsigned int n = 0;

    EVP_Digest(buf, len, md, &n, EVP_sha512(), NULL);
    for (unsigned int i = 0; i < n; i++)
        sprintf(hex + 2 * i, "%02x", md[i]);
}

/* Append image[from, IMAGE_SIZE) through the ring in slices of `slice`
 * bytes (one whole buffer first): many more slices than buffers, so each
 * buffer is filled again only after both hashers are past it. */
static void ring_append(struct store_writer *w, uint64_t from, size_t slice)
{
    bool first = true;

    CHECK_INT(store_writer_ring_start(w), 0);
    while (from < IMAGE_SIZE) {
        size_t n = first ? STORE_RING_CHUNK : slice;
        void *buf = NULL;

        if (n > IMAGE_SIZE - from)
            n = (size_t)(IMAGE_SIZE - from);
        CHECK_INT(store_writer_ring_buffer(w, &buf, NULL), 0);
        if (!buf)
            return;
        memcpy(buf, image + from, n);
        CHECK_INT(store_writer_ring_write(w, n), 0);
        CHECK_INT(store_writer_written(w), from + n);
        from += n;
        first = false;
    }
}

/* The committed image: its SHA-512 and piece digests are those of the
 * bytes, the file holds them, and the hole piece stayed a hole. */
static void check_committed(const char *name, const char *uuid, const struct store_result *res)
{
    char want[129], path[512];
    struct store_pieces p;
    unsigned char *back = malloc(IMAGE_SIZE);
    struct stat st;
    int fd;

    sha512_hex_of(image, IMAGE_SIZE, want);
    CHECK_STR(res->checksum, want);
    CHECK_INT(store_image_load_pieces(store, name, uuid, IMAGE_SIZE, res->checksum, &p), 0);
    check_pieces(&p, name);
    store_pieces_free(&p);
    store_image_path(store, name, uuid, "backing", path, sizeof(path));
    fd = open(path, O_RDONLY);
    CHECK(fd >= 0 && pread(fd, back, IMAGE_SIZE, 0) == IMAGE_SIZE, "%s: cannot read back", name);
    CHECK(memcmp(back, image, IMAGE_SIZE) == 0, "%s: the file's bytes differ", name);
    CHECK(fstat(fd, &st) == 0 && (uint64_t)st.st_blocks * 512 < IMAGE_SIZE - 2 * MiB,
          "%s: the zero piece should stay a hole (%lld blocks)", name, (long long)st.st_blocks);
    close(fd);
    free(back);
}

static void test_ring_hashes_from_its_buffers(void)
{
    struct store_writer *w = writer_new("ring", "r1");
    struct store_result res;
    struct bim_error err = {0};
    void *buf = NULL;

    CHECK_INT(store_writer_ring_buffer(w, &buf, NULL), -EINVAL); /* not started */
    ring_append(w, 0, 100000);
    CHECK(store_writer_commit(w, IMAGE_SIZE, "download", &res, &err) == 0, "commit: %s",
          err.message);
    check_committed("ring", "r1", &res);
}

/* A resumed writer: the prefix the file kept (ending inside a piece, not on
 * a block) is hashed from the file, the rest from the ring. */
static void test_ring_after_a_kept_prefix(void)
{
    const uint64_t kept = PIECE + MiB + 123;
    struct store_writer *w = writer_new("ringkept", "k2");
    struct store_result res;
    struct bim_error err = {0};

    CHECK_INT(store_writer_pwrite(w, image, kept, 0), 0);
    store_writer_close(w);
    CHECK_INT(store_writer_open(store, "ringkept", "k2", NULL, STORE_WRITER_RESUME, &w, &err), 0);
    CHECK_INT(store_writer_written(w), kept);
    ring_append(w, kept, 3 * MiB / 4);
    CHECK(store_writer_commit(w, IMAGE_SIZE, "download", &res, &err) == 0, "commit: %s",
          err.message);
    check_committed("ringkept", "k2", &res);
}

/* A producer waiting for a buffer that a hasher still needs gives up when
 * cancelled: the SHA-512 of a 4 GiB prefix of zeros takes seconds, filling
 * the 8 buffers behind it milliseconds. */
static void test_ring_wait_ends_on_cancel(void)
{
    struct store_writer *w = writer_new("ringcancel", "c1");
    atomic_bool cancel = false;
    void *buf = NULL, *before;

    CHECK_INT(store_writer_skip(w, 0, 4ull << 30), 0);
    CHECK_INT(store_writer_ring_start(w), 0);
    for (int i = 0; i < 8; i++) {
        CHECK_INT(store_writer_ring_buffer(w, &buf, &cancel), 0);
        memset(buf, 'c', STORE_RING_CHUNK);
        CHECK_INT(store_writer_ring_write(w, STORE_RING_CHUNK), 0);
    }
    atomic_store(&cancel, true);
    before = buf;
    CHECK_INT(store_writer_ring_buffer(w, &buf, &cancel), -ECANCELED);
    CHECK(buf == before, "a cancelled wait leaves the buffer pointer as it was");
    CHECK(store_writer_hashed(w) < 4ull << 30,
          "the hasher was not behind: the test proves nothing");
    store_writer_abort(w);
}

/* A ring write past the max size is refused before the hashers see it. */
static void test_ring_refuses_past_the_max_size(void)
{
    uint64_t max = store_max_size(store);
    struct store_writer *w;
    void *buf = NULL;

    store_set_max_size(store, 2 * MiB);
    w = writer_new("ringmax", "m1");
    CHECK_INT(store_writer_ring_start(w), 0);
    for (int i = 0; i < 2; i++) {
        CHECK_INT(store_writer_ring_buffer(w, &buf, NULL), 0);
        CHECK_INT(store_writer_ring_write(w, MiB), 0);
    }
    CHECK_INT(store_writer_ring_buffer(w, &buf, NULL), 0);
    CHECK_INT(store_writer_ring_write(w, 1), -EFBIG);
    CHECK_STR(store_writer_strerror(w, -EFBIG), "image larger than --max-size (2097152 bytes)");
    CHECK_INT(store_writer_hashed(w) <= 2 * MiB, 1);
    store_writer_abort(w);
    store_set_max_size(store, max);
}

int main(void)
{
    struct bim_error err = {0};
    if (check_dir_make(tmpdir, "pieces") < 0)
        return 1;
    if (store_open(tmpdir, &store, &err) < 0) {
        fprintf(stderr, "store_open: %s\n", err.message);
        return 1;
    }
    image_build();
    RUN(test_writer_computes_and_keeps_the_digests);
    RUN(test_hole_piece_digest_is_that_of_zeros);
    RUN(test_stale_or_corrupt_digests_are_refused);
    RUN(test_aborted_writer_keeps_no_digests);
    RUN(test_pending_pieces_count_only_once_marked);
    RUN(test_kept_tmp_is_judged_piece_by_piece);
    RUN(test_ring_hashes_from_its_buffers);
    RUN(test_ring_after_a_kept_prefix);
    RUN(test_ring_refuses_past_the_max_size);
    RUN(test_ring_wait_ends_on_cancel);
    store_close(store);
    free(image);
    check_dir_remove(tmpdir);
    return check_exit();
}
