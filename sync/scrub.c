/*
 * scrub.c - the background scrub (SPEC §9 "Scrub", docs/scrub.md): one
 * thread re-computes the SHA-512 of ready images from their bytes, at most
 * --scrub-rate MB/s, and compares it with what the image claims.
 *
 *   order   first a ready image whose `verified` is `pieces` (its SHA-512 is
 *           a source's), SYNC_SCRUB_GRACE_S after it became ready (the peers
 *           that sync from it meanwhile go first), the longest ready first;
 *           then the ready image whose
 *           last scrub (or, if it has none, the time it became ready or was
 *           found on disk) is the oldest, once that is --scrub-interval ago.
 *           Idle, the thread looks again every SYNC_SCRUB_IDLE_MS.
 *   read    store_reread on a descriptor of its own, in SYNC_SCRUB_STEP steps
 *           paced by rate_limit.c, at nice 10 (the CPU goes to readers and
 *           transfers first); no lock is held while reading. While any
 *           transfer, re-hash or send runs, the rate is a tenth
 *           (SYNC_SCRUB_YIELD): the scrub yields to them, but never stops.
 *   judge   the SHA-512 (and the SHA-256 for a sha256 expectation) against
 *           the expected checksum when one is set, and the SHA-512 against
 *           currentChecksum: the first that differs is the mismatch.
 *   match   verified = sha512 and lastScrub = now, durably in the cfg
 *           (sync_cfg_mark), then in the record.
 *   mismatch the image fails with "checksum mismatch: expected <x>, got <y>
 *           (scrub)", its cfg says so and its data is removed (SPEC §3).
 *   neither the file changed during the pass (another stat at the end) or
 *           could not be read: nothing is decided (the monitor deals with a
 *           change); the image is not tried again for SYNC_SCRUB_RETRY_S.
 *
 * Stopping: sync_scrub_stop (shutdown) and sync_scrub_forget (delete of the
 * image being read) set `cancel`, which every step checks and every pause
 * wakes on; forget returns once the thread is off that image, so a delete
 * never races with the scrub's cfg write or data removal.
 *
 * Threads: the scrub thread; delete and close call forget/stop; the HTTP
 * threads read the counters (atomics). task->lock guards `current`, `stop`
 * and the condition; `cancel` and the counters are atomic. Lock order:
 * sync->lock is never taken with task->lock held, and neither is held
 * while the thread reads or writes a file.
 */
#include "rate_limit.h"
#include "sync_internal.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#define SYNC_SCRUB_IDLE_MS 2000      /* with nothing due, look again this often */
#define SYNC_SCRUB_GRACE_S 3         /* a pieces-verified image waits this long after ready */
#define SYNC_SCRUB_STEP (1u << 20)   /* bytes hashed between pacing and cancel checks */
#define SYNC_SCRUB_BUSY_CHECK_MS 250 /* how often transfers are looked for */
#define SYNC_SCRUB_YIELD 10          /* the rate is divided by this while they run */
#define SYNC_SCRUB_RETRY_S 60        /* an undecided pass is not tried again before */
#define SYNC_SCRUB_MB 1000000u       /* --scrub-rate counts MB of 10^6 bytes */
#define SYNC_SCRUB_NICE 10           /* readers and transfers come first for the CPU */

struct sync_scrub_task {
    pthread_t thread;
    bool started;
    uint64_t interval_s; /* --scrub-interval (> 0) */
    uint64_t rate;       /* bytes per second */
    pthread_mutex_t lock;
    pthread_cond_t cond; /* CLOCK_MONOTONIC: stop, forget, the end of a pass */
    uint64_t current;    /* the record id being read, 0 */
    bool stop;
    atomic_bool cancel; /* stop reading `current` */
    /* counters for /metrics */
    _Atomic uint64_t bytes;
    _Atomic uint64_t scrubs;
    _Atomic uint64_t mismatches;
    _Atomic int64_t last;
};

/* What one pass needs, copied from the record. */
struct sync_scrub_item {
    uint64_t id;
    char name[STORE_NAME_MAX + 1];
    char uuid[STORE_UUID_MAX + 1];
    char expected[STORE_EXPECTED_MAX + 1];
    char current[STORE_CHECKSUM_HEX + 1];
    char verified[STORE_VERIFIED_MAX];
    struct stat seen;
};

