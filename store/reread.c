/*
 * reread.c - the SHA-512 (and, when asked, SHA-256) of a ready image's
 * backing, computed step by step on its own read-only descriptor, so that
 * the caller (the scrub, sync/scrub.c) paces the reads and checks for
 * cancellation between steps. Holes are hashed as zeros without reading
 * them; the extent map (SEEK_DATA/SEEK_HOLE) is looked up once per extent,
 * not per step. The file is described by an fstat at open and again at
 * finish: a change during the pass shows as a different stat, and the
 * caller does not take the digest for the image's.
 *
 * Threads: one pass belongs to one thread; no shared state.
 */
#include "store_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct store_reread {
    int fd;
    uint64_t size;               /* of the file at open */
    uint64_t pos;                /* [0, pos) is hashed */
    uint64_t data_end, hole_end; /* the extent at pos (store_digest_find_extent) */
    struct store_digest_ctx digest;
    void *buf; /* STORE_CHUNK bytes */
};

int store_reread_open(struct store *store, const char *name, const char *uuid, bool with_sha256,
                      struct store_reread **out, struct stat *st, struct bim_error *err)
{
    struct store_reread *r = calloc(1, sizeof(*r));
    int rc;

    *out = NULL;
    if (!r)
        return bim_error_set(err, -ENOMEM, "out of memory");
    r->fd = -1;
    rc = store_image_open_backing(store, name, uuid, &r->fd);
    if (rc < 0) {
        bim_error_cause(err, BIM_CAUSE_IO, rc, "cannot open backing: %s", strerror(-rc));
        goto fail;
    }
    if (fstat(r->fd, st) < 0) {
        rc = bim_error_cause(err, BIM_CAUSE_IO, -errno, "cannot stat backing: %s", strerror(errno));
        goto fail;
    }
    posix_fadvise(r->fd, 0, 0, POSIX_FADV_SEQUENTIAL);
    r->size = (uint64_t)st->st_size;
    r->buf = malloc(STORE_CHUNK);
    rc = r->buf ? store_digest_init(&r->digest, with_sha256) : -ENOMEM;
    if (rc < 0) {
        bim_error_set(err, rc, "cannot start hashing: %s", strerror(-rc));
        goto fail;
    }
    *out = r;
    return 0;
fail:
    store_reread_close(r);
    return rc;
}

int store_reread_step(struct store_reread *r, uint64_t max, uint64_t *done)
{
    uint64_t n = r->size - r->pos < max ? r->size - r->pos : max;
    size_t got;
    int rc;

    *done = 0;
    if (n == 0)
        return 0;
    /* the extent map is looked up once per extent, not per step */
    if (r->pos >= r->data_end && r->pos >= r->hole_end) {
        rc = store_digest_find_extent(r->fd, r->pos, r->size, &r->data_end, &r->hole_end);
        if (rc < 0)
            return rc;
    }
    if (r->pos < r->hole_end) {
        n = r->hole_end - r->pos < n ? r->hole_end - r->pos : n;
        rc = store_digest_zeros(&r->digest, n);
    } else {
        n = r->data_end - r->pos < n ? r->data_end - r->pos : n;
        n = n < STORE_CHUNK ? n : STORE_CHUNK;
        rc = fd_pread_full(r->fd, r->buf, (size_t)n, r->pos, &got);
        if (rc == 0 && got < n) /* the file shrank: the rest reads as zeros */
            memset((char *)r->buf + got, 0, (size_t)n - got);
        if (rc == 0)
            rc = store_digest_update(&r->digest, r->buf, (size_t)n);
    }
    if (rc < 0)
        return rc;
    r->pos += n;
    *done = n;
    return 0;
}

int store_reread_finish(struct store_reread *r, char sha512[STORE_CHECKSUM_HEX + 1],
                        char sha256[STORE_PIECE_HEX + 1], struct stat *st)
{
    int rc;

    if (r->pos < r->size)
        return -EINVAL;
    if (fstat(r->fd, st) < 0)
        return -errno;
    rc = store_digest_final(&r->digest, sha512, sha256);
    return rc < 0 ? rc : 0;
}

void store_reread_close(struct store_reread *r)
{
    if (!r)
        return;
    store_digest_free(&r->digest);
    free(r->buf);
    if (r->fd >= 0)
        close(r->fd);
    free(r);
}
