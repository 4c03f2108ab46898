/*
 * wire.h - the one wire codec of bimfs (docs/protocol.md, "The wire codec"):
 * an image as JSON and back (SPEC §6's image object, Longhorn's field names,
 * plus bimfs's progress details), the error vocabulary of the control socket and the HTTP API
 * (one table), and the syntax of names, uuids and peer addresses (SPEC §3,
 * §6). The control socket, the HTTP server, bimctl and the peer client all
 * go through it, so a server and a client cannot drift apart.
 *
 * It links common and jansson only: bimctl uses it without store or sync.
 * Decoding checks the shape, every type and every bound; a value that
 * fails is -EPROTO with a message that names the field (never echoing a
 * long value).
 *
 * Threads: no shared state; every function may be called from any thread.
 */
#ifndef BIMFS_WIRE_H
#define BIMFS_WIRE_H

#include "common.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define WIRE_STATE_MAX 16 /* bytes of a state name, NUL included */
#define WIRE_FORMAT_MAX 8 /* bytes of a format name, NUL included */
#define WIRE_PROGRESS_MAX 100
#define WIRE_VERIFIED_MAX 16 /* bytes of a `verified` value, NUL included */

/* ---- backups (SPEC §10; backup.c) ---- */

#define WIRE_BACKUP_URL_MAX (BIM_URL_MAX + 96) /* <target>?backingImage=<name> */
#define WIRE_BACKUP_TIME_MAX 32                /* RFC 3339 UTC */

/* The result of backup and backup-status. */
struct wire_backup_status {
    char url[WIRE_BACKUP_URL_MAX];
    char state[WIRE_STATE_MAX]; /* "in_progress", "complete", "error" */
    int progress;               /* 0..100 */
    char error[BIM_ERROR_MAX];  /* "" unless state is error */
};

/* {"url", "state", "progress", "error"} */
json_t *wire_backup_status_to_json(const struct wire_backup_status *s);

/* The object above, every field checked; -EPROTO with a message. */
int wire_backup_status_from_json(const json_t *value, struct wire_backup_status *out,
                                 struct bim_error *err);

/* One backup of a target, as `backups` maps its name: {"url", "size",
 * "checksum", "created", "completed", "compression", "labels": {k: v}}. */
struct wire_backup_entry {
    const char *url;
    uint64_t size;
    const char *checksum;
    const char *created;
    const char *completed; /* "" while in progress or cut */
    const char *compression;
    const char *const *label_keys;
    const char *const *label_values;
    size_t label_count;
};

json_t *wire_backup_entry_to_json(const struct wire_backup_entry *e);

/* ---- the image object (SPEC §6) ---- */

struct wire_status {
    char state[WIRE_STATE_MAX];                  /* one of SPEC §4's states */
    char current_checksum[BIM_CHECKSUM_HEX + 1]; /* "" or 128 lowercase hex digits */
    uint64_t sending_reference;
    char error[BIM_ERROR_MAX]; /* errorMsg */
    char sender[BIM_SENDER_MAX];
    int progress; /* 0..100 */
    /* bimfs's own (not Longhorn's); 0 when absent */
    uint64_t bytes_done;
    uint64_t bytes_total;
    uint64_t rate;
    /* SPEC §9; "" when absent */
    char verified[WIRE_VERIFIED_MAX]; /* "", "sha512", "pieces" or "adopted" */
    char last_scrub[BIM_TIME_MAX];    /* lastScrub: RFC 3339 UTC, or "" */
};

struct wire_image {
    char name[BIM_NAME_MAX + 1];
    char uuid[BIM_UUID_MAX + 1];
    uint64_t size;
    uint64_t virtual_size;
    uint64_t real_size;
    char format[WIRE_FORMAT_MAX]; /* "raw", "qcow2" or "" (not known yet) */
    char expected_checksum[BIM_EXPECTED_MAX + 1];
    char source[BIM_SOURCE_MAX];
    struct wire_status status;
};

/* Is state one of "pending", "starting", "in-progress", "ready", "failed",
 * "unknown"? */
bool wire_state_known(const char *state);

/* The image as JSON (a new object; NULL only on ENOMEM). Text that is not
 * well-formed UTF-8 is sent with '?' in its place (wire_json_text). */
json_t *wire_image_to_json(const struct wire_image *image);

