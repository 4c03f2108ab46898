/*
 * commit.c - finishing a writer: check that [0,size) is complete, take the
 * digest from the hasher (or the trusted checksum), compare it with the
 * expectation, keep the piece digests, detect the format, make backing.tmp
 * durable, rename it to backing and write the cfg as ready.
 *
 * Threads: the committing thread only, after every pwrite/copy returned.
 */
#include "store_internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* The SHA-512 (and SHA-256 if expected) of [0,size), into sha512/sha256. */
static int store_commit_digest(struct store_writer *w, uint64_t size, char *sha512, char *sha256,
                               struct bim_error *err)
{
    uint64_t written;
    int rc;

    pthread_mutex_lock(&w->lock);
    written = w->written;
    pthread_mutex_unlock(&w->lock);
    if (written < size)
        return bim_error_set(err, -EINVAL, "incomplete data: %llu of %llu bytes written",
                             (unsigned long long)written, (unsigned long long)size);
    if (written > size)
        return bim_error_set(err, -EINVAL, "%llu bytes written for an image of %llu bytes",
                             (unsigned long long)written, (unsigned long long)size);
    if (w->trusted && !w->trusted_sha512[0])
        return bim_error_set(err, -EINVAL, "the image's SHA-512 is not known yet");
    if (w->trusted) {
        str_copy(sha512, STORE_CHECKSUM_HEX + 1, w->trusted_sha512);
        return 0;
    }
    rc = store_hasher_wait(w, size);
    store_hasher_stop(w);
    if (rc < 0)
        return bim_error_cause(err, BIM_CAUSE_IO, rc, "cannot read back backing.tmp: %s",
                               strerror(-rc));
    rc = store_digest_final(&w->digest, sha512, sha256);
    if (rc < 0)
        return bim_error_set(err, rc, "cannot compute the checksum");
    return 0;
}

static int store_commit_compare(struct store_writer *w, const char *sha512, const char *sha256,
                                struct bim_error *err)
{
    char expected[STORE_EXPECTED_MAX + 1];
    const char *got;

    if (w->also_sha512[0] && strcmp(w->also_sha512, sha512) != 0)
        return bim_error_cause(err, BIM_CAUSE_CHECKSUM, -EINVAL,
                               "checksum mismatch: expected %s, got %s", w->also_sha512, sha512);
    switch (w->expected.algo) {
    case STORE_DIGEST_SHA512:
        got = sha512;
        break;
    case STORE_DIGEST_SHA256:
        got = sha256;
        break;
    default:
        return 0;
    }
    if (strcmp(w->expected.hex, got) == 0)
        return 0;
    store_checksum_format(&w->expected, expected);
    return bim_error_cause(err, BIM_CAUSE_CHECKSUM, -EINVAL,
                           "checksum mismatch: expected %s, got %s", expected, got);
}

/* Wait for the piece digests of [0,size) and keep them (backing.pieces,
 * durably) before the image is published: a ready image written by bimfs
 * always has them. */
static int store_commit_pieces(struct store_writer *w, uint64_t size, const char *sha512,
                               struct store_pieces *pieces, struct bim_error *err)
{
    int rc = store_pieces_hasher_finish(w, size, pieces);

    if (rc < 0)
        return bim_error_set(err, rc, "cannot compute the piece digests: %s", strerror(-rc));
    rc = store_pieces_save_at(w->dirfd, sha512, pieces);
    if (rc < 0)
        return bim_error_set(err, rc, "cannot write backing.pieces: %s", strerror(-rc));
    return 0;
}

/* ftruncate to size, detect the format, fsync, stat. */
static int store_commit_file(struct store_writer *w, uint64_t size, struct store_format_info *info,
                             struct stat *st, struct bim_error *err)
{
    char path[PATH_MAX];
    int rc;

    if (ftruncate(w->fd, (off_t)size) < 0)
        return bim_error_cause(err, BIM_CAUSE_IO, -errno, "cannot extend backing.tmp: %s",
                               strerror(errno));
    rc = store_image_path(w->store, w->name, w->uuid, STORE_BACKING_TMP, path, sizeof(path));
    if (rc < 0)
        return bim_error_set(err, rc, "path of backing.tmp: %s", strerror(-rc));
    rc = store_format_detect(path, size, info, err);
    if (rc < 0)
        return rc;
    if (fsync(w->fd) < 0 || fstat(w->fd, st) < 0)
        return bim_error_cause(err, BIM_CAUSE_IO, -errno, "cannot sync backing.tmp: %s",
                               strerror(errno));
    return 0;
}

