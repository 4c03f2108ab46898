/*
 * vfs.h - the private header of the file-system targets (backup/vfs.c,
 * backup/nfs.c): an nfs:// target is a vfs target on the directory it mounted.
 *
 * Threads: see vfs.c.
 */
#ifndef BIMFS_BACKUP_VFS_H
#define BIMFS_BACKUP_VFS_H

#include "target.h"

#define BK_VFS_SHOWN_MAX 512 /* bytes of a target as messages show it */

/* A vfs target rooted at the absolute directory root (which must exist);
 * messages name it as shown. 0 or -errno with a message. */
int bk_vfs_open_root(const char *shown, const char *root, struct bk_target **out,
                     struct bim_error *err);

/* nfs://server:/export[?nfsOptions=a,b]: mount it as Longhorn does (nfs.c)
 * and open the vfs target on the mount point, whose ops are bk_vfs_ops.
 * -EINVAL with a message naming what is missing when it cannot mount. */
int bk_nfs_open(const char *url, struct bk_target **out, struct bim_error *err);

#endif
