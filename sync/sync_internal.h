/*
 * sync_internal.h - the core of sync/: the registry, records, jobs, the
 * worker pool and watches, and what every source may call (progress,
 * finish, checks). Each source's own state and helpers are in its own file
 * or folder header (source.h, download/download.h, peer/peer.h); neither
 * libcurl nor jansson is seen from here (see docs/sync.md).
 *
 * Locks: sync->lock guards everything in struct sync below the "guarded"
 * line, every struct sync_record, and the queue links of every job. A watch's
 * own lock guards its event queue; it is taken inside sync->lock (sync ->
 * watch), never the other way round. No lock is held across disk I/O.
 *
 * Threads: callers of the public API (any thread), `workers` worker threads
 * (worker.c), one monitor thread (monitor.c), the digest thread (pieces.c)
 * and the scrub thread (scrub.c), each of the last two with its own lock,
 * taken after sync->lock or alone.
 */
#ifndef BIMFS_SYNC_INTERNAL_H
#define BIMFS_SYNC_INTERNAL_H

#include "source.h"
#include "sync.h"

#include <pthread.h>
#include <stdatomic.h>
#include <sys/stat.h>

#define SYNC_CHUNK_MAX (8u << 20)      /* bytes per copy step between cancel checks */
#define SYNC_PIPE_BUFFER (1u << 20)    /* read buffer of uploads from a pipe/socket */
#define SYNC_PUBLISH_MS 200            /* progress is published at most this often... */
#define SYNC_RATE_WINDOW_MS 1000       /* ...and the rate measured over this window */
#define SYNC_STALL_MS 90000            /* an upload with no data this long fails */
#define SYNC_POLL_MS 200               /* how long a read waits before checking cancel */
#define SYNC_WATCH_QUEUE_MAX 1024      /* events queued per watch at most */
#define SYNC_CFG_READ_MAX (256u << 10) /* a backing.cfg larger than this is not read */
#define SYNC_DEFAULT_WORKERS 2
#define SYNC_DEFAULT_CHECK_MS 10000
/* downloads (docs/download.md) */
#define SYNC_DEFAULT_STALL_MS 60000       /* an attempt with no byte this long is retried */
#define SYNC_DEFAULT_RETRY_MAX 5          /* retries in a row without new data before failing */
#define SYNC_DEFAULT_WINDOW_EXTRA 40000   /* no data for stall + this long (all attempts): failed */
#define SYNC_DEFAULT_BACKOFF_MS 1000      /* first pause between attempts, then doubled... */
#define SYNC_DEFAULT_BACKOFF_MAX_MS 16000 /* ...up to this */
#define SYNC_WRITEBACK_STEP (32u << 20)   /* writeback started / cache dropped per step */
#define SYNC_HASH_LAG_MAX (64u << 20)     /* the hasher is at most this far behind a writer */
#define SYNC_PEER_TOKEN_MAX 512           /* bytes of the bearer token sent to peers */
#define SYNC_DEFAULT_SCRUB_INTERVAL_S 604800 /* --scrub-interval: a week */
#define SYNC_DEFAULT_SCRUB_MBPS 100          /* --scrub-rate */

struct sync_record;

/*
 * One unit of work for the pool. Created with its record (create, adoption,
 * monitor), queued FIFO, run by one worker, freed by that worker when done
 * (or by whoever drops it from the queue: delete, close).
 */
struct sync_job {
    const struct sync_source_ops *ops; /* its source (or rehash): what runs it */
    void *state;                       /* the source's own state (freed by ops->free_state) */
    struct sync *sync;
    struct sync_record *record; /* valid while record->job == this job */
    char name[STORE_NAME_MAX + 1];
    char uuid[STORE_UUID_MAX + 1];
    struct store_checksum expected;
    char source[STORE_SOURCE_MAX]; /* display text (user.bim.source), never parsed */

    atomic_bool cancel;    /* set by delete/close; checked per chunk */
    bool running;          /* a worker took it (guarded by sync->lock) */
    struct sync_job *next; /* queue link (guarded by sync->lock) */

    /* progress bookkeeping, touched only by the worker running the job */
    uint64_t bytes_done;
    uint64_t bytes_total;
    uint64_t publish_ms;
    int published_progress;
    bool flowing;
    uint64_t rate;
    uint64_t rate_ms;
    uint64_t rate_bytes;
};

