/*
 * leftover.c - what a crash in the middle of a create or a delete can leave in
 * backing-images/, and removing exactly that (SPEC §2: a crash never leaves a
 * directory that blocks the same name and uuid; a directory that may hold
 * someone's data is never deleted).
 *
 *   .<name>-<uuid>.tmp/   a create's staging directory (store_image_prepare
 *                         writes the cfg there, then renames it into place):
 *                         removed when it holds nothing but backing.cfg and
 *                         backing.cfg.tmp
 *   .<name>-<uuid>.deleting/  an image a delete had renamed out of the way
 *                         (store_dir_delete) before emptying it: removed
 *                         with whatever it holds
 *   <name>-<uuid>/        without backing.cfg and without backing, holding
 *                         nothing but backing.tmp and backing.cfg.tmp (or
 *                         nothing): a create of an older bimfs cut before
 *                         its cfg, or a delete of an older bimfs cut after
 *                         it: removed
 *
 * Anything else without a cfg (a `backing`, any other file) is left alone.
 * A delete is one rename, so a crash leaves the image as it was or gone:
 * never an image that lost its backing and reads as failed.
 *
 * Threads: the caller's; only the daemon writes backing-images/.
 */
#include "store_internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define STAGING_SUFFIX ".tmp"
#define DELETING_SUFFIX ".deleting"

int store_staging_name(const char *dirname, char out[STORE_STAGING_MAX])
{
    int n = snprintf(out, STORE_STAGING_MAX, ".%s" STAGING_SUFFIX, dirname);

    return n < 0 || n >= STORE_STAGING_MAX ? -ENAMETOOLONG : 0;
}

int store_deleting_name(const char *dirname, char out[STORE_STAGING_MAX])
{
    int n = snprintf(out, STORE_STAGING_MAX, ".%s" DELETING_SUFFIX, dirname);

    return n < 0 || n >= STORE_STAGING_MAX ? -ENAMETOOLONG : 0;
}

int store_dir_open(int dirfd, DIR **out)
{
    int fd, rc;

    fd = openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    *out = fdopendir(fd);
    if (!*out) {
        rc = -errno;
        close(fd);
        return rc;
    }
    return 0;
}

bool store_dirname_parses(const char *dirname, size_t len)
{
    char name[STORE_NAME_MAX + 1], uuid[STORE_UUID_MAX + 1];

    /* names and uuids may both hold '-': any split that gives a valid pair */
    for (size_t i = 1; i + 1 < len; i++) {
        if (dirname[i] != '-' || i > STORE_NAME_MAX || len - i - 1 > STORE_UUID_MAX)
            continue;
        memcpy(name, dirname, i);
        name[i] = '\0';
        memcpy(uuid, dirname + i + 1, len - i - 1);
        uuid[len - i - 1] = '\0';
        if (store_name_valid(name) && store_uuid_valid(uuid))
            return true;
    }
    return false;
}

/* Does dirfd hold no entry but those named in allowed (NULL: any entry)?
 * 0 or -errno. */
static int store_dir_holds_only(int dirfd, const char *const *allowed, size_t count, bool *only)
{
    struct dirent *de;
    DIR *dir;
    int rc;

    *only = true;
    if (!allowed)
        return 0; /* anything */
    rc = store_dir_open(dirfd, &dir);
    if (rc < 0)
        return rc;
    while (*only && (de = readdir(dir))) {
        bool known = strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0;

        for (size_t i = 0; i < count && !known; i++)
            known = strcmp(de->d_name, allowed[i]) == 0;
        *only = known;
    }
    closedir(dir);
    return 0;
}

