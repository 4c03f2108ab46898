/*
 * common.h - helpers every bimfs module uses: error messages, logging,
 * checked size arithmetic.
 *
 * Threads: everything here is thread-safe. The log writes one line per call
 * with a single write(2) so lines from different threads never interleave.
 */
#ifndef BIMFS_COMMON_H
#define BIMFS_COMMON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Longest message a user will read (socket error.message, user.bim.error). */
#define BIM_ERROR_MAX 512

/*
 * The limits of what crosses the wire (SPEC §3, §6, §8): the one place they
 * are defined; store, sync, ctl and the wire codec (common/wire/) take them
 * from here.
 */
#define BIM_NAME_MAX 64       /* bytes of an image name */
#define BIM_UUID_MAX 64       /* bytes of a uuid */
#define BIM_CHECKSUM_HEX 128  /* SHA-512 as lowercase hex */
#define BIM_EXPECTED_MAX 136  /* an expected checksum: "sha256:" + 64 hex, or 128 hex */
#define BIM_URL_MAX 4096      /* bytes of a download URL */
#define BIM_PEERS_MAX 16      /* sources of one peer sync */
#define BIM_PEER_ADDR_MAX 261 /* bytes of one host:port */
#define BIM_SOURCE_MAX 4200   /* "download:" + URL, "sync:" + peers, ... */
#define BIM_SENDER_MAX 256    /* senderManagerAddress */
#define BIM_EXTENTS_MAX 65536 /* extents listed by a server, used by a client; the rest is one */

/*
 * Why something failed, typed where it happens, next to its message: what
 * metrics count and what policy reads (never the message's words).
 */
enum bim_cause {
    BIM_CAUSE_SOURCE = 0,  /* the source failed: network, peer, HTTP status, upload (the default) */
    BIM_CAUSE_CHECKSUM,    /* checksum mismatch */
    BIM_CAUSE_FORMAT,      /* a rejected image format (qcow2 refused, raw not a multiple of 512) */
    BIM_CAUSE_IO,          /* a local read or write failed */
    BIM_CAUSE_CHANGED,     /* a ready file changed or vanished behind bimfs's back */
    BIM_CAUSE_INTERRUPTED, /* cut by a daemon restart */
    BIM_CAUSE_COUNT
};

/* "source", "checksum", "format", "io", "changed", "interrupted" */
const char *bim_cause_name(enum bim_cause cause);

/*
 * The message that travels with a -errno return, and its cause. Functions
 * that can fail in a way a user must understand take a `struct bim_error *`
 * (which may be NULL) and fill it with "<cause>" (no trailing newline).
 * Whoever reports it to the user prefixes the image name.
 */
struct bim_error {
    char message[BIM_ERROR_MAX];
    enum bim_cause cause;
};

/* Set err->message from a printf format, and the cause to BIM_CAUSE_SOURCE;
 * does nothing when err is NULL. Returns `code` so that
 * `return bim_error_set(err, -EINVAL, "...")` reads well. */
int bim_error_set(struct bim_error *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* The same with another cause. */
int bim_error_cause(struct bim_error *err, enum bim_cause cause, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Empty the message. */
void bim_error_clear(struct bim_error *err);

/* Log levels. Debug lines are printed only after log_set_debug(true). */
enum log_level { LOG_DEBUG, LOG_INFO, LOG_WARN, LOG_ERROR };

void log_set_debug(bool on);

/* From now on log lines go to syslog (facility daemon, ident bimfs) instead
 * of stderr: for a daemon in the background. Call before threads start. */
void log_use_syslog(void);
bool log_debug_enabled(void);

/* One line to stderr: "bimfs: <LEVEL> <message>". For image events start the
 * message with "image=<name> uuid=<uuid> ". Never log URL credentials. */
void log_msg(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define log_debug(...)                                                                             \
    do {                                                                                           \
        if (log_debug_enabled())                                                                   \
            log_msg(LOG_DEBUG, __VA_ARGS__);                                                       \
    } while (0)
#define log_info(...) log_msg(LOG_INFO, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_WARN, __VA_ARGS__)
#define log_error(...) log_msg(LOG_ERROR, __VA_ARGS__)

/* Checked arithmetic on sizes and offsets: return false on overflow. */
static inline bool size_add(uint64_t a, uint64_t b, uint64_t *out)
{
    return !__builtin_add_overflow(a, b, out);
}

static inline bool size_mul(uint64_t a, uint64_t b, uint64_t *out)
{
    return !__builtin_mul_overflow(a, b, out);
}

/* Round `v` down / up to a multiple of `align` (a power of two). */
static inline uint64_t size_align_down(uint64_t v, uint64_t align)
{
    return v & ~(align - 1);
}

static inline bool size_align_up(uint64_t v, uint64_t align, uint64_t *out)
{
    if (!size_add(v, align - 1, out))
        return false;
    *out &= ~(align - 1);
    return true;
}

/* Millisecond monotonic clock. */
uint64_t clock_monotonic_ms(void);

/* Seconds since the epoch (CLOCK_REALTIME). */
int64_t clock_realtime_s(void);

/* RFC 3339 in UTC, to the second: "2026-05-01T12:34:56Z" (BIM_TIME_MAX bytes
 * with the NUL). 0 is "" (no time). */
#define BIM_TIME_MAX 32
void bim_time_rfc3339(int64_t sec, char out[BIM_TIME_MAX]);

/* Read what bim_time_rfc3339 writes (a fraction of a second is accepted
 * and dropped): "" is 0; anything else is -EINVAL. */
int bim_time_rfc3339_parse(const char *text, int64_t *sec);

/* Write all of buf to fd (loops over short writes and EINTR). 0 or -errno. */
int fd_write_all(int fd, const void *buf, size_t len);

/* pwrite all of buf at off. 0 or -errno. */
int fd_pwrite_all(int fd, const void *buf, size_t len, uint64_t off);

/*
 * pread up to len bytes at off into buf, looping over short reads and EINTR;
 * stops early only at the end of the file. *got is the bytes read (< len only
 * at EOF). 0 or -errno (then *got is what was read before the error). The
 * one short-read rule: callers that need every byte treat *got < len as
 * -EIO, callers that read holes past EOF as zeros fill the rest.
 */
int fd_pread_full(int fd, void *buf, size_t len, uint64_t off, size_t *got);

/* Replace dirfd/file with data durably: write dirfd/tmp, fsync, rename it
 * over file, fsync dirfd (common/durable.c; every small-file writer uses it).
 * On failure tmp is removed and file is untouched. 0 or -errno. */
int fd_durable_write_at(int dirfd, const char *file, const char *tmp, const void *data, size_t len);

/* Copy at most dstlen-1 bytes of src into dst, always NUL-terminated.
 * Returns false if src was truncated. */
bool str_copy(char *dst, size_t dstlen, const char *src);

/* Split HOST:PORT or [V6]:PORT: the host into host (hostlen bytes), *port
 * at the digits in hostport. 0, or -EINVAL when it is neither. */
int hostport_split(const char *hostport, char *host, size_t hostlen, const char **port);

#endif
