/*
 * store_internal.h - what the files of store/ share and nobody else sees: the
 * struct store, the durable small-file helper, cfg I/O on a directory fd, the
 * digest (SHA-512 + optional SHA-256) and the writer with its hasher thread.
 */
#ifndef BIMFS_STORE_INTERNAL_H
#define BIMFS_STORE_INTERNAL_H

#include "store.h"

#include <dirent.h>
#include <limits.h>
#include <openssl/evp.h>
#include <pthread.h>

#define STORE_IMAGES_DIR "backing-images"
#define STORE_BACKING "backing"
#define STORE_BACKING_TMP "backing.tmp"
#define STORE_CFG "backing.cfg"
#define STORE_CFG_TMP "backing.cfg.tmp" /* store_durable_write's tmp of the cfg */
#define STORE_PIECES_TMP STORE_PIECES ".tmp"
#define STORE_DISK_CFG "longhorn-disk.cfg"
#define STORE_CFG_FILE_MAX (256 * 1024) /* larger cfg files are corrupt */
#define STORE_CHUNK (1024 * 1024)       /* hashing read size */
#define STORE_DIRNAME_MAX (STORE_NAME_MAX + 1 + STORE_UUID_MAX + 1)
#define STORE_STAGING_MAX                                                                          \
    (STORE_DIRNAME_MAX + 10) /* ".<name>-<uuid>.tmp", ".<name>-<uuid>.deleting" */

/* Immutable after store_open(). */
struct store {
    char disk[PATH_MAX];
    char images[PATH_MAX];
    int images_fd;     /* O_RDONLY|O_DIRECTORY on DISK/backing-images */
    uint64_t max_size; /* largest image a writer accepts (store_set_max_size) */
};

/* ---- names.c ---- */

/* "<name>-<uuid>" into out (STORE_DIRNAME_MAX); -EINVAL if either is invalid. */
int store_dirname(const char *name, const char *uuid, char out[STORE_DIRNAME_MAX]);

/* ---- leftover.c ---- */

/* ".<dirname>.tmp", the staging directory of a create, into out. */
int store_staging_name(const char *dirname, char out[STORE_STAGING_MAX]);

/* ".<dirname>.deleting", where a delete moves an image before emptying it. */
int store_deleting_name(const char *dirname, char out[STORE_STAGING_MAX]);

/* A directory stream on dirfd (its own descriptor: dirfd stays open). */
int store_dir_open(int dirfd, DIR **out);

/* Do the len bytes of dirname split into a valid <name>-<uuid>? */
bool store_dirname_parses(const char *dirname, size_t len);

/* Unlink every entry of dirfd (files, empty directories), backing.cfg last. */
int store_dir_empty(int dirfd);

/* Empty and remove the directory parent_fd/name, fsync parent_fd. Missing is
 * not an error. */
int store_dir_remove(int parent_fd, const char *name);

/* Remove parent_fd/dirname as one step: rename it to its deleting name
 * (fsync parent_fd), then empty and remove that. Missing is not an error. */
int store_dir_delete(int parent_fd, const char *dirname);

/* If backing-images/dirname (open as dirfd) is what an interrupted create or
 * delete left (see leftover.c), remove it and return true. */
bool store_leftover_sweep(struct store *store, const char *dirname, int dirfd);

/* ---- durable.c ---- */

/* Replace dirfd/file with data: write file.tmp, fsync, rename, fsync dirfd. */
int store_durable_write(int dirfd, const char *file, const void *data, size_t len);

/* fsync a directory fd; 0 or -errno. */
int store_durable_sync_dir(int dirfd);

/* Read dirfd/file (at most max bytes, else -EFBIG) into a malloc'd,
 * NUL-terminated *text. */
int store_file_read_at(int dirfd, const char *file, size_t max, char **text, size_t *len);

/* ---- cfg.c ---- */

/* Read and parse dirfd/backing.cfg. -ENOENT when missing, -EINVAL (with a
 * message) when corrupt. On success release with store_cfg_clear(). */
int store_cfg_read_at(int dirfd, struct store_cfg *cfg, struct bim_error *err);

/* Serialize cfg and write it durably as dirfd/backing.cfg. */
int store_cfg_write_at(int dirfd, const struct store_cfg *cfg);

