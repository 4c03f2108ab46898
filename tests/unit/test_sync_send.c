/*
 * test_sync_send.c - what sync offers the HTTP server, on a real store in a
 * temporary directory: uploads pushed through sync_stream_* (ready, holes
 * kept, checksum mismatch, the same uuid again, a cut upload, a delete
 * while uploading), sends counted in sending_reference with --send-limit,
 * the counters behind /metrics, and the checks of a peer sync request.
 *
 * The tests run in order on one disk: later ones use images earlier ones made.
 */
#include "check.h"
#include "store.h"
#include "sync.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#define MIB (1024u * 1024u)

static char disk[CHECK_DIR_MAX];
static struct store *store;
static struct sync *manager;
static unsigned char *image; /* 4 MiB: 1 MiB of data, 2 MiB of zeros, 1 MiB of data */
static char image_sum[STORE_CHECKSUM_HEX + 1];

static void make_image(void)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned mdlen = 0;

    image = calloc(1, 4 * MIB);
    for (size_t i = 0; i < MIB; i++) {
        image[i] = (unsigned char)(i * 7 + 1);
        image[3 * MIB + i] = (unsigned char)(i * 13 + 5);
    }
    EVP_Digest(image, 4 * MIB, md, &mdlen, EVP_sha512(), NULL);
    for (unsigned i = 0; i < mdlen; i++)
        snprintf(image_sum + 2 * i, 3, "%02x", md[i]);
}

/* Push the image through a stream in pieces of `piece` bytes. */
static int push(const char *name, const char *uuid, const char *checksum, size_t piece,
                struct sync_image_info *info, struct bim_error *err)
{
    struct sync_create_request req = {.name = name, .uuid = uuid, .checksum = checksum};
    struct sync_stream *s = NULL;
    int rc = sync_stream_begin(manager, &req, 4 * MIB, &s, info, err);

    if (rc != 0)
        return rc;
    for (size_t off = 0; off < 4 * MIB; off += piece) {
        rc = sync_stream_write(s, image + off, piece, err);
        if (rc < 0) {
            sync_stream_abort(s);
            return rc;
        }
    }
    return sync_stream_end(s, info, err);
}

static void test_stream_upload_becomes_ready_with_holes_kept(void)
{
    struct sync_image_info info;
    struct bim_error err = {0};
    char path[PATH_MAX];
    struct stat st;

    CHECK_INT(push("pushed", "p1", NULL, 65536, &info, &err), 0);
    CHECK(info.state == SYNC_STATE_READY, "state %s (%s)", sync_state_name(info.state), info.error);
    CHECK_STR(info.current_checksum, image_sum);
    CHECK_STR(info.source, "upload");
    store_image_path(store, "pushed", "p1", "backing", path, sizeof(path));
    CHECK(stat(path, &st) == 0 && st.st_size == (off_t)(4 * MIB), "backing of 4 MiB");
    CHECK((uint64_t)st.st_blocks * 512 <= 2 * MIB + 64 * 1024,
          "2 MiB of zeros written as data: %lld bytes allocated", (long long)st.st_blocks * 512);
}

static void test_stream_same_uuid_returns_the_image_other_uuid_is_eexist(void)
{
    struct sync_create_request req = {.name = "pushed", .uuid = "p1"};
    struct sync_stream *s = NULL;
    struct sync_image_info info;
    struct bim_error err = {0};

    CHECK_INT(sync_stream_begin(manager, &req, 4 * MIB, &s, &info, &err), 1);
    CHECK(s == NULL && info.state == SYNC_STATE_READY, "the existing image, no stream");
    req.uuid = "p2";
    CHECK_INT(sync_stream_begin(manager, &req, 4 * MIB, &s, &info, &err), -EEXIST);
}

static void test_stream_checksum_mismatch_fails_the_image(void)
{
    struct sync_image_info info;
    struct bim_error err = {0};
    char zeros[129];

    memset(zeros, '0', 128);
    zeros[128] = '\0';
    CHECK_INT(push("mismatch", "m1", zeros, MIB, &info, &err), -EINVAL);
    CHECK(strstr(err.message, "checksum mismatch") != NULL, "message: %s", err.message);
    CHECK(sync_get(manager, "mismatch", &info, NULL) == 0 && info.state == SYNC_STATE_FAILED,
          "the image is failed");
    CHECK_INT(info.cause, BIM_CAUSE_CHECKSUM);
    CHECK_INT(push("badsum", "b1", "sha1:abc", MIB, &info, &err), -EINVAL);
    CHECK(sync_get(manager, "badsum", &info, NULL) == -ENOENT, "an invalid checksum created it");
}