int store_dir_empty(int dirfd)
{
    struct dirent *de;
    DIR *dir;
    int rc;

    rc = store_dir_open(dirfd, &dir);
    if (rc < 0)
        return rc;
    while ((de = readdir(dir))) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0 ||
            strcmp(de->d_name, STORE_CFG) == 0)
            continue;
        if (unlinkat(dirfd, de->d_name, 0) == 0 || errno == ENOENT)
            continue;
        if ((errno == EISDIR || errno == EPERM) &&
            (unlinkat(dirfd, de->d_name, AT_REMOVEDIR) == 0 || errno == ENOENT))
            continue;
        rc = -errno;
        break;
    }
    closedir(dir);
    /* the cfg last: until it goes the directory is still an identifiable image */
    if (rc == 0 && unlinkat(dirfd, STORE_CFG, 0) < 0 && errno != ENOENT)
        rc = -errno;
    return rc;
}

int store_dir_remove(int parent_fd, const char *name)
{
    int dirfd, rc;

    dirfd = openat(parent_fd, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
    if (dirfd < 0)
        return errno == ENOENT ? 0 : -errno;
    rc = store_dir_empty(dirfd);
    close(dirfd);
    if (rc < 0)
        return rc;
    if (unlinkat(parent_fd, name, AT_REMOVEDIR) < 0 && errno != ENOENT)
        return -errno;
    return store_durable_sync_dir(parent_fd);
}

int store_dir_delete(int parent_fd, const char *dirname)
{
    char deleting[STORE_STAGING_MAX];
    int rc;

    rc = store_deleting_name(dirname, deleting);
    if (rc < 0)
        return rc;
    rc = store_dir_remove(parent_fd, deleting); /* an earlier delete's, cut short */
    if (rc < 0)
        return rc;
    if (renameat(parent_fd, dirname, parent_fd, deleting) < 0)
        return errno == ENOENT ? 0 : -errno;
    rc = store_durable_sync_dir(parent_fd);
    if (rc < 0)
        return rc;
    return store_dir_remove(parent_fd, deleting);
}

/* Is the len bytes of dirname "." + a valid <name>-<uuid> + suffix? */
static bool store_leftover_hidden(const char *dirname, size_t len, const char *suffix)
{
    size_t slen = strlen(suffix);

    return dirname[0] == '.' && len > 1 + slen && strcmp(dirname + len - slen, suffix) == 0 &&
           store_dirname_parses(dirname + 1, len - 1 - slen);
}

/* Which leftover dirname is, and what it may hold to be removed. */
static bool store_leftover_kind(int dirfd, const char *dirname, const char *const **allowed,
                                size_t *count)
{
    static const char *const staging[] = {STORE_CFG, STORE_CFG_TMP};
    static const char *const unfinished[] = {STORE_BACKING_TMP, STORE_CFG_TMP, STORE_PIECES,
                                             STORE_PIECES_TMP};
    size_t len = strlen(dirname);
    struct stat st;

    if (store_leftover_hidden(dirname, len, STAGING_SUFFIX)) {
        *allowed = staging;
        *count = 2;
        return true;
    }
    if (store_leftover_hidden(dirname, len, DELETING_SUFFIX)) {
        *allowed = NULL; /* anything: the image was being deleted */
        *count = 0;
        return true;
    }
    if (!store_dirname_parses(dirname, len))
        return false;
    if (fstatat(dirfd, STORE_CFG, &st, AT_SYMLINK_NOFOLLOW) == 0 || errno != ENOENT)
        return false; /* has a cfg (or cannot tell): the scan judges it */
    *allowed = unfinished;
    *count = 4;
    return true;
}

bool store_leftover_sweep(struct store *store, const char *dirname, int dirfd)
{
    const char *const *allowed;
    size_t count;
    bool only;
    int rc;

    if (!store_leftover_kind(dirfd, dirname, &allowed, &count))
        return false;
    rc = store_dir_holds_only(dirfd, allowed, count, &only);
    if (rc < 0 || !only)
        return false;
    rc = store_dir_remove(store->images_fd, dirname);
    if (rc < 0) {
        log_warn("%s/%s: cannot remove what an interrupted create left: %s", store->images, dirname,
                 strerror(-rc));
        return false;
    }
    log_info("%s/%s: removed what an interrupted create or delete left", store->images, dirname);
    return true;
}
