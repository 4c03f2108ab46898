/*
 * test_sync.c - the image records and their state machine on a real store in
 * a temporary directory: upload (file and pipe), clone, checksum failures,
 * delete and its cancel, watch events, adoption at restart, and the change
 * monitor (touch -> re-hashed, ready; overwritten byte -> failed).
 *
 * The tests run in order on one disk: later ones use images earlier ones made.
 */
#include "check.h"
#include "store.h"
#include "sync.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <openssl/evp.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#define MIB (1024u * 1024u)
#define CHECK_MS 200
#define WAIT_MS 15000

static char disk[CHECK_DIR_MAX];
static char src_path[PATH_MAX + 16];
static char src_sum[STORE_CHECKSUM_HEX + 1];
static struct store *store;
static struct sync *manager;

/* ---- helpers ---- */

static void hex_of(const unsigned char *md, unsigned len, char *out)
{
    for (unsigned i = 0; i < len; i++)
        snprintf(out + 2 * i, 3, "%02x", md[i]);
}

static void sha512_buffer(const void *buf, size_t len, char out[STORE_CHECKSUM_HEX + 1])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned mdlen = 0;

    EVP_Digest(buf, len, md, &mdlen, EVP_sha512(), NULL);
    hex_of(md, mdlen, out);
}

static void sha512_file(const char *path, char out[STORE_CHECKSUM_HEX + 1])
{
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    unsigned char md[EVP_MAX_MD_SIZE], buf[65536];
    unsigned mdlen = 0;
    int fd = open(path, O_RDONLY);
    ssize_t n;

    EVP_DigestInit_ex(ctx, EVP_sha512(), NULL);
    while (fd >= 0 && (n = read(fd, buf, sizeof(buf))) > 0)
        EVP_DigestUpdate(ctx, buf, (size_t)n);
    EVP_DigestFinal_ex(ctx, md, &mdlen);
    EVP_MD_CTX_free(ctx);
    if (fd >= 0)
        close(fd);
    hex_of(md, mdlen, out);
}

static void fill_pattern(unsigned char *buf, size_t len, unsigned seed)
{
    uint32_t x = seed * 2654435761u + 1;

    for (size_t i = 0; i < len; i++) {
        x = x * 1103515245u + 12345u;
        buf[i] = (unsigned char)(x >> 16);
    }
}

/* 10 MiB: data [0,4), hole [4,5), data [5,9) with a zero MiB inside, hole [9,10). */
static void make_source_file(void)
{
    unsigned char *buf = malloc(4 * MIB);
    int fd;

    snprintf(src_path, sizeof(src_path), "%s/source.img", disk);
    fd = open(src_path, O_CREAT | O_TRUNC | O_WRONLY, 0644);
    fill_pattern(buf, 4 * MIB, 1);
    CHECK(pwrite(fd, buf, 4 * MIB, 0) == (ssize_t)(4 * MIB), "write source");
    fill_pattern(buf, 4 * MIB, 2);
    memset(buf + MIB, 0, MIB); /* a MiB of written zeros */
    CHECK(pwrite(fd, buf, 4 * MIB, 5 * MIB) == (ssize_t)(4 * MIB), "write source");
    CHECK(ftruncate(fd, 10 * MIB) == 0, "truncate source");
    close(fd);
    free(buf);
    sha512_file(src_path, src_sum);
}

static struct sync_image_info wait_settled(const char *name, enum sync_state want)
{
    struct sync_image_info info;
    uint64_t start = clock_monotonic_ms();

    memset(&info, 0, sizeof(info));
    while (clock_monotonic_ms() - start < WAIT_MS) {
        if (sync_get(manager, name, &info, NULL) == 0 &&
            (info.state == want || info.state == SYNC_STATE_FAILED))
            return info;
        usleep(20 * 1000);
    }
    return info;
}

static int create_upload(const char *name, const char *uuid, const char *checksum, int fd,
                         struct sync_image_info *out, struct bim_error *err)
{
    struct sync_create_request req = {
        .name = name, .uuid = uuid, .checksum = checksum, .type = SYNC_SOURCE_UPLOAD, .fd = fd};

