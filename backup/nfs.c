/*
 * nfs.c - the nfs backup target (bk_nfs_open, backup/vfs.h; docs/backup.md
 * "vfs and nfs targets"): nfs://server:/export[?nfsOptions=a,b] is mounted as
 * Longhorn mounts it, NFSv4 at /var/lib/longhorn-backupstore-mounts/<server
 * with '.' as '_'>/<export>, trying nfsvers 4.2, 4.1 then 4.0 with
 * actimeo=1,soft,timeo=300,retry=2 (and the URL's nfsOptions), and is then a
 * vfs target on that directory (backup/vfs.c). A share mounted there already
 * is used as it is. It needs mount(8), mount.nfs4 (nfs-common) and a kernel
 * with the nfs4 client, and the right to mount (root or CAP_SYS_ADMIN).
 *
 * Threads: open runs mount(8) in a child and waits for it; the target is then
 * the vfs target's (no lock). Mounts are left in place, as Longhorn does.
 */
#include "vfs.h"

#include <errno.h>
#include <limits.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define NFS_MOUNT_BASE "/var/lib/longhorn-backupstore-mounts"
#define NFS_OPTIONS_BASE "actimeo=1,soft,timeo=300,retry=2"
#define NFS_OPTIONS_MAX 512

extern char **environ;

/* Whether dir is the mount point of an NFS file system (/proc/self/mountinfo). */
static bool nfs_is_mounted(const char *dir)
{
    char line[4096], point[PATH_MAX], type[64];
    bool found = false;
    FILE *f = fopen("/proc/self/mountinfo", "re");

    if (!f)
        return false;
    while (!found && fgets(line, sizeof(line), f)) {
        const char *dash = strstr(line, " - ");

        if (sscanf(line, "%*s %*s %*s %*s %4095s", point) != 1 || !dash ||
            sscanf(dash + 3, "%63s", type) != 1)
            continue;
        found = strcmp(point, dir) == 0 && strncmp(type, "nfs", 3) == 0;
    }
    fclose(f);
    return found;
}

static bool nfs_helper_present(void)
{
    return access("/sbin/mount.nfs4", X_OK) == 0 || access("/usr/sbin/mount.nfs4", X_OK) == 0;
}

/* Run mount -t nfs4 -o options source dir; 0, or the exit status (> 0) of mount. */
static int nfs_mount_run(const char *source, const char *dir, const char *options)
{
    char *argv[] = {"mount",         "-t",           "nfs4",      "-o",
                    (char *)options, (char *)source, (char *)dir, NULL};
    posix_spawn_file_actions_t fa;
    pid_t pid;
    int status, rc;

    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, STDIN_FILENO, "/dev/null", 0, 0);
    posix_spawn_file_actions_addopen(&fa, STDOUT_FILENO, "/dev/null", 1, 0);
    posix_spawn_file_actions_addopen(&fa, STDERR_FILENO, "/dev/null", 1, 0);
    rc = posix_spawnp(&pid, "mount", &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    if (rc != 0)
        return -rc;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR)
            return -errno;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128;
}

/* mkdir -p dir (0700, as Longhorn). */
static int nfs_mkdirs(char *dir)
{
    for (char *p = dir + 1;; p++) {
        if (*p == '/' || *p == '\0') {
            char c = *p;

            *p = '\0';
            if (mkdir(dir, 0700) < 0 && errno != EEXIST) {
                *p = c;
                return -errno;
            }
            *p = c;
            if (c == '\0')
                return 0;
        }
    }
}

int bk_nfs_open(const char *url, struct bk_target **out, struct bim_error *err)
{
    static const char *const versions[] = {"4.2", "4.1", "4.0"};
    char shown[BK_VFS_SHOWN_MAX], host[256], source[1024], dir[PATH_MAX];
    char options[NFS_OPTIONS_MAX], extra[NFS_OPTIONS_MAX] = "";
    const char *rest, *colon, *query;
    size_t n;
    int rc = -EIO;

    *out = NULL;
    rest = url + strlen("nfs://");
    n = strcspn(rest, "?#");
    if (n + 6 >= sizeof(shown))
        return bim_error_set(err, -ENAMETOOLONG, "nfs target URL too long");
    snprintf(shown, sizeof(shown), "nfs://%.*s", (int)n, rest);
    colon = memchr(rest, ':', n);
    if (!colon || colon == rest || (size_t)(colon - rest) >= sizeof(host) || colon[1] != '/' ||
        strspn(rest, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-[]") !=
            (size_t)(colon - rest))
        return bim_error_set(err, -EINVAL, "%s: an nfs target is nfs://server:/export", shown);
    snprintf(host, sizeof(host), "%.*s", (int)(colon - rest), rest);
    snprintf(source, sizeof(source), "%.*s", (int)n, rest);
    query = strstr(rest + n, "nfsOptions=");
    if (query && sscanf(query + strlen("nfsOptions="), "%511[A-Za-z0-9_=,.]", extra) != 1)
        extra[0] = '\0';
    for (char *p = host; *p; p++)
        if (*p == '.')
            *p = '_';
    if (snprintf(dir, sizeof(dir), "%s/%s%.*s", NFS_MOUNT_BASE, host,
                 (int)(n - (size_t)(colon + 1 - rest)), colon + 1) >= (int)sizeof(dir))
        return bim_error_set(err, -ENAMETOOLONG, "%s: path too long", shown);
    n = strlen(dir);
    while (n > 1 && dir[n - 1] == '/')
        dir[--n] = '\0';
    if (nfs_is_mounted(dir))
        return bk_vfs_open_root(shown, dir, out, err);
    if (!nfs_helper_present())
        return bim_error_set(err, -EINVAL,
                             "%s: cannot mount: mount.nfs4 is missing (install nfs-common), or "
                             "mount the share yourself and use a vfs:// target",
                             shown);
    rc = nfs_mkdirs(dir);
    if (rc < 0)
        return bim_error_set(err, rc, "%s: cannot mount: making %s: %s", shown, dir, strerror(-rc));
    for (size_t i = 0; i < sizeof(versions) / sizeof(versions[0]); i++) {
        snprintf(options, sizeof(options), "nfsvers=%s,%s%s%s", versions[i], NFS_OPTIONS_BASE,
                 extra[0] ? "," : "", extra);
        rc = nfs_mount_run(source, dir, options);
        if (rc == 0)
            return bk_vfs_open_root(shown, dir, out, err);
    }
    if (rc < 0)
        return bim_error_set(err, -EINVAL, "%s: cannot mount: running mount: %s", shown,
                             strerror(-rc));
    return bim_error_set(err, -EINVAL,
                         "%s: cannot mount %s on %s (mount exited %d with NFS 4.2, 4.1 and 4.0): "
                         "it needs root, the kernel's nfs4 client and a reachable server",
                         shown, source, dir, rc);
}
