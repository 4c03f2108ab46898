/*
 * scan.c - walk DISK/backing-images and report every directory that can be
 * identified as <name>-<uuid>: the uuid comes from its backing.cfg and the
 * directory name must be "<valid name>-<that uuid>". What an interrupted
 * create or delete left is removed (leftover.c); anything else is logged and
 * left alone, never deleted or changed.
 *
 * Threads: the caller's. Not safe against writers of the same directories.
 */
#include "store_internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Split dirname into entry->name using the cfg's uuid; false if it does not
 * identify the image. */
static bool store_scan_identify(const char *dirname, struct store_entry *entry)
{
    size_t len = strlen(dirname), ulen = strlen(entry->cfg.uuid), nlen;

    if (!store_uuid_valid(entry->cfg.uuid) || len < ulen + 2)
        return false;
    nlen = len - ulen - 1;
    if (dirname[nlen] != '-' || strcmp(dirname + nlen + 1, entry->cfg.uuid) != 0)
        return false;
    if (nlen > STORE_NAME_MAX)
        return false;
    memcpy(entry->name, dirname, nlen);
    entry->name[nlen] = '\0';
    str_copy(entry->uuid, sizeof(entry->uuid), entry->cfg.uuid);
    return store_name_valid(entry->name);
}

static void store_scan_fill_files(int dirfd, struct store_entry *entry)
{
    char mtime[STORE_TIME_MAX];
    struct stat st;

    entry->has_backing = fstatat(dirfd, STORE_BACKING, &entry->backing, AT_SYMLINK_NOFOLLOW) == 0;
    if (entry->has_backing && store_backing_check(&entry->backing, entry->backing_refused,
                                                  sizeof(entry->backing_refused)) < 0)
        entry->has_backing = false;
    entry->has_tmp = fstatat(dirfd, STORE_BACKING_TMP, &st, AT_SYMLINK_NOFOLLOW) == 0;
    if (!entry->has_backing)
        return;
    store_time_format(&entry->backing.st_mtim, mtime);
    entry->matches_cfg = (uint64_t)entry->backing.st_size == entry->cfg.size &&
                         strcmp(mtime, entry->cfg.modification_time) == 0;
}

/* Look at one entry of backing-images/ and report it if it is an image. */
static void store_scan_one(struct store *store, const char *dirname, store_scan_fn fn, void *ctx)
{
    struct store_entry *entry = NULL;
    struct bim_error err = {0};
    int dirfd, rc;

    dirfd = openat(store->images_fd, dirname, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
    if (dirfd < 0) {
        log_warn("%s/%s is not an image directory (%s); left alone", store->images, dirname,
                 strerror(errno));
        return;
    }
    if (store_leftover_sweep(store, dirname, dirfd))
        goto out;
    entry = calloc(1, sizeof(*entry));
    if (!entry) {
        log_error("%s/%s: out of memory; skipped", store->images, dirname);
        goto out;
    }
    rc = store_cfg_read_at(dirfd, &entry->cfg, &err);
    if (rc == -ENOENT) {
        log_warn("%s/%s has no backing.cfg; left alone", store->images, dirname);
        goto out;
    }
    if (rc < 0) {
        log_warn("%s/%s: %s; left alone", store->images, dirname, err.message);
        goto out;
    }
    if (!store_scan_identify(dirname, entry)) {
        log_warn("%s/%s does not match <name>-<uuid> of its backing.cfg (uuid \"%s\"); left alone",
                 store->images, dirname, entry->cfg.uuid);
        goto out;
    }
    store_scan_fill_files(dirfd, entry);
    fn(ctx, entry);
out:
    if (entry) {
        store_cfg_clear(&entry->cfg);
        free(entry);
    }
    close(dirfd);
}

int store_scan(struct store *store, store_scan_fn fn, void *ctx)
{
    struct dirent *de;
    DIR *dir;
    int rc;

    rc = store_dir_open(store->images_fd, &dir);
    if (rc < 0)
        return rc;
    while ((errno = 0, de = readdir(dir))) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        store_scan_one(store, de->d_name, fn, ctx);
    }
    rc = -errno;
    closedir(dir);
    return rc;
}