    return sync_create(manager, &req, out, err);
}

static int create_upload_file(const char *name, const char *uuid, const char *checksum,
                              struct sync_image_info *out, struct bim_error *err)
{
    return create_upload(name, uuid, checksum, open(src_path, O_RDONLY | O_CLOEXEC), out, err);
}

static bool image_file_exists(const char *name, const char *uuid, const char *file)
{
    char path[PATH_MAX];

    store_image_path(store, name, uuid, file, path, sizeof(path));
    return access(path, F_OK) == 0;
}

static void restart(void)
{
    struct sync_options opts = {.workers = 2, .check_interval_ms = CHECK_MS};
    struct bim_error err = {0};

    sync_close(manager);
    manager = NULL;
    CHECK(sync_open(store, &opts, &manager, &err) == 0, "sync_open again: %s", err.message);
}

/* ---- tests ---- */

static void test_upload_from_file_becomes_ready_with_its_checksum(void)
{
    struct sync_image_info info;
    struct bim_error err = {0};

    CHECK_INT(create_upload_file("base", "u1", NULL, &info, &err), 0);
    CHECK(info.id != 0, "a created image has an id");
    CHECK(info.state <= SYNC_STATE_IN_PROGRESS || info.state == SYNC_STATE_READY,
          "new image is pending or later, got %s", sync_state_name(info.state));
    info = wait_settled("base", SYNC_STATE_READY);
    CHECK(info.state == SYNC_STATE_READY, "upload ends ready, got %s (%s)",
          sync_state_name(info.state), info.error);
    CHECK_STR(info.current_checksum, src_sum);
    CHECK_INT(info.size, 10 * MIB);
    CHECK_INT(info.progress, 100);
    CHECK_INT(info.format, STORE_FORMAT_RAW);
    CHECK_STR(info.source, "upload");
    CHECK(info.real_size < 10 * MIB, "holes of the upload stay holes: real size %" PRIu64,
          info.real_size);
    CHECK(image_file_exists("base", "u1", "backing"), "backing exists");
    CHECK(!image_file_exists("base", "u1", "backing.tmp"), "no backing.tmp once ready");
}

static void test_create_same_name_and_uuid_returns_the_existing_image(void)
{
    struct sync_image_info first, again;
    struct bim_error err = {0};

    CHECK_INT(sync_get(manager, "base", &first, &err), 0);
    CHECK_INT(create_upload("base", "u1", NULL, open("/dev/null", O_RDONLY), &again, &err), 0);
    CHECK(again.id == first.id, "same image returned (id %" PRIu64 " vs %" PRIu64 ")", again.id,
          first.id);
    CHECK(again.state == SYNC_STATE_READY, "still ready, got %s", sync_state_name(again.state));
}

static void test_create_same_name_other_uuid_is_eexist(void)
{
    struct sync_image_info info;
    struct bim_error err = {0};

    CHECK_INT(create_upload_file("base", "u2", NULL, &info, &err), -EEXIST);
    CHECK_STR(err.message, "base: already exists with uuid u1");
}

static void test_create_rejects_bad_requests_before_creating_anything(void)
{
    struct sync_create_request clone = {.name = "c", .type = SYNC_SOURCE_CLONE, .from = "nope"};
    struct sync_create_request dl = {
        .name = "dl", .type = SYNC_SOURCE_DOWNLOAD, .url = "ftp://x/y"};
    struct sync_image_info info;
    struct bim_error err = {0};
    char stray[PATH_MAX];

    CHECK_INT(create_upload_file("-bad", NULL, NULL, &info, &err), -EINVAL);
    CHECK(strstr(err.message, "invalid name") != NULL, "message: %s", err.message);
    CHECK_INT(create_upload_file("okname", "bad/uuid", NULL, &info, &err), -EINVAL);
    CHECK_INT(create_upload_file("okname", NULL, "abc", &info, &err), -EINVAL);
    CHECK(strncmp(err.message, "okname: ", 8) == 0, "message names the image: %s", err.message);
    CHECK_INT(create_upload("okname", NULL, NULL, -1, &info, &err), -EINVAL);
    CHECK_INT(sync_create(manager, &dl, &info, &err), -EINVAL);
    CHECK_STR(err.message, "dl: unsupported URL scheme \"ftp\": only http and https");
    clone.name = "cl";
    CHECK_INT(sync_create(manager, &clone, &info, &err), -ENOENT);
    CHECK(sync_get(manager, "okname", &info, NULL) == -ENOENT, "nothing created by bad requests");

    snprintf(stray, sizeof(stray), "%s/stray-1234", store_images_path(store));
    CHECK(mkdir(stray, 0755) == 0, "mkdir stray dir");
    CHECK_INT(create_upload_file("stray", "1234", NULL, &info, &err), -EEXIST);
    CHECK(strstr(err.message, "already exists on disk") != NULL, "message: %s", err.message);
    rmdir(stray);
}

