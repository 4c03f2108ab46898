/*
 * vfs.c - the vfs backup target, bk_vfs_ops (backup/target.h; docs/backup.md
 * "vfs and nfs targets"): vfs:///abs/path is a directory (local, or an NFS or
 * CIFS share mounted already); target path P is the file /abs/path/P, as in
 * Longhorn's fsops.
 *
 * write: a hidden tmp file in the same directory (".tmp-<name>-<ns>-<tid>",
 * unique per writer, skipped by list), fsync, rename over the file, fsync the
 * directory; missing parents are made (each new one fsynced into its parent).
 * list: the directory's children, hidden names left out; a missing directory is
 * empty. read: bounded by the caller. remove: recursive, missing ok, then up to
 * 10 parents left empty are removed (never the root or its "backupstore").
 * mtime: the file's mtime; now: the local clock (the target is this machine's,
 * or an NFS server whose mtimes follow its clients' clocks). Listings are
 * immediate (the lock's fast path) on a local file system only.
 *
 * write_deferred and flush (vfs_batch.c): a backup's blocks, made durable
 * in batches.
 *
 * Threads: any number of threads may use one target at once; root, shown and
 * local are set by open; t->lock guards the deferred writes' list only
 * (vfs_batch.c).
 */
#include "vfs.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/magic.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <time.h>
#include <unistd.h>

#define VFS_PRUNE_MAX 10 /* empty parents a remove takes away at most (Longhorn's) */

/* ---- the kind of file system ---- */

/* Whether dir is on a file system of this machine's kernel (ext4, xfs,
 * btrfs, tmpfs, ...), where a file is listed as soon as it is written, by
 * every process. NFS, CIFS, FUSE and the rest cache listings (Longhorn's
 * nfs mounts use actimeo=1): no. */
static bool vfs_root_is_local(const char *dir)
{
    struct statfs fs;

    if (statfs(dir, &fs) < 0)
        return false;
    switch ((unsigned long)fs.f_type) {
    case EXT4_SUPER_MAGIC: /* ext2, ext3 too */
    case XFS_SUPER_MAGIC:
    case BTRFS_SUPER_MAGIC:
    case F2FS_SUPER_MAGIC:
    case TMPFS_MAGIC:
    case RAMFS_MAGIC:
    case OVERLAYFS_SUPER_MAGIC: /* a container's root, over local layers */
        return true;
    default:
        return false;
    }
}

static bool vfs_listing_is_immediate(struct bk_target *t)
{
    return t->local;
}

/* ---- paths ---- */

/* A target path is relative, without "." or ".." components or empty ones
 * (a trailing '/' aside); dir may be "" (the root) for list. */
static bool vfs_path_valid(const char *path, bool empty_ok)
{
    const char *p = path;

    if (*p == '\0')
        return empty_ok;
    if (*p == '/')
        return false;
    while (*p) {
        const char *end = strchr(p, '/');
        size_t n = end ? (size_t)(end - p) : strlen(p);

        if (n == 0 && end && end[1] != '\0')
            return false;
        if ((n == 1 && p[0] == '.') || (n == 2 && p[0] == '.' && p[1] == '.'))
            return false;
        if (!end)
            break;
        p = end + 1;
    }
    return true;
}

int bk_vfs_full_path(struct bk_target *t, const char *path, bool empty_ok, char *out, size_t outlen,
                     struct bim_error *err)
{
    size_t n;

    if (!vfs_path_valid(path, empty_ok))
        return bim_error_set(err, -EINVAL, "%s: bad path '%s'", t->shown, path);
    if (snprintf(out, outlen, "%s/%s", t->root, path) >= (int)outlen)
        return bim_error_set(err, -ENAMETOOLONG, "%s: path too long: %s", t->shown, path);
    n = strlen(out);
    while (n > 1 && out[n - 1] == '/')
        out[--n] = '\0';
    return 0;
}

/* ---- open, close ---- */

int bk_vfs_open_root(const char *shown, const char *root, struct bk_target **out,
                     struct bim_error *err)
{
    struct bk_target *t;
    struct stat st;
    size_t n;

