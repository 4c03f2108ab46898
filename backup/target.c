/*
 * target.c - bk_target_open (backup/target.h): the table of a backup URL's
 * scheme, then that table's open. vfs:// and s3:// are tables of their own;
 * nfs:// mounts (backup/nfs.c) and is then a vfs target.
 *
 * Threads: any; no state.
 */
#include "target.h"
#include "vfs.h"

#include <errno.h>
#include <string.h>

int bk_target_open(const char *url, struct bk_target **out, const struct bk_target_ops **ops,
                   struct bim_error *err)
{
    size_t scheme_len;
    int rc;

    *out = NULL;
    *ops = NULL;
    scheme_len = strcspn(url, ":/?#@");
    if (strncmp(url + scheme_len, "://", 3) != 0)
        return bim_error_set(err, -EINVAL,
                             "a backup target is vfs:///path, nfs://server:/export or "
                             "s3://bucket@region/prefix/");
    if (scheme_len == 3 && strncmp(url, "vfs", 3) == 0) {
        *ops = &bk_vfs_ops;
    } else if (scheme_len == 2 && strncmp(url, "s3", 2) == 0) {
        *ops = &bk_s3_ops;
    } else if (scheme_len == 3 && strncmp(url, "nfs", 3) == 0) {
        rc = bk_nfs_open(url, out, err);
        if (rc == 0)
            *ops = &bk_vfs_ops;
        return rc;
    } else {
        return bim_error_set(err, -EINVAL,
                             "unsupported backup target scheme '%.*s://' (vfs://, nfs:// or s3://)",
                             (int)(scheme_len > 16 ? 16 : scheme_len), url);
    }
    rc = (*ops)->open(url, out, err);
    if (rc < 0)
        *ops = NULL;
    return rc;
}
