/*
 * peer.h - what the files of sync/peer/ share: peer sync, an image copied
 * from other bimfs daemons over their HTTP API (docs/peer-sync.md). Its
 * operations are sync_peer_ops (source.h); this header is the folder's own.
 *
 * Locks: a transfer's own lock guards its sources' state and the piece
 * queue (see struct sync_peer_transfer); sync->lock only to publish.
 */
#ifndef BIMFS_SYNC_PEER_H
#define BIMFS_SYNC_PEER_H

#include "../http/client.h"
#include "../sync_internal.h"

#include <jansson.h>

#define SYNC_PEER_BUFFER (1u << 20)            /* received bytes are written in pieces this large */
#define SYNC_PEER_MAX BIM_PEERS_MAX            /* sources of one image */
#define SYNC_PEER_ADDR_MAX BIM_PEER_ADDR_MAX   /* bytes of one host:port */
#define SYNC_PEER_FETCHERS 4                   /* fetcher threads of one sync at most... */
#define SYNC_PEER_PER_SOURCE 2                 /* ...and connections to one source at once, */
#define SYNC_PEER_ONLY_SOURCE 3                /* to the only one (--send-limit's default) */
#define SYNC_PEER_BESIDE_ORIGIN 1              /* GETs of others while one of the origin runs */
#define SYNC_PEER_MESH_GETS 3                  /* GETs of others at once with 3 sources or more */
#define SYNC_PEER_HASH_LEAD (128ull << 20)     /* pieces start at most this far past hashed */
#define SYNC_PEER_HASH_WAIT_MS 20              /* how often a fetcher ahead looks again */
#define SYNC_PEER_DIRECT_MIN (64u << 10)       /* received pieces this large skip the buffer */
#define SYNC_PEER_ALIGN 4096                   /* the fetchers' buffers, for O_DIRECT */
#define SYNC_PEER_CONNECT_MS 5000              /* connecting to a source */
#define SYNC_PEER_JSON_MAX (1u << 20)          /* the image's JSON */
#define SYNC_PEER_JSON_TIMEOUT_MS 10000        /* one GET of the image or its extents */
#define SYNC_PEER_MANIFEST_ENTRY 72            /* JSON bytes per piece a manifest may use */
#define SYNC_PEER_MANIFEST_SLACK (64u << 10)   /* and beyond them */
#define SYNC_PEER_SIZE_MAX (UINT64_C(1) << 44) /* 16 TiB (ext4's file limit): bounds the plan */
#define SYNC_PEER_BACKOFF_MAX_MS 5000          /* longest pause before asking a source again */
#define SYNC_PEER_BUSY_MAX_MS (10u * 60 * 1000) /* sources that only answer 503: failed */
#define SYNC_PEER_RETRY_AFTER_MAX_S 60          /* a longer Retry-After is cut to this */
#define SYNC_PEER_POLL_MS 500    /* how often a source that is behind is asked for its have */
#define SYNC_PEER_POLL_EACH 4    /* a poller thread for this many sources... */
#define SYNC_PEER_POLLERS 4      /* ...and at most this many */
#define SYNC_PEER_SLOW_MS 5000   /* a GET this long is given up when another source is free */
#define SYNC_PEER_HELP_MS 30000  /* own share done this long: any unheld piece from the origin */
#define SYNC_PEER_IDLE_MS 1000   /* a fetcher idle this long gives up slow GETs for free sources */
#define SYNC_PEER_ABSENT_MS 2000 /* a receiver not receiving the image this long: not an owner */

/* The peer sync's own state (the job's `state`): the sources as asked for,
 * typed (the source text "sync:a:1,b:2" is for display only), kept in the
 * cfg too (cfg.c) so that a restart resumes the sync. */
struct sync_peer_job {
    char addrs[SYNC_PEER_MAX][SYNC_PEER_ADDR_MAX + 1];
    size_t count;
    uint64_t size; /* the size asked for, 0 if not given */
    bool resume;   /* a restart cut it: backing.tmp holds pieces worth checking */
};

/* ---- self.c: this daemon in the list ---- */

/* Is addr (a source's host:port) this daemon, which listens on listen? */
bool sync_peer_is_self(const char *addr, const char *listen);

/* The name the others know this daemon by into out: listen, or with a
 * wildcard host the local address on the way to origin and listen's port. */
void sync_peer_self_name(const char *listen, const char *origin, char *out, size_t outlen);

/* ---- cfg.c: the job in backing.cfg ("bimfsSync" among the extras) ---- */

/* Add the job to the cfg's extra fields (JSON text or NULL) into *out
 * (malloc'd). -ENOMEM. */
int sync_peer_saved_put(const char *extra, const struct sync_peer_job *pj, char **out);

/* The job a cfg's extras keep: 1 and *out, 0 when they keep none (not a
 * sync's cfg), -EINVAL when what they keep is not usable. */
int sync_peer_saved_get(const char *extra, struct sync_peer_job *out);

