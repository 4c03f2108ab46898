/*
 * test_peer_wbuf.c - a fetcher's writes behind it (sync/peer/wbuf.c): the
 * buffers handed over land at their offsets while the caller fills the other
 * one, the two buffers alternate, and a failed write is reported by the next
 * hand-over or wait, nothing being handed over after it.
 */
#include "check.h"
#include "peer/peer.h"

#include <errno.h>
#include <unistd.h>

#define MiB (1024u * 1024u)

static char tmpdir[CHECK_DIR_MAX];
static struct store *store;

static struct store_writer *writer_new(const char *name, const char *uuid)
{
    struct store_cfg cfg = {0};
    struct store_writer *w = NULL;
    struct bim_error err = {0};

    strcpy(cfg.state, "in-progress");
    CHECK_INT(store_image_prepare(store, name, uuid, &cfg, &err), 0);
    CHECK(store_writer_open(store, name, uuid, NULL, STORE_WRITER_NEW, &w, &err) == 0,
          "store_writer_open: %s", err.message);
    return w;
}

static void test_buffers_land_at_their_offsets_and_alternate(void)
{
    struct store_writer *w = writer_new("wb", "w1");
    struct sync_peer_wbuf b = {0};
    char *buf = NULL, *first, *back = malloc(4 * MiB);
    int fd;

    if (!w || !back)
        return;
    CHECK_INT(posix_memalign((void **)&buf, SYNC_PEER_ALIGN, SYNC_PEER_BUFFER), 0);
    CHECK_INT(sync_peer_wbuf_start(&b, w), 0);
    first = buf;
    for (unsigned i = 0; i < 4; i++) {
        char *next = NULL;

        memset(buf, 'a' + (int)i, SYNC_PEER_BUFFER);
        CHECK_INT(sync_peer_wbuf_write(&b, buf, SYNC_PEER_BUFFER, (uint64_t)i * MiB, &next), 0);
        CHECK(next != NULL && next != buf, "write %u: the other buffer is to be filled", i);
        CHECK(i % 2 == 1 || next != first, "write %u: the buffers alternate", i);
        buf = next;
    }
    CHECK_INT(sync_peer_wbuf_wait(&b), 0);
    fd = store_writer_fd(w);
    CHECK_INT(pread(fd, back, 4 * MiB, 0), 4 * MiB);
    for (unsigned i = 0; i < 4; i++)
        CHECK(back[i * MiB] == 'a' + (int)i && back[i * MiB + MiB - 1] == 'a' + (int)i,
              "MiB %u holds %c, not %c", i, back[i * MiB], 'a' + i);
    sync_peer_wbuf_stop(&b);
    free(buf); /* the buffer in hand; stop freed the spare */
    free(back);
    store_writer_abort(w);
}

static void test_a_failed_write_is_reported_once_and_stops_the_hand_over(void)
{
    uint64_t max = store_max_size(store);
    struct sync_peer_wbuf b = {0};
    struct store_writer *w;
    char *buf = NULL, *next = NULL, *held;

    store_set_max_size(store, 2 * MiB);
    w = writer_new("wbfail", "f1");
    if (!w)
        return;
    CHECK_INT(posix_memalign((void **)&buf, SYNC_PEER_ALIGN, SYNC_PEER_BUFFER), 0);
    memset(buf, 'x', SYNC_PEER_BUFFER);
    CHECK_INT(sync_peer_wbuf_start(&b, w), 0);
    /* past the max size: refused by the writer, in the thread */
    CHECK_INT(sync_peer_wbuf_write(&b, buf, SYNC_PEER_BUFFER, 2 * MiB, &next), 0);
    held = next;
    next = NULL;
    CHECK_INT(sync_peer_wbuf_write(&b, held, SYNC_PEER_BUFFER, 0, &next), -EFBIG);
    CHECK(next == NULL, "nothing is handed over after a failed write");
    CHECK_INT(sync_peer_wbuf_wait(&b), -EFBIG);
    CHECK_INT(sync_peer_wbuf_wait(&b), 0); /* reported once */
    CHECK_INT(sync_peer_wbuf_write(&b, held, SYNC_PEER_BUFFER, 0, &next), 0);
    CHECK_INT(sync_peer_wbuf_wait(&b), 0);
    sync_peer_wbuf_stop(&b);
    free(next);
    store_writer_abort(w);
    store_set_max_size(store, max);
}

int main(void)
{
    struct bim_error err = {0};

    if (check_dir_make(tmpdir, "wbuf") < 0)
        return 1;
    if (store_open(tmpdir, &store, &err) < 0) {
        fprintf(stderr, "store_open: %s\n", err.message);
        return 1;
    }
    RUN(test_buffers_land_at_their_offsets_and_alternate);
    RUN(test_a_failed_write_is_reported_once_and_stops_the_hand_over);
    store_close(store);
    check_dir_remove(tmpdir);
    return check_exit();
}
