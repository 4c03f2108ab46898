/*
 * store.h - the on-disk layer of bimfs: one disk's backing-images directory.
 *
 *   DISK/backing-images/<name>-<uuid>/backing       the image, as stored
 *   DISK/backing-images/<name>-<uuid>/backing.cfg   compact JSON, Longhorn's fields
 *   DISK/backing-images/<name>-<uuid>/backing.tmp   data in flight
 *   DISK/backing-images/<name>-<uuid>/backing.pieces the piece digests (pieces.c)
 *
 * The store knows nothing about FUSE, sockets or the image state machine; it
 * validates names, reads and writes cfg files atomically, scans the disk,
 * writes new images (hashed while written) and detects their format.
 *
 * Errors: every function returns 0 or -errno; those taking a struct bim_error
 * also fill a message a user can act on (without the image name: the caller
 * prefixes it).
 *
 * Threads: a struct store is immutable after store_open() and may be used from
 * any thread. A struct store_writer belongs to one transfer; its pwrite/copy
 * calls may come from several threads at once (disjoint ranges), and it runs
 * one private hasher thread (see store_writer_open()).
 */
#ifndef BIMFS_STORE_H
#define BIMFS_STORE_H

#include "common.h"

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>

/* the wire's limits (common.h) */
#define STORE_NAME_MAX BIM_NAME_MAX
#define STORE_UUID_MAX BIM_UUID_MAX
#define STORE_CHECKSUM_HEX BIM_CHECKSUM_HEX
#define STORE_EXPECTED_MAX BIM_EXPECTED_MAX
#define STORE_SOURCE_MAX BIM_SOURCE_MAX
#define STORE_TIME_MAX 64                                     /* Go time.Time.UTC().String() */
#define STORE_MAX_SIZE_DEFAULT (1024ull * 1024 * 1024 * 1024) /* 1 TiB (--max-size) */
#define STORE_REFUSED_MAX 96                                  /* store_backing_check's why */

struct store;
struct store_writer;

/* ---- names, uuids, checksums (SPEC §3) ---- */

/* ^[a-zA-Z0-9][a-zA-Z0-9_.-]+$, at most 64 bytes. */
bool store_name_valid(const char *name);

/* ^[a-zA-Z0-9-]{1,64}$ */
bool store_uuid_valid(const char *uuid);

/* 8 lowercase hex digits from getrandom(2); out must hold 9 bytes. */
void store_uuid_generate(char out[9]);

enum store_digest {
    STORE_DIGEST_NONE = 0, /* no expectation */
    STORE_DIGEST_SHA512,
    STORE_DIGEST_SHA256,
};

struct store_checksum {
    enum store_digest algo;
    char hex[STORE_CHECKSUM_HEX + 1]; /* lowercase, 128 or 64 digits */
};

/*
 * Parse an expected checksum: "" or NULL (none), 128 hex digits or
 * "sha512:<128 hex>" (SHA-512), "sha256:<64 hex>". Hex is accepted in either
 * case and stored lowercase. Anything else: -EINVAL with a message.
 */
int store_checksum_parse(const char *text, struct store_checksum *out, struct bim_error *err);

/* Canonical text of an expectation, as stored in expectedChecksum:
 * "" for none, 128 hex digits for SHA-512, "sha256:<hex>" for SHA-256. */
void store_checksum_format(const struct store_checksum *sum, char out[STORE_EXPECTED_MAX + 1]);

/* ---- time ---- */

/* Format like Go's time.Time.UTC().String(): "2026-05-01 12:34:56.1234 +0000 UTC"
 * (nanoseconds with trailing zeros dropped, no fraction when zero). */
void store_time_format(const struct timespec *ts, char out[STORE_TIME_MAX]);

/* ---- backing.cfg ---- */

enum store_format {
    STORE_FORMAT_NONE = 0, /* not known yet */
    STORE_FORMAT_RAW,
    STORE_FORMAT_QCOW2,
};

const char *store_format_name(enum store_format format); /* "raw", "qcow2", "" */

/* How a ready image's bytes were proven (SPEC §9, user.bim.verified). */
#define STORE_VERIFIED_MAX 16
#define STORE_VERIFIED_SHA512 "sha512"   /* its SHA-512 computed here from its bytes */
#define STORE_VERIFIED_PIECES "pieces"   /* every piece checked, the SHA-512 a source's */
#define STORE_VERIFIED_ADOPTED "adopted" /* found on disk, the cfg does not say */

