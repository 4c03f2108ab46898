/*
 * test_store_writer.c - writing images (threads, holes, copy, resume, abort,
 * checksums), hashing existing images and scanning a disk.
 */
#include "check.h"
#include "store.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define MiB (1024 * 1024)
#define IMAGE_SIZE (6 * MiB)

static char tmpdir[CHECK_DIR_MAX];
static struct store *store;
static unsigned char *image; /* IMAGE_SIZE bytes: data with zero stretches */
static size_t image_nonzero_blocks;

static void digest_hex(const char *name, const void *buf, size_t len, char *hex)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    EVP_MD *md_type = EVP_MD_fetch(NULL, name, NULL);

    EVP_Digest(buf, len, md, &n, md_type, NULL);
    EVP_MD_free(md_type);
    for (unsigned int i = 0; i < n; i++)
        sprintf(hex + 2 * i, "%02x", md[i]);
    hex[2 * n] = '\0';
}

/* Pseudo-random data, with zero stretches of several shapes: whole 4 KiB
 * blocks, an unaligned stretch, a 1 MiB run and a 1.5 MiB zero tail. */
static void image_build(void)
{
    uint64_t x = 88172645463325252ull;

    image = malloc(IMAGE_SIZE);
    for (size_t i = 0; i < IMAGE_SIZE; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        image[i] = (unsigned char)(x | 1); /* never zero */
    }
    for (size_t off = 64 * 1024; off < 2 * MiB; off += 64 * 1024)
        memset(image + off, 0, 16 * 1024);
    memset(image + 2 * MiB + 1000, 0, 20000); /* not block aligned */
    memset(image + 3 * MiB, 0, MiB);
    memset(image + IMAGE_SIZE - 3 * MiB / 2, 0, 3 * MiB / 2);
    image_nonzero_blocks = 0;
    for (size_t off = 0; off < IMAGE_SIZE; off += 4096) {
        size_t j = 0;
        while (j < 4096 && image[off + j] == 0)
            j++;
        image_nonzero_blocks += j < 4096;
    }
}

static struct store_writer *writer_new(const char *name, const char *uuid, const char *expected,
                                       bool resume)
{
    struct store_checksum sum;
    struct store_cfg cfg = {0};
    struct store_writer *w = NULL;
    struct bim_error err = {0};

    strcpy(cfg.state, "in-progress");
    CHECK_INT(store_checksum_parse(expected, &sum, &err), 0);
    CHECK_INT(store_image_prepare(store, name, uuid, &cfg, &err), 0);
    CHECK(store_writer_open(store, name, uuid, &sum,
                            resume ? STORE_WRITER_RESUME : STORE_WRITER_NEW, &w, &err) == 0,
          "store_writer_open: %s", err.message);
    return w;
}

static bool image_file_exists(const char *name, const char *uuid, const char *file)
{
    char path[4096];

    store_image_path(store, name, uuid, file, path, sizeof(path));
    return access(path, F_OK) == 0;
}

struct piece_job {
    struct store_writer *w;
    size_t start, end, piece;
    int rc;
    const unsigned char *src; /* the image's bytes, or NULL for `image` */
};

static void *piece_thread(void *arg)
{
    struct piece_job *job = arg;

    for (size_t off = job->start; off < job->end && job->rc == 0; off += job->piece) {
        size_t n = job->end - off < job->piece ? job->end - off : job->piece;
        job->rc = store_writer_pwrite(job->w, (job->src ? job->src : image) + off, n, off);
    }
    return NULL;
}