/* ---- choosing ---- */

static bool sync_scrub_by_pieces(const struct sync_record *rec)
{
    return strcmp(rec->info.verified, STORE_VERIFIED_PIECES) == 0;
}

/* When the record is due (epoch s): a pieces-verified image shortly after
 * it became ready, any other once its last scrub (or ready time) is an
 * interval old. */
static int64_t sync_scrub_due(const struct sync_scrub_task *task, const struct sync_record *rec)
{
    int64_t since = rec->info.last_scrub > rec->ready_time ? rec->info.last_scrub : rec->ready_time;

    if (sync_scrub_by_pieces(rec))
        return rec->ready_time + SYNC_SCRUB_GRACE_S;
    return since + (int64_t)task->interval_s;
}

/* Is a (due) read before b: pieces-verified first, then the most overdue,
 * then the longest ready. */
static bool sync_scrub_before(const struct sync_scrub_task *task, const struct sync_record *a,
                              const struct sync_record *b)
{
    int64_t da = sync_scrub_due(task, a), db = sync_scrub_due(task, b);

    if (sync_scrub_by_pieces(a) != sync_scrub_by_pieces(b))
        return sync_scrub_by_pieces(a);
    if (da != db)
        return da < db;
    return a->ready_time < b->ready_time;
}

/* The next image to read into *item: true, or false with *wait_ms until
 * one may be due (sync->lock held). */
static bool sync_scrub_pick(struct sync *sync, const struct sync_scrub_task *task,
                            struct sync_scrub_item *item, uint64_t *wait_ms)
{
    const struct sync_record *best = NULL;
    int64_t now = clock_realtime_s(), next = INT64_MAX;

    for (size_t i = 0; i < sync->record_count; i++) {
        const struct sync_record *rec = sync->records[i];
        int64_t due;

        if (rec->hidden || rec->job || rec->info.state != SYNC_STATE_READY ||
            rec->scrub_after > now)
            continue;
        due = sync_scrub_due(task, rec);
        if (due > now) {
            next = due < next ? due : next;
            continue;
        }
        if (!best || sync_scrub_before(task, rec, best))
            best = rec;
    }
    if (!best) {
        uint64_t until = next == INT64_MAX ? UINT64_MAX : (uint64_t)(next - now) * 1000u;

        *wait_ms = until < SYNC_SCRUB_IDLE_MS ? until : SYNC_SCRUB_IDLE_MS;
        return false;
    }
    item->id = best->info.id;
    str_copy(item->name, sizeof(item->name), best->info.name);
    str_copy(item->uuid, sizeof(item->uuid), best->info.uuid);
    str_copy(item->expected, sizeof(item->expected), best->info.expected_checksum);
    str_copy(item->current, sizeof(item->current), best->info.current_checksum);
    str_copy(item->verified, sizeof(item->verified), best->info.verified);
    item->seen = best->seen;
    return true;
}

/* Is anything moving bytes or hashing: a job, a send (sync->lock held)? */
static bool sync_scrub_busy(struct sync *sync)
{
    for (size_t i = 0; i < sync->record_count; i++) {
        const struct sync_record *rec = sync->records[i];

        if (rec->job || rec->info.sending_reference > 0)
            return true;
    }
    return false;
}

/* The record is still the ready image the pass read (sync->lock held). */
static struct sync_record *sync_scrub_record(struct sync *sync, const struct sync_scrub_item *item)
{
    struct sync_record *rec = sync_record_find_id(sync, item->id);

    if (!rec || rec->hidden || rec->job || rec->info.state != SYNC_STATE_READY ||
        !sync_stat_same(&rec->seen, &item->seen))
        return NULL;
    return rec;
}

/* ---- reading ---- */

/* Wait ms, or less when stopped or cancelled. false: stop reading. */
static bool sync_scrub_pause(struct sync_scrub_task *task, uint64_t ms)
{
    struct timespec until;
    bool go;

    clock_gettime(CLOCK_MONOTONIC, &until);
    until.tv_sec += (time_t)(ms / 1000);
    until.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&task->lock);
    while (!task->stop && !atomic_load(&task->cancel) &&
           pthread_cond_timedwait(&task->cond, &task->lock, &until) != ETIMEDOUT)
        ;
    go = !task->stop && !atomic_load(&task->cancel);
    pthread_mutex_unlock(&task->lock);
    return go;
}

