/*
 * pool.c - the block workers every backup shares (a fixed number, set when
 * the backups open): each takes the next block of the running job that has
 * the fewest blocks in hand. In a job's early pass (while the lock protocol
 * waits) it reads the block, names it (the first 64 hex of its SHA-512, or
 * all zeros) and, unless the target holds it, compresses and writes it; in
 * its store pass (under the lock) it asks the target for the block again and,
 * when missing, reads, compresses and writes it. Two workers never write the
 * same block to the same target at once: the second waits for the first, then
 * finds the block present (Longhorn's ProcessingBlocks).
 *
 * Threads: the workers. b->lock guards the job list, every job's queue
 * fields (next, in_flight, failed, early_off, block_err), the status counters and the
 * slots' (job, sum, busy_sum); it is held only to pick a block and publish
 * its end, never across a read, a hash or the target. A block's fields
 * (sum, zero, early) are written by the one worker that holds it in a pass;
 * the passes are ordered by the coordinator's wait under b->lock.
 */
#include "backup_internal.h"

#include <errno.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>

static struct bk_job *bk_pool_pick(struct bk_backups *b)
{
    struct bk_job *best = NULL;

    for (struct bk_job *j = b->jobs; j; j = j->next_job) {
        if (!j->queued || j->failed || j->next >= j->block_count)
            continue;
        if (!best || j->in_flight < best->in_flight)
            best = j;
    }
    return best;
}

/* Whether another worker is writing sum to job's target now. */
static bool bk_pool_sum_busy(struct bk_backups *b, const struct bk_worker_slot *self)
{
    for (unsigned i = 0; i < b->worker_count; i++) {
        const struct bk_worker_slot *o = &b->workers[i];

        if (o != self && o->busy_sum && memcmp(o->sum, self->sum, sizeof(o->sum)) == 0 &&
            strcmp(o->job->target_url, self->job->target_url) == 0)
            return true;
    }
    return false;
}

/* Read len bytes of the image at off into buf. */
static int bk_pool_read(struct bk_job *job, uint64_t off, unsigned char *buf, size_t len,
                        struct bim_error *err)
{
    size_t got = 0;
    int rc = fd_pread_full(job->fd, buf, len, off, &got);

    if (rc == 0 && got < len)
        rc = -EIO;
    if (rc < 0)
        return bim_error_cause(err, BIM_CAUSE_IO, rc, "reading the image at %llu: %s",
                               (unsigned long long)off, strerror(-rc));
    return 0;
}

/* The block is named: unless the target holds it, read it again (when buf
 * does not hold it), compress and write it. 1 when the target held it, 0
 * written, -errno. */
static int bk_pool_store(struct bk_worker_slot *slot, struct bk_job *job,
                         const struct bk_block *block, unsigned char *buf, size_t len, bool in_buf,
                         void *out, size_t cap, struct bim_error *err)
{
    struct bk_backups *b = slot->b;
    char hex[BK_BLOCK_HEX + 1], path[BK_PATH_MAX];
    size_t n = 0;
    int rc;

    memcpy(slot->sum, block->sum, sizeof(slot->sum));
    bk_block_hex(slot->sum, hex);
    bk_block_path(hex, path);
    pthread_mutex_lock(&b->lock);
    while (bk_pool_sum_busy(b, slot))
        pthread_cond_wait(&b->work, &b->lock);
    slot->busy_sum = true;
    pthread_mutex_unlock(&b->lock);

    rc = job->ops->exists(job->t, path, err);
    if (rc == 0 && !in_buf)
        rc = bk_pool_read(job, block->offset, buf, len, err);
    if (rc == 0) {
        rc = bk_compress(job->compression, buf, len, out, cap, &n, err);
        if (rc == 0 && job->ops->write_deferred) /* in place once the pass is flushed */
            rc = job->ops->write_deferred(job->t, path, out, n, err);
        else if (rc == 0)
            rc = job->ops->write(job->t, path, out, n, err);
    }

    pthread_mutex_lock(&b->lock);
    slot->busy_sum = false;
    if (rc == 1 && !block->early)
        job->status->blocks_present++;
    else if (rc == 0) {
        job->status->blocks_written++;
        job->status->bytes_written += n;
    }
    pthread_cond_broadcast(&b->work);
    pthread_mutex_unlock(&b->lock);
    return rc;
}

/* The early pass: read the block and name it (unless the image's last
 * backup named it), and store it unless it is all zeros. A failure to store is not the backup's:
 * the store pass does it again (and fails with the cause if it persists); after one, the early pass
 * stores no more, so that a target that keeps failing is not tried for
 * every block before the backup ends. */
