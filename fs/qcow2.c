/*
 * qcow2.c - `raw` of a qcow2 image: the guest disk, decoded by qcow/.
 *
 * The open files of one image's `raw` share one struct qcow_image (the
 * cluster map and, for compressed images, libqcow's handles and caches):
 * fs_qcow_get() opens it on the first open and fs_qcow_put() closes it when
 * the last file that uses it is released. An entry is matched by record id
 * and by the identity of the backing file (device, inode, size, mtime), so
 * a backing file replaced behind our back is never read through an old map;
 * the old entry stays alive, unshared, for the files that still use it.
 * docs/fs.md says why the image is shared rather than opened per file.
 *
 * read answers with a fuse_bufvec built from qcow_image_map(): DATA runs as
 * fd segments into the qcow2 file (libfuse preads or splices them), ZERO
 * runs from one static zero buffer, COMPRESSED runs decoded by
 * qcow_image_read() into a buffer allocated for the request.
 *
 * Threads: handlers on any libfuse worker. fs->qcow_lock guards the entry
 * list and every entry's refs, opening, stale and open_rc; it is never held
 * across I/O (the image is opened without it; others wait on
 * fs->qcow_opened). An entry's img is written once, before opening is
 * cleared, and only read afterwards; qcow/ allows concurrent reads.
 */
#include "fs_internal.h"

#include "qcow.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* ZERO segments point into this buffer, in pieces of at most its size.
 * Never written: its pages stay the kernel's shared zero page. */
#define FS_ZERO_SIZE (1024 * 1024)
static char fs_zeros[FS_ZERO_SIZE];

struct fs_qcow {
    struct fs_qcow *next; /* fs->qcow_list holds every entry until freed */
    uint64_t id;          /* the image record */
    char name[STORE_NAME_MAX + 1];
    char uuid[STORE_UUID_MAX + 1];
    struct stat file; /* identity of the backing file it was opened from */
    unsigned refs;    /* open files, plus openers waiting for it */
    bool opening;     /* one thread opens img; the others wait */
    bool stale;       /* the backing file changed: not shared any more */
    int open_rc;      /* the result of the open, once !opening */
    struct qcow_image *img;
};

void fs_qcow_cache_init(struct fs *fs)
{
    pthread_mutex_init(&fs->qcow_lock, NULL);
    pthread_cond_init(&fs->qcow_opened, NULL);
    fs->qcow_list = NULL;
}

/* At teardown no request runs any more; files the kernel never released
 * (open when the session ended) leave their entries here. */
void fs_qcow_cache_destroy(struct fs *fs)
{
    struct fs_qcow *q = fs->qcow_list;

    while (q) {
        struct fs_qcow *next = q->next;

        qcow_image_close(q->img);
        free(q);
        q = next;
    }
    fs->qcow_list = NULL;
    pthread_cond_destroy(&fs->qcow_opened);
    pthread_mutex_destroy(&fs->qcow_lock);
}

static bool fs_qcow_same_file(const struct fs_qcow *q, const struct stat *st)
{
    return q->file.st_dev == st->st_dev && q->file.st_ino == st->st_ino &&
           q->file.st_size == st->st_size && q->file.st_mtim.tv_sec == st->st_mtim.tv_sec &&
           q->file.st_mtim.tv_nsec == st->st_mtim.tv_nsec;
}

/* Under fs->qcow_lock: unlink q from the list. */
static void fs_qcow_unlink(struct fs *fs, struct fs_qcow *q)
{
    struct fs_qcow **p;

    for (p = &fs->qcow_list; *p; p = &(*p)->next) {
        if (*p == q) {
            *p = q->next;
            return;
        }
    }
}

void fs_qcow_put(struct fs *fs, struct fs_qcow *q)
{
    bool last;

    if (!q)
        return;
    pthread_mutex_lock(&fs->qcow_lock);
    last = --q->refs == 0;
    if (last)
        fs_qcow_unlink(fs, q);
    pthread_mutex_unlock(&fs->qcow_lock);
    if (!last)
        return;
    log_debug("image=%s uuid=%s fs: qcow2 image closed", q->name, q->uuid);
    qcow_image_close(q->img);
    free(q);
}