static void test_two_threads_write_commit_and_hash(void)
{
    char sha512[129];
    struct bim_error err = {0};
    struct store_result res, again;
    _Atomic uint64_t progress = 0;
    struct store_writer *w = writer_new("two", "t1", NULL, false);
    struct piece_job a = {w, 0, 3 * MiB, 256 * 1024, 0, NULL};
    struct piece_job b = {w, 3 * MiB, IMAGE_SIZE, 100000, 0, NULL}; /* unaligned pieces */
    pthread_t ta, tb;
    struct stat st;

    if (!w)
        return;
    pthread_create(&tb, NULL, piece_thread, &b);
    pthread_create(&ta, NULL, piece_thread, &a);
    pthread_join(ta, NULL);
    pthread_join(tb, NULL);
    CHECK_INT(a.rc, 0);
    CHECK_INT(b.rc, 0);
    CHECK_INT(store_writer_written(w), IMAGE_SIZE);
    CHECK(store_writer_commit(w, IMAGE_SIZE, "upload", &res, &err) == 0, "commit: %s", err.message);
    digest_hex("SHA512", image, IMAGE_SIZE, sha512);
    CHECK_STR(res.checksum, sha512);
    CHECK_INT(res.format, STORE_FORMAT_RAW);
    CHECK_INT(res.size, IMAGE_SIZE);
    CHECK_INT(res.virtual_size, IMAGE_SIZE);
    CHECK(res.real_size < IMAGE_SIZE && res.real_size <= image_nonzero_blocks * 4096 + 64 * 1024,
          "zero blocks should stay holes: real_size %llu for %zu data blocks",
          (unsigned long long)res.real_size, image_nonzero_blocks);
    CHECK(!image_file_exists("two", "t1", "backing.tmp"), "backing.tmp left after commit");
    CHECK_INT(store_image_stat_backing(store, "two", "t1", &st), 0);
    CHECK_INT(st.st_size, IMAGE_SIZE);

    /* store_image_hash gives the same answer from the file */
    CHECK(store_image_hash(store, "two", "t1", NULL, &progress, &again, &err) == 0, "hash: %s",
          err.message);
    CHECK_STR(again.checksum, sha512);
    CHECK_INT(progress, IMAGE_SIZE);
    CHECK_STR(again.modification_time, res.modification_time);
    CHECK_INT(again.real_size, res.real_size);
}

static void test_out_of_order_pieces_advance_prefix(void)
{
    struct bim_error err = {0};
    struct store_result res;
    struct store_writer *w = writer_new("order", "o1", NULL, false);
    char sha512[129];

    if (!w)
        return;
    /* back to front, 512 KiB at a time: only the last write completes the prefix */
    for (size_t off = IMAGE_SIZE - 512 * 1024;; off -= 512 * 1024) {
        CHECK_INT(store_writer_pwrite(w, image + off, 512 * 1024, off), 0);
        if (off > 0)
            CHECK_INT(store_writer_written(w), 0);
        if (off == 0)
            break;
    }
    CHECK_INT(store_writer_written(w), IMAGE_SIZE);
    for (int i = 0; i < 500 && store_writer_hashed(w) < IMAGE_SIZE; i++)
        usleep(10000);
    CHECK_INT(store_writer_hashed(w), IMAGE_SIZE); /* hashed before commit */
    CHECK(store_writer_commit(w, IMAGE_SIZE, "upload", &res, &err) == 0, "commit: %s", err.message);
    digest_hex("SHA512", image, IMAGE_SIZE, sha512);
    CHECK_STR(res.checksum, sha512);
}

static void test_wrong_checksum_is_a_mismatch(void)
{
    char wrong[129], want[400], sha512[129];
    struct bim_error err = {0};
    struct store_result res;
    struct store_writer *w;

    memset(wrong, 'a', 128);
    wrong[128] = '\0';
    w = writer_new("bad", "b1", wrong, false);
    if (!w)
        return;
    CHECK_INT(store_writer_pwrite(w, image, MiB, 0), 0);
    CHECK_INT(store_writer_commit(w, MiB, "upload", &res, &err), -EINVAL);
    digest_hex("SHA512", image, MiB, sha512);
    snprintf(want, sizeof(want), "checksum mismatch: expected %s, got %s", wrong, sha512);
    CHECK_STR(err.message, want);
    CHECK(!image_file_exists("bad", "b1", "backing"), "backing exists after a mismatch");
    store_writer_abort(w);
    CHECK(!image_file_exists("bad", "b1", "backing.tmp"), "backing.tmp left after abort");
}