struct sync_record {
    struct sync_image_info info;
    bool hidden;                     /* being created or deleted: not listed, no events */
    struct sync_job *job;            /* the job working on it, or NULL */
    struct stat seen;                /* backing as it was when the image became ready */
    bool failure_counted;            /* its failure is in sync->stats (send.c) */
    enum sync_state published_state; /* the state of the last published change */
    int64_t ready_time;              /* when it became ready or was found on disk (epoch s) */
    int64_t scrub_after;             /* the scrub leaves it alone until then (epoch s) */
    bool scrub_failing;              /* the scrub is removing its data before failing it:
                                      * the monitor leaves it alone */
    /* serving while receiving (serving.c) */
    struct store_writer *serving;   /* the transfer's writer while it may serve, or NULL */
    unsigned serving_users;         /* sends using `serving` now: it stays alive meanwhile */
    struct sync_received *received; /* bytes received per source (a peer sync), or NULL */
    size_t nreceived;
};

struct sync_watch_entry {
    enum sync_event_type type;
    uint64_t id;
    struct sync_image_info *last; /* delete: the last state (malloc'd) */
};

struct sync_watch {
    struct sync *sync;
    bool filtered;
    char name[STORE_NAME_MAX + 1];
    int efd;
    pthread_mutex_t lock; /* guards the queue below */
    struct sync_watch_entry *entries;
    size_t count;
    size_t cap;
    uint64_t dropped;
    struct sync_watch *next; /* in sync->watches (guarded by sync->lock) */
};

struct sync {
    struct store *store;
    unsigned worker_count;
    unsigned check_interval_ms;
    /* downloads, defaults applied (see struct sync_options) */
    char *ca_file; /* malloc'd or NULL */
    unsigned stall_ms;
    unsigned retry_max;
    unsigned retry_window_ms;
    unsigned backoff_ms;
    unsigned backoff_max_ms;
    enum sync_verify verify; /* peer syncs (--verify) */
    pthread_t *workers;
    unsigned workers_started;
    pthread_t monitor;
    bool monitor_started;

    pthread_mutex_t lock;
    /* ---- guarded by lock ---- */
    pthread_cond_t cond;         /* a job finished, a hidden record resolved */
    pthread_cond_t work_cond;    /* a job was queued, or stopping */
    pthread_cond_t monitor_cond; /* stopping (CLOCK_MONOTONIC) */
    struct sync_record **records;
    size_t record_count;
    size_t record_cap;
    uint64_t next_id;
    uint64_t generation;
    struct sync_job *queue_head;
    struct sync_job *queue_tail;
    struct sync_watch *watches;
    char disk_uuid[STORE_UUID_MAX + 1];
    bool stopping;
    struct sync_stats stats;              /* send.c */
    char peer_token[SYNC_PEER_TOKEN_MAX]; /* sent to peers; "" for none (peer.c) */
    char listen[BIM_PEER_ADDR_MAX + 1];   /* this daemon's --listen (peer.c), or "" */
    /* ---- not guarded by lock ---- */
    struct sync_pieces_task *pieces; /* pieces.c: its own lock; set at open, cleared at close */
    struct sync_scrub_task *scrub;   /* scrub.c: its own lock; NULL when off */
    uint64_t scrub_interval_s;       /* --scrub-interval; 0: off */
    uint64_t scrub_rate;             /* --scrub-rate in bytes per second */
};

/* ---- registry.c (all with sync->lock held unless said otherwise) ---- */

/* Any record by name / id, hidden ones included. */
struct sync_record *sync_record_find(struct sync *sync, const char *name);
struct sync_record *sync_record_find_id(struct sync *sync, uint64_t id);

/* A new hidden record with a fresh id, added to the registry. NULL: -ENOMEM. */
struct sync_record *sync_record_add(struct sync *sync, const char *name, const char *uuid);

/* Take the record out of the registry and free it (its job must be gone). */
void sync_record_remove(struct sync *sync, struct sync_record *rec);

/* The record changed: bump its generation, queue update events. Does
 * nothing for hidden records. */
void sync_record_changed(struct sync *sync, struct sync_record *rec);

/* Hide the record and queue delete events with its last state. */
void sync_record_hide_deleted(struct sync *sync, struct sync_record *rec);

/* Make the record failed with `message` (the cause's words, without the
 * name) and its typed cause, as decided where the failure happened. */