/*
 * The cfg file. Longhorn's fields first; bimfs adds `state`, `format`,
 * `source` and `errorMsg`, then `verified`, `lastScrub` and `readyTime`,
 * written only when not empty (Longhorn ignores unknown fields). Unknown
 * fields found when reading are kept in `extra` (compact JSON object text,
 * malloc'd, may be NULL) and written back.
 */
struct store_cfg {
    char name[4096]; /* absolute path of backing (informative) */
    char uuid[STORE_UUID_MAX + 1];
    uint64_t size;
    uint64_t virtual_size;
    uint64_t real_size;
    char expected_checksum[STORE_EXPECTED_MAX + 1]; /* canonical text, may be "" */
    char current_checksum[STORE_CHECKSUM_HEX + 1];  /* may be "" */
    char modification_time[STORE_TIME_MAX];         /* may be "" */
    /* bimfs extras; empty when the cfg came from Longhorn */
    char state[16];                    /* "in-progress", "ready", "failed" or "" */
    char format[8];                    /* "raw", "qcow2" or "" */
    char source[STORE_SOURCE_MAX];     /* as user.bim.source, or "" */
    char error[BIM_ERROR_MAX];         /* errorMsg of a failed image, or "" */
    char verified[STORE_VERIFIED_MAX]; /* a STORE_VERIFIED_* of a ready image, or "" */
    char last_scrub[BIM_TIME_MAX];     /* RFC 3339: the scrub's last match, or "" */
    char ready_time[BIM_TIME_MAX];     /* RFC 3339: became ready here, or found on disk */
    char *extra;
};

/* Release cfg->extra. */
void store_cfg_clear(struct store_cfg *cfg);

/* Parse / serialize a cfg (exposed for unit tests and tools). Serialization is
 * compact JSON in Longhorn's field order; out is malloc'd. */
int store_cfg_parse(const char *text, size_t len, struct store_cfg *out, struct bim_error *err);
int store_cfg_serialize(const struct store_cfg *cfg, char **out);

/* ---- the disk ---- */

/*
 * Open DISK: it must exist and be a directory; DISK/backing-images is created
 * if missing. -ENOENT / -ENOTDIR / -EACCES with a message otherwise.
 */
int store_open(const char *disk, struct store **out, struct bim_error *err);
void store_close(struct store *store);

/*
 * The largest image a writer accepts, in stored bytes (SPEC §1 --max-size;
 * STORE_MAX_SIZE_DEFAULT until set). Set it before the store is shared with
 * other threads. A write, skip or commit past it is -EFBIG.
 */
void store_set_max_size(struct store *store, uint64_t max_size);
uint64_t store_max_size(const struct store *store);

/* Absolute path of DISK and of DISK/backing-images. */
const char *store_disk_path(const struct store *store);
const char *store_images_path(const struct store *store);

/* Bytes available to bimfs and in all on the filesystem of DISK (statvfs). */
int store_disk_space(const struct store *store, uint64_t *avail, uint64_t *total);

/* Read diskUUID from DISK/longhorn-disk.cfg into out ("" if absent). */
int store_disk_uuid(const struct store *store, char out[STORE_UUID_MAX + 1]);

/* What a scan found in one identifiable <name>-<uuid> directory. */
struct store_entry {
    char name[STORE_NAME_MAX + 1];
    char uuid[STORE_UUID_MAX + 1];
    struct store_cfg cfg; /* cfg.extra owned by the scan; copy what you keep */
    bool has_backing;
    struct stat backing; /* valid when has_backing */
    /* a `backing` that is there but never adopted (store_backing_check): why;
     * "" otherwise (has_backing is false then) */
    char backing_refused[STORE_REFUSED_MAX];
    bool has_tmp;     /* a backing.tmp was present (it is left in place) */
    bool matches_cfg; /* has_backing and size + modificationTime equal the cfg's */
};

typedef void (*store_scan_fn)(void *ctx, const struct store_entry *entry);