static void test_sha256_expectation(void)
{
    char sha256[65], expected[80], wrong[80], want[300];
    struct bim_error err = {0};
    struct store_result res;
    struct store_writer *w;

    digest_hex("SHA256", image, 2 * MiB, sha256);
    snprintf(expected, sizeof(expected), "sha256:%s", sha256);
    w = writer_new("s256", "s1", expected, false);
    if (!w)
        return;
    CHECK_INT(store_writer_pwrite(w, image, 2 * MiB, 0), 0);
    CHECK(store_writer_commit(w, 2 * MiB, "upload", &res, &err) == 0, "commit: %s", err.message);

    snprintf(wrong, sizeof(wrong), "sha256:%064d", 0);
    w = writer_new("s256bad", "s2", wrong, false);
    if (!w)
        return;
    CHECK_INT(store_writer_pwrite(w, image, 2 * MiB, 0), 0);
    CHECK_INT(store_writer_commit(w, 2 * MiB, "upload", &res, &err), -EINVAL);
    snprintf(want, sizeof(want), "checksum mismatch: expected %s, got %s", wrong, sha256);
    CHECK_STR(err.message, want);
    store_writer_abort(w);
}

static void test_ready_cfg_after_commit(void)
{
    static struct store_cfg cfg;
    char path[4096], text[16384] = "";
    FILE *f;

    store_image_path(store, "s256", "s1", "backing.cfg", path, sizeof(path));
    f = fopen(path, "r");
    CHECK(f != NULL, "no cfg at %s", path);
    if (f) {
        if (!fgets(text, sizeof(text), f))
            text[0] = '\0';
        fclose(f);
    }
    CHECK_INT(store_cfg_parse(text, strlen(text), &cfg, NULL), 0);
    CHECK_STR(cfg.state, "ready");
    CHECK_STR(cfg.format, "raw");
    CHECK_STR(cfg.source, "upload");
    CHECK(strncmp(cfg.expected_checksum, "sha256:", 7) == 0,
          "expectedChecksum should be the canonical sha256 text, got \"%s\"",
          cfg.expected_checksum);
    CHECK_INT(strlen(cfg.current_checksum), 128);
    CHECK_INT(cfg.size, 2 * MiB);
    store_cfg_clear(&cfg);
}

static void test_skipped_tail_is_zeros(void)
{
    struct bim_error err = {0};
    struct store_result res;
    struct store_writer *w = writer_new("skip", "k1", NULL, false);
    unsigned char *buf = calloc(1, 4 * MiB);
    char sha512[129];

    if (!w || !buf)
        return;
    memcpy(buf, image, MiB);
    CHECK_INT(store_writer_skip(w, MiB, 3 * MiB), 0);
    CHECK_INT(store_writer_written(w), 0);
    CHECK_INT(store_writer_pwrite(w, image, MiB, 0), 0);
    CHECK_INT(store_writer_written(w), 4 * MiB);
    CHECK(store_writer_commit(w, 4 * MiB, "sync:h:1", &res, &err) == 0, "commit: %s", err.message);
    digest_hex("SHA512", buf, 4 * MiB, sha512);
    CHECK_STR(res.checksum, sha512);
    CHECK_INT(res.st.st_size, 4 * MiB);
    free(buf);
}

static void test_incomplete_data_is_refused(void)
{
    struct bim_error err = {0};
    struct store_result res;
    struct store_writer *w = writer_new("part", "p1", NULL, false);

    if (!w)
        return;
    CHECK_INT(store_writer_pwrite(w, image, MiB, 0), 0);
    CHECK_INT(store_writer_pwrite(w, image + 2 * MiB, MiB, 2 * MiB), 0);
    CHECK_INT(store_writer_commit(w, 3 * MiB, "upload", &res, &err), -EINVAL);
    CHECK(strstr(err.message, "incomplete data") != NULL, "message: \"%s\"", err.message);
    CHECK(!image_file_exists("part", "p1", "backing"), "backing exists after a refused commit");
    store_writer_abort(w);
    CHECK(!image_file_exists("part", "p1", "backing.tmp"), "backing.tmp left after abort");
}

