/*
 * source.h - where an image's bytes come from, behind one table of
 * operations (sync/sources.c) indexed by enum sync_source_type (sync.h).
 *
 * create.c, adopt.c and worker.c call these operations and name no source
 * file; each source keeps what it needs in its own state struct (the job's
 * `state`), made by prepare and freed by free_state. A new source is its own
 * folder (or file) with one `const struct sync_source_ops`, one value of
 * enum sync_source_type, one line in sync_sources[] and one meson line
 * (docs/architecture.md, "Adding a source").
 *
 * Messages: every cause an operation writes into a struct bim_error is the
 * cause only, without the image name (the caller adds it).
 *
 * Threads: prepare and free_state run in the caller of sync_create (no lock
 * held); reserve and start with sync->lock held; run in a worker thread (or,
 * for a source that starts itself, the caller's thread) with no lock held;
 * resume during adoption, with sync->lock held.
 */
#ifndef BIMFS_SYNC_SOURCE_H
#define BIMFS_SYNC_SOURCE_H

#include "sync.h"

#include <stdbool.h>

struct sync_job;
struct sync_record;
struct store_entry;
struct store_writer;

/* What prepare makes of a valid request. */
struct sync_source_plan {
    char source[STORE_SOURCE_MAX]; /* display text: user.bim.source and the cfg's source */
    char *extra;                   /* the cfg's extra fields (malloc'd JSON) or NULL */
    void *state;                   /* the source's own state, handed to the job */
};

struct sync_source_ops {
    const char *kind; /* what it is, for logs and messages ("upload", "download", ...) */
    bool takes_fd;    /* the request's fd belongs to sync (closed on any failure) */
    bool transfer;    /* moves the record through starting and in-progress (not rehash) */
    /* Check the request's source fields (no lock held): fill the plan. */
    int (*prepare)(struct sync *sync, const struct sync_create_request *req,
                   struct sync_source_plan *plan, struct bim_error *err);
    /* Optional, sync->lock held and the record reserved: check against other
     * records (a clone's source must be ready) and complete the state. */
    int (*reserve)(struct sync *sync, const struct sync_create_request *req, void *state,
                   struct bim_error *err);
    /* Optional, sync->lock held: start the job in the caller's thread instead
     * of queueing it (a pushed upload: its bytes come through the caller). */
    void (*start)(struct sync *sync, struct sync_job *job, const struct sync_create_request *req);
    /* Move the bytes and publish the outcome (sync_transfer_finish). */
    void (*run)(struct sync_job *job);
    /* Optional, sync->lock held: a delete need not wait for the running job;
     * true: detached from the record, *w the writer for the delete to abort. */
    bool (*detach)(struct sync_record *rec, struct store_writer **w);
    /* Optional, adoption (sync->lock held): an image cut by a restart whose
     * cfg may be this source's. 0: not this source's. 1: *job is a new job
     * that continues it (to queue). -errno: it is, but cannot continue; *why
     * says why (a static string). */
    int (*resume)(struct sync *sync, struct sync_record *rec, const struct store_entry *e,
                  struct sync_job **job, const char **why);
    /* Free the job's state (NULL state: nothing to do). */
    void (*free_state)(void *state);
};

/* The table entry of a source type; NULL for a value out of range. */
const struct sync_source_ops *sync_source_get(enum sync_source_type type);

/* The sources, each in its own file or folder (one line each in sources.c). */
extern const struct sync_source_ops sync_upload_ops;   /* upload.c */
extern const struct sync_source_ops sync_clone_ops;    /* clone.c */
extern const struct sync_source_ops sync_download_ops; /* download/ */
extern const struct sync_source_ops sync_peer_ops;     /* peer/ */
extern const struct sync_source_ops sync_stream_ops;   /* stream.c */
extern const struct sync_source_ops sync_restore_ops;  /* restore/ */

/* Not a source: re-verifying a file already on disk (rehash.c). */
extern const struct sync_source_ops sync_rehash_ops;

#endif