    *out = NULL;
    if (root[0] != '/')
        return bim_error_set(err, -EINVAL, "%s: the path must be absolute", shown);
    if (stat(root, &st) < 0)
        return bim_error_set(err, -errno, "%s: %s: %s", shown, root, strerror(errno));
    if (!S_ISDIR(st.st_mode))
        return bim_error_set(err, -ENOTDIR, "%s: %s is not a directory", shown, root);
    t = calloc(1, sizeof(*t));
    if (!t)
        return bim_error_set(err, -ENOMEM, "%s: out of memory", shown);
    str_copy(t->shown, sizeof(t->shown), shown);
    if (!str_copy(t->root, sizeof(t->root), root)) {
        free(t);
        return bim_error_set(err, -ENAMETOOLONG, "%s: path too long", shown);
    }
    n = strlen(t->root);
    while (n > 1 && t->root[n - 1] == '/')
        t->root[--n] = '\0';
    t->local = vfs_root_is_local(t->root);
    pthread_mutex_init(&t->lock, NULL);
    *out = t;
    return 0;
}

/* vfs:///abs/path[?query]: no host, an absolute path; the query (a backup
 * URL's ?backingImage=) is not part of the target. */
static int vfs_open(const char *url, struct bk_target **out, struct bim_error *err)
{
    char shown[BK_VFS_SHOWN_MAX], root[PATH_MAX];
    const char *path;
    size_t n;

    *out = NULL;
    if (strncmp(url, "vfs://", 6) != 0)
        return bim_error_set(err, -EINVAL, "not a vfs:// URL");
    path = url + 6;
    n = strcspn(path, "?#");
    if (n >= sizeof(root) || 6 + n >= sizeof(shown))
        return bim_error_set(err, -ENAMETOOLONG, "vfs target URL too long");
    memcpy(shown, url, 6 + n);
    shown[6 + n] = '\0';
    if (path[0] != '/')
        return bim_error_set(err, -EINVAL,
                             "%s: a vfs target is vfs:///absolute/path (no host, an absolute path)",
                             shown);
    if (n == 1)
        return bim_error_set(err, -EINVAL, "%s: the root directory is not a backup target", shown);
    memcpy(root, path, n);
    root[n] = '\0';
    return bk_vfs_open_root(shown, root, out, err);
}

static void vfs_close(struct bk_target *t)
{
    bk_vfs_discard(t);
    pthread_mutex_destroy(&t->lock);
    free(t);
}

/* ---- list ---- */

static int vfs_list(struct bk_target *t, const char *dir, char ***names, size_t *count,
                    struct bim_error *err)
{
    char path[PATH_MAX], **v = NULL, **grown;
    size_t n = 0, cap = 0;
    struct dirent *de;
    DIR *d = NULL;
    int rc;

    *names = NULL;
    *count = 0;
    rc = bk_vfs_full_path(t, dir, true, path, sizeof(path), err);
    if (rc < 0)
        return rc;
    d = opendir(path);
    if (!d) {
        if (errno == ENOENT || errno == ENOTDIR)
            return 0;
        return bim_error_set(err, -errno, "%s: list %s: %s", t->shown, dir, strerror(errno));
    }
    errno = 0;
    while ((de = readdir(d)) != NULL) {
        if (de->d_name[0] == '.')
            continue; /* ".", "..", tmp files */
        if (n == cap) {
            cap = cap ? cap * 2 : 16;
            grown = realloc(v, cap * sizeof(*v));
            if (!grown) {
                rc = bim_error_set(err, -ENOMEM, "%s: list %s: out of memory", t->shown, dir);
                goto out;
            }
            v = grown;
        }
        v[n] = strdup(de->d_name);
        if (!v[n]) {
            rc = bim_error_set(err, -ENOMEM, "%s: list %s: out of memory", t->shown, dir);
            goto out;
        }
        n++;
        errno = 0;
    }
    if (errno != 0)
        rc = bim_error_set(err, -errno, "%s: list %s: %s", t->shown, dir, strerror(errno));
out:
    closedir(d);
    if (rc < 0) {
        for (size_t i = 0; i < n; i++)
            free(v[i]);
        free(v);
        return rc;
    }
    *names = v;
    *count = n;
    return 0;
}

/* ---- read, exists, mtime ---- */