static void copy_check(const char *name, int src_fd)
{
    struct bim_error err = {0};
    struct store_result res;
    struct store_writer *w = writer_new(name, "c1", NULL, false);
    char sha512[129];

    if (!w)
        return;
    CHECK_INT(store_writer_copy_fd(w, src_fd, 4096, IMAGE_SIZE - 4096, 4096), 0);
    CHECK_INT(store_writer_written(w), 0);
    CHECK_INT(store_writer_copy_fd(w, src_fd, 0, 4096, 0), 0);
    CHECK(store_writer_commit(w, IMAGE_SIZE, "upload", &res, &err) == 0, "%s commit: %s", name,
          err.message);
    digest_hex("SHA512", image, IMAGE_SIZE, sha512);
    CHECK_STR(res.checksum, sha512);
}

static void test_copy_fd_from_file_and_memfd(void)
{
    char path[128];
    int fd;

    snprintf(path, sizeof(path), "%s/source.img", tmpdir);
    fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
    CHECK(fd >= 0 && write(fd, image, IMAGE_SIZE) == IMAGE_SIZE, "cannot write %s", path);
    copy_check("copyfile", fd); /* same file system: copy_file_range */
    close(fd);
    unlink(path);

    fd = memfd_create("src", 0); /* another file system: EXDEV, read+pwrite */
    CHECK(fd >= 0 && write(fd, image, IMAGE_SIZE) == IMAGE_SIZE, "cannot fill the memfd");
    copy_check("copymemfd", fd);
    close(fd);
}

static void test_resume_keeps_and_rehashes_tmp(void)
{
    struct bim_error err = {0};
    struct store_result res;
    struct store_writer *w;
    char path[4096], sha512[129];
    int fd;

    /* a backing.tmp left by an earlier run holding the first 2.5 MiB */
    w = writer_new("resume", "r1", NULL, false);
    if (!w)
        return;
    store_writer_abort(w);
    store_image_path(store, "resume", "r1", "backing.tmp", path, sizeof(path));
    fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    CHECK(fd >= 0 && write(fd, image, 5 * MiB / 2) == 5 * MiB / 2, "cannot write %s", path);
    close(fd);

    w = writer_new("resume", "r1", NULL, true);
    if (!w)
        return;
    CHECK_INT(store_writer_written(w), 5 * MiB / 2);
    CHECK_INT(store_writer_pwrite(w, image + 5 * MiB / 2, IMAGE_SIZE - 5 * MiB / 2, 5 * MiB / 2),
              0);
    CHECK(store_writer_commit(w, IMAGE_SIZE, "upload", &res, &err) == 0, "commit: %s", err.message);
    digest_hex("SHA512", image, IMAGE_SIZE, sha512);
    CHECK_STR(res.checksum, sha512);
    CHECK_STR(res.verified, STORE_VERIFIED_SHA512);
}

