/*
 * backup_internal.h - the private header of backups (backup/backup.c, job.c,
 * cfg.c, compress.c, layout.c, lock.c, pool.c, list.c): the layout of a
 * Longhorn backupstore, backing-image.cfg, compression, the lock protocol and
 * the shared pool of block workers.
 *
 * Threads: cfg, compress and layout are reentrant; a lock belongs to one
 * thread (the backup's coordinator); the pool's state is under b->lock (see
 * pool.c).
 */
#ifndef BIMFS_BACKUP_INTERNAL_H
#define BIMFS_BACKUP_INTERNAL_H

#include "backup.h"
#include "layout.h"
#include "lock.h"
#include "target.h"

#include <pthread.h>

/* ---- layout.c: where things are: layout.h (public: restores read them too) ---- */

/* ---- cfg.c: backing-image.cfg (notes/backupstore.md A4) ---- */

struct bk_cfg_block {
    uint64_t offset;
    char checksum[BK_BLOCK_HEX + 1];
};

struct bk_cfg {
    char name[BIM_NAME_MAX + 1];
    uint64_t size;
    char checksum[BIM_CHECKSUM_HEX + 1];
    enum bk_compression compression;
    char created[BK_TIME_MAX];
    char completed[BK_TIME_MAX]; /* "" in the initial record */
    const struct bk_label *labels;
    size_t label_count;
    const struct bk_cfg_block *blocks; /* sorted by offset; none in the initial record */
    size_t block_count;
};

/* The cfg as Longhorn's encoding/json writes it (field order, Size and
 * BlockCount as strings, Labels and ProcessingBlocks null in the initial
 * record, {"Blocks":{}} in the final one, Blocks omitted when empty).
 * malloc'd text, or NULL. */
char *bk_cfg_encode(const struct bk_cfg *cfg);

/* Read a cfg for listing: the entry's fields (labels malloc'd). -EINVAL with
 * a message when it is not a backing-image cfg. */
int bk_cfg_decode_entry(const char *text, size_t len, struct bk_backup_entry *out,
                        struct bim_error *err);

/* Free the labels of one entry (list.c). */
void bk_entry_clear(struct bk_backup_entry *e);

/* ---- compress.c (notes/backupstore.md A3) ---- */

/* Bytes the compressed form of len bytes may take. */
size_t bk_compress_bound(enum bk_compression c, size_t len);

/* Compress in into out (cap bytes, at least bk_compress_bound): lz4 frame
 * (4 MB blocks, content checksum), gzip (zlib, MTIME 0, OS 255) or a copy.
 * 0 or -EIO with a message. */
int bk_compress(enum bk_compression c, const void *in, size_t len, void *out, size_t cap,
                size_t *out_len, struct bim_error *err);

/* ---- lock.c: the backupstore lock: lock.h (public: restores take it too) ---- */

/* ---- backup.c and pool.c: the jobs and the shared workers ---- */

struct bk_block {
    uint64_t offset;
    unsigned char sum[BK_BLOCK_HEX / 2]; /* the first 32 bytes of the SHA-512 */
    bool zero;                           /* all zeros: not stored */
    bool early;                          /* written (or found) by the early pass */
    bool named; /* sum and zero from the image's last backup: not read to be named */
};

/* The blocks of an image's last complete backup since the daemon started.
 * A ready image does not change, and the same uuid, size and SHA-512 are the
 * same bytes: a new backup of it takes the blocks' names from here instead
 * of reading and hashing every block again (job.c). At most BK_KNOWN_MAX
 * blocks are kept, over all images (48 bytes each). */
#define BK_KNOWN_MAX 131072 /* 256 GiB of data, 6 MiB */
struct bk_known {
    char uuid[BIM_UUID_MAX + 1];
    char checksum[BIM_CHECKSUM_HEX + 1];
    uint64_t size;
    struct bk_block *blocks; /* by offset, as the job's */
    size_t count;
};

/* The two passes of the workers over a job's blocks. The early pass starts
 * while the lock protocol waits: it reads each block, names it and writes it
 * unless the target holds it (a block is content-addressed: writing it before
 * the lock changes nothing a reader or a deletion relies on; a failure there
 * only leaves the block to the store pass). The store pass, under the lock,
 * asks the target for every block again and writes those it does not hold
 * (docs/backup.md, "Why blocks may be written before the lock"). */
enum bk_phase { BK_PHASE_EARLY = 0, BK_PHASE_STORE };

struct bk_job {
    struct bk_backups *b;
    struct bk_job *next_job; /* b->jobs */
    char name[BIM_NAME_MAX + 1];
    char uuid[BIM_UUID_MAX + 1];
    char target_url[BIM_URL_MAX + 1];
    const struct bk_target_ops *ops;
    struct bk_target *t;
    enum bk_compression compression;
    struct bk_label *labels;
    size_t label_count;
    char checksum[BIM_CHECKSUM_HEX + 1];
    char created[BK_TIME_MAX];
    int fd;
    uint64_t size;
    pthread_t thread;
    bool lock_waited;      /* the lock was taken after the protocol's wait (coordinator's) */
    struct bk_known known; /* the last backup's, handed over at the start; read-only */
    size_t named;          /* blocks named from known (coordinator's) */
    /* under b->lock */
    struct bk_block *blocks; /* the blocks with data, by offset */
    size_t block_count;
    enum bk_phase phase;
    size_t next;      /* the next block a worker takes in this phase */
    size_t in_flight; /* blocks workers hold */
    bool queued;      /* blocks handed to the pool */
    bool failed;      /* a block failed: no more are taken */
    bool early_off;   /* a store of the early pass failed: the rest is only named */
    struct bim_error block_err;
    struct bk_backup_status *status; /* the image's entry in b's table */
    pthread_cond_t cond;             /* a block of this job is done */
};

struct bk_status_entry {
    char name[BIM_NAME_MAX + 1];
    struct bk_backup_status status;
    bool running;
    struct bk_known known; /* while no backup of the image runs (else the job's) */
    struct bk_status_entry *next;
};

struct bk_worker_slot {
    struct bk_backups *b;
    pthread_t thread;
    const struct bk_job *job; /* the job of the block in hand, or NULL */
    unsigned char sum[BK_BLOCK_HEX / 2];
    bool busy_sum; /* sum is being written to job's target */
};

struct bk_backups {
    pthread_mutex_t lock; /* guards everything below, and the jobs' fields marked so */
    pthread_cond_t work;  /* a job has blocks, a block's write ended, or stopping */
    bool stopping;
    struct bk_job *jobs;             /* running jobs */
    struct bk_status_entry *entries; /* the last backup of each image */
    size_t known_blocks;             /* in the entries' known tables */
    unsigned worker_count;
    struct bk_worker_slot *workers;
};

/* The coordinator thread of a job (job.c): runs it and frees it. */
void *bk_job_run(void *arg);

/* Free a job that no thread uses any more (job.c). */
void bk_job_free(struct bk_job *job);

/* Free a known table; an entry's (counted in b->known_blocks) when b is set. */
void bk_known_clear(struct bk_backups *b, struct bk_known *k);

/* Start the workers of b (pool.c). */
int bk_pool_start(struct bk_backups *b);

/* Stop and join them (b->stopping is set). */
void bk_pool_stop(struct bk_backups *b);

#endif
