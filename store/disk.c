/*
 * disk.c - the disk: opening DISK and DISK/backing-images, the disk uuid,
 * paths, and the per-image directory operations (prepare, save cfg, remove,
 * open and stat backing).
 *
 * Threads: any. struct store is immutable after store_open(); everything is
 * done relative to its images_fd with *at() calls.
 */
#include "store_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#define DISK_CFG_MAX (64 * 1024)

/* mkdirat that fsyncs the parent when it created the directory. */
static int store_mkdir_durable(int parent_fd, const char *name)
{
    if (mkdirat(parent_fd, name, 0755) < 0)
        return errno == EEXIST ? 0 : -errno;
    return store_durable_sync_dir(parent_fd);
}

int store_open(const char *disk, struct store **out, struct bim_error *err)
{
    struct store *store;
    struct stat st;
    int disk_fd = -1, rc;

    *out = NULL;
    store = calloc(1, sizeof(*store));
    if (!store)
        return -ENOMEM;
    store->images_fd = -1;
    store->max_size = STORE_MAX_SIZE_DEFAULT;
    if (!realpath(disk, store->disk)) {
        rc = bim_error_set(err, -errno, "disk %s: %s", disk, strerror(errno));
        goto fail;
    }
    if (stat(store->disk, &st) < 0) {
        rc = bim_error_set(err, -errno, "disk %s: %s", disk, strerror(errno));
        goto fail;
    }
    if (!S_ISDIR(st.st_mode)) {
        rc = bim_error_set(err, -ENOTDIR, "disk %s is not a directory", disk);
        goto fail;
    }
    if (snprintf(store->images, sizeof(store->images), "%s/%s",
                 strcmp(store->disk, "/") == 0 ? "" : store->disk,
                 STORE_IMAGES_DIR) >= (int)sizeof(store->images)) {
        rc = bim_error_set(err, -ENAMETOOLONG, "disk %s: path too long", disk);
        goto fail;
    }
    disk_fd = open(store->disk, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (disk_fd < 0) {
        rc = bim_error_set(err, -errno, "disk %s: %s", disk, strerror(errno));
        goto fail;
    }
    rc = store_mkdir_durable(disk_fd, STORE_IMAGES_DIR);
    if (rc < 0) {
        bim_error_set(err, rc, "cannot create %s: %s", store->images, strerror(-rc));
        goto fail;
    }
    store->images_fd = openat(disk_fd, STORE_IMAGES_DIR, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (store->images_fd < 0) {
        rc = bim_error_set(err, -errno, "cannot open %s: %s", store->images, strerror(errno));
        goto fail;
    }
    close(disk_fd);
    *out = store;
    return 0;
fail:
    if (disk_fd >= 0)
        close(disk_fd);
    free(store);
    return rc;
}

void store_close(struct store *store)
{
    if (!store)
        return;
    if (store->images_fd >= 0)
        close(store->images_fd);
    free(store);
}

void store_set_max_size(struct store *store, uint64_t max_size)
{
    store->max_size = max_size;
}

uint64_t store_max_size(const struct store *store)
{
    return store->max_size;
}

const char *store_disk_path(const struct store *store)
{
    return store->disk;
}

const char *store_images_path(const struct store *store)
{
    return store->images;
}

int store_disk_space(const struct store *store, uint64_t *avail, uint64_t *total)
{
    struct statvfs sv;

    if (fstatvfs(store->images_fd, &sv) < 0)
        return -errno;
    *avail = (uint64_t)sv.f_bavail * sv.f_frsize;
    *total = (uint64_t)sv.f_blocks * sv.f_frsize;
    return 0;
}

int store_disk_uuid(const struct store *store, char out[STORE_UUID_MAX + 1])
{
    json_t *root = NULL, *value;
    char *text = NULL;
    size_t len;
    int disk_fd, rc;

    out[0] = '\0';
    disk_fd = open(store->disk, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (disk_fd < 0)
        return -errno;
    rc = store_file_read_at(disk_fd, STORE_DISK_CFG, DISK_CFG_MAX, &text, &len);
    close(disk_fd);
    if (rc == -ENOENT)
        return 0;
    if (rc < 0)
        goto out;
    root = json_loadb(text, len, 0, NULL);
    value = json_object_get(root, "diskUUID");
    if (!json_is_object(root) || (value && !json_is_string(value))) {
        log_warn("%s/%s is not a valid disk cfg", store->disk, STORE_DISK_CFG);
        rc = -EINVAL;
        goto out;
    }
    if (value && !str_copy(out, STORE_UUID_MAX + 1, json_string_value(value))) {
        out[0] = '\0';
        rc = -EINVAL;
    }
out:
    json_decref(root);
    free(text);
    return rc;
}

int store_image_path(const struct store *store, const char *name, const char *uuid,
                     const char *file, char *out, size_t outlen)
{
    char dir[STORE_DIRNAME_MAX];
    int n;

    if (store_dirname(name, uuid, dir) < 0)
        return -EINVAL;
    if (file && *file)
        n = snprintf(out, outlen, "%s/%s/%s", store->images, dir, file);
    else
        n = snprintf(out, outlen, "%s/%s", store->images, dir);
    if (n < 0 || (size_t)n >= outlen)
        return -ENAMETOOLONG;
    return 0;
}

int store_image_dir_open(struct store *store, const char *name, const char *uuid, int *dirfd)
{
    char dir[STORE_DIRNAME_MAX];

    *dirfd = -1;
    if (store_dirname(name, uuid, dir) < 0)
        return -EINVAL;
    *dirfd = openat(store->images_fd, dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
    return *dirfd < 0 ? -errno : 0;
}

/* Write cfg into the open image directory, with `uuid` and `name` (the path
 * of backing) set to what this store says they are. */
static int store_image_cfg_write(struct store *store, int dirfd, const char *name, const char *uuid,
                                 const struct store_cfg *cfg, struct bim_error *err)
{
    struct store_cfg *copy;
    int rc;

    copy = malloc(sizeof(*copy));
    if (!copy)
        return bim_error_set(err, -ENOMEM, "out of memory");
    *copy = *cfg; /* shares extra: read-only here */
    str_copy(copy->uuid, sizeof(copy->uuid), uuid);
    rc = store_image_path(store, name, uuid, STORE_BACKING, copy->name, sizeof(copy->name));
    if (rc == 0)
        rc = store_cfg_write_at(dirfd, copy);
    if (rc < 0)
        bim_error_cause(err, BIM_CAUSE_IO, rc, "cannot write backing.cfg: %s", strerror(-rc));
    free(copy);
    return rc;
}

/* Make <dir> appear with its cfg in one step: write the cfg into the staging
 * directory .<dir>.tmp, then rename it to <dir> (never over an existing
 * one). A crash leaves no <dir> or a complete one; a leftover staging
 * directory is removed by the next scan (leftover.c). */
static int store_image_create(struct store *store, const char *name, const char *uuid,
                              const char *dir, const struct store_cfg *cfg, struct bim_error *err)
{
    char staging[STORE_STAGING_MAX];
    int dirfd = -1, rc;

    rc = store_staging_name(dir, staging);
    if (rc < 0)
        return bim_error_set(err, rc, "invalid name or uuid");
    rc = store_dir_remove(store->images_fd, staging); /* an earlier attempt's */
    if (rc == 0 && mkdirat(store->images_fd, staging, 0755) < 0)
        rc = -errno;
    if (rc == 0) {
        dirfd = openat(store->images_fd, staging, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
        if (dirfd < 0)
            rc = -errno;
    }
    if (rc < 0) {
        bim_error_set(err, rc, "cannot create %s/%s: %s", store->images, staging, strerror(-rc));
        goto out;
    }
    rc = store_image_cfg_write(store, dirfd, name, uuid, cfg, err);
    if (rc < 0)
        goto out;
    if (renameat2(store->images_fd, staging, store->images_fd, dir, RENAME_NOREPLACE) < 0) {
        rc = bim_error_set(err, -errno, "cannot create %s/%s: %s", store->images, dir,
                           strerror(errno));
        goto out;
    }
    rc = store_durable_sync_dir(store->images_fd);
    if (rc < 0)
        bim_error_cause(err, BIM_CAUSE_IO, rc, "cannot sync %s: %s", store->images, strerror(-rc));
out:
    if (dirfd >= 0)
        close(dirfd);
    if (rc < 0)
        store_dir_remove(store->images_fd, staging);
    return rc;
}

int store_image_prepare(struct store *store, const char *name, const char *uuid,
                        const struct store_cfg *cfg, struct bim_error *err)
{
    char dir[STORE_DIRNAME_MAX];
    int dirfd, rc;

    if (store_dirname(name, uuid, dir) < 0)
        return bim_error_set(err, -EINVAL, "invalid name or uuid");
    rc = store_image_dir_open(store, name, uuid, &dirfd);
    if (rc == -ENOENT)
        return store_image_create(store, name, uuid, dir, cfg, err);
    if (rc < 0)
        return bim_error_set(err, rc, "cannot open %s/%s: %s", store->images, dir, strerror(-rc));
    rc = store_image_cfg_write(store, dirfd, name, uuid, cfg, err);
    close(dirfd);
    return rc;
}

int store_image_save_cfg(struct store *store, const char *name, const char *uuid,
                         const struct store_cfg *cfg, struct bim_error *err)
{
    int dirfd, rc;

    rc = store_image_dir_open(store, name, uuid, &dirfd);
    if (rc == -EINVAL)
        return bim_error_set(err, rc, "invalid name or uuid");
    if (rc < 0)
        return bim_error_set(err, rc, "cannot open the image directory: %s", strerror(-rc));
    rc = store_image_cfg_write(store, dirfd, name, uuid, cfg, err);
    close(dirfd);
    return rc;
}

int store_image_load_cfg(struct store *store, const char *name, const char *uuid,
                         struct store_cfg *cfg, struct bim_error *err)
{
    int dirfd, rc;

    memset(cfg, 0, sizeof(*cfg));
    rc = store_image_dir_open(store, name, uuid, &dirfd);
    if (rc < 0)
        return bim_error_set(err, rc, "cannot open the image directory: %s", strerror(-rc));
    rc = store_cfg_read_at(dirfd, cfg, err);
    close(dirfd);
    return rc;
}

/* Unlink the files of an image directory that exist (missing is not an
 * error); fsync the directory when sync_dir. */
static int store_image_unlink(struct store *store, const char *name, const char *uuid,
                              const char *const *files, size_t count, bool sync_dir)
{
    int dirfd, rc;

    rc = store_image_dir_open(store, name, uuid, &dirfd);
    if (rc == -ENOENT)
        return 0;
    if (rc < 0)
        return rc;
    rc = 0;
    for (size_t i = 0; i < count; i++) {
        if (unlinkat(dirfd, files[i], 0) < 0 && errno != ENOENT && rc == 0)
            rc = -errno;
    }
    if (sync_dir && fsync(dirfd) < 0 && rc == 0)
        rc = -errno;
    close(dirfd);
    return rc;
}

int store_image_remove_tmp(struct store *store, const char *name, const char *uuid)
{
    static const char *const files[] = {STORE_BACKING_TMP};

    return store_image_unlink(store, name, uuid, files, 1, false);
}

int store_image_remove_data(struct store *store, const char *name, const char *uuid)
{
    static const char *const files[] = {STORE_BACKING_TMP, STORE_BACKING, STORE_PIECES,
                                        STORE_PIECES_TMP};

    return store_image_unlink(store, name, uuid, files, 4, true);
}

int store_image_remove(struct store *store, const char *name, const char *uuid)
{
    char dir[STORE_DIRNAME_MAX];

    if (store_dirname(name, uuid, dir) < 0)
        return -EINVAL;
    return store_dir_delete(store->images_fd, dir);
}

int store_backing_check(const struct stat *st, char *why, size_t len)
{
    if (S_ISLNK(st->st_mode)) {
        snprintf(why, len, "backing is a symbolic link");
        return -ELOOP;
    }
    if (!S_ISREG(st->st_mode)) {
        snprintf(why, len, "backing is not a regular file");
        return -EPERM;
    }
    if (st->st_nlink != 1) {
        snprintf(why, len, "backing has %llu links (a hard link to a file elsewhere?)",
                 (unsigned long long)st->st_nlink);
        return -EMLINK;
    }
    return 0;
}

int store_image_open_backing(struct store *store, const char *name, const char *uuid, int *fd)
{
    char dir[STORE_DIRNAME_MAX], path[STORE_DIRNAME_MAX + sizeof(STORE_BACKING) + 1], why[96];
    struct stat st;
    int rc;

    *fd = -1;
    if (store_dirname(name, uuid, dir) < 0)
        return -EINVAL;
    snprintf(path, sizeof(path), "%s/%s", dir, STORE_BACKING);
    /* not even opened when it is no regular file (a FIFO would block) */
    if (fstatat(store->images_fd, path, &st, AT_SYMLINK_NOFOLLOW) < 0)
        return -errno;
    rc = store_backing_check(&st, why, sizeof(why));
    if (rc < 0)
        return rc;
    *fd = openat(store->images_fd, path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
    if (*fd < 0)
        return -errno;
    /* and the file opened is one that passes (it may have been swapped) */
    if (fstat(*fd, &st) < 0)
        rc = -errno;
    else
        rc = store_backing_check(&st, why, sizeof(why));
    if (rc == 0 && fcntl(*fd, F_SETFL, 0) < 0)
        rc = -errno;
    if (rc < 0) {
        close(*fd);
        *fd = -1;
    }
    return rc;
}

int store_image_stat_backing(struct store *store, const char *name, const char *uuid,
                             struct stat *st)
{
    char dir[STORE_DIRNAME_MAX], path[STORE_DIRNAME_MAX + sizeof(STORE_BACKING) + 1];

    if (store_dirname(name, uuid, dir) < 0)
        return -EINVAL;
    snprintf(path, sizeof(path), "%s/%s", dir, STORE_BACKING);
    if (fstatat(store->images_fd, path, st, AT_SYMLINK_NOFOLLOW) < 0)
        return -errno;
    return 0;
}