static int bk_pool_early(struct bk_worker_slot *slot, struct bk_job *job, struct bk_block *block,
                         unsigned char *buf, size_t len, void *out, size_t cap,
                         struct bim_error *err)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    struct bim_error ignored = {{0}, 0};
    bool store;
    int rc;

    if (!block->named) {
        rc = bk_pool_read(job, block->offset, buf, len, err);
        if (rc < 0)
            return rc;
        block->zero = buf[0] == 0 && memcmp(buf, buf + 1, len - 1) == 0;
        if (!block->zero && EVP_Digest(buf, len, md, NULL, EVP_sha512(), NULL) != 1)
            return bim_error_set(err, -EIO, "SHA-512 failed");
        if (!block->zero)
            memcpy(block->sum, md, sizeof(block->sum));
    }
    if (block->zero)
        return 0;
    pthread_mutex_lock(&slot->b->lock);
    store = !job->early_off;
    pthread_mutex_unlock(&slot->b->lock);
    if (!store)
        return 0;
    rc = bk_pool_store(slot, job, block, buf, len, !block->named, out, cap, &ignored);
    if (rc >= 0) {
        block->early = true; /* only this worker touches the block in this pass */
    } else {
        pthread_mutex_lock(&slot->b->lock);
        job->early_off = true;
        pthread_mutex_unlock(&slot->b->lock);
    }
    return 0;
}

static int bk_pool_block(struct bk_worker_slot *slot, struct bk_job *job, size_t index,
                         unsigned char *buf, void *out, size_t cap, struct bim_error *err)
{
    struct bk_block *block = &job->blocks[index];
    size_t len = BK_BLOCK_SIZE;
    int rc;

    if (job->size - block->offset < len)
        len = (size_t)(job->size - block->offset);
    if (job->phase == BK_PHASE_EARLY)
        return bk_pool_early(slot, job, block, buf, len, out, cap, err);
    if (block->zero)
        return 0;
    rc = bk_pool_store(slot, job, block, buf, len, false, out, cap, err);
    if (rc < 0) {
        char prefix[BIM_ERROR_MAX];

        snprintf(prefix, sizeof(prefix), "%s", err->message);
        bim_error_set(err, rc, "block at offset %llu: %s", (unsigned long long)block->offset,
                      prefix);
    }
    return rc < 0 ? rc : 0;
}

static void *bk_pool_worker(void *arg)
{
    struct bk_worker_slot *slot = arg;
    struct bk_backups *b = slot->b;
    size_t cap = bk_compress_bound(BK_COMPRESSION_LZ4, BK_BLOCK_SIZE);
    unsigned char *buf;
    void *out;

    if (bk_compress_bound(BK_COMPRESSION_GZIP, BK_BLOCK_SIZE) > cap)
        cap = bk_compress_bound(BK_COMPRESSION_GZIP, BK_BLOCK_SIZE);
    buf = malloc(BK_BLOCK_SIZE);
    if (posix_memalign(&out, 4096, cap) != 0) /* aligned: vfs writes it with O_DIRECT */
        out = NULL;
    pthread_mutex_lock(&b->lock);
    while (!b->stopping) {
        struct bim_error err = {{0}, 0};
        struct bk_job *job = bk_pool_pick(b);
        size_t index;
        int rc;

        if (!job) {
            pthread_cond_wait(&b->work, &b->lock);
            continue;
        }
        index = job->next++;
        job->in_flight++;
        slot->job = job;
        pthread_mutex_unlock(&b->lock);

        rc = buf && out ? bk_pool_block(slot, job, index, buf, out, cap, &err)
                        : bim_error_set(&err, -ENOMEM, "out of memory");

        pthread_mutex_lock(&b->lock);
        slot->job = NULL;
        job->in_flight--;
        job->status->blocks_done++;
        if (rc < 0 && !job->failed) {
            job->failed = true;
            job->block_err = err;
        }
        pthread_cond_signal(&job->cond);
    }
    pthread_mutex_unlock(&b->lock);
    free(buf);
    free(out);
    return NULL;
}

int bk_pool_start(struct bk_backups *b)
{
    b->workers = calloc(b->worker_count, sizeof(*b->workers));
    if (!b->workers)
        return -ENOMEM;
    for (unsigned i = 0; i < b->worker_count; i++) {
        b->workers[i].b = b;
        if (pthread_create(&b->workers[i].thread, NULL, bk_pool_worker, &b->workers[i]) != 0) {
            b->worker_count = i;
            return -EAGAIN;
        }
    }
    return 0;
}

void bk_pool_stop(struct bk_backups *b)
{
    pthread_mutex_lock(&b->lock);
    b->stopping = true;
    pthread_cond_broadcast(&b->work);
    pthread_mutex_unlock(&b->lock);
    for (unsigned i = 0; i < b->worker_count; i++)
        pthread_join(b->workers[i].thread, NULL);
    free(b->workers);
    b->workers = NULL;
}
