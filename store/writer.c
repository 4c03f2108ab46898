/*
 * writer.c - writing backing.tmp: open/abort, pwrite with zero-block
 * skipping, copy_file_range, skip, and the bookkeeping of completed ranges
 * that tells the hasher and the piece thread (pieces_hasher.c) how far the
 * contiguous written prefix reaches.
 *
 * Threads: pwrite/copy_fd/skip may run in several threads at once (disjoint
 * ranges); the hasher thread (hasher.c) reads what they wrote. w->lock
 * guards written, ranges, size_claim and the hasher flags; the file data
 * itself is written without the lock.
 */
#include "store_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define BLOCK 4096
#define COPY_CHUNK (8 * 1024 * 1024)

static const unsigned char store_zero_block[BLOCK];

int store_writer_open(struct store *store, const char *name, const char *uuid,
                      const struct store_checksum *expected, enum store_writer_mode mode,
                      struct store_writer **out, struct bim_error *err)
{
    struct store_writer *w;
    struct stat st;
    int rc;

    *out = NULL;
    w = calloc(1, sizeof(*w));
    if (!w)
        return bim_error_set(err, -ENOMEM, "out of memory");
    w->store = store;
    w->dirfd = w->fd = w->direct_fd = -1;
    pthread_mutex_init(&w->lock, NULL);
    pthread_cond_init(&w->more, NULL);
    pthread_cond_init(&w->done, NULL);
    if (expected)
        w->expected = *expected;
    rc = store_image_dir_open(store, name, uuid, &w->dirfd);
    if (rc < 0) {
        bim_error_set(err, rc, "cannot open the image directory: %s", strerror(-rc));
        goto fail;
    }
    str_copy(w->name, sizeof(w->name), name);
    str_copy(w->uuid, sizeof(w->uuid), uuid);
    str_copy(w->verified, sizeof(w->verified), STORE_VERIFIED_SHA512);
    /* a fresh file, never one planted there (a hard link would be truncated) */
    if (mode == STORE_WRITER_NEW && unlinkat(w->dirfd, STORE_BACKING_TMP, 0) < 0 &&
        errno != ENOENT) {
        rc = bim_error_set(err, -errno, "cannot remove backing.tmp: %s", strerror(errno));
        goto fail;
    }
    w->fd = openat(w->dirfd, STORE_BACKING_TMP,
                   O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK |
                       (mode == STORE_WRITER_NEW ? O_EXCL : 0),
                   0644);
    if (w->fd < 0 || fstat(w->fd, &st) < 0) {
        rc = bim_error_cause(err, BIM_CAUSE_IO, -errno, "cannot open backing.tmp: %s",
                             strerror(errno));
        goto fail;
    }
    if (!S_ISREG(st.st_mode) || st.st_nlink != 1) {
        rc = bim_error_set(err, -EPERM, "backing.tmp is not a regular file with a single link");
        goto fail;
    }
    if (fcntl(w->fd, F_SETFL, 0) < 0) {
        rc = bim_error_cause(err, BIM_CAUSE_IO, -errno, "cannot open backing.tmp: %s",
                             strerror(errno));
        goto fail;
    }
    w->max_size = store->max_size;
    snprintf(w->limit_message, sizeof(w->limit_message),
             "image larger than --max-size (%llu bytes)", (unsigned long long)w->max_size);
    w->size_claim = (uint64_t)st.st_size;
    w->written = mode == STORE_WRITER_RESUME ? w->size_claim : 0;
    if (w->size_claim > store->max_size) {
        rc = bim_error_set(err, -EFBIG, "image larger than --max-size (%llu bytes)",
                           (unsigned long long)store->max_size);
        goto fail;
    }
    rc = store_digest_init(&w->digest, w->expected.algo == STORE_DIGEST_SHA256);
    if (rc < 0) {
        bim_error_set(err, rc, "cannot initialize SHA-512");
        goto fail;
    }
    rc = store_hasher_start(w);
    if (rc < 0) {
        bim_error_set(err, rc, "cannot start the hasher thread: %s", strerror(-rc));
        goto fail;
    }
    rc = store_pieces_hasher_start(w);
    if (rc < 0) {
        bim_error_set(err, rc, "cannot start the piece digest thread: %s", strerror(-rc));
        store_hasher_stop(w);
        goto fail;
    }
    *out = w;
    return 0;
fail:
    store_writer_free(w);
    return rc;
}