/*
 * Read an image object. Every SPEC §6 field must be there with its type;
 * the progress details, status.verified and status.lastScrub may be absent
 * (0, ""); unknown fields are ignored (a newer peer may send more). A
 * `verified` other than "", sha512, pieces or adopted, and a lastScrub that
 * is not "" or an RFC 3339 UTC time, are -EPROTO. Strings longer than their field, negative or
 * fractional numbers, an unknown state or format, a progress past 100 and a
 * currentChecksum that is not "" or 128 lowercase hex digits are -EPROTO
 * with a message naming the field. *out is zeroed first.
 */
int wire_image_from_json(const json_t *value, struct wire_image *out, struct bim_error *err);

/* The same from text (at most max bytes; longer is -EPROTO). */
int wire_image_parse(const char *text, size_t len, size_t max, struct wire_image *out,
                     struct bim_error *err);

/* A JSON string of text; bytes that are not well-formed UTF-8 become '?'
 * (a message may quote a truncated or foreign string). NULL only on ENOMEM. */
json_t *wire_json_text(const char *text);

/* ---- errors: one vocabulary for the socket and HTTP (SPEC §6, §8) ---- */

/* The socket's error code of a -errno: "invalid_argument", "not_found",
 * "already_exists", "busy", "unavailable" or "internal". */
const char *wire_error_code(int rc);

/* The HTTP status of a -errno (the same table): -EINVAL 400, -ENOENT 404,
 * -EEXIST, -EBUSY and -ECANCELED 409, -EFBIG 413, -EAGAIN 503, others 500. */
unsigned wire_error_http_status(int rc);

/* The HTTP error body's code of a status: "invalid_argument" (400),
 * "unauthorized" (401), "not_found" (404), "method_not_allowed" (405),
 * "conflict" (409), "too_large" (413), "range_not_satisfiable" (416),
 * "unavailable" (503), otherwise "internal". */
const char *wire_error_http_code(unsigned status);

/* ---- names, uuids, peers (SPEC §3, §6) ---- */

/* ^[a-zA-Z0-9][a-zA-Z0-9_.-]+$, at most BIM_NAME_MAX bytes. */
bool wire_name_valid(const char *name);

/* ^[a-zA-Z0-9-]{1,BIM_UUID_MAX}$ */
bool wire_uuid_valid(const char *uuid);

/* "host:port": host a DNS name, IPv4 or [IPv6], port 1-65535, at most
 * BIM_PEER_ADDR_MAX bytes. */
bool wire_peer_valid(const char *peer);

/* The checks with the message users read, -EINVAL:
 *   "<name>: invalid name: must match ^[a-zA-Z0-9][a-zA-Z0-9_.-]+$ (at most 64 bytes)"
 *   "<first 64 bytes>...: invalid name: longer than 64 bytes"
 *   "invalid uuid \"<uuid>\": must match ^[a-zA-Z0-9-]{1,64}$"
 *   "invalid peer address \"<peer>\": expected host:port"
 * (the name's message starts with the name; the others are causes that the
 * caller prefixes with the image name). */
int wire_name_check(const char *name, struct bim_error *err);
int wire_uuid_check(const char *uuid, struct bim_error *err);
int wire_peer_check(const char *peer, struct bim_error *err);

/* ---- piece digests (SPEC §9: GET /v1/images/{name}/pieces) ---- */

#define WIRE_PIECE_SIZE (4u << 20)

/* A manifest: one entry per piece of `size` bytes in pieces of piece_size. */
struct wire_pieces {
    uint64_t piece_size;
    uint64_t size;
    char checksum[BIM_CHECKSUM_HEX + 1]; /* "" until known */
    uint64_t count;                      /* ceil(size / piece_size) */
    uint8_t (*digest)[32];               /* count entries (SHA-256, raw) */
    uint8_t *known;                      /* count flags: 0 where "pieces" has null */
    uint64_t (*have)[2];                 /* inclusive index ranges held, ascending */
    size_t nhave;
};

/* The answer's JSON text for p (malloc'd into *out, *len bytes, no NUL
 * counted), written without building a jansson tree (32,768 pieces cost
 * one buffer). -ENOMEM. */
int wire_pieces_encode(const struct wire_pieces *p, char **out, size_t *len);

/* Read an answer of at most max bytes: every field with its type, piece
 * size a power of two, one entry per piece, each null or 64 lowercase hex
 * digits, have ranges ascending, disjoint and inside [0, count). -EPROTO
 * with a message naming the field; *out is zeroed first (free it with
 * wire_pieces_free even on failure). */
int wire_pieces_decode(const char *text, size_t len, size_t max, struct wire_pieces *out,
                       struct bim_error *err);
void wire_pieces_free(struct wire_pieces *p);

#endif