/* Check a request's peer list into *out (1 to SYNC_PEER_MAX valid host:port
 * addresses) and write its display text ("sync:a:1,b:2") into text: 0, or
 * -EINVAL with the cause. */
int sync_peer_list_parse(const char *const *peers, struct sync_peer_job *out, char *text,
                         size_t textlen, struct bim_error *err);

enum sync_peer_piece_state {
    SYNC_PEER_PIECE_TODO = 0,
    SYNC_PEER_PIECE_FLIGHT, /* a fetcher has it */
    SYNC_PEER_PIECE_DONE,   /* verified and marked written */
};

/* One piece of the image (SPEC §9): fetched and checked against the
 * reference's digest, or marked as a hole when that digest is the one of
 * zeros. Nothing is done with a piece before its digest is known. Guarded
 * by the transfer's lock. */
struct sync_peer_piece {
    uint64_t index;
    uint64_t off;
    uint64_t len;
    bool known;   /* the reference gave its digest (t->manifest.sha256[index]) */
    bool hole;    /* known, and the digest of zeros */
    bool checked; /* a resumed sync: what backing.tmp held of it was judged */
    enum sync_peer_piece_state state;
};

struct sync_peer_source {
    char addr[SYNC_PEER_ADDR_MAX + 1];
    char url[SYNC_PEER_ADDR_MAX + STORE_NAME_MAX + 32]; /* http://addr/v1/images/<name> */
    /* guarded by the transfer's lock */
    unsigned active;           /* pieces being fetched from it */
    unsigned cap;              /* GETs at once it took (the only source: its 503s), or 0 */
    unsigned failures;         /* in a row */
    uint64_t retry_ms;         /* not asked again before this (monotonic) */
    bool fatal;                /* answered what will not change (404, 401, another image) */
    bool manifest_ok;          /* its digests agree with the reference's (the reference's own) */
    uint8_t *have;             /* npieces flags: it holds the piece (its last /pieces answer) */
    bool complete;             /* it holds every piece */
    bool ready;                /* its last /pieces answer gave the image's SHA-512 */
    bool polling;              /* the poller is asking it */
    unsigned poll_failures;    /* its /pieces could not be had, in a row */
    uint64_t polled_ms;        /* when it was asked last */
    uint64_t absent_ms;        /* it has answered that it is not receiving the image since, or 0 */
    char error[512];           /* what went wrong last (fits a BIM_ERROR_MAX message) */
    _Atomic uint64_t received; /* bytes of pieces it sent (kept or not) */
};

struct sync_peer_fetcher;

/* One sync in flight: made by peer.c, fetched by fetch.c. */
struct sync_peer_transfer {
    struct sync_job *job;
    struct store_writer *w;
    char token[SYNC_PEER_TOKEN_MAX];
    uint64_t size;
    uint64_t want_size;                    /* the size asked for, 0 if not given */
    char checksum[STORE_CHECKSUM_HEX + 1]; /* the sources' SHA-512 */
    unsigned stall_ms;                     /* no data from any source this long: failed */
    unsigned low_speed_s;                  /* one GET without data this long: elsewhere */
    struct sync_peer_source sources[SYNC_PEER_MAX];
    size_t nsources;
    size_t reference;             /* the source whose digests every piece is checked against */
    struct store_pieces manifest; /* those digests (where pieces[i].known) */
    uint8_t *known;               /* manifest flags as the reference first gave them */
    bool hash_sha512;             /* --verify sha512: the writer hashes the image too */
    bool direct;                  /* the writer writes aligned runs with O_DIRECT */
    bool resume;                  /* check what backing.tmp holds before fetching */
    struct sync_peer_piece *pieces;
    size_t npieces;
    uint8_t zero[32], zero_last[32];   /* digests of a hole piece, and of a last one */
    char self[SYNC_PEER_ADDR_MAX + 1]; /* the name the others know this daemon by, or "" */

    pthread_mutex_t lock; /* guards the sources' state, the pieces and what follows */
    pthread_cond_t cond;  /* a piece ended or came back, a have grew, or stop (MONOTONIC) */
    size_t start;         /* pieces are looked at from here on (spread among receivers) */
    bool ranked;          /* this receiver knows its rank among the receivers (peer.c) */
    size_t rank; /* its rank: it asks the origin for pieces i with i mod nsources == rank */
    int owner[SYNC_PEER_MAX]; /* the source of each rank, -1 for this receiver */
    uint64_t hash_limit;      /* --verify sha512: no piece is started past this offset */
    size_t left;              /* pieces not done */
    bool stop;
    int rc;
    struct bim_error err;
    uint64_t alive_ms;                  /* a source last answered (a 503 included) */
    int sender;                         /* the source that delivered last, -1 */
    uint64_t started_ms;                /* the fetchers started (for the debug log) */
    uint64_t share_done_ms;             /* this receiver's own share was all done, or 0 */
    struct sync_peer_fetcher *fetchers; /* fetch.c's, while they run */
    size_t nfetchers;
    _Atomic uint64_t bytes;    /* pieces verified (data and holes) */
    _Atomic uint64_t received; /* bytes from the network, kept or not (the stall bound) */
};