static void test_clone_of_a_ready_image_has_the_same_checksum(void)
{
    struct sync_create_request req = {
        .name = "copy", .uuid = "c1", .type = SYNC_SOURCE_CLONE, .from = "base"};
    struct sync_image_info info;
    struct bim_error err = {0};

    CHECK_INT(sync_create(manager, &req, &info, &err), 0);
    info = wait_settled("copy", SYNC_STATE_READY);
    CHECK(info.state == SYNC_STATE_READY, "clone ends ready, got %s (%s)",
          sync_state_name(info.state), info.error);
    CHECK_STR(info.current_checksum, src_sum);
    CHECK_STR(info.source, "clone:base");
    CHECK_INT(info.size, 10 * MIB);
}

static void test_wrong_checksum_fails_and_leaves_no_data(void)
{
    char zeros[129];
    struct sync_image_info info;
    struct bim_error err = {0};

    memset(zeros, '0', 128);
    zeros[128] = '\0';
    CHECK_INT(create_upload_file("bad", "b1", zeros, &info, &err), 0);
    info = wait_settled("bad", SYNC_STATE_READY);
    CHECK(info.state == SYNC_STATE_FAILED, "wrong checksum ends failed, got %s",
          sync_state_name(info.state));
    CHECK(strstr(info.error, "checksum mismatch") != NULL, "error: %s", info.error);
    CHECK(!image_file_exists("bad", "b1", "backing"), "no backing after a mismatch");
    CHECK(!image_file_exists("bad", "b1", "backing.tmp"), "no backing.tmp after a mismatch");
}

static bool drain(struct sync_watch *w, const char *name, int *updates, int *deletes,
                  bool *delete_last, bool *saw_unknown)
{
    struct sync_event ev;
    bool any = false;

    while (sync_watch_next(w, &ev) == 0) {
        any = true;
        if (strcmp(ev.image.name, name) != 0)
            continue;
        if (ev.type == SYNC_EVENT_UPDATE) {
            (*updates)++;
            if (saw_unknown && ev.image.state == SYNC_STATE_UNKNOWN)
                *saw_unknown = true;
            if (delete_last)
                *delete_last = false;
        } else {
            (*deletes)++;
            if (delete_last)
                *delete_last = true;
        }
    }
    return any;
}

static void test_watch_sees_updates_then_the_delete(void)
{
    struct sync_watch *w;
    struct sync_image_info info;
    struct bim_error err = {0};
    int updates = 0, deletes = 0;
    bool delete_last = false;
    struct pollfd pfd = {.events = POLLIN};

    CHECK_INT(sync_watch_open(manager, NULL, &w), 0);
    pfd.fd = sync_watch_fd(w);
    CHECK_INT(create_upload_file("temp", "t1", NULL, &info, &err), 0);
    info = wait_settled("temp", SYNC_STATE_READY);
    CHECK(info.state == SYNC_STATE_READY, "temp ready, got %s", sync_state_name(info.state));
    CHECK(poll(&pfd, 1, 0) == 1, "watch fd is readable while events are queued");
    drain(w, "temp", &updates, &deletes, &delete_last, NULL);
    CHECK(updates >= 1, "at least one update event for temp, got %d", updates);
    CHECK(poll(&pfd, 1, 0) == 0, "watch fd is not readable once the queue is empty");

    CHECK_INT(sync_delete(manager, "temp", &err), 0);
    drain(w, "temp", &updates, &deletes, &delete_last, NULL);
    CHECK_INT(deletes, 1);
    CHECK(delete_last, "the delete is the last event of temp");
    CHECK(sync_get(manager, "temp", &info, NULL) == -ENOENT, "deleted image is gone");
    CHECK(!image_file_exists("temp", "t1", "backing.cfg"), "the directory is removed");
    CHECK_INT(sync_delete(manager, "temp", &err), -ENOENT);
    CHECK_STR(err.message, "temp: no such image");
    sync_watch_close(w);
}