/*
 * Scan backing-images/. For every directory whose name is <name>-<uuid> with
 * a parseable backing.cfg whose uuid matches the suffix, call fn. What an
 * interrupted create or delete left (a staging directory, or a <name>-<uuid>
 * with neither cfg nor backing and only backing.tmp / backing.cfg.tmp in it)
 * is removed. Other directories that cannot be identified (no cfg, corrupt
 * cfg, bad name) are logged and left alone. Not thread-safe against writers
 * of the same directories.
 */
int store_scan(struct store *store, store_scan_fn fn, void *ctx);

/* Create <name>-<uuid>/ (0755) if missing and write cfg atomically into it.
 * A new directory appears with its cfg in one rename (from the staging
 * directory .<name>-<uuid>.tmp): a crash never leaves it without a cfg. */
int store_image_prepare(struct store *store, const char *name, const char *uuid,
                        const struct store_cfg *cfg, struct bim_error *err);

/* Atomically replace <name>-<uuid>/backing.cfg. */
int store_image_save_cfg(struct store *store, const char *name, const char *uuid,
                         const struct store_cfg *cfg, struct bim_error *err);

/* Read and parse <name>-<uuid>/backing.cfg (release with store_cfg_clear()).
 * -ENOENT when missing, -EINVAL (with a message) when corrupt. */
int store_image_load_cfg(struct store *store, const char *name, const char *uuid,
                         struct store_cfg *cfg, struct bim_error *err);

/* Remove backing.tmp of an image if present. */
int store_image_remove_tmp(struct store *store, const char *name, const char *uuid);

/* Remove backing and backing.tmp of an image (the cfg stays), then fsync
 * the directory. Missing files are not an error. */
int store_image_remove_data(struct store *store, const char *name, const char *uuid);

/* Remove the whole <name>-<uuid> directory: renamed to a hidden name in one
 * step (fsync of backing-images/), then emptied and removed; a crash leaves
 * the image as it was or a hidden directory the next scan removes. Missing
 * is not an error. */
int store_image_remove(struct store *store, const char *name, const char *uuid);

/*
 * Is st (an lstat of backing) something bimfs adopts and serves: a regular
 * file with a single link? 0, or -ELOOP (symlink), -EPERM (not a regular
 * file), -EMLINK (more links) with why (STORE_REFUSED_MAX) saying so.
 */
int store_backing_check(const struct stat *st, char *why, size_t len);

/* Open <name>-<uuid>/backing read-only (O_CLOEXEC), only if it passes
 * store_backing_check() (checked on the opened file too). */
int store_image_open_backing(struct store *store, const char *name, const char *uuid, int *fd);

/* stat <name>-<uuid>/backing. */
int store_image_stat_backing(struct store *store, const char *name, const char *uuid,
                             struct stat *st);

/* Absolute path of <name>-<uuid>/<file> into out (PATH_MAX). */
int store_image_path(const struct store *store, const char *name, const char *uuid,
                     const char *file, char *out, size_t outlen);

/* ---- format (SPEC §3) ---- */

struct store_format_info {
    enum store_format format;
    uint64_t virtual_size;
};

/*
 * Detect the format of the file at path (of the given size) from its content:
 * qcow2 when it starts with the qcow magic and libqcow opens it (virtual size
 * from libqcow), raw otherwise. Rejections (-EINVAL with a message naming the
 * reason): encrypted qcow2, a backing-file reference, an external data file,
 * a qcow2 libqcow cannot open, a raw image whose size is not a multiple of 512,
 * an empty file ("image is empty (0 bytes)").
 */
int store_format_detect(const char *path, uint64_t size, struct store_format_info *out,
                        struct bim_error *err);

/* ---- results of writing or hashing ---- */

struct store_result {
    enum store_format format;
    uint64_t size;
    uint64_t virtual_size;
    uint64_t real_size;                    /* st_blocks * 512 */
    char checksum[STORE_CHECKSUM_HEX + 1]; /* SHA-512 */
    char modification_time[STORE_TIME_MAX];
    char verified[STORE_VERIFIED_MAX]; /* how the checksum was had (STORE_VERIFIED_*) */
    struct stat st;                    /* of backing after commit */
};

/*
 * Hash <name>-<uuid>/backing (SHA-512, holes as zeros), detect its format and
 * fill out (verified "sha512"). Stops with -ECANCELED when *cancel becomes
 * true. If progress is not NULL it is updated with the bytes hashed so far.
 */
