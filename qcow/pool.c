/*
 * pool.c - a few libqcow handles on one image, for compressed clusters only.
 * This is the one file that includes libqcow.h: libqcow's 1/0/-1 returns and
 * error chains become 0/-errno and bim_error messages here.
 *
 * Threads: qcow_pool_open() and qcow_pool_close() run in the thread that
 * opens/closes the image. qcow_pool_read() runs in any reader thread: pool->
 * lock guards busy[]; a reader takes a free handle under the lock, reads
 * without the lock (libqcow serializes reads on a handle anyway), and gives it
 * back with a signal on pool->freed. The handles themselves are not touched
 * by two threads at once.
 */
#include "internal.h"

#include <errno.h>
#include <inttypes.h>
#include <libqcow.h>
#include <stdio.h>
#include <string.h>

/* Flatten libqcow's error chain (innermost reason first) into out, as
 * "reason; reason; ..." without the function names, and free the chain. */
static void qcow_pool_error_flatten(libqcow_error_t **error, char *out, size_t outlen)
{
    char trace[2048];
    size_t used = 0;
    char *line, *save = NULL;

    out[0] = '\0';
    if (!*error) {
        str_copy(out, outlen, "unknown libqcow error");
        return;
    }
    if (libqcow_error_backtrace_sprint(*error, trace, sizeof(trace)) < 0)
        str_copy(trace, sizeof(trace), "unknown libqcow error");
    trace[sizeof(trace) - 1] = '\0';
    libqcow_error_free(error);

    for (line = strtok_r(trace, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        char *reason = strstr(line, ": ");
        size_t len;
        int n;

        reason = reason ? reason + 2 : line;
        len = strlen(reason);
        if (len > 0 && reason[len - 1] == '.')
            reason[--len] = '\0';
        if (len == 0)
            continue;
        n = snprintf(out + used, outlen - used, "%s%s", used ? "; " : "", reason);
        if (n < 0 || (size_t)n >= outlen - used)
            break; /* out is full (and NUL-terminated by snprintf) */
        used += (size_t)n;
    }
}

static int qcow_pool_handle_open(libqcow_file_t **out, const char *path, uint64_t virtual_size,
                                 struct bim_error *err)
{
    libqcow_file_t *file = NULL;
    libqcow_error_t *error = NULL;
    size64_t media_size = 0;
    char reasons[BIM_ERROR_MAX];
    int ret = 0;

    if (libqcow_file_initialize(&file, &error) != 1) {
        qcow_pool_error_flatten(&error, reasons, sizeof(reasons));
        return bim_error_set(err, -ENOMEM, "cannot create a libqcow handle: %s", reasons);
    }
    if (libqcow_file_open(file, path, LIBQCOW_OPEN_READ, &error) != 1) {
        qcow_pool_error_flatten(&error, reasons, sizeof(reasons));
        ret = bim_error_set(err, -EINVAL, "qcow2 image cannot be opened: %s", reasons);
        goto out;
    }
    if (libqcow_file_get_media_size(file, &media_size, &error) != 1) {
        qcow_pool_error_flatten(&error, reasons, sizeof(reasons));
        libqcow_file_close(file, NULL);
        ret = bim_error_set(err, -EINVAL, "qcow2 image cannot be opened: %s", reasons);
        goto out;
    }
    if (media_size != virtual_size) {
        libqcow_file_close(file, NULL);
        ret = bim_error_set(err, -EINVAL,
                            "qcow2 image cannot be opened: libqcow sees a virtual size of %" PRIu64
                            " bytes, the header says %" PRIu64,
                            (uint64_t)media_size, virtual_size);
        goto out;
    }
out:
    if (ret < 0)
        libqcow_file_free(&file, NULL);
    else
        *out = file;
    return ret;
}

int qcow_pool_open(struct qcow_pool *pool, const char *path, size_t count, uint64_t virtual_size,
                   struct bim_error *err)
{
    int ret;

    memset(pool, 0, sizeof(*pool));
    if (count == 0 || count > QCOW_LIBQCOW_HANDLES)
        return bim_error_set(err, -EINVAL, "invalid libqcow pool size %zu", count);
    ret = -pthread_mutex_init(&pool->lock, NULL);
    if (ret < 0)
        return bim_error_set(err, ret, "cannot create the libqcow pool lock");
    ret = -pthread_cond_init(&pool->freed, NULL);
    if (ret < 0) {
        pthread_mutex_destroy(&pool->lock);
        return bim_error_set(err, ret, "cannot create the libqcow pool condition");
    }
    pool->initialized = true;
    for (size_t i = 0; i < count; i++) {
        libqcow_file_t *file = NULL;
        ret = qcow_pool_handle_open(&file, path, virtual_size, err);
        if (ret < 0)
            goto out;
        pool->handles[i] = file;
        pool->count++;
    }
out:
    if (ret < 0)
        qcow_pool_close(pool);
    return ret;
}

int qcow_pool_read(struct qcow_pool *pool, void *buf, size_t len, uint64_t off)
{
    libqcow_error_t *error = NULL;
    libqcow_file_t *file;
    size_t slot = 0;
    ssize_t n;

    if (pool->count == 0)
        return -EIO;
    pthread_mutex_lock(&pool->lock);
    for (;;) {
        for (slot = 0; slot < pool->count && pool->busy[slot]; slot++)
            ;
        if (slot < pool->count)
            break;
        pthread_cond_wait(&pool->freed, &pool->lock);
    }
    pool->busy[slot] = true;
    pthread_mutex_unlock(&pool->lock);

    file = pool->handles[slot];
    n = libqcow_file_read_buffer_at_offset(file, buf, len, (off64_t)off, &error);

    pthread_mutex_lock(&pool->lock);
    pool->busy[slot] = false;
    pthread_cond_signal(&pool->freed);
    pthread_mutex_unlock(&pool->lock);

    if (n < 0 || (size_t)n != len) {
        char reasons[BIM_ERROR_MAX];
        qcow_pool_error_flatten(&error, reasons, sizeof(reasons));
        log_error("libqcow read of %zu bytes at guest offset %" PRIu64 " failed (got %zd): %s", len,
                  off, n, reasons);
        return -EIO;
    }
    return 0;
}

void qcow_pool_close(struct qcow_pool *pool)
{
    for (size_t i = 0; i < pool->count; i++) {
        libqcow_file_t *file = pool->handles[i];
        libqcow_file_close(file, NULL);
        libqcow_file_free(&file, NULL);
        pool->handles[i] = NULL;
    }
    pool->count = 0;
    if (pool->initialized) {
        pthread_cond_destroy(&pool->freed);
        pthread_mutex_destroy(&pool->lock);
        pool->initialized = false;
    }
}