static int vfs_read(struct bk_target *t, const char *path, size_t max, void **buf, size_t *len,
                    struct bim_error *err)
{
    char full[PATH_MAX];
    char *b = NULL;
    struct stat st;
    size_t got = 0;
    int fd = -1, rc;

    *buf = NULL;
    *len = 0;
    rc = bk_vfs_full_path(t, path, false, full, sizeof(full), err);
    if (rc < 0)
        return rc;
    fd = open(full, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        rc = -errno;
        if (rc != -ENOENT)
            bim_error_set(err, rc, "%s: read %s: %s", t->shown, path, strerror(-rc));
        else
            bim_error_set(err, rc, "%s: %s: no such file", t->shown, path);
        goto out;
    }
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        rc = bim_error_set(err, -EISDIR, "%s: read %s: not a regular file", t->shown, path);
        goto out;
    }
    if ((uint64_t)st.st_size > max) {
        rc = bim_error_set(err, -EFBIG, "%s: read %s: %lld bytes, more than the %zu allowed",
                           t->shown, path, (long long)st.st_size, max);
        goto out;
    }
    b = malloc((size_t)st.st_size + 1);
    if (!b) {
        rc = bim_error_set(err, -ENOMEM, "%s: read %s: out of memory", t->shown, path);
        goto out;
    }
    rc = fd_pread_full(fd, b, (size_t)st.st_size, 0, &got);
    if (rc < 0) {
        bim_error_set(err, rc, "%s: read %s: %s", t->shown, path, strerror(-rc));
        goto out;
    }
    b[got] = '\0';
    *buf = b;
    *len = got;
    b = NULL;
out:
    free(b);
    if (fd >= 0)
        close(fd);
    return rc;
}

/* stat the target path: 0, -ENOENT (with a message) when missing, -errno. */
static int vfs_stat(struct bk_target *t, const char *path, struct stat *st, struct bim_error *err)
{
    char full[PATH_MAX];
    int rc;

    rc = bk_vfs_full_path(t, path, false, full, sizeof(full), err);
    if (rc < 0)
        return rc;
    if (stat(full, st) == 0)
        return 0;
    if (errno == ENOENT || errno == ENOTDIR)
        return bim_error_set(err, -ENOENT, "%s: %s: no such file", t->shown, path);
    return bim_error_set(err, -errno, "%s: stat %s: %s", t->shown, path, strerror(errno));
}

static int vfs_exists(struct bk_target *t, const char *path, struct bim_error *err)
{
    struct stat st;
    int rc = vfs_stat(t, path, &st, err);

    if (rc == -ENOENT)
        return 0;
    if (rc < 0)
        return rc;
    return S_ISDIR(st.st_mode) ? 0 : 1;
}

static int vfs_mtime(struct bk_target *t, const char *path, int64_t *unix_s, struct bim_error *err)
{
    struct stat st;
    int rc = vfs_stat(t, path, &st, err);

    if (rc == 0)
        *unix_s = (int64_t)st.st_mtime;
    return rc;
}

static int vfs_now(struct bk_target *t, int64_t *unix_s, struct bim_error *err)
{
    (void)t;
    (void)err;
    *unix_s = (int64_t)time(NULL);
    return 0;
}

/* ---- write ---- */