int store_image_hash(struct store *store, const char *name, const char *uuid,
                     const atomic_bool *cancel, _Atomic uint64_t *progress,
                     struct store_result *out, struct bim_error *err);

/* ---- piece digests (SPEC §9; pieces.c) ---- */

#define STORE_PIECES "backing.pieces"
#define STORE_PIECE_SIZE (4u << 20)
#define STORE_PIECE_HEX 64            /* SHA-256 as lowercase hex */
#define STORE_PIECES_MAX (4ull << 20) /* 16 TiB of pieces */

struct store_pieces {
    uint64_t size;  /* bytes of the image */
    uint64_t count; /* store_pieces_count(size) */
    uint8_t (*sha256)[32];
};

uint64_t store_pieces_count(uint64_t size);                 /* ceil(size / piece) */
uint64_t store_piece_length(uint64_t size, uint64_t index); /* 0 past the end */
void store_piece_hex(const uint8_t digest[32], char out[STORE_PIECE_HEX + 1]);

/* The digest of len zero bytes (a hole piece). */
int store_piece_zero_digest(uint64_t len, uint8_t out[32]);
/* The SHA-256 of len bytes in memory (a receiver checks a piece with it). */
int store_piece_digest_buf(const void *buf, size_t len, uint8_t out[32]);

/* count entries for size, zeroed; -EFBIG past STORE_PIECES_MAX. */
int store_pieces_alloc(struct store_pieces *p, uint64_t size);
void store_pieces_free(struct store_pieces *p);

/* The digests kept for <name>-<uuid> of this size and SHA-512: -ENOENT when
 * there are none, -ESTALE when the file is another image's or corrupt. */
int store_image_load_pieces(struct store *store, const char *name, const char *uuid, uint64_t size,
                            const char *sha512_hex, struct store_pieces *out);

/* Compute the digests of backing (hole pieces without reading them) and
 * keep them for the image whose SHA-512 is sha512_hex. -ECANCELED when
 * *cancel becomes true; *progress gets the bytes done. */
int store_image_compute_pieces(struct store *store, const char *name, const char *uuid,
                               const char *sha512_hex, const atomic_bool *cancel,
                               _Atomic uint64_t *progress, struct bim_error *err);

/* ---- re-reading a ready image step by step (the scrub; reread.c) ---- */

struct store_reread;

/* Open <name>-<uuid>/backing on a descriptor of its own (as
 * store_image_open_backing) to hash it: SHA-512, and SHA-256 too when
 * with_sha256. *st is the file at open. -errno with a message. */
int store_reread_open(struct store *store, const char *name, const char *uuid, bool with_sha256,
                      struct store_reread **out, struct stat *st, struct bim_error *err);

/* Hash the next bytes, at most max (holes as zeros, not read); *done is
 * how many (0 at the end). */
int store_reread_step(struct store_reread *r, uint64_t max, uint64_t *done);

/* Every byte hashed: the digests in lowercase hex (sha256 may be NULL, and
 * is "" unless asked for at open), and *st the file now (the caller
 * compares it with the one at open). -EINVAL before the end. */
int store_reread_finish(struct store_reread *r, char sha512[STORE_CHECKSUM_HEX + 1],
                        char sha256[STORE_PIECE_HEX + 1], struct stat *st);
void store_reread_close(struct store_reread *r);

/* ---- writing a new image ---- */

/* How store_writer_open() treats a backing.tmp already there. */
enum store_writer_mode {
    STORE_WRITER_NEW = 0, /* a fresh, empty file (an old one is removed first) */
    STORE_WRITER_RESUME,  /* keep it: its bytes count as written and are re-hashed */
    STORE_WRITER_KEEP,    /* keep its bytes, none counts as written: the caller
                           * checks what it can keep (store_writer_piece_check) */
};

/*
 * Start writing <name>-<uuid>/backing.tmp (the directory must exist, see
 * store_image_prepare()), as `mode` says.
 *
 * The writer hashes what reached the file while it is written: a private
 * hasher thread follows the contiguous written prefix, reading it back from
 * backing.tmp (page cache) and feeding SHA-512 (and SHA-256 when `expected`
 * is a sha256 sum). So commit after the last byte costs no pass over the file.
 */
int store_writer_open(struct store *store, const char *name, const char *uuid,
                      const struct store_checksum *expected, enum store_writer_mode mode,
                      struct store_writer **out, struct bim_error *err);