void sync_record_set_failed(struct sync_record *rec, enum bim_cause cause, const char *message);

/* Make the record ready from what a commit or hash found (verified as the
 * result says, ready since now); a failed one is verified "". */
void sync_record_set_ready(struct sync_record *rec, const struct store_result *result);

/* Count the record's failure in sync->stats once (send.c; sync->lock held). */
void sync_stats_note(struct sync *sync, struct sync_record *rec);

/* The same file, unchanged: inode, size and mtime equal. (no lock needed) */
bool sync_stat_same(const struct stat *a, const struct stat *b);

/* ---- watch.c ---- */

/* Queue an event for every watch interested in the record (sync->lock held). */
void sync_watch_publish(struct sync *sync, enum sync_event_type type,
                        const struct sync_record *rec);

/* Free a watch's queue and the watch (it must be out of sync->watches). */
void sync_watch_free(struct sync_watch *watch);

/* ---- worker.c ---- */

/* A job of `ops` for the record, owning `state` from now on (NULL: out of
 * memory, and the state is still the caller's). */
struct sync_job *sync_job_new(struct sync *sync, const struct sync_source_ops *ops,
                              struct sync_record *rec, void *state);
void sync_job_free(struct sync_job *job);

/* For a source's resume: a job of `ops` continuing the image adoption found
 * in e, owning `state` (freed on any failure), its expected checksum and
 * display text taken from e's cfg. 1 with *job; -ENOMEM; -EINVAL when the
 * cfg's expectation does not parse (a cfg bimfs did not write). */
int sync_job_resume(struct sync *sync, const struct sync_source_ops *ops, struct sync_record *rec,
                    const struct store_entry *e, void *state, struct sync_job **job);

/* Is the daemon shutting down (sync_close)? Takes sync->lock. A transfer
 * cancelled by it may keep its backing.tmp to resume. */
bool sync_stopping(struct sync *sync);

/* Attach the job to its record and append it to the queue (sync->lock held). */
void sync_job_enqueue(struct sync *sync, struct sync_job *job);

/* Cancel the record's job: a queued job is unlinked, detached and returned
 * (the caller frees it outside the lock); a running one is flagged and NULL
 * returned (sync->lock held). */
struct sync_job *sync_job_cancel(struct sync *sync, struct sync_record *rec);

bool sync_job_cancelled(const struct sync_job *job);

/* Bytes flowed: publish state in-progress and progress (at most every
 * SYNC_PUBLISH_MS or when the percentage changes). Takes sync->lock. */
void sync_job_progress(struct sync_job *job, uint64_t bytes_done);

int sync_workers_start(struct sync *sync);
/* Set stopping, cancel every job, drop the queued ones, join the workers. */
void sync_workers_stop(struct sync *sync);

/* ---- transfer.c: what upload and clone share ---- */

/* Copy [0, size) of a regular file: data extents with store_writer_copy_fd
 * in chunks, holes skipped. Checks cancel per chunk; publishes progress. */
/* Refuse at once what is known not to fit: -ENOSPC "insufficient space:
 * need X bytes, have Y bytes" when need bytes exceed the disk's free space
 * (statvfs, unprivileged blocks); 0 when they fit or it cannot tell. Only
 * for bytes known to need space (data extents), never a sparse file's size. */
int sync_space_check(struct sync *sync, uint64_t need, struct bim_error *err);

/* Refuse at once a known size past --max-size: -EFBIG "image larger than
 * --max-size (N bytes)". */
int sync_size_check(struct sync *sync, uint64_t size, struct bim_error *err);

int sync_transfer_copy_extents(struct sync_job *job, struct store_writer *w, int src_fd,
                               uint64_t size, struct bim_error *err);

/* Commit the writer and publish ready, or abort it and publish failed (the
 * cfg rewritten as failed unless cancelled). `rc` is the transfer's outcome
 * so far. Takes sync->lock. */
void sync_transfer_finish(struct sync_job *job, struct store_writer *w, int rc, uint64_t size,
                          struct bim_error *err);

/* A transfer failed before it had a writer. */
void sync_transfer_fail(struct sync_job *job, int rc, struct bim_error *err);

/* ---- cfg.c ---- */

/* Changes a cfg for sync_cfg_update(): `loaded` is false when the cfg could
 * not be read and this is a fresh one. 0, or -errno with a message. */