/* A cut stream ends failed with its cause (SPEC §4) and leaves no data. */
static void test_cut_stream_fails_and_leaves_no_data(void)
{
    struct sync_create_request req = {.name = "cut", .uuid = "c1"};
    struct sync_stream *s = NULL;
    struct sync_image_info info;
    struct bim_error err = {0};
    char dir[PATH_MAX], path[PATH_MAX + 16];

    CHECK_INT(sync_stream_begin(manager, &req, 4 * MIB, &s, &info, &err), 0);
    CHECK_INT(sync_stream_write(s, image, 2 * MIB, &err), 0);
    CHECK_INT(sync_stream_write(s, image, 3 * MIB, &err), -EFBIG); /* past the announced size */
    sync_stream_abort(s);
    CHECK(sync_get(manager, "cut", &info, NULL) == 0 && info.state == SYNC_STATE_FAILED,
          "the cut image is not failed");
    CHECK(strstr(info.error, "body longer than the 4194304 bytes announced") != NULL, "error: %s",
          info.error);
    CHECK_INT(info.cause, BIM_CAUSE_SOURCE);
    snprintf(dir, sizeof(dir), "%s/cut-c1", store_images_path(store));
    snprintf(path, sizeof(path), "%s/backing", dir);
    CHECK(access(path, F_OK) < 0, "%s is still there", path);
    snprintf(path, sizeof(path), "%s/backing.tmp", dir);
    CHECK(access(path, F_OK) < 0, "%s is still there", path);
}

/* The cause is typed where the failure happens (the store's format check),
 * not read from the message: a raw image of 1000 bytes is a format failure,
 * counted as one, while an image named like a qcow2 that is cut short is the
 * source's failure. */
static void test_failure_causes_are_typed_where_they_happen(void)
{
    struct sync_create_request odd = {.name = "odd", .uuid = "o1"};
    struct sync_create_request cut = {.name = "cut.qcow2", .uuid = "q1"};
    struct sync_stats before, after;
    struct sync_stream *s = NULL;
    struct sync_image_info info;
    struct bim_error err = {0};

    sync_stats_get(manager, &before);
    CHECK_INT(sync_stream_begin(manager, &odd, 1000, &s, &info, &err), 0);
    CHECK_INT(sync_stream_write(s, image, 1000, &err), 0);
    CHECK_INT(sync_stream_end(s, &info, &err), -EINVAL);
    CHECK(strstr(info.error, "multiple of 512") != NULL, "error: %s", info.error);
    CHECK_INT(info.cause, BIM_CAUSE_FORMAT);
    CHECK_INT(sync_stream_begin(manager, &cut, 2 * MIB, &s, &info, &err), 0);
    CHECK_INT(sync_stream_write(s, image, MIB, &err), 0);
    sync_stream_abort(s);
    CHECK(sync_get(manager, "cut.qcow2", &info, NULL) == 0 && info.state == SYNC_STATE_FAILED,
          "the cut image is not failed");
    CHECK_INT(info.cause, BIM_CAUSE_SOURCE);
    sync_stats_get(manager, &after);
    CHECK_INT(after.failures[BIM_CAUSE_FORMAT] - before.failures[BIM_CAUSE_FORMAT], 1);
    CHECK_INT(after.failures[BIM_CAUSE_SOURCE] - before.failures[BIM_CAUSE_SOURCE], 1);
    CHECK_INT(sync_delete(manager, "odd", &err), 0);
    CHECK_INT(sync_delete(manager, "cut.qcow2", &err), 0);
}

static void *delete_gone(void *arg)
{
    (void)arg;
    sync_delete(manager, "gone", NULL);
    return NULL;
}

static void test_delete_while_streaming_cancels_the_next_write(void)
{
    struct sync_create_request req = {.name = "gone", .uuid = "g1"};
    struct sync_stream *s = NULL;
    struct sync_image_info info;
    struct bim_error err = {0};
    pthread_t deleter;

    CHECK_INT(sync_stream_begin(manager, &req, SYNC_STREAM_SIZE_UNKNOWN, &s, &info, &err), 0);
    CHECK_INT(sync_stream_write(s, image, MIB, &err), 0);
    /* the delete may wait while the stream writes: run it beside us */
    pthread_create(&deleter, NULL, delete_gone, NULL);
    usleep(100 * 1000);
    CHECK_INT(sync_stream_write(s, image, MIB, &err), -ECANCELED);
    sync_stream_abort(s);
    pthread_join(deleter, NULL);
    CHECK(sync_get(manager, "gone", &info, NULL) == -ENOENT, "the deleted image is listed");
}

