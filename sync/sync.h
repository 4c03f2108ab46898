/*
 * sync.h - the image records of one disk and their state machine (SPEC §4).
 *
 *   pending -> starting -> in-progress -> ready
 *   any of them -> failed;   ready -> unknown -> ready | failed
 *
 * sync owns the registry of images (adopted from the store at start, created
 * by users later), runs transfers on a bounded worker pool, watches ready
 * files for changes behind its back, and publishes every change to watchers
 * (the control socket's `watch`, the filesystem's cache invalidation).
 *
 * Sources: upload (a file descriptor the client opened), clone (a ready image
 * on the same disk), download (an http or https URL), peer sync (other bimfs
 * daemons over HTTP; docs/peer-sync.md), restore (a backup in a Longhorn
 * backupstore; docs/backup.md).
 *
 * Errors: 0 or -errno, with a message in struct bim_error that already names
 * the image ("<name>: <cause>"): -EINVAL invalid_argument, -ENOENT not_found,
 * -EEXIST already_exists, -EBUSY busy, -EAGAIN unavailable, others internal.
 *
 * Threads: every function may be called from any thread. A struct
 * sync_image_info is a copy; holding one holds no lock.
 */
#ifndef BIMFS_SYNC_H
#define BIMFS_SYNC_H

#include "common.h"
#include "store.h"
#include "wire.h"

#include <stdbool.h>
#include <stdint.h>
#include <time.h>

struct sync;
struct sync_watch;

enum sync_state {
    SYNC_STATE_PENDING = 0,
    SYNC_STATE_STARTING,
    SYNC_STATE_IN_PROGRESS,
    SYNC_STATE_READY,
    SYNC_STATE_FAILED,
    SYNC_STATE_UNKNOWN,
};

/* "pending", "starting", "in-progress", "ready", "failed", "unknown" */
const char *sync_state_name(enum sync_state state);

/* A snapshot of one image record. */
struct sync_image_info {
    uint64_t id; /* unique for this daemon's lifetime, never reused; never 0 */
    char name[STORE_NAME_MAX + 1];
    char uuid[STORE_UUID_MAX + 1];
    enum sync_state state;
    enum store_format format; /* STORE_FORMAT_NONE until known */
    uint64_t size;            /* bytes of backing (0 until known) */
    uint64_t virtual_size;
    uint64_t real_size;
    char expected_checksum[STORE_EXPECTED_MAX + 1];
    char current_checksum[STORE_CHECKSUM_HEX + 1];
    int progress;                      /* 0..100, tracks bytes */
    uint64_t bytes_done;               /* bytes transferred (or re-hashed) so far */
    uint64_t bytes_total;              /* 0 when not known */
    uint64_t rate;                     /* bytes per second, recent */
    char error[BIM_ERROR_MAX];         /* errorMsg: the cause, without the name */
    enum bim_cause cause;              /* failed: why, typed where it happened */
    char source[STORE_SOURCE_MAX];     /* user.bim.source */
    int sending_reference;             /* HTTP GETs of backing in flight */
    char sender[BIM_SENDER_MAX];       /* senderManagerAddress */
    uint64_t bytes_sent;               /* bytes of backing served to peers since start */
    struct timespec mtime;             /* of backing while ready (stable) */
    char verified[STORE_VERIFIED_MAX]; /* how a ready image was proven (SPEC §9), else "" */
    int64_t last_scrub;                /* the scrub's last match (epoch s), 0: none */
    uint64_t generation;               /* bumped on every change */
    uint64_t state_changes;            /* bumped on every published change of state: tells a
                                        * watcher that merged events hid one (ready ->
                                        * unknown -> ready) */
};

/* How a peer sync proves its bytes (SPEC §9, --verify). */
enum sync_verify {
    SYNC_VERIFY_PIECES = 0, /* every piece against the reference's digests; its SHA-512 taken */
    SYNC_VERIFY_SHA512,     /* that, and the whole image hashed here */
};

