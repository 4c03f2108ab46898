/*
 * common.c - error messages, logging, small I/O helpers.
 *
 * Threads: any. The only shared state is the debug flag (an atomic).
 */
#include "common.h"
#include "log_syslog.h"

#include <errno.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static atomic_bool log_debug_on;
static atomic_bool log_syslog_on;

const char *bim_cause_name(enum bim_cause cause)
{
    switch (cause) {
    case BIM_CAUSE_SOURCE:
        return "source";
    case BIM_CAUSE_CHECKSUM:
        return "checksum";
    case BIM_CAUSE_FORMAT:
        return "format";
    case BIM_CAUSE_IO:
        return "io";
    case BIM_CAUSE_CHANGED:
        return "changed";
    case BIM_CAUSE_INTERRUPTED:
        return "interrupted";
    case BIM_CAUSE_COUNT:
        break;
    }
    return "source";
}

static void bim_error_vset(struct bim_error *err, enum bim_cause cause, const char *fmt, va_list ap)
{
    vsnprintf(err->message, sizeof(err->message), fmt, ap);
    err->cause = cause;
}

int bim_error_set(struct bim_error *err, int code, const char *fmt, ...)
{
    va_list ap;

    if (!err)
        return code;
    va_start(ap, fmt);
    bim_error_vset(err, BIM_CAUSE_SOURCE, fmt, ap);
    va_end(ap);
    return code;
}

int bim_error_cause(struct bim_error *err, enum bim_cause cause, int code, const char *fmt, ...)
{
    va_list ap;

    if (!err)
        return code;
    va_start(ap, fmt);
    bim_error_vset(err, cause, fmt, ap);
    va_end(ap);
    return code;
}

void bim_error_clear(struct bim_error *err)
{
    if (err) {
        err->message[0] = '\0';
        err->cause = BIM_CAUSE_SOURCE;
    }
}

void log_use_syslog(void)
{
    log_syslog_open();
    atomic_store(&log_syslog_on, true);
}

void log_set_debug(bool on)
{
    atomic_store(&log_debug_on, on);
}

bool log_debug_enabled(void)
{
    return atomic_load(&log_debug_on);
}

void log_msg(enum log_level level, const char *fmt, ...)
{
    static const char *const names[] = {"debug", "info", "warn", "error"};
    char line[2048];
    va_list ap;
    int n;

    n = snprintf(line, sizeof(line), "bimfs: %s ", names[level]);
    va_start(ap, fmt);
    vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
    va_end(ap);
    if (atomic_load(&log_syslog_on)) {
        log_syslog_write((int)level, line + strlen("bimfs: "));
        return;
    }
    n = (int)strlen(line);
    line[n++] = '\n';
    (void)fd_write_all(STDERR_FILENO, line, (size_t)n);
}

uint64_t clock_monotonic_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

int64_t clock_realtime_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec;
}

void bim_time_rfc3339(int64_t sec, char out[BIM_TIME_MAX])
{
    time_t t = (time_t)sec;
    struct tm tm;

    char text[80]; /* any int fits; a valid time is 20 bytes */

    out[0] = '\0';
    if (sec <= 0 || !gmtime_r(&t, &tm) || tm.tm_year + 1900 > 9999)
        return;
    snprintf(text, sizeof(text), "%04d-%02d-%02dT%02d:%02d:%02dZ", tm.tm_year + 1900, tm.tm_mon + 1,
             tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
    str_copy(out, BIM_TIME_MAX, text);
}

int bim_time_rfc3339_parse(const char *text, int64_t *sec)
{
    struct tm tm = {0};
    const char *end;
    time_t t;

    *sec = 0;
    if (!text[0])
        return 0;
    end = strptime(text, "%Y-%m-%dT%H:%M:%S", &tm);
    if (!end)
        return -EINVAL;
    if (*end == '.') {
        const char *digits = ++end;

        while (*end >= '0' && *end <= '9')
            end++;
        if (end == digits)
            return -EINVAL;
    }
    if (strcmp(end, "Z") != 0)
        return -EINVAL;
    t = timegm(&tm);
    if (t <= 0)
        return -EINVAL;
    *sec = (int64_t)t;
    return 0;
}

int fd_write_all(int fd, const void *buf, size_t len)
{
    const char *p = buf;

    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

int fd_pwrite_all(int fd, const void *buf, size_t len, uint64_t off)
{
    const char *p = buf;

    while (len > 0) {
        ssize_t n = pwrite(fd, p, len, (off_t)off);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (n == 0)
            return -EIO;
        p += n;
        len -= (size_t)n;
        off += (uint64_t)n;
    }
    return 0;
}

int fd_pread_full(int fd, void *buf, size_t len, uint64_t off, size_t *got)
{
    *got = 0;
    while (*got < len) {
        ssize_t n = pread(fd, (char *)buf + *got, len - *got, (off_t)(off + *got));

        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        if (n == 0)
            break;
        *got += (size_t)n;
    }
    return 0;
}

bool str_copy(char *dst, size_t dstlen, const char *src)
{
    size_t n = strlen(src);

    if (dstlen == 0)
        return false;
    if (n >= dstlen) {
        memcpy(dst, src, dstlen - 1);
        dst[dstlen - 1] = '\0';
        return false;
    }
    memcpy(dst, src, n + 1);
    return true;
}