/* A client for peers: plain http, direct, no redirects, the transfer's token;
 * a GET receiving under a byte a second for t->low_speed_s fails. */
int sync_peer_client_open(const struct sync_peer_transfer *t, struct http_client **out);

/* A GET of a source whose 200 body (at most max bytes) is returned in
 * *body (malloc'd, NUL-terminated; NULL for another status, in resp).
 * -EAGAIN when the source or the network failed (worth asking again),
 * -EPROTO when the body is too large, -ECANCELED. */
int sync_peer_get_body(struct sync_peer_transfer *t, struct http_client *h, const char *url,
                       size_t max, struct http_response *resp, char **body, size_t *len,
                       struct bim_error *err);

/* ---- manifest.c ---- */

/* Ask the reference (t->reference) for the digests into t->manifest.
 * 0; -EAGAIN with *retry_s (503 while it computes them, or a transient
 * failure); -ENOENT when it will not give usable ones (s->error says why);
 * -ECANCELED. */
int sync_peer_manifest_fetch(struct sync_peer_transfer *t, struct http_client *h,
                             unsigned *retry_s);

/* GET source s's /pieces into *m (free with wire_pieces_free): 0,
 * -EAGAIN (*retry_s; *status the HTTP status, 0 for none), -ENOENT when
 * it will never give usable ones (why), -ECANCELED. No lock held. */
int sync_peer_manifest_get(struct sync_peer_transfer *t, struct http_client *h,
                           const struct sync_peer_source *s, struct wire_pieces *m,
                           unsigned *retry_s, long *status, char *why, size_t whylen);

/* Take what source s answered (t->lock held): the digests it knows are
 * compared with the reference's (a disagreement drops s; the reference's
 * own new digests are learned), its have and whether it is ready.
 * 0; -EBADMSG when s must be dropped (why); -EPROTO when the transfer must
 * fail (the reference contradicts itself, or a ready reference has
 * another SHA-512 than expected: why). */
int sync_peer_manifest_merge(struct sync_peer_transfer *t, struct sync_peer_source *s,
                             const struct wire_pieces *m, char *why, size_t whylen);

/* The poller threads (poll.c): ask sources that are behind for their have
 * at least every SYNC_PEER_POLL_MS, and every source for its SHA-512 while
 * it is not known. Started by sync_peer_fetch (*count of them, into
 * threads[SYNC_PEER_POLLERS]: 0, or -errno when none could start), ended
 * by t->stop. */
int sync_peer_poll_start(struct sync_peer_transfer *t, pthread_t *threads, size_t *count);

/* Ask source s for its image: its state ("ready", "failed", ...) and error
 * message. 0, or -errno when it did not say (no lock held). */
int sync_peer_source_state(struct sync_peer_transfer *t, struct http_client *h,
                           struct sync_peer_source *s, char *state, size_t statelen, char *error,
                           size_t errorlen);

/* Wait on t->cond for at most ms (t->lock held). */
void sync_peer_wait(struct sync_peer_transfer *t, uint64_t ms);

/* Append "addr: error" of each source to out (for a failure message). */
void sync_peer_errors(struct sync_peer_transfer *t, char *out, size_t outlen);

/* Fetch every piece with fetcher threads, publish progress and the sender;
 * returns when all are written (0), on cancel (-ECANCELED), or when no
 * source can finish (-errno with a message naming each source's error). */
int sync_peer_fetch(struct sync_peer_transfer *t, struct bim_error *err);

/* ---- wbuf.c: a fetcher's writes, behind it ---- */

struct sync_peer_wbuf {
    pthread_t thread;
    bool started;
    struct store_writer *w;
    char *spare; /* SYNC_PEER_BUFFER bytes: the buffer the fetcher is not filling */
    pthread_mutex_t lock;
    pthread_cond_t cond;
    const void *data; /* the write under way (busy) */
    size_t len;
    uint64_t off;
    bool busy, quit;
    int rc; /* the first failed write since the last wait */
};

/* Start the writer thread of w, with the spare buffer. 0 or -errno. */
int sync_peer_wbuf_start(struct sync_peer_wbuf *b, struct store_writer *w);
/* Once the previous write is done: write len bytes of buf at off behind the
 * caller, who fills *next (the other buffer) meanwhile. -errno of a failed
 * previous write (then nothing is handed over). */
int sync_peer_wbuf_write(struct sync_peer_wbuf *b, char *buf, size_t len, uint64_t off,
                         char **next);
/* Wait until nothing is being written; the first error since the last wait. */
int sync_peer_wbuf_wait(struct sync_peer_wbuf *b);
/* End the thread (after the write under way) and free the spare buffer. */
void sync_peer_wbuf_stop(struct sync_peer_wbuf *b);

#endif
