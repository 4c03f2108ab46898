/*
 * backup.h - backups of ready images to a backup target, in the format of
 * Longhorn's backupstore (SPEC §10; docs/backup.md "Backups";
 * ../shared/notes/backupstore.md), and the listing of what a target holds.
 *
 * A backup of image N to target T: take the backing-image lock of T (lock
 * files, type, refresh, expiry against the target's clock), write the initial
 * backing-image.cfg (CompleteTime ""), cut the image into 2 MiB blocks, and for
 * each block that holds data (SEEK_DATA/SEEK_HOLE; an all-zero block is not
 * stored) read it, name it by the first 64 hex of its SHA-512, and unless the
 * target holds that block already, compress it (lz4 frame, gzip or none) and
 * write it; then the final cfg (CompleteTime, the blocks sorted by offset)
 * and the lock is released. The blocks of every backup in flight are done by
 * one bounded pool of workers (struct bk_backups), shared by all images.
 *
 * Errors: 0 or -errno with a message that names the image: -EINVAL
 * invalid_argument (bad target, compression, labels), -EEXIST (the target
 * holds that backup complete), -EBUSY (a backup of the image is running),
 * -ENOENT (no backup of that image), others internal. Credentials never
 * appear in a message: targets take them from the environment, not the URL.
 *
 * Threads: every function may be called from any thread.
 */
#ifndef BIMFS_BACKUP_BACKUP_H
#define BIMFS_BACKUP_BACKUP_H

#include "common.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define BK_BLOCK_SIZE (2u * 1024 * 1024) /* Longhorn's DEFAULT_BLOCK_SIZE */
#define BK_URL_MAX (BIM_URL_MAX + 96)    /* a backup URL: target + "?backingImage=" + name */
#define BK_LABELS_MAX 64                 /* labels of one backup */
#define BK_LABEL_MAX 256                 /* bytes of a label's key or value */
#define BK_TIME_MAX 32                   /* RFC 3339 UTC, "2026-01-01T00:00:00Z" */

enum bk_compression { BK_COMPRESSION_LZ4 = 0, BK_COMPRESSION_GZIP, BK_COMPRESSION_NONE };

/* "lz4", "gzip", "none" */
const char *bk_compression_name(enum bk_compression c);

/* The name above to its value; NULL or "" is lz4. -EINVAL otherwise. */
int bk_compression_parse(const char *text, enum bk_compression *out);

enum bk_backup_state { BK_BACKUP_IN_PROGRESS = 0, BK_BACKUP_COMPLETE, BK_BACKUP_ERROR };

/* "in_progress", "complete", "error" */
const char *bk_backup_state_name(enum bk_backup_state state);

/* The last backup of an image, as backup-status shows it. */
struct bk_backup_status {
    char url[BK_URL_MAX]; /* <target>?backingImage=<name> */
    enum bk_backup_state state;
    int progress;              /* 0..100: blocks done of blocks with data */
    char error[BIM_ERROR_MAX]; /* error: the cause, without the name; else "" */
    uint64_t blocks;           /* blocks with data (0 until the image is scanned) */
    uint64_t blocks_done;      /* block passes done: each block is hashed, then stored */
    uint64_t blocks_written;   /* written to the target */
    uint64_t blocks_present;   /* found on the target already: not written again */
    uint64_t bytes_written;    /* compressed bytes written */
};

struct bk_label {
    const char *key;
    const char *value;
};

struct bk_backup_request {
    const char *name;   /* the image (and the backup's name) */
    const char *uuid;   /* the image's, for the logs */
    const char *target; /* vfs:///..., nfs://..., s3://... */
    enum bk_compression compression;
    const struct bk_label *labels;
    size_t label_count;
    int fd;               /* the ready image's backing, readable; the backup takes it */
    uint64_t size;        /* its bytes */
    const char *checksum; /* its SHA-512 (128 hex): the cfg's Checksum */
};

struct bk_backups;

struct bk_backups_options {
    unsigned workers; /* block workers shared by all backups; 0 = two per core, 4 to 8 */
};

/* opts may be NULL (the defaults). */
int bk_backups_open(const struct bk_backups_options *opts, struct bk_backups **out);

/* Stop every backup (each ends error "interrupted", its lock file removed,
 * its cfg left incomplete), join the threads, free. */
void bk_backups_close(struct bk_backups *b);

/*
 * Start a backup (req->fd is the backup's from here, success or not). The
 * target is opened and its cfg of that name read first: a complete one is
 * -EEXIST; an incomplete one (a backup cut by a crash) is done again. On
 * success *out is the status (in_progress, progress 0) and the work goes on in
 * the background.
 */
int bk_backup_start(struct bk_backups *b, const struct bk_backup_request *req,
                    struct bk_backup_status *out, struct bim_error *err);

/* The status of the last backup of image name since the daemon started;
 * -ENOENT when there was none. */
int bk_backup_status_get(struct bk_backups *b, const char *name, struct bk_backup_status *out,
                         struct bim_error *err);

/* One backup a target holds (backups). */
struct bk_backup_entry {
    char name[BIM_NAME_MAX + 1];
    char url[BK_URL_MAX];
    uint64_t size;
    char checksum[BIM_CHECKSUM_HEX + 1];
    char created[BK_TIME_MAX];
    char completed[BK_TIME_MAX]; /* "" while in progress (or cut by a crash) */
    char compression[8];
    struct bk_label *labels; /* malloc'd strings; free with bk_backup_entries_free */
    size_t label_count;
};

/*
 * Every backup target holds (its backing-images/ directory), sorted by name;
 * one whose cfg cannot be read is left out (and logged). *out is malloc'd:
 * free with bk_backup_entries_free. -EINVAL with the cause for a bad target.
 */
int bk_backup_list(const char *target, struct bk_backup_entry **out, size_t *count,
                   struct bim_error *err);
void bk_backup_entries_free(struct bk_backup_entry *entries, size_t count);

#endif