/* Write len bytes at off. Blocks of 4 KiB that are all zero are not written
 * (they stay holes). Ranges from concurrent callers must not overlap. A
 * range ending past the store's max size is -EFBIG (nothing written); so
 * for copy_fd and skip. */
int store_writer_pwrite(struct store_writer *w, const void *buf, size_t len, uint64_t off);

/* Copy len bytes from src_fd at src_off to off with copy_file_range (falls
 * back to read+pwrite). Used for uploads from a file. */
int store_writer_copy_fd(struct store_writer *w, int src_fd, uint64_t src_off, size_t len,
                         uint64_t off);

/* Mark [off, off+len) as written without writing it: a hole that reads as
 * zeros (the file is extended at commit), or bytes put there before with
 * store_writer_pwrite_pending or kept by STORE_WRITER_KEEP. */
int store_writer_skip(struct store_writer *w, uint64_t off, uint64_t len);

/* ---- receiving verified pieces (receive.c) ---- */

/* As store_writer_pwrite, but the bytes do not count as written (neither
 * hasher sees them) until store_writer_skip marks their range: a receiver
 * writes a piece as it arrives, checks its digest, then marks it, or
 * discards it. */
int store_writer_pwrite_pending(struct store_writer *w, const void *buf, size_t len, uint64_t off);

/* Drop what [off, off+len) holds (a hole again): a piece that failed its
 * digest or broke off. The range must not be marked. */
int store_writer_discard(struct store_writer *w, uint64_t off, uint64_t len);

/* Is piece `index` of an image of `size` bytes, as backing.tmp holds it
 * now, the one whose digest is want? *has_data: it holds any data (a piece
 * without data is judged without reading it). 0 with *match, or -errno. */
int store_writer_piece_check(struct store_writer *w, uint64_t size, uint64_t index,
                             const uint8_t want[32], bool *has_data, bool *match);

/* A piece's SHA-256 fed as its bytes arrive (a receiver checks a piece
 * without holding all of it). One per thread. */
struct store_piece_hash;
int store_piece_hash_open(struct store_piece_hash **out);
int store_piece_hash_reset(struct store_piece_hash *h);
int store_piece_hash_update(struct store_piece_hash *h, const void *buf, size_t len);
int store_piece_hash_final(struct store_piece_hash *h, uint8_t out[32]);
void store_piece_hash_close(struct store_piece_hash *h);

/* The piece digests are known (a manifest every piece was checked
 * against): the piece thread stops, and commit keeps these (copied) as
 * backing.pieces. known: p->count flags, 0 for a digest not known yet
 * (store_writer_trust_piece gives it later; commit fails while one is
 * missing), NULL when all are. Call before any write; p->size must be the
 * committed size. */
int store_writer_trust_pieces(struct store_writer *w, const struct store_pieces *p,
                              const uint8_t *known);

/* Digest `index` of a partly known trusted manifest became known: -EEXIST
 * when another one was known for it (a digest never changes), -EINVAL
 * without such a manifest or past its end. */
int store_writer_trust_piece(struct store_writer *w, uint64_t index, const uint8_t digest[32]);

/* ---- serving what a writer holds (held.c; SPEC §9 "Serving while receiving") ---- */

/*
 * For each of the store_pieces_count(size) pieces of the image: held[i]
 * (all its bytes are written or marked, and its digest is known: computed,
 * or from a trusted manifest), known[i] and digest[i] (zeros when not
 * known). Held pieces never change while the writer lives.
 */
int store_writer_pieces_held(struct store_writer *w, uint64_t size, uint8_t *held, uint8_t *known,
                             uint8_t (*digest)[32]);

/* A read-only fd (O_CLOEXEC) of the writer's backing.tmp, to send held
 * pieces from; the file is made to reach `end` (the end of the held range
 * to send: see held.c). The fd stays valid after commit or abort. */
int store_writer_open_read(struct store_writer *w, uint64_t end, int *fd);

/* Set the expectation after open (a sync that learns the SHA-512 late):
 * commit compares with it and writes it as expectedChecksum. */
void store_writer_expect(struct store_writer *w, const struct store_checksum *expected);

/* The cause of a failed pwrite/copy_fd/skip for a user: "image larger than
 * --max-size (N bytes)" when the limit refused it, else strerror(-rc). */