/* Hash every byte of the image at the scrub's pace: 0, -ECANCELED, or
 * -errno with a message. */
static int sync_scrub_read(struct sync *sync, struct sync_scrub_task *task, struct store_reread *r,
                           struct bim_error *err)
{
    struct sync_rate_limit limit;
    uint64_t checked = 0, rate = task->rate, done;
    int rc;

    sync_rate_limit_init(&limit, rate, clock_monotonic_ms());
    for (;;) {
        uint64_t now = clock_monotonic_ms(), wait;

        if (atomic_load(&task->cancel))
            return -ECANCELED;
        if (now - checked >= SYNC_SCRUB_BUSY_CHECK_MS) {
            uint64_t want;

            pthread_mutex_lock(&sync->lock);
            want = sync_scrub_busy(sync) ? task->rate / SYNC_SCRUB_YIELD : task->rate;
            pthread_mutex_unlock(&sync->lock);
            checked = now;
            if (want != rate) {
                rate = want;
                sync_rate_limit_init(&limit, rate, now);
            }
        }
        rc = store_reread_step(r, SYNC_SCRUB_STEP, &done);
        if (rc < 0)
            return bim_error_cause(err, BIM_CAUSE_IO, rc, "cannot read backing: %s", strerror(-rc));
        if (done == 0)
            return 0;
        atomic_fetch_add(&task->bytes, done);
        wait = sync_rate_limit_take(&limit, done, clock_monotonic_ms());
        if (wait && !sync_scrub_pause(task, wait))
            return -ECANCELED;
    }
}

/* The verdict: "" when every known checksum matches, else the mismatch. */
static void sync_scrub_judge(const struct sync_scrub_item *item, const char *sha512,
                             const char *sha256, char *cause, size_t len)
{
    struct store_checksum want;

    cause[0] = '\0';
    if (store_checksum_parse(item->expected, &want, NULL) < 0)
        want.algo = STORE_DIGEST_NONE;
    if (want.algo != STORE_DIGEST_NONE) {
        const char *got = want.algo == STORE_DIGEST_SHA256 ? sha256 : sha512;
        char text[STORE_EXPECTED_MAX + 1];

        if (strcmp(want.hex, got) != 0) {
            store_checksum_format(&want, text);
            snprintf(cause, len, "checksum mismatch: expected %s, got %s (scrub)", text, got);
            return;
        }
    }
    if (item->current[0] && strcmp(item->current, sha512) != 0)
        snprintf(cause, len, "checksum mismatch: expected %s, got %s (scrub)", item->current,
                 sha512);
}

/* ---- outcomes ---- */

static void sync_scrub_matched(struct sync *sync, struct sync_scrub_task *task,
                               const struct sync_scrub_item *item)
{
    struct bim_error err = {0};
    struct sync_record *rec;
    int64_t now = clock_realtime_s();
    bool still;
    int rc;

    pthread_mutex_lock(&sync->lock);
    still = sync_scrub_record(sync, item) != NULL;
    pthread_mutex_unlock(&sync->lock);
    if (!still)
        return; /* changed or deleted meanwhile: nothing to keep */
    rc = sync_cfg_mark(sync, item->name, item->uuid, STORE_VERIFIED_SHA512, now, 0, &err);
    if (rc < 0) {
        log_warn("image=%s uuid=%s scrubbed, but cannot keep it in backing.cfg: %s", item->name,
                 item->uuid, err.message[0] ? err.message : strerror(-rc));
        return;
    }
    atomic_fetch_add(&task->scrubs, 1);
    atomic_store(&task->last, now);
    log_info("image=%s uuid=%s scrub: the SHA-512 matches (was verified %s)", item->name,
             item->uuid, item->verified);
    pthread_mutex_lock(&sync->lock);
    rec = sync_scrub_record(sync, item);
    if (rec) {
        str_copy(rec->info.verified, sizeof(rec->info.verified), STORE_VERIFIED_SHA512);
        rec->info.last_scrub = now;
        sync_record_changed(sync, rec);
    }
    pthread_mutex_unlock(&sync->lock);
}

