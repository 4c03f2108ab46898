/*
 * layout.c - where a backupstore keeps things (notes/backupstore.md A1): the
 * cfg of a backing image, the shared block pool, backup URLs, and the time
 * format of the cfg.
 *
 * Threads: any; no state.
 */
#include "backup_internal.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

void bk_cfg_path(const char *name, char out[BK_PATH_MAX])
{
    snprintf(out, BK_PATH_MAX, BK_CFG_DIR "/%s/backing-image.cfg", name);
}

void bk_block_path(const char *checksum, char out[BK_PATH_MAX])
{
    snprintf(out, BK_PATH_MAX, BK_BLOCK_DIR "/%.2s/%.2s/%s.blk", checksum, checksum + 2, checksum);
}

int bk_backup_url(const char *target, const char *name, char out[BK_URL_MAX])
{
    const char *sep = strchr(target, '?') ? "&" : "?";

    if (snprintf(out, BK_URL_MAX, "%s%sbackingImage=%s", target, sep, name) >= BK_URL_MAX)
        return -ENAMETOOLONG;
    return 0;
}

void bk_time_now(char out[BK_TIME_MAX])
{
    time_t now = time(NULL);
    struct tm tm;

    gmtime_r(&now, &tm);
    strftime(out, BK_TIME_MAX, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

void bk_block_hex(const unsigned char sum[BK_BLOCK_HEX / 2], char out[BK_BLOCK_HEX + 1])
{
    static const char digits[] = "0123456789abcdef";

    for (size_t i = 0; i < BK_BLOCK_HEX / 2; i++) {
        out[2 * i] = digits[sum[i] >> 4];
        out[2 * i + 1] = digits[sum[i] & 15];
    }
    out[BK_BLOCK_HEX] = '\0';
}