static void test_watch_filtered_by_name_sees_only_that_image(void)
{
    struct sync_watch *only_base, *all;
    struct sync_image_info info;
    struct sync_event ev;
    struct bim_error err = {0};
    int updates = 0, deletes = 0;

    CHECK_INT(sync_watch_open(manager, "base", &only_base), 0);
    CHECK_INT(sync_watch_open(manager, NULL, &all), 0);
    CHECK_INT(create_upload_file("filt", "f1", NULL, &info, &err), 0);
    info = wait_settled("filt", SYNC_STATE_READY);
    CHECK(info.state == SYNC_STATE_READY, "filt ready, got %s", sync_state_name(info.state));
    drain(all, "filt", &updates, &deletes, NULL, NULL);
    CHECK_INT(sync_delete(manager, "filt", &err), 0);
    drain(all, "filt", &updates, &deletes, NULL, NULL);
    CHECK(updates >= 1 && deletes == 1, "the unfiltered watch saw filt: %d updates, %d deletes",
          updates, deletes);
    CHECK_INT(sync_watch_next(only_base, &ev), -EAGAIN);
    sync_watch_close(only_base);
    sync_watch_close(all);
}

static void *pipe_writer(void *arg)
{
    int fd = *(int *)arg;
    unsigned char *buf = malloc(3 * MIB);

    fill_pattern(buf, 3 * MIB, 3);
    for (size_t off = 0; off < 3 * MIB; off += 100000) {
        size_t n = 3 * MIB - off < 100000 ? 3 * MIB - off : 100000;
        if (write(fd, buf + off, n) != (ssize_t)n)
            break;
    }
    close(fd);
    free(buf);
    return NULL;
}

static void test_upload_from_a_pipe(void)
{
    unsigned char *buf = malloc(3 * MIB);
    char want[STORE_CHECKSUM_HEX + 1];
    struct sync_image_info info;
    struct bim_error err = {0};
    pthread_t thread;
    int fds[2];

    fill_pattern(buf, 3 * MIB, 3);
    sha512_buffer(buf, 3 * MIB, want);
    free(buf);
    CHECK(pipe2(fds, O_CLOEXEC) == 0, "pipe");
    pthread_create(&thread, NULL, pipe_writer, &fds[1]);
    CHECK_INT(create_upload("piped", "p1", NULL, fds[0], &info, &err), 0);
    info = wait_settled("piped", SYNC_STATE_READY);
    pthread_join(thread, NULL);
    CHECK(info.state == SYNC_STATE_READY, "pipe upload ends ready, got %s (%s)",
          sync_state_name(info.state), info.error);
    CHECK_STR(info.current_checksum, want);
    CHECK_INT(info.size, 3 * MIB);
}

static void test_delete_cancels_a_running_upload_quickly(void)
{
    struct sync_image_info info;
    struct bim_error err = {0};
    uint64_t start;
    int fds[2];

    CHECK(pipe2(fds, O_CLOEXEC) == 0, "pipe");
    CHECK(write(fds[1], "some bytes", 10) == 10, "write to pipe");
    CHECK_INT(create_upload("stalled", "s1", NULL, fds[0], &info, &err), 0);
    info = wait_settled("stalled", SYNC_STATE_IN_PROGRESS);
    CHECK(info.state == SYNC_STATE_IN_PROGRESS, "stalled upload is in progress, got %s",
          sync_state_name(info.state));
    start = clock_monotonic_ms();
    CHECK_INT(sync_delete(manager, "stalled", &err), 0);
    CHECK(clock_monotonic_ms() - start < 1500, "delete took %" PRIu64 " ms",
          clock_monotonic_ms() - start);
    CHECK(!image_file_exists("stalled", "s1", "backing.cfg"), "its directory is removed");
    close(fds[1]);
}