/* Open q->img from fd (no lock held). */
static int fs_qcow_open_image(struct fs_qcow *q, int fd, uint64_t virtual_size)
{
    struct bim_error err = {0};
    struct timespec t0, t1;
    int rc;

    clock_gettime(CLOCK_MONOTONIC, &t0);
    rc = qcow_image_open(fd, 0, &q->img, &err);
    if (rc) {
        log_error("image=%s uuid=%s fs: cannot open the qcow2 image for raw: %s", q->name, q->uuid,
                  err.message);
        return -EIO;
    }
    if (qcow_image_virtual_size(q->img) != virtual_size) {
        log_error("image=%s uuid=%s fs: qcow2 virtual size %" PRIu64
                  " is not the record's %" PRIu64,
                  q->name, q->uuid, qcow_image_virtual_size(q->img), virtual_size);
        return -EIO;
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    log_debug("image=%s uuid=%s fs: qcow2 image opened: %zu extents, compressed %s, %.1f ms",
              q->name, q->uuid, qcow_image_extent_count(q->img),
              qcow_image_has_compressed(q->img) ? "yes" : "no",
              (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6);
    return 0;
}

int fs_qcow_get(struct fs *fs, const struct sync_image_info *info, int fd, struct fs_qcow **out)
{
    struct fs_qcow *q;
    struct stat st;
    int rc;

    if (fstat(fd, &st) < 0)
        return -errno;
    pthread_mutex_lock(&fs->qcow_lock);
    for (q = fs->qcow_list; q; q = q->next) {
        if (q->id != info->id || q->stale)
            continue;
        if (fs_qcow_same_file(q, &st))
            break;
        q->stale = true; /* the backing file changed: its readers keep it */
    }
    if (q) {
        q->refs++;
        while (q->opening)
            pthread_cond_wait(&fs->qcow_opened, &fs->qcow_lock);
        rc = q->open_rc;
        pthread_mutex_unlock(&fs->qcow_lock);
        goto out;
    }
    q = calloc(1, sizeof(*q));
    if (!q) {
        pthread_mutex_unlock(&fs->qcow_lock);
        return -ENOMEM;
    }
    q->id = info->id;
    str_copy(q->name, sizeof(q->name), info->name);
    str_copy(q->uuid, sizeof(q->uuid), info->uuid);
    q->file = st;
    q->refs = 1;
    q->opening = true;
    q->next = fs->qcow_list;
    fs->qcow_list = q;
    pthread_mutex_unlock(&fs->qcow_lock);

    rc = fs_qcow_open_image(q, fd, info->virtual_size);

    pthread_mutex_lock(&fs->qcow_lock);
    q->opening = false;
    q->open_rc = rc;
    if (rc)
        q->stale = true; /* the next open tries again */
    pthread_cond_broadcast(&fs->qcow_opened);
    pthread_mutex_unlock(&fs->qcow_lock);
out:
    if (rc) {
        fs_qcow_put(fs, q);
        return rc;
    }
    *out = q;
    return 0;
}

/* Walk the guest range [off, off+size): how many bufvec entries it needs and
 * how many bytes of it are compressed. */
static void fs_qcow_plan(const struct qcow_image *img, uint64_t off, uint64_t size, size_t *count,
                         uint64_t *compressed)
{
    uint64_t end = off + size;
    struct qcow_segment seg;

    *count = 0;
    *compressed = 0;
    while (off < end) {
        qcow_image_map(img, off, end - off, &seg);
        if (seg.length == 0)
            break;
        if (seg.kind == QCOW_SEGMENT_ZERO)
            *count += (size_t)((seg.length + FS_ZERO_SIZE - 1) / FS_ZERO_SIZE);
        else
            *count += 1;
        if (seg.kind == QCOW_SEGMENT_COMPRESSED)
            *compressed += seg.length;
        off += seg.length;
    }
}

/* Fill bv->buf[0..] for [off, off+size); compressed runs are decoded into
 * cbuf. 0 or -errno (a failed decode). */
static int fs_qcow_fill(struct fs_qcow *q, struct fuse_bufvec *bv, uint64_t off, uint64_t size,
                        char *cbuf)
{
    uint64_t end = off + size;
    struct qcow_segment seg;
    size_t n = 0;

    while (off < end) {
        qcow_image_map(q->img, off, end - off, &seg);
        if (seg.length == 0)
            break;
        switch (seg.kind) {
        case QCOW_SEGMENT_DATA:
            bv->buf[n++] = (struct fuse_buf){.size = seg.length,
                                             .flags = FUSE_BUF_IS_FD | FUSE_BUF_FD_SEEK,
                                             .fd = qcow_image_fd(q->img),
                                             .pos = (off_t)seg.file_offset};
            break;
        case QCOW_SEGMENT_COMPRESSED: {
            ssize_t got = qcow_image_read(q->img, cbuf, seg.length, off);

            if (got < 0 || (uint64_t)got != seg.length) {
                log_error("image=%s uuid=%s fs: raw: compressed clusters at guest offset %" PRIu64
                          ": %s",
                          q->name, q->uuid, off, got < 0 ? strerror((int)-got) : "short read");
                return -EIO;
            }
            bv->buf[n++] = (struct fuse_buf){.size = seg.length, .mem = cbuf};
            cbuf += seg.length;
            break;
        }
        case QCOW_SEGMENT_ZERO:
        default:
            for (uint64_t left = seg.length; left > 0;) {
                uint64_t piece = left < FS_ZERO_SIZE ? left : FS_ZERO_SIZE;

                bv->buf[n++] = (struct fuse_buf){.size = piece, .mem = fs_zeros};
                left -= piece;
            }
            break;
        }
        off += seg.length;
    }
    bv->count = n;
    return 0;
}

/*
 * Answer a read of `size` bytes at `off` (already clipped to the virtual
 * size by the caller). The kernel sends at most max_pages (256) pages per
 * request, so the allocation below (bufvec entries plus the compressed
 * bytes) is bounded by about 1 MiB plus 40 bytes per 512-byte cluster.
 */
void fs_qcow_read(fuse_req_t req, struct fs_qcow *q, size_t size, uint64_t off)
{
    struct fuse_bufvec one = FUSE_BUFVEC_INIT(size);
    struct fuse_bufvec *bv = &one;
    uint64_t compressed;
    size_t count;
    char *cbuf;
    int rc;

    fs_qcow_plan(q->img, off, size, &count, &compressed);
    if (count > 1 || compressed > 0) {
        /* fuse_bufvec ends with one fuse_buf: room for count of them, then
         * the decoded compressed bytes */
        size_t head = sizeof(*bv) + (count - 1) * sizeof(bv->buf[0]);

        bv = malloc(head + (size_t)compressed);
        if (!bv) {
            fuse_reply_err(req, ENOMEM);
            return;
        }
        *bv = (struct fuse_bufvec){.count = count};
        cbuf = (char *)bv + head;
    } else {
        cbuf = NULL;
    }
    rc = fs_qcow_fill(q, bv, off, size, cbuf);
    if (rc)
        fuse_reply_err(req, -rc);
    else
        fuse_reply_data(req, bv, FUSE_BUF_SPLICE_MOVE);
    if (bv != &one)
        free(bv);
}

/* SEEK_DATA/SEEK_HOLE over the map: ZERO runs (zero flag, unallocated) are
 * holes, DATA and COMPRESSED runs are data, the end of the disk is a hole. */
int fs_qcow_seek(const struct fs_qcow *q, uint64_t size, uint64_t off, int whence, uint64_t *out)
{
    struct qcow_segment seg;

    if (off >= size)
        return -ENXIO;
    while (off < size) {
        qcow_image_map(q->img, off, size - off, &seg);
        if (seg.length == 0)
            break;
        if ((seg.kind == QCOW_SEGMENT_ZERO) == (whence == SEEK_HOLE)) {
            *out = off;
            return 0;
        }
        off += seg.length;
    }
    if (whence == SEEK_HOLE) {
        *out = size;
        return 0;
    }
    return -ENXIO;
}
