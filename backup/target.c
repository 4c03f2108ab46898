/*
 * target.c - bk_target_open (backup/target.h): the table of a backup URL's
 * scheme, then that table's open. vfs:// and s3:// are tables of their own;
 * nfs:// mounts (backup/nfs.c) and is then a vfs target. A URL with
 * credentials in it is refused without being shown (SPEC §10).
 *
 * Threads: any; no state.
 */
#include "target.h"
#include "vfs.h"

#include <errno.h>
#include <string.h>

/* Whether the URL carries credentials (user:password@ before its host): a
 * ':' before the last '@' of what follows "://", up to the query. A vfs
 * target's path (vfs:///...) is a path and not looked at. Such a URL is
 * refused without being shown: a secret may hold '/' or '@'. */
static bool bk_target_has_credentials(const char *url, size_t scheme_len)
{
    const char *rest = url + scheme_len + 3, *at = NULL, *colon = NULL;

    if (scheme_len == 3 && strncmp(url, "vfs", 3) == 0 && rest[0] == '/')
        return false;
    for (const char *p = rest; *p && *p != '?' && *p != '#'; p++) {
        if (*p == '@')
            at = p;
        else if (*p == ':' && !colon)
            colon = p;
    }
    return at && colon && colon < at;
}

int bk_target_check_url(const char *url, struct bim_error *err)
{
    size_t scheme_len = strcspn(url, ":/?#@");

    if (strncmp(url + scheme_len, "://", 3) != 0)
        return bim_error_set(err, -EINVAL,
                             "a backup target is vfs:///path, nfs://server:/export or "
                             "s3://bucket@region/prefix/");
    if (bk_target_has_credentials(url, scheme_len))
        return bim_error_set(err, -EINVAL,
                             "credentials do not belong in a backup target URL (user:password@, "
                             "not shown): the daemon takes them from its environment "
                             "(AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY)");
    return 0;
}

int bk_target_open(const char *url, struct bk_target **out, const struct bk_target_ops **ops,
                   struct bim_error *err)
{
    size_t scheme_len;
    int rc;

    *out = NULL;
    *ops = NULL;
    rc = bk_target_check_url(url, err);
    if (rc < 0)
        return rc;
    scheme_len = strcspn(url, ":/?#@");
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