void store_writer_free(struct store_writer *w)
{
    if (w->direct_fd >= 0)
        close(w->direct_fd);
    if (w->fd >= 0)
        close(w->fd);
    if (w->dirfd >= 0)
        close(w->dirfd);
    store_digest_free(&w->digest);
    store_pieces_free(&w->pieces);
    free(w->pieces_known);
    store_ring_free(w->ring);
    pthread_cond_destroy(&w->done);
    pthread_cond_destroy(&w->more);
    pthread_mutex_destroy(&w->lock);
    free(w);
}

void store_writer_abort(struct store_writer *w)
{
    if (!w)
        return;
    store_hasher_stop(w);
    store_pieces_hasher_stop(w);
    if (unlinkat(w->dirfd, STORE_BACKING_TMP, 0) < 0 && errno != ENOENT)
        log_warn("image=%s uuid=%s cannot remove backing.tmp: %s", w->name, w->uuid,
                 strerror(errno));
    store_writer_free(w);
}

void store_writer_close(struct store_writer *w)
{
    if (!w)
        return;
    store_hasher_stop(w);
    store_pieces_hasher_stop(w);
    store_writer_free(w);
}

/* Insert [off, end) into the sorted range set (merging neighbours), then
 * absorb into `written` what became contiguous. Called with w->lock held. */
static int store_ranges_add(struct store_writer *w, uint64_t off, uint64_t end)
{
    size_t i = 0, j;

    if (end <= w->written)
        return 0;
    if (off < w->written)
        off = w->written;
    while (i < w->nranges && w->ranges[i].end < off)
        i++;
    /* ranges[i..j) touch or overlap [off, end): merge them into one */
    j = i;
    while (j < w->nranges && w->ranges[j].start <= end) {
        if (w->ranges[j].start < off)
            off = w->ranges[j].start;
        if (w->ranges[j].end > end)
            end = w->ranges[j].end;
        j++;
    }
    if (j == i) {
        if (w->nranges == STORE_WRITER_RANGES_MAX)
            return -ENOBUFS;
        memmove(&w->ranges[i + 1], &w->ranges[i], (w->nranges - i) * sizeof(w->ranges[0]));
        w->nranges++;
    } else if (j > i + 1) {
        memmove(&w->ranges[i + 1], &w->ranges[j], (w->nranges - j) * sizeof(w->ranges[0]));
        w->nranges -= j - i - 1;
    }
    w->ranges[i].start = off;
    w->ranges[i].end = end;
    if (w->nranges > 0 && w->ranges[0].start <= w->written) {
        w->written = w->ranges[0].end;
        memmove(&w->ranges[0], &w->ranges[1], (w->nranges - 1) * sizeof(w->ranges[0]));
        w->nranges--;
    }
    return 0;
}

int store_writer_mark_done(struct store_writer *w, uint64_t off, uint64_t end)
{
    uint64_t before;
    int rc;

    pthread_mutex_lock(&w->lock);
    before = w->written;
    rc = store_ranges_add(w, off, end);
    if (w->written != before)
        pthread_cond_broadcast(&w->more); /* the hasher and the piece thread */
    pthread_mutex_unlock(&w->lock);
    if (rc < 0)
        log_error("image=%s uuid=%s more than %d pieces of backing.tmp in flight", w->name, w->uuid,
                  STORE_WRITER_RANGES_MAX);
    return rc;
}

/* Is [off, end) within what the writer may hold? -EFBIG past --max-size
 * (remembered, so the message can say so) or past what an off_t holds. */