/* ---- disk.c ---- */

/* Open <name>-<uuid>/ of the store (O_RDONLY|O_DIRECTORY|O_CLOEXEC). */
int store_image_dir_open(struct store *store, const char *name, const char *uuid, int *dirfd);

/* ---- digest.c ---- */

struct store_digest_ctx {
    EVP_MD_CTX *sha512; /* NULL for a SHA-256 alone */
    EVP_MD_CTX *sha256; /* NULL unless asked for */
};

int store_digest_init(struct store_digest_ctx *d, bool with_sha256);
int store_digest_init_sha256(struct store_digest_ctx *d); /* SHA-256 alone */
int store_digest_reset(struct store_digest_ctx *d);       /* start over, same algorithms */
/* Finish the SHA-256 into 32 raw bytes. */
int store_digest_final_sha256(struct store_digest_ctx *d, uint8_t out[32]);
int store_digest_update(struct store_digest_ctx *d, const void *buf, size_t len);
int store_digest_zeros(struct store_digest_ctx *d, uint64_t len);
/* Finish: lowercase hex into sha512 (129 bytes) and, if computed and not
 * NULL, sha256 (65 bytes). */
int store_digest_final(struct store_digest_ctx *d, char *sha512, char *sha256);
void store_digest_free(struct store_digest_ctx *d);

/*
 * Feed [start, end) of fd: holes (SEEK_DATA/SEEK_HOLE) and bytes past EOF as
 * zeros, data with pread in STORE_CHUNK pieces into buf (STORE_CHUNK bytes).
 * Checks *cancel before each piece (-ECANCELED) and stores the position
 * reached into *progress after each one (either may be NULL).
 */
int store_digest_feed_fd(struct store_digest_ctx *d, int fd, uint64_t start, uint64_t end,
                         void *buf, const atomic_bool *cancel, _Atomic uint64_t *progress);

/* Where the data extent at pos ends (*data_end > pos), or where the hole at
 * pos ends (*hole_end > pos, *data_end == pos), both at most end. Without
 * SEEK_DATA support everything is data. */
int store_digest_find_extent(int fd, uint64_t pos, uint64_t end, uint64_t *data_end,
                             uint64_t *hole_end);

/* ---- writer.c / hasher.c / commit.c ---- */

struct store_range {
    uint64_t start, end;
};

/* Completed ranges past the contiguous prefix that one writer can track. */
#define STORE_WRITER_RANGES_MAX 1024

/* A thread of the writer that follows the written prefix of backing.tmp
 * (follower.c): the SHA-512 hasher and the piece digests. */
struct store_follower {
    pthread_t thread;
    bool running;     /* created and not joined (under the writer's lock) */
    atomic_bool stop; /* ask it to end */
};

struct store_writer {
    struct store *store;
    char name[STORE_NAME_MAX + 1];
    char uuid[STORE_UUID_MAX + 1];
    int dirfd;     /* the image directory */
    int fd;        /* backing.tmp */
    int direct_fd; /* backing.tmp again, O_DIRECT (store_writer_direct), or -1 */
    struct store_checksum expected;
    char also_sha512[STORE_CHECKSUM_HEX + 1]; /* a second expectation, or "" */
    uint64_t max_size;                        /* the store's, at open */
    char limit_message[80];                   /* "image larger than --max-size (N bytes)" */
    atomic_bool over_limit;                   /* a call was refused by max_size */

    pthread_mutex_t lock; /* guards everything below but the atomics */
    pthread_cond_t more;  /* hasher: written grew or stop */
    pthread_cond_t done;  /* commit: hasher caught up or ended */
    uint64_t written;     /* contiguous done prefix [0, written) */
    struct store_range ranges[STORE_WRITER_RANGES_MAX]; /* sorted, disjoint, > written */
    size_t nranges;
    uint64_t size_claim;          /* no byte of the file lies past this (grow-only) */
    struct store_follower hasher; /* the SHA-512 hasher (hasher.c) */
    int hasher_error;             /* 0 or -errno from the hasher */
    _Atomic uint64_t hashed;      /* bytes fed to the digest */