static void test_restart_adopts_ready_images_without_rehash(void)
{
    struct sync_image_info info;
    struct sync_watch *w;
    int updates = 0, deletes = 0;
    bool unknown = false;

    restart();
    CHECK_INT(sync_get(manager, "base", &info, NULL), 0);
    CHECK(info.state == SYNC_STATE_READY, "base ready right after open, got %s",
          sync_state_name(info.state));
    CHECK_STR(info.current_checksum, src_sum);
    CHECK_INT(sync_watch_open(manager, NULL, &w), 0);
    usleep(3 * CHECK_MS * 1000);
    drain(w, "base", &updates, &deletes, NULL, &unknown);
    drain(w, "copy", &updates, &deletes, NULL, &unknown);
    CHECK(!unknown, "no image went unknown after a clean restart");
    CHECK_INT(sync_get(manager, "copy", &info, NULL), 0);
    CHECK(info.state == SYNC_STATE_READY, "copy ready after restart, got %s",
          sync_state_name(info.state));
    CHECK_INT(sync_get(manager, "bad", &info, NULL), 0);
    CHECK(info.state == SYNC_STATE_FAILED && strstr(info.error, "checksum mismatch"),
          "bad is still failed with its error after restart: %s %s", sync_state_name(info.state),
          info.error);
    sync_watch_close(w);
}

static void test_transfer_cut_by_a_restart_is_failed_and_cleaned(void)
{
    struct store_cfg cfg;
    struct sync_image_info info;
    struct bim_error err = {0};
    char tmp[PATH_MAX];
    int fd;

    memset(&cfg, 0, sizeof(cfg));
    str_copy(cfg.uuid, sizeof(cfg.uuid), "i1");
    str_copy(cfg.state, sizeof(cfg.state), "in-progress");
    str_copy(cfg.source, sizeof(cfg.source), "upload");
    CHECK_INT(store_image_prepare(store, "cut", "i1", &cfg, &err), 0);
    store_image_path(store, "cut", "i1", "backing.tmp", tmp, sizeof(tmp));
    fd = open(tmp, O_CREAT | O_WRONLY, 0644);
    CHECK(fd >= 0 && write(fd, "partial", 7) == 7, "write backing.tmp");
    close(fd);
    restart();
    CHECK_INT(sync_get(manager, "cut", &info, NULL), 0);
    CHECK(info.state == SYNC_STATE_FAILED, "cut transfer is failed, got %s",
          sync_state_name(info.state));
    CHECK_STR(info.error, "interrupted by a daemon restart");
    CHECK(!image_file_exists("cut", "i1", "backing.tmp"), "leftover backing.tmp removed");
    restart();
    CHECK_INT(sync_get(manager, "cut", &info, NULL), 0);
    CHECK_STR(info.error, "interrupted by a daemon restart");
}

/* The cfg's modificationTime of copy: the re-hash rewrites it. */
static void copy_cfg_mtime(char out[STORE_TIME_MAX])
{
    struct store_cfg cfg;

    memset(&cfg, 0, sizeof(cfg));
    CHECK_INT(store_image_load_cfg(store, "copy", "c1", &cfg, NULL), 0);
    str_copy(out, STORE_TIME_MAX, cfg.modification_time);
    store_cfg_clear(&cfg);
}

/* The transient `unknown` is not waited for (watch updates merge, so it may
 * never be seen): the end state proves the re-hash, since only a re-hash
 * gives the record the new mtime and rewrites the cfg's modificationTime. */