struct sync_options {
    unsigned workers;           /* transfer threads; 0 = 2 */
    unsigned check_interval_ms; /* how often ready files are stat'ed; 0 = 10000 */
    /* downloads (docs/download.md); 0 / NULL = the default */
    const char *ca_file;       /* PEM CAs trusted for https besides the system's (copied) */
    unsigned stall_timeout_ms; /* an attempt without a byte this long is retried; 60000 */
    unsigned retry_max;        /* retries in a row without new data before failing; 5 */
    unsigned retry_window_ms;  /* no data this long over all attempts: failed; stall + 40000 */
    unsigned backoff_ms;       /* first pause between attempts, doubled each time; 1000 */
    unsigned backoff_max_ms;   /* longest pause; 16000 */
    enum sync_verify verify;   /* peer syncs */
    /* the scrub (docs/scrub.md) */
    bool scrub_off;            /* --scrub-interval 0 */
    unsigned scrub_interval_s; /* re-hash every ready image this often; 0 = 604800 */
    unsigned scrub_rate_mbps;  /* MB (10^6 bytes) per second; 0 = 100 */
};

/*
 * Adopt what the store holds (store_scan: images matching their cfg are
 * ready without re-hashing; others are re-hashed; leftover backing.tmp of
 * transfers that cannot resume are removed and their image marked failed),
 * then start the workers and the change monitor.
 */
int sync_open(struct store *store, const struct sync_options *opts, struct sync **out,
              struct bim_error *err);

/* Cancel every transfer, join all threads, free. Data of ready images stays. */
void sync_close(struct sync *sync);

/* Disk identity shown as user.bim.disk_uuid (set once at start). */
void sync_set_disk_uuid(struct sync *sync, const char *disk_uuid);
void sync_disk_uuid(struct sync *sync, char out[STORE_UUID_MAX + 1]);

/* Free and total bytes of the disk's filesystem (store_disk_space). */
int sync_disk_space(struct sync *sync, uint64_t *avail, uint64_t *total);

/* All images, sorted by name; *out is malloc'd (free it). */
int sync_list(struct sync *sync, struct sync_image_info **out, size_t *count);

int sync_get(struct sync *sync, const char *name, struct sync_image_info *out,
             struct bim_error *err);
int sync_get_by_id(struct sync *sync, uint64_t id, struct sync_image_info *out);

/* Where the bytes come from: one operations table per type (sync/source.h,
 * sync/sources.c). The values are 0, 1, ... with no gap. */
enum sync_source_type {
    SYNC_SOURCE_UPLOAD,
    SYNC_SOURCE_CLONE,
    SYNC_SOURCE_DOWNLOAD,
    SYNC_SOURCE_PEER,
    SYNC_SOURCE_STREAM,  /* bytes pushed through sync_stream_*() (internal to sync) */
    SYNC_SOURCE_RESTORE, /* a backup in a backup store (SPEC §10; sync/restore/) */
};

struct sync_create_request {
    const char *name;
    const char *uuid;     /* NULL: generated (8 hex digits) */
    const char *checksum; /* NULL or "": no expectation; else as store_checksum_parse() */
    enum sync_source_type type;
    int fd;                     /* UPLOAD: a readable fd; sync takes ownership (closes it) */
    const char *from;           /* CLONE: the source image name */
    const char *url;            /* DOWNLOAD; RESTORE: the backup URL */
    const char *const *peers;   /* PEER: host:port list, NULL-terminated */
    uint64_t size;              /* PEER: expected size, 0 if unknown */
    struct sync_stream *stream; /* STREAM: set by sync_stream_begin() */
};

/*
 * Create an image. The same name with the same uuid returns the existing
 * image (the fd, if any, is closed); another uuid is -EEXIST. Validation
 * errors are -EINVAL before anything is created. Sources not built yet are
 * -EINVAL "<source> is not supported yet". On success *out is the new record
 * (pending or later) and the transfer runs in the background.
 */
int sync_create(struct sync *sync, const struct sync_create_request *req,
                struct sync_image_info *out, struct bim_error *err);

/*
 * Delete an image: remove its record at once (watchers get a delete event),
 * cancel its transfer (it stops within a second) and remove its directory.
 * Returns when the data is gone. Open file descriptors stay readable.
 */