static void test_sends_count_up_to_the_limit(void)
{
    struct sync_send a, b, c;
    struct sync_image_info info;
    struct sync_stats before, after;
    struct bim_error err = {0};
    struct stat st;

    sync_stats_get(manager, &before);
    CHECK_INT(sync_send_begin(manager, "pushed", 2, &a, &err), 0);
    CHECK(a.fd >= 0 && fstat(a.fd, &st) == 0 && st.st_size == (off_t)(4 * MIB), "open backing");
    CHECK_STR(a.checksum, image_sum);
    CHECK_INT(sync_send_begin(manager, "pushed", 2, &b, &err), 0);
    CHECK_INT(sync_send_begin(manager, "pushed", 2, &c, &err), -EAGAIN);
    CHECK(strncmp(err.message, "pushed: ", 8) == 0, "message names the image: %s", err.message);
    sync_get(manager, "pushed", &info, NULL);
    CHECK_INT(info.sending_reference, 2);
    sync_send_end(manager, &a, 4 * MIB);
    sync_send_end(manager, &b, 0);
    close(a.fd);
    close(b.fd);
    sync_get(manager, "pushed", &info, NULL);
    CHECK_INT(info.sending_reference, 0);
    CHECK_INT(info.bytes_sent, 4 * MIB);
    sync_stats_get(manager, &after);
    CHECK_INT(after.sends - before.sends, 2);
    CHECK_INT(after.sends_refused - before.sends_refused, 1);
    CHECK_INT(after.bytes_sent - before.bytes_sent, 4 * MIB);
    CHECK(after.failures[BIM_CAUSE_CHECKSUM] >= 1, "the checksum failure is counted");
}

static void test_send_of_missing_or_failed_image_is_refused(void)
{
    struct sync_send s;
    struct bim_error err = {0};

    CHECK_INT(sync_send_begin(manager, "nope", 3, &s, &err), -ENOENT);
    CHECK_INT(sync_send_begin(manager, "mismatch", 3, &s, &err), -EBUSY);
    CHECK(strstr(err.message, "not ready (failed)") != NULL, "message: %s", err.message);
    CHECK_INT(sync_send_begin(manager, "../x", 3, &s, &err), -EINVAL);
}

static void test_peer_sync_requests_are_checked(void)
{
    const char *none[] = {NULL};
    const char *bad[] = {"host:1", "has space:2", NULL};
    const char *many[18];
    struct sync_create_request req = {
        .name = "peer", .uuid = "u1", .type = SYNC_SOURCE_PEER, .fd = -1, .peers = none};
    struct sync_image_info info;
    struct bim_error err = {0};

    CHECK_INT(sync_create(manager, &req, &info, &err), -EINVAL);
    req.peers = bad;
    CHECK_INT(sync_create(manager, &req, &info, &err), -EINVAL);
    CHECK(strstr(err.message, "has space") != NULL, "message: %s", err.message);
    for (int i = 0; i < 17; i++)
        many[i] = "127.0.0.1:1";
    many[17] = NULL;
    req.peers = many;
    CHECK_INT(sync_create(manager, &req, &info, &err), -EINVAL);
    req.peers = bad + 2;
    req.uuid = NULL;
    CHECK_INT(sync_create(manager, &req, &info, &err), -EINVAL);
    CHECK(sync_get(manager, "peer", &info, NULL) == -ENOENT, "a bad request created the image");
}

int main(void)
{
    struct sync_options opts = {.workers = 2};
    struct bim_error err = {0};

    if (check_dir_make(disk, "sync-send") < 0)
        return 1;
    if (store_open(disk, &store, &err) < 0 || sync_open(store, &opts, &manager, &err) < 0) {
        fprintf(stderr, "cannot open %s: %s\n", disk, err.message);
        return 1;
    }
    make_image();

    RUN(test_stream_upload_becomes_ready_with_holes_kept);
    RUN(test_stream_same_uuid_returns_the_image_other_uuid_is_eexist);
    RUN(test_stream_checksum_mismatch_fails_the_image);
    RUN(test_cut_stream_fails_and_leaves_no_data);
    RUN(test_failure_causes_are_typed_where_they_happen);
    RUN(test_delete_while_streaming_cancels_the_next_write);
    RUN(test_sends_count_up_to_the_limit);
    RUN(test_send_of_missing_or_failed_image_is_refused);
    RUN(test_peer_sync_requests_are_checked);

    sync_close(manager);
    store_close(store);
    free(image);
    check_dir_remove(disk);
    return check_exit();
}