static void test_trusted_checksum(void)
{
    char sha512[129], wrong[129];
    struct bim_error err = {0};
    struct store_result res;
    struct store_writer *w = writer_new("trust", "u1", NULL, false);

    if (!w)
        return;
    digest_hex("SHA512", image, MiB, sha512);
    store_writer_trust_checksum(w, sha512, STORE_VERIFIED_PIECES);
    CHECK_INT(store_writer_pwrite(w, image, MiB, 0), 0);
    CHECK(store_writer_commit(w, MiB, "clone:two", &res, &err) == 0, "commit: %s", err.message);
    CHECK_STR(res.checksum, sha512);
    CHECK_STR(res.verified, STORE_VERIFIED_PIECES);
    {
        struct store_cfg cfg;

        CHECK_INT(store_image_load_cfg(store, "trust", "u1", &cfg, &err), 0);
        CHECK_STR(cfg.verified, STORE_VERIFIED_PIECES);
        CHECK_STR(cfg.last_scrub, "");
        CHECK(cfg.ready_time[0] != '\0', "a committed cfg has no readyTime");
        store_cfg_clear(&cfg);
    }

    memset(wrong, 'b', 128);
    wrong[128] = '\0';
    w = writer_new("trustbad", "u2", wrong, false);
    if (!w)
        return;
    store_writer_trust_checksum(w, sha512, STORE_VERIFIED_SHA512);
    CHECK_INT(store_writer_pwrite(w, image, MiB, 0), 0);
    CHECK_INT(store_writer_commit(w, MiB, "clone:two", &res, &err), -EINVAL);
    CHECK(strstr(err.message, "checksum mismatch") != NULL, "message: \"%s\"", err.message);
    store_writer_abort(w);
}

/* With O_DIRECT (store_writer_direct), aligned runs go around the page
 * cache, unaligned ones through it, zero blocks stay holes: the file holds
 * the image's bytes, as the SHA-512 of a re-read of it shows. */
static void test_direct_writes_keep_bytes_and_holes(void)
{
    char sha512[129];
    struct bim_error err = {0};
    struct store_result res, again;
    _Atomic uint64_t progress = 0;
    struct store_writer *w = writer_new("direct", "d1", NULL, false);
    unsigned char *aligned = NULL;
    struct piece_job a = {w, 0, 3 * MiB, 256 * 1024, 0, NULL};
    struct piece_job b = {w, 3 * MiB, IMAGE_SIZE, 100000, 0, NULL}; /* unaligned pieces */
    pthread_t ta, tb;

    if (!w)
        return;
    CHECK_INT(posix_memalign((void **)&aligned, 4096, IMAGE_SIZE), 0);
    memcpy(aligned, image, IMAGE_SIZE);
    digest_hex("SHA512", image, IMAGE_SIZE, sha512);
    store_writer_trust_checksum(w, sha512, STORE_VERIFIED_PIECES);
    CHECK_INT(store_writer_direct(w), 0);
    a.w = b.w = w;
    a.src = b.src = aligned;
    pthread_create(&tb, NULL, piece_thread, &b);
    pthread_create(&ta, NULL, piece_thread, &a);
    pthread_join(ta, NULL);
    pthread_join(tb, NULL);
    CHECK_INT(a.rc, 0);
    CHECK_INT(b.rc, 0);
    CHECK(store_writer_commit(w, IMAGE_SIZE, "sync", &res, &err) == 0, "commit: %s", err.message);
    CHECK(res.real_size < IMAGE_SIZE && res.real_size <= image_nonzero_blocks * 4096 + 64 * 1024,
          "zero blocks should stay holes: real_size %llu for %zu data blocks",
          (unsigned long long)res.real_size, image_nonzero_blocks);
    /* the trusted checksum says nothing of the bytes: hash the file */
    CHECK(store_image_hash(store, "direct", "d1", NULL, &progress, &again, &err) == 0, "hash: %s",
          err.message);
    CHECK_STR(again.checksum, sha512);
    free(aligned);
}

static void test_hash_can_be_cancelled(void)
{
    struct bim_error err = {0};
    struct store_result res;
    atomic_bool cancel = true;

    CHECK_INT(store_image_hash(store, "two", "t1", &cancel, NULL, &res, &err), -ECANCELED);
}

/* ---- scan ---- */

struct scan_seen {
    int count;
    bool two_found, two_matches, resume_has_tmp, junk_reported;
};