int sync_delete(struct sync *sync, const char *name, struct bim_error *err);

/* Open the backing file of a ready image read-only (O_CLOEXEC), and copy its
 * record into *info (NULL: not wanted) as it was when opened. -ENOENT if the
 * record is gone or not ready. */
int sync_open_backing(struct sync *sync, uint64_t id, int *fd, struct sync_image_info *info);

/* ---- change notification ---- */

enum sync_event_type { SYNC_EVENT_UPDATE, SYNC_EVENT_DELETE };

struct sync_event {
    enum sync_event_type type;
    struct sync_image_info image; /* current state (update) or last state (delete) */
};

/*
 * Subscribe to changes of one image (name) or all (name NULL). Events are
 * queued per watch; updates of the same image coalesce (the watcher sees the
 * latest state), so a slow watcher never blocks sync nor grows without bound.
 */
int sync_watch_open(struct sync *sync, const char *name, struct sync_watch **out);

/* An fd that polls readable while events are queued (do not close it). */
int sync_watch_fd(struct sync_watch *watch);

/* Pop the next event: 0, or -EAGAIN when the queue is empty. */
int sync_watch_next(struct sync_watch *watch, struct sync_event *ev);

void sync_watch_close(struct sync_watch *watch);

/* The bearer token sent to peers when syncing from them (NULL or "": none;
 * copied, at most 511 bytes). */
void sync_set_peer_token(struct sync *sync, const char *token);

/* This daemon's own --listen host:port (copied): a receiver started
 * with others spreads what it asks the first source for by its place
 * among them (docs/peer-sync.md). */
void sync_set_listen(struct sync *sync, const char *listen);

/* ---- uploads pushed by the caller (sync/stream.c; the HTTP server's PUT) ---- */

struct sync_stream;

#define SYNC_STREAM_SIZE_UNKNOWN UINT64_MAX

/*
 * Begin an upload whose bytes the caller pushes in order. Validation and
 * names as create's (source "upload"): -EINVAL, -EEXIST (another uuid). The
 * same name and uuid: 1 with *out the existing image and no stream.
 * Otherwise 0: the image exists (pending) and *stream takes its bytes; size
 * is how many will come (progress), or SYNC_STREAM_SIZE_UNKNOWN.
 */
int sync_stream_begin(struct sync *sync, const struct sync_create_request *req, uint64_t size,
                      struct sync_stream **stream, struct sync_image_info *out,
                      struct bim_error *err);

/* The next bytes (zero blocks stay holes, hashed as written). -ECANCELED
 * when the image was deleted meanwhile, -EFBIG past the announced size. The
 * stream stays the caller's: end or abort it. */
int sync_stream_write(struct sync_stream *stream, const void *buf, size_t len,
                      struct bim_error *err);

/* The last byte came: commit (ready) or fail (checksum mismatch, a size
 * other than announced, a rejected format: the image is failed with that
 * error, as any upload). *out is the image after it. Frees the stream. */
int sync_stream_end(struct sync_stream *stream, struct sync_image_info *out, struct bim_error *err);

/* The upload was cut (the client went away or stalled): the image ends
 * failed with the cause and its data is removed, unless a delete came
 * first (then only the stream is freed). Frees the stream. */
void sync_stream_abort(struct sync_stream *stream);

/* ---- serving images to peers (sync/send.c; used by the HTTP server) ---- */

/* One GET of a ready image's backing in flight. */
struct sync_send {
    uint64_t id; /* the image's record id */
    char name[STORE_NAME_MAX + 1];
    char uuid[STORE_UUID_MAX + 1];
    uint64_t size;
    char checksum[STORE_CHECKSUM_HEX + 1];
    int fd; /* backing, read-only, O_CLOEXEC: the caller owns it */
};

/*
 * Begin serving the backing of image `name`: it must exist (-ENOENT) and be
 * ready (-EBUSY "<name>: not ready (<state>)"); with `limit` > 0, at most
 * `limit` sends of it may be in flight (-EAGAIN "<name>: ... in flight",
 * counted as refused). On success the send counts in the image's
 * sending_reference (watchers get an update) until sync_send_end(), and
 * out->fd is the open backing file.
 */