/* The cfg of a ready image; other fields of an existing cfg are kept. */
static void store_commit_cfg_fill(struct store_writer *w, struct store_cfg *cfg, const char *source,
                                  const struct store_result *res)
{
    if (store_cfg_read_at(w->dirfd, cfg, NULL) < 0)
        memset(cfg, 0, sizeof(*cfg));
    cfg->size = res->size;
    cfg->virtual_size = res->virtual_size;
    cfg->real_size = res->real_size;
    store_checksum_format(&w->expected, cfg->expected_checksum);
    str_copy(cfg->current_checksum, sizeof(cfg->current_checksum), res->checksum);
    str_copy(cfg->modification_time, sizeof(cfg->modification_time), res->modification_time);
    str_copy(cfg->state, sizeof(cfg->state), "ready");
    str_copy(cfg->format, sizeof(cfg->format), store_format_name(res->format));
    if (source)
        str_copy(cfg->source, sizeof(cfg->source), source);
    cfg->error[0] = '\0';
    str_copy(cfg->verified, sizeof(cfg->verified), res->verified);
    cfg->last_scrub[0] = '\0'; /* new bytes: never scrubbed */
    bim_time_rfc3339(clock_realtime_s(), cfg->ready_time);
}

/* Rename backing.tmp to backing, write the cfg; undo the rename if the cfg
 * cannot be written, so a failed commit renamed nothing. */
static int store_commit_publish(struct store_writer *w, const struct store_cfg *cfg,
                                struct bim_error *err)
{
    int rc;

    if (renameat(w->dirfd, STORE_BACKING_TMP, w->dirfd, STORE_BACKING) < 0)
        return bim_error_cause(err, BIM_CAUSE_IO, -errno, "cannot rename backing.tmp: %s",
                               strerror(errno));
    rc = store_durable_sync_dir(w->dirfd);
    if (rc < 0) {
        bim_error_cause(err, BIM_CAUSE_IO, rc, "cannot sync the image directory: %s",
                        strerror(-rc));
        goto undo;
    }
    rc = store_image_save_cfg(w->store, w->name, w->uuid, cfg, err);
    if (rc == 0)
        return 0;
undo:
    if (renameat(w->dirfd, STORE_BACKING, w->dirfd, STORE_BACKING_TMP) == 0)
        store_durable_sync_dir(w->dirfd);
    return rc;
}

int store_writer_commit(struct store_writer *w, uint64_t size, const char *source,
                        struct store_result *out, struct bim_error *err)
{
    char sha256[65] = "";
    struct store_format_info info;
    struct store_pieces pieces = {0};
    struct store_result res;
    struct store_cfg *cfg = NULL;
    int rc;

    memset(&res, 0, sizeof(res));
    if (size > (uint64_t)INT64_MAX)
        return bim_error_set(err, -EFBIG, "image size %llu is too large", (unsigned long long)size);
    if (size > w->max_size)
        return bim_error_set(err, -EFBIG, "%s", w->limit_message);
    rc = store_commit_digest(w, size, res.checksum, sha256, err);
    if (rc == 0)
        rc = store_commit_compare(w, res.checksum, sha256, err);
    if (rc == 0)
        rc = store_commit_pieces(w, size, res.checksum, &pieces, err);
    store_pieces_free(&pieces);
    if (rc == 0)
        rc = store_commit_file(w, size, &info, &res.st, err);
    if (rc < 0)
        return rc;
    res.format = info.format;
    res.size = size;
    res.virtual_size = info.virtual_size;
    res.real_size = (uint64_t)res.st.st_blocks * 512u;
    store_time_format(&res.st.st_mtim, res.modification_time);
    str_copy(res.verified, sizeof(res.verified), w->verified);

    cfg = malloc(sizeof(*cfg));
    if (!cfg)
        return bim_error_set(err, -ENOMEM, "out of memory");
    store_commit_cfg_fill(w, cfg, source, &res);
    rc = store_commit_publish(w, cfg, err);
    store_cfg_clear(cfg);
    free(cfg);
    if (rc < 0)
        return rc;
    log_debug("image=%s uuid=%s committed: %s, %llu bytes, sha512 %.16s...", w->name, w->uuid,
              store_format_name(res.format), (unsigned long long)res.size, res.checksum);
    if (out)
        *out = res;
    store_writer_free(w);
    return 0;
}