static void scan_cb(void *ctx, const struct store_entry *e)
{
    struct scan_seen *seen = ctx;
    const char *name = e->name, *uuid = e->uuid;

    seen->count++;
    if (strcmp(name, "two") == 0 && strcmp(uuid, "t1") == 0) {
        seen->two_found = true;
        seen->two_matches = e->has_backing && e->matches_cfg;
    }
    if (strcmp(name, "part") == 0)
        seen->resume_has_tmp = e->has_tmp;
    if (strstr(name, "junk"))
        seen->junk_reported = true;
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");

    CHECK(f != NULL, "cannot create %s", path);
    if (f) {
        fputs(text, f);
        fclose(f);
    }
}

static void test_scan_reports_images_and_leaves_others_alone(void)
{
    const char *junk[] = {"junk-nocfg", "junk-corrupt", "junk-mismatch", "junk_bad-name"};
    struct scan_seen seen = {0};
    char path[512];
    struct timespec times[2] = {{0, UTIME_OMIT}, {12345, 0}};

    for (size_t i = 0; i < 4; i++) {
        snprintf(path, sizeof(path), "%s/backing-images/%s", tmpdir, junk[i]);
        mkdir(path, 0755);
    }
    /* a backing without a cfg may be someone's data: never removed */
    snprintf(path, sizeof(path), "%s/backing-images/junk-nocfg/backing", tmpdir);
    write_file(path, "data");
    snprintf(path, sizeof(path), "%s/backing-images/junk-corrupt/backing.cfg", tmpdir);
    write_file(path, "{\"uuid\":");
    snprintf(path, sizeof(path), "%s/backing-images/junk-mismatch/backing.cfg", tmpdir);
    write_file(path, "{\"uuid\":\"other\"}");
    snprintf(path, sizeof(path), "%s/backing-images/junk_bad-name/backing.cfg", tmpdir);
    write_file(path, "{\"uuid\":\"name\"}"); /* "junk_bad" is a fine name: reported */
    snprintf(path, sizeof(path), "%s/backing-images/part-p1/backing.tmp", tmpdir);
    write_file(path, "x");

    CHECK_INT(store_scan(store, scan_cb, &seen), 0);
    CHECK(seen.two_found && seen.two_matches, "two-t1 found %d, matches_cfg %d", seen.two_found,
          seen.two_matches);
    CHECK(seen.resume_has_tmp, "part-p1's backing.tmp not reported");
    CHECK(seen.junk_reported, "junk_bad-name with uuid \"name\" should be an image");
    for (size_t i = 0; i < 3; i++) {
        snprintf(path, sizeof(path), "%s/backing-images/%s", tmpdir, junk[i]);
        CHECK(access(path, F_OK) == 0, "scan removed %s", path);
    }

    /* a changed mtime makes the cfg stale */
    snprintf(path, sizeof(path), "%s/backing-images/two-t1/backing", tmpdir);
    utimensat(AT_FDCWD, path, times, 0);
    memset(&seen, 0, sizeof(seen));
    CHECK_INT(store_scan(store, scan_cb, &seen), 0);
    CHECK(seen.two_found && !seen.two_matches, "a touched backing should not match its cfg");
}

int main(void)
{
    struct bim_error err = {0};
    if (check_dir_make(tmpdir, "writer") < 0)
        return 1;
    if (store_open(tmpdir, &store, &err) < 0) {
        fprintf(stderr, "store_open: %s\n", err.message);
        return 1;
    }
    image_build();
    RUN(test_two_threads_write_commit_and_hash);
    RUN(test_out_of_order_pieces_advance_prefix);
    RUN(test_wrong_checksum_is_a_mismatch);
    RUN(test_sha256_expectation);
    RUN(test_ready_cfg_after_commit);
    RUN(test_skipped_tail_is_zeros);
    RUN(test_incomplete_data_is_refused);
    RUN(test_copy_fd_from_file_and_memfd);
    RUN(test_resume_keeps_and_rehashes_tmp);
    RUN(test_trusted_checksum);
    RUN(test_direct_writes_keep_bytes_and_holes);
    RUN(test_hash_can_be_cancelled);
    RUN(test_scan_reports_images_and_leaves_others_alone);
    store_close(store);
    free(image);
    check_dir_remove(tmpdir);
    return check_exit();
}