typedef int (*sync_cfg_edit)(struct store_cfg *cfg, bool loaded, const void *arg,
                             struct bim_error *err);

/* Read the image's cfg, let edit(cfg, loaded, arg, err) change it, write it
 * back durably. A cfg that cannot be read is the error unless `fresh`: then
 * edit gets an empty cfg with only the image's uuid and backing path set.
 * No lock held (disk I/O). */
int sync_cfg_update(struct sync *sync, const char *name, const char *uuid, bool fresh,
                    sync_cfg_edit edit, const void *arg, struct bim_error *err);

/* Set the cfg's verified (when not NULL), lastScrub and readyTime (when
 * > 0, epoch seconds) durably, the rest of the cfg kept. No lock held. */
int sync_cfg_mark(struct sync *sync, const char *name, const char *uuid, const char *verified,
                  int64_t last_scrub, int64_t ready_time, struct bim_error *err);

/* Rewrite the cfg of an image as failed with `message`. Logs on error. */
void sync_cfg_save_failed(struct sync *sync, const char *name, const char *uuid,
                          const char *message);

/* ---- writeback.c: pacing a backing.tmp written in order ---- */

struct sync_writeback {
    uint64_t flushing; /* the writeback of [0, flushing) was started */
    uint64_t dropped;  /* [0, dropped) is on disk and out of the page cache */
};

void sync_writeback_reset(struct sync_writeback *wb);

/* [0, written) of the writer's backing.tmp is written: start writeback of
 * new steps, drop old steps that are on disk and hashed. */
void sync_writeback_note(struct sync_writeback *wb, struct store_writer *w, uint64_t written);

/* Wait while the writer's hasher is more than SYNC_HASH_LAG_MAX behind
 * `written` (not when cancelled, nor for a hasher that stopped moving). */
void sync_writeback_pace(struct store_writer *w, uint64_t written, const atomic_bool *cancel);

/* Make the record unknown and queue a rehash job for it; old_checksum is what
 * the file hashed to before ("" if not known). sync->lock held. */
int sync_rehash_queue(struct sync *sync, struct sync_record *rec, const char *old_checksum);

/* ---- serving.c: an image in progress serves what its writer holds ---- */

/* The job's writer may serve its held pieces from now on (takes sync->lock). */
void sync_serving_start(struct sync_job *job, struct store_writer *w);

/* It may not any more: returns once no send uses it (takes sync->lock; the
 * _locked form with it held, e.g. in a detach). Call before the writer is
 * committed, aborted or closed. Idempotent. */
void sync_serving_stop(struct sync_job *job);
void sync_serving_stop_locked(struct sync *sync, struct sync_record *rec);

/* The held pieces of record id (sync_held_get's, by id): -ENOENT when it
 * has no serving writer, -ERANGE when [first, end) (end > 0) is not held. */
int sync_held_get_id(struct sync *sync, uint64_t id, uint64_t first, uint64_t end,
                     struct sync_held *out, int *fd);

/* ---- adopt.c, monitor.c ---- */

int sync_adopt(struct sync *sync, struct bim_error *err);
/* ---- pieces.c: the digests of ready images that have none ---- */

/* Start the digest thread, every ready image queued (those that have
 * their digests are passed over at once); stop and join it. */
int sync_pieces_start(struct sync *sync);
void sync_pieces_stop(struct sync *sync);

/* Queue record id for its digests / drop it (deleted: a computation of it
 * stops). Either with or without sync->lock held. */
void sync_pieces_want(struct sync *sync, uint64_t id);
void sync_pieces_forget(struct sync *sync, uint64_t id);

/* ---- scrub.c: the background scrub (docs/scrub.md) ---- */

/* Start the scrub thread (interval_s 0: off, nothing started), reading at
 * most rate bytes per second; stop and join it. */
int sync_scrub_start(struct sync *sync, uint64_t interval_s, uint64_t rate);
void sync_scrub_stop(struct sync *sync);

/* Record id is being deleted: a pass over it stops, and this returns once
 * the scrub is off it. Call without sync->lock. */
void sync_scrub_forget(struct sync *sync, uint64_t id);

/* The scrub's counters into out (sync_stats_get). */
void sync_scrub_stats(struct sync *sync, struct sync_stats *out);

int sync_monitor_start(struct sync *sync);
void sync_monitor_stop(struct sync *sync);

#endif