int sync_send_begin(struct sync *sync, const char *name, unsigned limit, struct sync_send *out,
                    struct bim_error *err);

/* The send ended; `bytes` of it reached the peer. Call exactly once per
 * successful begin (the fd is the caller's business). */
void sync_send_end(struct sync *sync, const struct sync_send *send, uint64_t bytes);

/* ---- serving while receiving (sync/serving.c; SPEC §9) ---- */

/* What an image in progress holds now (a copy; free with sync_held_free). */
struct sync_held {
    uint64_t id;
    uint64_t size;  /* bytes of the image */
    uint64_t count; /* its pieces */
    uint8_t *held;  /* count flags: written (for a sync: verified) with a digest */
    uint8_t *known; /* count flags: digest known (a sync knows its reference's) */
    uint8_t (*digest)[32];
    uint64_t nheld; /* pieces held */
};

/*
 * The pieces image `name` holds while in progress. -ENOENT no such image;
 * -EBUSY "<name>: not ready (<state>)" when it is not in progress or holds
 * nothing it could serve yet. With fd, *fd is also a read-only descriptor
 * (O_CLOEXEC, the caller's) of its data; with end > 0, to send [first,
 * end) from, a range that must lie inside held pieces (-EBUSY "<name>:
 * bytes ... are not held yet" otherwise). Read only held pieces of it.
 */
int sync_held_get(struct sync *sync, const char *name, uint64_t first, uint64_t end,
                  struct sync_held *out, int *fd, struct bim_error *err);
void sync_held_free(struct sync_held *h);

/* As sync_send_begin, for an image in progress: the send of [first, end),
 * which must lie inside held pieces, counted and limited alike; out->fd
 * is its data, out->size the image's size, out->checksum "". */
int sync_send_begin_held(struct sync *sync, const char *name, unsigned limit, uint64_t first,
                         uint64_t end, struct sync_send *out, struct bim_error *err);

/*
 * The piece digests of image `name` as GET .../pieces answers them (SPEC
 * §9), into *out (free with wire_pieces_free, also on failure): a ready
 * image's, all held; an image in progress: those it holds, and the
 * digests it knows (checksum ""). -ENOENT no such
 * image; -EBUSY "<name>: not ready (<state>)" in another state; -EAGAIN
 * while the digests of a ready image that had none are computed.
 */
int sync_pieces_get(struct sync *sync, const char *name, struct wire_pieces *out,
                    struct bim_error *err);

/* The pieces image `info` holds now (metrics): all of a ready image's,
 * what the writer of one in progress holds, none otherwise. */
uint64_t sync_pieces_held(struct sync *sync, const struct sync_image_info *info);

/* Bytes a peer sync received from one of its sources (metrics). */
struct sync_received {
    char addr[BIM_PEER_ADDR_MAX + 1];
    uint64_t bytes;
};

/* The bytes image `name` received from each source of its peer sync (the
 * current or last one since start): *out malloc'd (free it), *count 0
 * when it has none. -ENOENT no such image. */
int sync_received_get(struct sync *sync, const char *name, struct sync_received **out,
                      size_t *count);

/* Counters since sync_open(). */
struct sync_stats {
    uint64_t failures[BIM_CAUSE_COUNT]; /* images that became failed, by cause (common.h) */
    uint64_t sends;                     /* sends begun */
    uint64_t sends_refused;             /* refused over the limit */
    uint64_t bytes_sent;                /* all images, deleted ones included */
    /* the scrub (docs/scrub.md); 0 when it is off */
    uint64_t scrub_bytes;      /* bytes read */
    uint64_t scrubs;           /* passes that ended in a verdict */
    uint64_t scrub_mismatches; /* of them, mismatches */
    int64_t scrub_last;        /* when the last verdict came (epoch s), 0: none yet */
};

void sync_stats_get(struct sync *sync, struct sync_stats *out);

#endif