    /* the piece digests (pieces_hasher.c), under lock too */
    struct store_follower pieces_hasher;
    int pieces_error;           /* 0 or -errno from it */
    bool final_known;           /* commit has said the size: */
    uint64_t final_size;        /* the last, shorter piece can be hashed */
    _Atomic uint64_t pieced;    /* [0, pieced) has its digests (a piece boundary or the end) */
    struct store_pieces pieces; /* digests of [0, pieced); sha256 grown by the thread */
    uint64_t pieces_cap;        /* entries allocated in pieces.sha256 */
    uint8_t *pieces_known;      /* trusted digests (receive.c): count flags, NULL = all */

    _Atomic uint64_t pieces_fed; /* with a ring: bytes the piece thread has hashed */
    struct store_ring *ring;     /* NULL unless store_writer_ring_start (ring.c) */

    struct store_digest_ctx digest; /* owned by the hasher thread while it runs */
    bool trusted;                   /* store_writer_trust_checksum() was used */
    char trusted_sha512[STORE_CHECKSUM_HEX + 1];
    char verified[STORE_VERIFIED_MAX]; /* the cfg's `verified` at commit */
};

/* ---- ring.c ---- */

#define STORE_RING_SLOTS 8

/* The buffers an in-order writer fills and its followers hash (ring.c);
 * under the writer's lock but mem's bytes. */
struct store_ring {
    unsigned char *mem;             /* STORE_RING_SLOTS * STORE_RING_CHUNK, page aligned */
    uint64_t base;                  /* the file's prefix [0, base) was there before the ring */
    uint64_t end;                   /* [base, end) was handed to the followers */
    uint64_t handed;                /* slots handed over so far */
    uint64_t off[STORE_RING_SLOTS]; /* of the slot in each buffer: its offset, */
    size_t len[STORE_RING_SLOTS];   /* and length */
};

/* With w->lock held and w->ring set: the bytes of the ring at pos (*p, the
 * count returned), or 0 when pos is not in a slot (before base, or not
 * handed over yet). */
size_t store_ring_at(const struct store_writer *w, uint64_t pos, const unsigned char **p);
void store_ring_free(struct store_ring *r);

/* Is [off, off+len) within what the writer may hold (see writer.c)? */
bool store_writer_fits(struct store_writer *w, uint64_t off, uint64_t len);

/* The piece thread: start at open; finish (commit: wait for the digests of
 * [0,size), end the thread, move them into *out); stop (abort/close). */
int store_pieces_hasher_start(struct store_writer *w);
int store_pieces_hasher_finish(struct store_writer *w, uint64_t size, struct store_pieces *out);
void store_pieces_hasher_stop(struct store_writer *w);

/* ---- pieces.c ---- */

/* The digest of [off, off+len) of fd into out: a piece without data by its
 * length alone, else read (holes as zeros) through d (a SHA-256 context,
 * reset first) and buf (STORE_CHUNK bytes). */
int store_piece_digest_fd(struct store_digest_ctx *d, int fd, uint64_t off, uint64_t len, void *buf,
                          uint8_t out[32]);
int store_pieces_save_at(int dirfd, const char *sha512_hex, const struct store_pieces *p);
/* -ESTALE when the file is not that of this size and SHA-512 (or corrupt). */
int store_pieces_load_at(int dirfd, uint64_t size, const char *sha512_hex,
                         struct store_pieces *out);

/* Mark [off, end) done, advance `written`, wake the hasher. */
int store_writer_mark_done(struct store_writer *w, uint64_t off, uint64_t end);

/* follower.c: start f's thread running main(w); 0 or -errno. */
int store_follower_start(struct store_writer *w, struct store_follower *f, void *(*main)(void *));
/* Ask f's thread to stop and join it (no-op when not running). */
void store_follower_stop(struct store_writer *w, struct store_follower *f);

/* hasher.c */
int store_hasher_start(struct store_writer *w);
/* Wait until hashed == size (or the hasher failed). */
int store_hasher_wait(struct store_writer *w, uint64_t size);
/* Ask the hasher to stop and join it (no-op when not running). */
void store_hasher_stop(struct store_writer *w);

/* Free a writer's resources (after the hasher was stopped). */
void store_writer_free(struct store_writer *w);

#endif
