/*
 * upload.c - the upload job: the bytes of a file descriptor the client
 * handed over become the image.
 *
 * A regular file is copied extent by extent (holes stay holes, the size is
 * known, progress is exact). Anything else (pipe, socket) is read to EOF
 * through a 1 MiB buffer; the size is unknown until the end. A stream that
 * sends nothing for SYNC_STALL_MS fails the upload.
 *
 * Threads: one worker thread per job; no lock held while reading or writing.
 */
#include "sync_internal.h"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The upload's state: the client's fd, owned (closed when read or freed). */
struct sync_upload {
    int fd;
};

static int sync_upload_flush(struct sync_job *job, struct store_writer *w, const char *buf,
                             size_t *fill, uint64_t *off, struct bim_error *err)
{
    uint64_t end;
    int rc;

    if (*fill == 0)
        return 0;
    if (!size_add(*off, *fill, &end))
        return bim_error_set(err, -EFBIG, "upload too large");
    rc = store_writer_pwrite(w, buf, *fill, *off);
    if (rc < 0)
        return bim_error_cause(err, BIM_CAUSE_IO, rc, "cannot write: %s",
                               store_writer_strerror(w, rc));
    *off = end;
    *fill = 0;
    sync_job_progress(job, end);
    return 0;
}

/* Read a pipe or socket to EOF. *size is the number of bytes read. */
static int sync_upload_stream(struct sync_job *job, int fd, struct store_writer *w, uint64_t *size,
                              struct bim_error *err)
{
    struct pollfd pfd = {.fd = fd, .events = POLLIN};
    uint64_t off = 0, last_data = clock_monotonic_ms();
    size_t fill = 0;
    char *buf;
    int rc = 0;

    buf = malloc(SYNC_PIPE_BUFFER);
    if (!buf)
        return bim_error_set(err, -ENOMEM, "out of memory");
    for (;;) {
        ssize_t n;

        if (sync_job_cancelled(job)) {
            rc = -ECANCELED;
            break;
        }
        n = poll(&pfd, 1, SYNC_POLL_MS);
        if (n < 0 && errno != EINTR) {
            rc = bim_error_set(err, -errno, "cannot read the upload: %s", strerror(errno));
            break;
        }
        if (n <= 0) {
            if (clock_monotonic_ms() - last_data >= SYNC_STALL_MS) {
                rc = bim_error_set(err, -ETIMEDOUT, "upload stalled: no data for %u s",
                                   SYNC_STALL_MS / 1000);
                break;
            }
            /* a slow sender: let what arrived so far count */
            rc = sync_upload_flush(job, w, buf, &fill, &off, err);
            if (rc < 0)
                break;
            continue;
        }
        n = read(fd, buf + fill, SYNC_PIPE_BUFFER - fill);
        if (n < 0) {
            if (errno == EINTR || errno == EAGAIN)
                continue;
            rc = bim_error_set(err, -errno, "cannot read the upload: %s", strerror(errno));
            break;
        }
        if (n == 0) {
            rc = sync_upload_flush(job, w, buf, &fill, &off, err);
            break;
        }
        last_data = clock_monotonic_ms();
        fill += (size_t)n;
        if (fill == SYNC_PIPE_BUFFER) {
            rc = sync_upload_flush(job, w, buf, &fill, &off, err);
            if (rc < 0)
                break;
        }
    }
    free(buf);
    *size = off;
    return rc;
}

static void sync_upload_run(struct sync_job *job)
{
    struct sync_upload *up = job->state;
    struct bim_error err = {0};
    struct store_writer *w = NULL;
    uint64_t size = 0;
    struct stat st;
    int rc;

    log_info("image=%s uuid=%s upload started", job->name, job->uuid);
    if (fstat(up->fd, &st) < 0) {
        rc = bim_error_set(&err, -errno, "cannot read the upload: %s", strerror(errno));
        goto out;
    }
    rc = store_writer_open(job->sync->store, job->name, job->uuid,
                           job->expected.algo != STORE_DIGEST_NONE ? &job->expected : NULL,
                           STORE_WRITER_NEW, &w, &err);
    if (rc < 0)
        goto out;
    sync_serving_start(job, w);
    if (S_ISREG(st.st_mode)) {
        size = (uint64_t)st.st_size;
        rc = sync_size_check(job->sync, size, &err);
        if (rc == 0)
            rc = sync_transfer_copy_extents(job, w, up->fd, size, &err);
    } else {
        rc = sync_upload_stream(job, up->fd, w, &size, &err);
    }
out:
    close(up->fd);
    up->fd = -1;
    sync_transfer_finish(job, w, rc, size, &err);
}

static int sync_upload_prepare(struct sync *sync, const struct sync_create_request *req,
                               struct sync_source_plan *plan, struct bim_error *err)
{
    struct sync_upload *up;

    (void)sync;
    if (req->fd < 0)
        return bim_error_set(err, -EINVAL, "upload needs a file descriptor");
    up = malloc(sizeof(*up));
    if (!up)
        return bim_error_set(err, -ENOMEM, "out of memory");
    up->fd = req->fd;
    plan->state = up;
    str_copy(plan->source, sizeof(plan->source), "upload");
    return 0;
}

static void sync_upload_free(void *state)
{
    struct sync_upload *up = state;

    if (up && up->fd >= 0)
        close(up->fd);
    free(up);
}

const struct sync_source_ops sync_upload_ops = {
    .kind = "upload",
    .takes_fd = true,
    .transfer = true,
    .prepare = sync_upload_prepare,
    .run = sync_upload_run,
    .free_state = sync_upload_free,
};