static void test_touched_backing_is_rehashed_and_ends_ready(void)
{
    struct timespec times[2] = {{.tv_nsec = UTIME_OMIT}, {0}};
    struct sync_image_info info;
    char path[PATH_MAX], cfg_before[STORE_TIME_MAX], cfg_after[STORE_TIME_MAX];
    uint64_t start;

    copy_cfg_mtime(cfg_before);
    store_image_path(store, "copy", "c1", "backing", path, sizeof(path));
    clock_gettime(CLOCK_REALTIME, &times[1]);
    times[1].tv_sec += 3600;
    CHECK(utimensat(AT_FDCWD, path, times, 0) == 0, "utimensat");
    start = clock_monotonic_ms();
    memset(&info, 0, sizeof(info));
    while (clock_monotonic_ms() - start < WAIT_MS) {
        if (sync_get(manager, "copy", &info, NULL) == 0 &&
            ((info.state == SYNC_STATE_READY && info.mtime.tv_sec == times[1].tv_sec) ||
             info.state == SYNC_STATE_FAILED))
            break;
        usleep(20 * 1000);
    }
    CHECK(info.state == SYNC_STATE_READY, "same bytes end ready again, got %s (%s)",
          sync_state_name(info.state), info.error);
    CHECK(info.mtime.tv_sec == times[1].tv_sec, "the record never got the new mtime: no re-hash");
    CHECK_STR(info.current_checksum, src_sum);
    copy_cfg_mtime(cfg_after);
    CHECK(strcmp(cfg_before, cfg_after) != 0, "the cfg's modificationTime is still \"%s\"",
          cfg_after);
    /* the cfg was updated: a restart adopts it without hashing */
    restart();
    CHECK_INT(sync_get(manager, "copy", &info, NULL), 0);
    CHECK(info.state == SYNC_STATE_READY, "copy ready right after restart, got %s",
          sync_state_name(info.state));
}

static void test_overwritten_byte_fails_as_changed_on_disk(void)
{
    struct sync_image_info info;
    char path[PATH_MAX];
    unsigned char byte = 0;
    int fd;

    store_image_path(store, "copy", "c1", "backing", path, sizeof(path));
    fd = open(path, O_RDWR);
    CHECK(fd >= 0 && pread(fd, &byte, 1, 100) == 1, "read a byte");
    byte ^= 0xff;
    CHECK(pwrite(fd, &byte, 1, 100) == 1, "overwrite a byte");
    close(fd);
    info = wait_settled("copy", SYNC_STATE_FAILED);
    CHECK(info.state == SYNC_STATE_FAILED, "changed bytes end failed, got %s",
          sync_state_name(info.state));
    CHECK(strncmp(info.error, "checksum mismatch: expected ", 28) == 0 &&
              strstr(info.error, ", got ") != NULL && strchr(info.error, '(') == NULL,
          "error: %s", info.error);
    CHECK(access(path, F_OK) < 0, "the data that failed its checksum is kept (SPEC §3)");
}

int main(void)
{
    struct sync_options opts = {.workers = 2, .check_interval_ms = CHECK_MS};
    struct bim_error err = {0};

    if (check_dir_make(disk, "sync") < 0)
        return 1;
    if (store_open(disk, &store, &err) < 0 || sync_open(store, &opts, &manager, &err) < 0) {
        fprintf(stderr, "cannot open %s: %s\n", disk, err.message);
        return 1;
    }
    make_source_file();

    RUN(test_upload_from_file_becomes_ready_with_its_checksum);
    RUN(test_create_same_name_and_uuid_returns_the_existing_image);
    RUN(test_create_same_name_other_uuid_is_eexist);
    RUN(test_create_rejects_bad_requests_before_creating_anything);
    RUN(test_clone_of_a_ready_image_has_the_same_checksum);
    RUN(test_wrong_checksum_fails_and_leaves_no_data);
    RUN(test_watch_sees_updates_then_the_delete);
    RUN(test_watch_filtered_by_name_sees_only_that_image);
    RUN(test_upload_from_a_pipe);
    RUN(test_delete_cancels_a_running_upload_quickly);
    RUN(test_restart_adopts_ready_images_without_rehash);
    RUN(test_transfer_cut_by_a_restart_is_failed_and_cleaned);
    RUN(test_touched_backing_is_rehashed_and_ends_ready);
    RUN(test_overwritten_byte_fails_as_changed_on_disk);

    sync_close(manager);
    store_close(store);
    check_dir_remove(disk);
    return check_exit();
}