int bk_vfs_make_parents(struct bk_target *t, char *full, bool durable)
{
    size_t root_len = strlen(t->root);
    char *slash = full + root_len;
    int rc = 0;

    while ((slash = strchr(slash + 1, '/')) != NULL) {
        *slash = '\0';
        if (mkdir(full, 0700) < 0) { /* Longhorn's fsops: MkdirAll(dir, 0700) */
            if (errno != EEXIST)
                rc = -errno;
        } else if (durable) {
            char *up = strrchr(full, '/');
            int fd;

            *up = '\0';
            fd = open(full[0] ? full : "/", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
            *up = '/';
            if (fd < 0 || fsync(fd) < 0)
                rc = -errno;
            if (fd >= 0)
                close(fd);
        }
        *slash = '/';
        if (rc < 0)
            return rc;
    }
    return 0;
}

static int vfs_write(struct bk_target *t, const char *path, const void *buf, size_t len,
                     struct bim_error *err)
{
    char full[PATH_MAX], tmp[NAME_MAX + 1];
    struct timespec ts;
    const char *file;
    char *slash;
    int dirfd = -1, rc;

    rc = bk_vfs_full_path(t, path, false, full, sizeof(full), err);
    if (rc < 0)
        return rc;
    rc = bk_vfs_make_parents(t, full, true);
    if (rc < 0) {
        bim_error_set(err, rc, "%s: write %s: making its directory: %s", t->shown, path,
                      strerror(-rc));
        goto out;
    }
    slash = strrchr(full, '/');
    *slash = '\0';
    file = slash + 1;
    dirfd = open(full, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dirfd < 0) {
        rc = bim_error_set(err, -errno, "%s: write %s: %s", t->shown, path, strerror(errno));
        goto out;
    }
    clock_gettime(CLOCK_REALTIME, &ts);
    if (snprintf(tmp, sizeof(tmp), ".tmp-%.160s-%lld%09ld-%d", file, (long long)ts.tv_sec,
                 ts.tv_nsec, (int)gettid()) >= (int)sizeof(tmp)) {
        rc = bim_error_set(err, -ENAMETOOLONG, "%s: write %s: name too long", t->shown, path);
        goto out;
    }
    rc = fd_durable_write_at(dirfd, file, tmp, buf, len);
    if (rc < 0)
        bim_error_set(err, rc, "%s: write %s: %s", t->shown, path, strerror(-rc));
out:
    if (dirfd >= 0)
        close(dirfd);
    return rc;
}

/* ---- remove ---- */

/* Remove name in parent_fd, recursively. Missing is not an error. */
static int vfs_remove_at(int parent_fd, const char *name, int depth)
{
    struct dirent *de;
    DIR *d;
    int fd, rc = 0;

    if (unlinkat(parent_fd, name, 0) == 0 || errno == ENOENT)
        return 0;
    if (errno != EISDIR && errno != EPERM)
        return -errno;
    if (depth > 64)
        return -ELOOP;
    fd = openat(parent_fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT ? 0 : -errno;
    d = fdopendir(fd);
    if (!d) {
        rc = -errno;
        close(fd);
        return rc;
    }
    while (rc == 0 && (de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        rc = vfs_remove_at(fd, de->d_name, depth + 1);
    }
    closedir(d);
    if (rc == 0 && unlinkat(parent_fd, name, AT_REMOVEDIR) < 0 && errno != ENOENT)
        rc = -errno;
    return rc;
}

/* Remove the empty parents of full, up to VFS_PRUNE_MAX, never the root nor
 * <root>/backupstore. Failures (a parent not empty) just stop it. */
static void vfs_prune_parents(struct bk_target *t, char *full)
{
    size_t root_len = strlen(t->root);
    char base[PATH_MAX + 16];
    char *slash;

    snprintf(base, sizeof(base), "%s/backupstore", t->root);
    for (int i = 0; i < VFS_PRUNE_MAX; i++) {
        slash = strrchr(full, '/');
        if (!slash || (size_t)(slash - full) <= root_len)
            return;
        *slash = '\0';
        if (strcmp(full, base) == 0 || rmdir(full) < 0)
            return;
    }
}

static int vfs_remove(struct bk_target *t, const char *path, struct bim_error *err)
{
    char full[PATH_MAX];
    int rc;

    rc = bk_vfs_full_path(t, path, false, full, sizeof(full), err);
    if (rc < 0)
        return rc;
    rc = vfs_remove_at(AT_FDCWD, full, 0);
    if (rc < 0)
        return bim_error_set(err, rc, "%s: remove %s: %s", t->shown, path, strerror(-rc));
    vfs_prune_parents(t, full);
    return 0;
}

const struct bk_target_ops bk_vfs_ops = {
    .scheme = "vfs",
    .open = vfs_open,
    .list = vfs_list,
    .read = vfs_read,
    .write = vfs_write,
    .exists = vfs_exists,
    .remove = vfs_remove,
    .mtime = vfs_mtime,
    .now = vfs_now,
    .listing_is_immediate = vfs_listing_is_immediate,
    .write_deferred = bk_vfs_write_deferred,
    .flush = bk_vfs_flush,
    .close = vfs_close,
};