/* The data goes first, then the image is failed: whoever sees it failed
 * sees it without data. Meanwhile the monitor leaves it alone (a missing
 * backing is not its to report), and a delete waits (sync_scrub_forget). */
static void sync_scrub_mismatched(struct sync *sync, struct sync_scrub_task *task,
                                  const struct sync_scrub_item *item, const char *cause)
{
    struct sync_record *rec;
    int rc;

    pthread_mutex_lock(&sync->lock);
    rec = sync_scrub_record(sync, item);
    if (rec)
        rec->scrub_failing = true;
    pthread_mutex_unlock(&sync->lock);
    if (!rec)
        return; /* changed meanwhile: the monitor's re-hash decides */
    atomic_fetch_add(&task->scrubs, 1);
    atomic_fetch_add(&task->mismatches, 1);
    atomic_store(&task->last, clock_realtime_s());
    log_warn("image=%s uuid=%s failed: %s", item->name, item->uuid, cause);
    sync_cfg_save_failed(sync, item->name, item->uuid, cause);
    rc = store_image_remove_data(sync->store, item->name, item->uuid);
    if (rc < 0)
        log_error("image=%s uuid=%s cannot remove the data that failed: %s", item->name, item->uuid,
                  strerror(-rc));
    pthread_mutex_lock(&sync->lock);
    rec = sync_record_find_id(sync, item->id);
    if (rec) {
        rec->scrub_failing = false;
        if (!rec->hidden) {
            sync_record_set_failed(rec, BIM_CAUSE_CHECKSUM, cause);
            sync_record_changed(sync, rec);
        }
    }
    pthread_mutex_unlock(&sync->lock);
}

/* Not decided: leave the image alone for a while (sync->lock taken). */
static void sync_scrub_later(struct sync *sync, const struct sync_scrub_item *item)
{
    struct sync_record *rec;

    pthread_mutex_lock(&sync->lock);
    rec = sync_record_find_id(sync, item->id);
    if (rec)
        rec->scrub_after = clock_realtime_s() + SYNC_SCRUB_RETRY_S;
    pthread_mutex_unlock(&sync->lock);
}

/* One pass over one image, no lock held while it reads. */
static void sync_scrub_one(struct sync *sync, struct sync_scrub_task *task,
                           const struct sync_scrub_item *item)
{
    char sha512[STORE_CHECKSUM_HEX + 1], sha256[STORE_PIECE_HEX + 1] = "";
    char cause[BIM_ERROR_MAX];
    struct bim_error err = {0};
    struct store_reread *r = NULL;
    struct store_checksum want;
    struct stat before, after;
    uint64_t start = clock_monotonic_ms();
    int rc;

    if (store_checksum_parse(item->expected, &want, NULL) < 0)
        want.algo = STORE_DIGEST_NONE;
    rc = store_reread_open(sync->store, item->name, item->uuid, want.algo == STORE_DIGEST_SHA256,
                           &r, &before, &err);
    if (rc == 0 && !sync_stat_same(&before, &item->seen))
        rc = bim_error_set(&err, -ESTALE, "backing changed on disk");
    if (rc == 0) {
        log_info("image=%s uuid=%s scrub: reading %" PRIu64 " bytes at %" PRIu64 " MB/s",
                 item->name, item->uuid, (uint64_t)before.st_size, task->rate / SYNC_SCRUB_MB);
        rc = sync_scrub_read(sync, task, r, &err);
    }
    if (rc == 0) {
        rc = store_reread_finish(r, sha512, sha256, &after);
        if (rc < 0)
            bim_error_cause(&err, BIM_CAUSE_IO, rc, "cannot hash backing: %s", strerror(-rc));
        else if (!sync_stat_same(&before, &after))
            rc = bim_error_set(&err, -ESTALE, "backing changed on disk during the scrub");
    }
    store_reread_close(r);
    if (rc == -ECANCELED)
        goto out;
    if (rc < 0) {
        log_warn("image=%s uuid=%s scrub not decided: %s", item->name, item->uuid, err.message);
        sync_scrub_later(sync, item);
        goto out;
    }
    sync_scrub_judge(item, sha512, sha256, cause, sizeof(cause));
    if (cause[0])
        sync_scrub_mismatched(sync, task, item, cause);
    else
        sync_scrub_matched(sync, task, item);
    log_debug("image=%s uuid=%s scrub took %" PRIu64 " ms", item->name, item->uuid,
              clock_monotonic_ms() - start);
out:
    return;
}

