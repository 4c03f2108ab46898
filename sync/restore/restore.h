/*
 * restore.h - what the files of sync/restore/ share: the restore source, an
 * image made from a backup in a Longhorn backupstore (SPEC §10,
 * docs/backup.md "Restore"). Its operations are sync_restore_ops (source.h);
 * this header is the folder's own.
 *
 *   restore.c  the job: the backup URL, the target, the plan, the writer, the outcome
 *   backup.c   the backup's cfg (backing-image.cfg) read into a plan of blocks
 *   block.c    one block: decompressed (lz4 frame, gzip, none, with Longhorn's
 *              fallback between lz4 and gzip) and checked against its name
 *   fetch.c    the pool of fetcher threads that read, check and write blocks
 *   cfg.c      what the job keeps in backing.cfg to resume after a restart
 *
 * Locks: a transfer's own lock guards its queue of blocks and its outcome
 * (struct sync_restore_transfer); sync->lock only to publish. On the target,
 * a restore holds the backupstore's lock (backup/lock.h, type 1, as
 * Longhorn's restore) from before it reads the backup's cfg to its end.
 */
#ifndef BIMFS_SYNC_RESTORE_H
#define BIMFS_SYNC_RESTORE_H

#include "../sync_internal.h"
#include "layout.h"
#include "lock.h"
#include "target.h"

#define SYNC_RESTORE_BLOCK_STORED_MAX (4u << 20) /* a stored (compressed) block at most */
#define SYNC_RESTORE_FETCHERS 4                  /* fetcher threads of one restore at most */
#define SYNC_RESTORE_ATTEMPTS 3                  /* reads of one block before it fails */
#define SYNC_RESTORE_URL_MAX BIM_URL_MAX         /* bytes of a backup URL */
#define SYNC_RESTORE_NAME_MAX BIM_NAME_MAX       /* a backing image's name in the store */
#define SYNC_RESTORE_KEY "bimfsRestore"          /* the job's object in the cfg's extras */

/* The restore's own state (the job's `state`). */
struct sync_restore_job {
    char url[SYNC_RESTORE_URL_MAX + 1];     /* the backup URL, as given */
    char backup[SYNC_RESTORE_NAME_MAX + 1]; /* its backingImage= */
    bool resume; /* a restart cut it: backing.tmp holds blocks worth checking */
};

/* ---- restore.c ---- */

/* Split a backup URL "<target>?backingImage=<name>" (or "&backingImage=")
 * into the name (Longhorn's rules: SPEC §3's) into out; the target is the
 * URL itself (targets ignore the query). 0 or -EINVAL with the cause. */
int sync_restore_url_parse(const char *url, struct sync_restore_job *out, struct bim_error *err);

/* ---- backup.c: the backup's cfg ---- */

struct sync_restore_block {
    uint64_t off;
    uint64_t len; /* of the image this block covers: 2 MiB, the last one less */
    char checksum[BK_BLOCK_HEX + 1];
};

/* A complete backup, as its cfg describes it. */
struct sync_restore_backup {
    uint64_t size;
    char checksum[STORE_CHECKSUM_HEX + 1]; /* the image's SHA-512, or "" if the cfg has none */
    enum bk_compression method;
    char method_name[8];               /* as the cfg says it ("" reads as gzip) */
    struct sync_restore_block *blocks; /* sorted by offset, disjoint */
    size_t count;
};

/* Parse a cfg's JSON text into *out (free with sync_restore_backup_free):
 * 0, or -EINVAL with the cause (not JSON, a field of the wrong type, an
 * incomplete backup, a block out of place). */
int sync_restore_backup_parse(const char *text, size_t len, struct sync_restore_backup *out,
                              struct bim_error *err);
void sync_restore_backup_free(struct sync_restore_backup *b);

/* ---- block.c ---- */

/* What one fetcher thread decodes blocks with (reused from block to block). */
struct sync_restore_decoder;

int sync_restore_decoder_open(struct sync_restore_decoder **out);
void sync_restore_decoder_close(struct sync_restore_decoder *d);

/* Decode a stored block (in, inlen) by method into out (outcap bytes, at
 * least SYNC_RESTORE_BLOCK_STORED_MAX), falling back from lz4 to gzip and
 * from gzip to lz4 when the data does not start as the method says, as
 * Longhorn does; *outlen the bytes. Then check that the first 64 hex of
 * their SHA-512 are `checksum`. 0, or -EBADMSG with the cause (without the
 * block's name). */
int sync_restore_block_decode(struct sync_restore_decoder *d, enum bk_compression method,
                              const void *in, size_t inlen, void *out, size_t outcap,
                              size_t *outlen, const char *checksum, struct bim_error *err);

/* Is buf (len bytes) the block whose name is checksum? 0 with *match. */
int sync_restore_block_matches(const void *buf, size_t len, const char *checksum, bool *match);

/* ---- fetch.c ---- */

/* One restore in flight: made by restore.c, fetched by fetch.c. */
struct sync_restore_transfer {
    struct sync_job *job;
    struct store_writer *w;
    struct bk_target *target;
    const struct bk_target_ops *ops;
    struct sync_restore_backup backup;
    bool resume;               /* check what backing.tmp holds before fetching */
    struct bk_lock store_lock; /* the backupstore's lock, held while store_locked */
    bool store_locked;

    pthread_mutex_t lock; /* guards what follows */
    size_t next;          /* blocks before this one were handed out */
    bool stop;
    int rc;
    struct bim_error err;
    _Atomic uint64_t bytes; /* of the image done (blocks and the holes before them) */
    _Atomic uint64_t kept;  /* of them, blocks a kept backing.tmp already held */
};

/* Fetch, check and write every block with fetcher threads (and mark the holes
 * between them), publishing progress and refreshing the backupstore's lock
 * every BK_LOCK_REFRESH_MS; 0 when all are written, -ECANCELED, or -errno
 * with the message of the first block that failed. */
int sync_restore_fetch(struct sync_restore_transfer *t, struct bim_error *err);

/* ---- cfg.c: the job in backing.cfg ---- */

/* The extras (JSON text or NULL) with the job's object set, into *out. */
int sync_restore_saved_put(const char *extra, const struct sync_restore_job *rj, char **out);

/* The job a cfg's extras keep: 1 and *out, 0 when none, -EINVAL unusable. */
int sync_restore_saved_get(const char *extra, struct sync_restore_job *out);

#endif