static int store_writer_limit(struct store_writer *w, uint64_t off, uint64_t len, uint64_t *end)
{
    if (!size_add(off, len, end) || *end > (uint64_t)INT64_MAX)
        return -EFBIG;
    if (*end > w->max_size) {
        atomic_store(&w->over_limit, true);
        return -EFBIG;
    }
    return 0;
}

bool store_writer_fits(struct store_writer *w, uint64_t off, uint64_t len)
{
    uint64_t end;

    return store_writer_limit(w, off, len, &end) == 0;
}

const char *store_writer_strerror(const struct store_writer *w, int rc)
{
    if (rc == -EFBIG && atomic_load(&w->over_limit))
        return w->limit_message;
    return strerror(-rc);
}

/* Record that bytes up to end may land in the file (grow-only). */
static void store_size_claim(struct store_writer *w, uint64_t end)
{
    pthread_mutex_lock(&w->lock);
    if (end > w->size_claim)
        w->size_claim = end;
    pthread_mutex_unlock(&w->lock);
}

/* A write ended in skipped zeros: make the file reach end. Only when no other
 * claim lies past end, so the file never shrinks under a concurrent write. */
static int store_size_grow(struct store_writer *w, uint64_t end)
{
    int rc = 0;

    pthread_mutex_lock(&w->lock);
    if (w->size_claim == end && ftruncate(w->fd, (off_t)end) < 0)
        rc = -errno;
    pthread_mutex_unlock(&w->lock);
    return rc;
}

static bool store_block_zero(const unsigned char *p, size_t len)
{
    return p[0] == 0 && memcmp(p, store_zero_block, len) == 0;
}

/* Write len bytes at off (zero blocks left as holes); mark them as written
 * when `mark`. */
int store_writer_direct(struct store_writer *w)
{
    int fd = openat(w->dirfd, STORE_BACKING_TMP, O_WRONLY | O_DIRECT | O_CLOEXEC | O_NOFOLLOW);

    if (fd < 0)
        return -errno; /* a file system without O_DIRECT: writes stay buffered */
    w->direct_fd = fd;
    return 0;
}

/* Aligned runs go around the page cache when the writer has a direct fd
 * (the buffer, the offset and the length all on BLOCK); the rest, or a
 * direct write the file system refuses, through it. */
static int store_writer_write(struct store_writer *w, const void *buf, size_t len, uint64_t off)
{
    if (w->direct_fd >= 0 && (((uintptr_t)buf | (uintptr_t)off | len) % BLOCK) == 0) {
        int rc = fd_pwrite_all(w->direct_fd, buf, len, off);

        if (rc != -EINVAL)
            return rc;
    }
    return fd_pwrite_all(w->fd, buf, len, off);
}

static int store_writer_put(struct store_writer *w, const void *buf, size_t len, uint64_t off,
                            bool mark)
{
    const unsigned char *p = buf;
    uint64_t end;
    size_t pos = 0;
    bool tail_zero = false;
    int rc;

    rc = store_writer_limit(w, off, len, &end);
    if (rc < 0)
        return rc;
    if (len == 0)
        return 0;
    store_size_claim(w, end);
    while (pos < len) {
        size_t start = pos, n;

        /* a run of non-zero blocks (blocks aligned to the file offset) */
        while (pos < len) {
            n = BLOCK - (size_t)((off + pos) % BLOCK);
            if (n > len - pos)
                n = len - pos;
            if (store_block_zero(p + pos, n))
                break;
            pos += n;
        }
        if (pos > start) {
            rc = store_writer_write(w, p + start, pos - start, off + start);
            if (rc < 0)
                return rc;
            tail_zero = false;
        }
        /* then a run of zero blocks, left as a hole */
        while (pos < len) {
            n = BLOCK - (size_t)((off + pos) % BLOCK);
            if (n > len - pos)
                n = len - pos;
            if (!store_block_zero(p + pos, n))
                break;
            pos += n;
            tail_zero = true;
        }
    }
    if (tail_zero) {
        rc = store_size_grow(w, end);
        if (rc < 0)
            return rc;
    }
    return mark ? store_writer_mark_done(w, off, end) : 0;
}