const char *store_writer_strerror(const struct store_writer *w, int rc);

/* Bytes in the contiguous written prefix / hashed so far. */
uint64_t store_writer_written(struct store_writer *w);
uint64_t store_writer_hashed(struct store_writer *w);

/* Bytes [0, n) whose piece digests are computed (whole pieces, and the
 * last one once commit gave the size); the digest of piece i < n/piece. */
uint64_t store_writer_pieced(struct store_writer *w);
int store_writer_piece_digest(struct store_writer *w, uint64_t index, uint8_t out[32]);

/* The fd of backing.tmp (for fallocate/extents; do not close). */
/* From now on, write the BLOCK-aligned runs of pwrite/pwrite_pending with
 * O_DIRECT, around the page cache (filling fresh page-cache pages is most of
 * a buffered write's cost, and on a VM whose balloon takes freed pages back,
 * far more: docs/store.md). Only for a writer nothing reads back while it
 * writes (no SHA-512 hasher following, digests known): those reads would go
 * to the disk. 0, or -errno when the file system refuses O_DIRECT (writes
 * stay buffered). */
int store_writer_direct(struct store_writer *w);
int store_writer_fd(struct store_writer *w);

/* ---- appending in order through the writer's buffers (ring.c) ---- */

#define STORE_RING_CHUNK (1024 * 1024) /* bytes of one buffer */

/* From now on the writer takes its bytes in its own buffers, each appended
 * at the end of what it holds: the hashers hash them from memory and they
 * are written with O_DIRECT (store_writer_direct), so nothing is read back.
 * Start once, before the first buffer; the writer must take no other write
 * after it. 0 or -ENOMEM. */
int store_writer_ring_start(struct store_writer *w);

/* The next buffer to fill (STORE_RING_CHUNK bytes, aligned for O_DIRECT);
 * waits while the hashers still read the one it held (a resumed file's
 * prefix can take them minutes): -ECANCELED, *buf unchanged, once *cancel
 * is set (looked at every 200 ms; may be NULL). The same buffer until
 * store_writer_ring_write. */
int store_writer_ring_buffer(struct store_writer *w, void **buf, const atomic_bool *cancel);

/* Append the first len bytes of that buffer at the writer's end (as
 * store_writer_pwrite: zero blocks stay holes, -EFBIG past the max size).
 * After an error other than -EFBIG the writer can only be aborted. */
int store_writer_ring_write(struct store_writer *w, size_t len);

/* A second expectation beside the one given at open: the image's SHA-512 must
 * also be sha512_hex (128 lowercase hex digits), else commit fails with
 * "checksum mismatch: expected <it>, got <sha512>". For a restore whose
 * create expects a SHA-256: the backup's SHA-512 is checked too. Call before
 * commit. */
void store_writer_expect_sha512(struct store_writer *w, const char *sha512_hex);

/* Skip hashing: the bytes are known to equal an image with this SHA-512
 * (used by clone and a peer sync by pieces); `verified` (a STORE_VERIFIED_*)
 * is how the image counts as verified then (the cfg's `verified`; without
 * this call it is "sha512"). Call before any write. A receiver that learns
 * the SHA-512 only later passes "" first, then calls again with it before
 * commit (commit fails while it is ""). */
void store_writer_trust_checksum(struct store_writer *w, const char *sha512_hex,
                                 const char *verified);

/*
 * Finish: the image is `size` bytes (all of [0,size) must have been written
 * or skipped). Waits for the hasher, compares with the expectation ("checksum
 * mismatch: expected <x>, got <y>"), detects the format, fsyncs backing.tmp,
 * renames it to backing, fsyncs the directory, and writes the cfg (state
 * "ready", with `source`, `verified`, `readyTime` now and no `lastScrub`)
 * atomically. On failure nothing is renamed and the caller must
 * store_writer_abort(). On success the writer is freed.
 */
int store_writer_commit(struct store_writer *w, uint64_t size, const char *source,
                        struct store_result *out, struct bim_error *err);

/* Stop the hasher, unlink backing.tmp, free the writer. */
void store_writer_abort(struct store_writer *w);

/* Stop the hasher and free the writer, leaving backing.tmp as it is: a
 * transfer that can resume (a download cut by shutdown) continues it later
 * with store_writer_open(resume = true). */
void store_writer_close(struct store_writer *w);

#endif
