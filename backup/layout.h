/*
 * layout.h - where a Longhorn backupstore keeps the backups of backing images
 * (notes/backupstore.md A1; layout.c): the cfg of each, the shared pool of
 * blocks and their names, the lock directory, backup URLs and the cfg's time
 * format. Backups (backup/) write there; restores (sync/restore/) read there.
 *
 * Threads: reentrant; no state.
 */
#ifndef BIMFS_BACKUP_LAYOUT_H
#define BIMFS_BACKUP_LAYOUT_H

#include "backup.h"

#define BK_PATH_MAX 512
#define BK_CFG_DIR "backupstore/backing-images/backing-images"
#define BK_BLOCK_DIR "backupstore/backing-images/blocks"
/* getLockPath("BACKINGIMAGE"): volumes/<ck[0:2]>/<ck[2:4]>/BACKINGIMAGE/locks, ck the
 * first 64 hex of SHA-512("BACKINGIMAGE") (tests/integration/lhbackup.py checks it) */
#define BK_LOCK_DIR "backupstore/volumes/22/fc/BACKINGIMAGE/locks"
#define BK_BLOCK_HEX 64 /* a block's name: the first 64 hex of its SHA-512 */
#define BK_CFG_MAX (64u << 20)

/* backupstore/backing-images/backing-images/<name>/backing-image.cfg */
void bk_cfg_path(const char *name, char out[BK_PATH_MAX]);

/* backupstore/backing-images/blocks/<c[0:2]>/<c[2:4]>/<c>.blk */
void bk_block_path(const char *checksum, char out[BK_PATH_MAX]);

/* <target>?backingImage=<name> (&backingImage= when target has a query). */
int bk_backup_url(const char *target, const char *name, char out[BK_URL_MAX]);

/* Now as RFC 3339 UTC without fractions (Longhorn's util.Now). */
void bk_time_now(char out[BK_TIME_MAX]);

/* The 64 hex of a block's name. */
void bk_block_hex(const unsigned char sum[BK_BLOCK_HEX / 2], char out[BK_BLOCK_HEX + 1]);

#endif