int store_writer_pwrite(struct store_writer *w, const void *buf, size_t len, uint64_t off)
{
    return store_writer_put(w, buf, len, off, true);
}

int store_writer_pwrite_pending(struct store_writer *w, const void *buf, size_t len, uint64_t off)
{
    return store_writer_put(w, buf, len, off, false);
}

int store_writer_skip(struct store_writer *w, uint64_t off, uint64_t len)
{
    uint64_t end;
    int rc = store_writer_limit(w, off, len, &end);

    if (rc < 0)
        return rc;
    if (len == 0)
        return 0;
    return store_writer_mark_done(w, off, end);
}

/* read + store_writer_pwrite through a 1 MiB buffer. */
static int store_copy_fallback(struct store_writer *w, int src_fd, uint64_t src_off, uint64_t len,
                               uint64_t off)
{
    char *buf = malloc(STORE_CHUNK);
    int rc = 0;

    if (!buf)
        return -ENOMEM;
    while (len > 0) {
        size_t want = len < STORE_CHUNK ? (size_t)len : STORE_CHUNK;
        size_t got;

        rc = fd_pread_full(src_fd, buf, want, src_off, &got);
        if (rc == 0 && got < want)
            rc = -EIO; /* the source is shorter than promised */
        if (rc < 0)
            break;
        rc = store_writer_pwrite(w, buf, want, off);
        if (rc < 0)
            break;
        src_off += want;
        off += want;
        len -= want;
    }
    free(buf);
    return rc;
}

int store_writer_copy_fd(struct store_writer *w, int src_fd, uint64_t src_off, size_t len,
                         uint64_t off)
{
    uint64_t end, src_end;
    int rc;

    rc = store_writer_limit(w, off, len, &end);
    if (rc < 0)
        return rc;
    if (!size_add(src_off, len, &src_end) || src_end > (uint64_t)INT64_MAX)
        return -EFBIG;
    while (len > 0) {
        loff_t in = (loff_t)src_off, outpos = (loff_t)off;
        size_t want = len < COPY_CHUNK ? len : COPY_CHUNK;
        ssize_t n;

        store_size_claim(w, off + want);
        n = copy_file_range(src_fd, &in, w->fd, &outpos, want, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EXDEV || errno == EINVAL || errno == ENOSYS || errno == EOPNOTSUPP))
            return store_copy_fallback(w, src_fd, src_off, len, off);
        if (n < 0)
            return -errno;
        if (n == 0)
            return -EIO; /* the source is shorter than promised */
        rc = store_writer_mark_done(w, off, off + (uint64_t)n);
        if (rc < 0)
            return rc;
        src_off += (uint64_t)n;
        off += (uint64_t)n;
        len -= (size_t)n;
    }
    return 0;
}

uint64_t store_writer_written(struct store_writer *w)
{
    uint64_t v;

    pthread_mutex_lock(&w->lock);
    v = w->written;
    pthread_mutex_unlock(&w->lock);
    return v;
}

uint64_t store_writer_hashed(struct store_writer *w)
{
    if (w->trusted)
        return store_writer_written(w);
    return atomic_load(&w->hashed);
}

int store_writer_fd(struct store_writer *w)
{
    return w->fd;
}

void store_writer_expect_sha512(struct store_writer *w, const char *sha512_hex)
{
    str_copy(w->also_sha512, sizeof(w->also_sha512), sha512_hex);
}

void store_writer_trust_checksum(struct store_writer *w, const char *sha512_hex,
                                 const char *verified)
{
    /* A sha256 expectation can only be checked by hashing: keep the hasher. */
    if (w->expected.algo == STORE_DIGEST_SHA256) {
        log_debug("image=%s uuid=%s sha256 expectation: hashing despite a trusted checksum",
                  w->name, w->uuid);
        return;
    }
    store_hasher_stop(w);
    w->trusted = true;
    str_copy(w->trusted_sha512, sizeof(w->trusted_sha512), sha512_hex);
    str_copy(w->verified, sizeof(w->verified), verified);
}