/* ---- the thread ---- */

static void *sync_scrub_main(void *arg)
{
    struct sync *sync = arg;
    struct sync_scrub_task *task = sync->scrub;
    struct sync_scrub_item *item = malloc(sizeof(*item));

    if (!item) {
        log_error("sync: the scrub cannot start: out of memory");
        return NULL;
    }
    /* a thread's own nice value (Linux), as the digest thread's */
    if (setpriority(PRIO_PROCESS, (id_t)gettid(), SYNC_SCRUB_NICE) < 0)
        log_debug("sync: the scrub keeps its priority: %s", strerror(errno));
    for (;;) {
        uint64_t wait_ms = SYNC_SCRUB_IDLE_MS;
        bool picked;

        pthread_mutex_lock(&sync->lock);
        picked = sync_scrub_pick(sync, task, item, &wait_ms);
        pthread_mutex_unlock(&sync->lock);
        pthread_mutex_lock(&task->lock);
        if (task->stop) {
            pthread_mutex_unlock(&task->lock);
            break;
        }
        if (picked) {
            task->current = item->id;
            atomic_store(&task->cancel, false);
            pthread_mutex_unlock(&task->lock);
            sync_scrub_one(sync, task, item);
            pthread_mutex_lock(&task->lock);
            task->current = 0;
            if (!task->stop)
                atomic_store(&task->cancel, false); /* that was for this image only */
            pthread_cond_broadcast(&task->cond);    /* a forget may wait for this */
            pthread_mutex_unlock(&task->lock);
            continue;
        }
        pthread_mutex_unlock(&task->lock);
        sync_scrub_pause(task, wait_ms); /* stop ends it early; the loop's top sees it */
    }
    free(item);
    return NULL;
}

int sync_scrub_start(struct sync *sync, uint64_t interval_s, uint64_t rate)
{
    struct sync_scrub_task *task;
    pthread_condattr_t attr;
    int rc;

    if (interval_s == 0) {
        log_info("sync: the scrub is off (--scrub-interval 0)");
        return 0;
    }
    task = calloc(1, sizeof(*task));
    if (!task)
        return -ENOMEM;
    task->interval_s = interval_s;
    task->rate = rate;
    pthread_mutex_init(&task->lock, NULL);
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&task->cond, &attr);
    pthread_condattr_destroy(&attr);
    atomic_init(&task->cancel, false);
    sync->scrub = task;
    rc = pthread_create(&task->thread, NULL, sync_scrub_main, sync);
    task->started = rc == 0;
    if (rc == 0)
        log_info("sync: scrubbing every image every %" PRIu64 " s at %" PRIu64 " MB/s", interval_s,
                 rate / SYNC_SCRUB_MB);
    return -rc;
}

void sync_scrub_stop(struct sync *sync)
{
    struct sync_scrub_task *task = sync->scrub;

    if (!task)
        return;
    pthread_mutex_lock(&task->lock);
    task->stop = true;
    atomic_store(&task->cancel, true);
    pthread_cond_broadcast(&task->cond);
    pthread_mutex_unlock(&task->lock);
    if (task->started)
        pthread_join(task->thread, NULL);
    sync->scrub = NULL;
    pthread_cond_destroy(&task->cond);
    pthread_mutex_destroy(&task->lock);
    free(task);
}

void sync_scrub_forget(struct sync *sync, uint64_t id)
{
    struct sync_scrub_task *task = sync->scrub;

    if (!task)
        return;
    pthread_mutex_lock(&task->lock);
    if (task->current == id) {
        atomic_store(&task->cancel, true);
        pthread_cond_broadcast(&task->cond);
        while (task->current == id)
            pthread_cond_wait(&task->cond, &task->lock);
    }
    pthread_mutex_unlock(&task->lock);
}

void sync_scrub_stats(struct sync *sync, struct sync_stats *out)
{
    struct sync_scrub_task *task = sync->scrub;

    if (!task)
        return;
    out->scrub_bytes = atomic_load(&task->bytes);
    out->scrubs = atomic_load(&task->scrubs);
    out->scrub_mismatches = atomic_load(&task->mismatches);
    out->scrub_last = atomic_load(&task->last);
}
