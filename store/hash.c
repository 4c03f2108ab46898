/*
 * hash.c - store_image_hash(): the SHA-512 of an existing backing (holes read
 * as zeros, walked with SEEK_DATA/SEEK_HOLE) and its format, as used at
 * start-up for images whose cfg does not match and after a change behind
 * bimfs's back.
 *
 * Threads: the caller's; cancel and progress may be touched by others.
 */
#include "store_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int store_image_hash(struct store *store, const char *name, const char *uuid,
                     const atomic_bool *cancel, _Atomic uint64_t *progress,
                     struct store_result *out, struct bim_error *err)
{
    struct store_digest_ctx digest = {NULL, NULL};
    struct store_format_info info;
    char path[PATH_MAX];
    void *buf = NULL;
    int fd, rc;

    memset(out, 0, sizeof(*out));
    if (progress)
        atomic_store(progress, 0);
    rc = store_image_open_backing(store, name, uuid, &fd);
    if (rc < 0) {
        char why[STORE_REFUSED_MAX];

        if (store_image_stat_backing(store, name, uuid, &out->st) == 0 &&
            store_backing_check(&out->st, why, sizeof(why)) < 0)
            return bim_error_set(err, rc, "%s; not served", why);
        return bim_error_cause(err, BIM_CAUSE_IO, rc, "cannot open backing: %s", strerror(-rc));
    }
    /* The result describes the file as it was when hashing began; a change
     * during the pass shows as a later mtime and is noticed again. */
    if (fstat(fd, &out->st) < 0) {
        rc = bim_error_cause(err, BIM_CAUSE_IO, -errno, "cannot stat backing: %s", strerror(errno));
        goto out;
    }
    posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
    buf = malloc(STORE_CHUNK);
    rc = buf ? store_digest_init(&digest, false) : -ENOMEM;
    if (rc < 0) {
        bim_error_set(err, rc, "cannot start hashing: %s", strerror(-rc));
        goto out;
    }
    rc = store_digest_feed_fd(&digest, fd, 0, (uint64_t)out->st.st_size, buf, cancel, progress);
    if (rc == -ECANCELED) {
        bim_error_set(err, rc, "hashing was cancelled");
        goto out;
    }
    if (rc == 0)
        rc = store_digest_final(&digest, out->checksum, NULL);
    if (rc < 0) {
        bim_error_cause(err, BIM_CAUSE_IO, rc, "cannot hash backing: %s", strerror(-rc));
        goto out;
    }
    rc = store_image_path(store, name, uuid, STORE_BACKING, path, sizeof(path));
    if (rc < 0) {
        bim_error_set(err, rc, "path of backing: %s", strerror(-rc));
        goto out;
    }
    rc = store_format_detect(path, (uint64_t)out->st.st_size, &info, err);
    if (rc < 0)
        goto out;
    out->format = info.format;
    out->size = (uint64_t)out->st.st_size;
    out->virtual_size = info.virtual_size;
    out->real_size = (uint64_t)out->st.st_blocks * 512u;
    store_time_format(&out->st.st_mtim, out->modification_time);
    str_copy(out->verified, sizeof(out->verified), STORE_VERIFIED_SHA512);
out:
    store_digest_free(&digest);
    free(buf);
    close(fd);
    return rc;
}
