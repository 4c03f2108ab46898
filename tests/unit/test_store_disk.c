/*
 * test_store_disk.c - the image directories under crashes and odd files: what
 * an interrupted create leaves is removed by the scan and nothing else is, a
 * `backing` that is no single-link regular file is neither adopted nor
 * opened, the max size refuses writes past it, an empty image is refused.
 */
#include "check.h"
#include "store.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

static char tmpdir[CHECK_DIR_MAX];
static struct store *store;

static void path_of(char *out, size_t len, const char *dir, const char *file)
{
    if (file)
        snprintf(out, len, "%s/backing-images/%s/%s", tmpdir, dir, file);
    else
        snprintf(out, len, "%s/backing-images/%s", tmpdir, dir);
}

static void make_dir(const char *dir, const char *file)
{
    char path[512];
    int fd;

    path_of(path, sizeof(path), dir, NULL);
    CHECK(mkdir(path, 0755) == 0 || errno == EEXIST, "mkdir %s", path);
    if (!file)
        return;
    path_of(path, sizeof(path), dir, file);
    fd = open(path, O_CREAT | O_WRONLY | O_TRUNC, 0644);
    CHECK(fd >= 0 && write(fd, "partial", 7) == 7, "write %s", path);
    if (fd >= 0)
        close(fd);
}

static bool dir_exists(const char *dir)
{
    char path[512];

    path_of(path, sizeof(path), dir, NULL);
    return access(path, F_OK) == 0;
}

struct seen {
    char refused[4][STORE_REFUSED_MAX];
    bool has_backing[4];
    int count;
};

static void scan_cb(void *ctx, const struct store_entry *e)
{
    struct seen *seen = ctx;

    if (strncmp(e->name, "odd", 3) == 0 && e->name[3] >= '0' && e->name[3] <= '3') {
        int i = e->name[3] - '0';
        str_copy(seen->refused[i], sizeof(seen->refused[i]), e->backing_refused);
        seen->has_backing[i] = e->has_backing;
    }
    seen->count++;
}

static void prepare(const char *name, const char *uuid)
{
    struct store_cfg cfg = {0};
    struct bim_error err = {0};

    strcpy(cfg.state, "in-progress");
    CHECK(store_image_prepare(store, name, uuid, &cfg, &err) == 0, "prepare %s: %s", name,
          err.message);
}

static void test_prepare_leaves_no_staging_directory(void)
{
    char path[512];

    prepare("fresh", "f1");
    path_of(path, sizeof(path), "fresh-f1", "backing.cfg");
    CHECK(access(path, F_OK) == 0, "prepare made no %s", path);
    CHECK(!dir_exists(".fresh-f1.tmp"), "the staging directory is left after prepare");
    CHECK_INT(store_image_remove(store, "fresh", "f1"), 0);
    CHECK(!dir_exists("fresh-f1"), "remove left fresh-f1");
    CHECK(!dir_exists(".fresh-f1.deleting"), "remove left its deleting directory");
    CHECK_INT(store_image_remove(store, "fresh", "f1"), 0); /* missing: not an error */
}

static void test_scan_removes_what_an_interrupted_create_left(void)
{
    static const char *const gone[] = {
        "empty-u1",     "cfgtmp-u2", "tmponly-u3", ".staged-u4.tmp", ".deleted-u8.deleting",
        "dash-name-x-y"};
    static const char *const kept[] = {"data-u5", "other-u6", "%bad-u7", ".odd.tmp",
                                       ".odd.deleting"};
    struct seen seen = {0};

    make_dir("empty-u1", NULL);
    make_dir("cfgtmp-u2", "backing.cfg.tmp");
    make_dir("tmponly-u3", "backing.tmp");
    make_dir("tmponly-u3", "backing.cfg.tmp");
    make_dir(".staged-u4.tmp", "backing.cfg");
    make_dir("dash-name-x-y", NULL);
    make_dir("data-u5", "backing"); /* someone's data without its cfg */
    make_dir("data-u5", "backing.tmp");
    make_dir("other-u6", "notes.txt");
    make_dir("%bad-u7", NULL); /* not a name bimfs could have made */
    make_dir(".odd.tmp", NULL);
    make_dir(".deleted-u8.deleting", "backing"); /* a delete cut after its rename */
    make_dir(".deleted-u8.deleting", "backing.cfg");
    make_dir(".odd.deleting", "backing");

    CHECK_INT(store_scan(store, scan_cb, &seen), 0);
    CHECK_INT(seen.count, 0);
    for (size_t i = 0; i < sizeof(gone) / sizeof(gone[0]); i++)
        CHECK(!dir_exists(gone[i]), "%s (an interrupted create or delete) is still there", gone[i]);
    for (size_t i = 0; i < sizeof(kept) / sizeof(kept[0]); i++)
        CHECK(dir_exists(kept[i]), "%s was removed: it may hold someone's data", kept[i]);
}

static void test_backing_that_is_not_a_single_link_file_is_refused(void)
{
    char path[512], other[512], target[512];
    struct seen seen = {0};
    int fd = -1;

    for (int i = 0; i < 4; i++) {
        char name[8];
        snprintf(name, sizeof(name), "odd%d", i);
        prepare(name, "o1");
    }
    snprintf(target, sizeof(target), "%s/secret", tmpdir);
    make_dir("odd0-o1", "backing"); /* a plain file: fine */
    fd = open(target, O_CREAT | O_WRONLY, 0600);
    CHECK(fd >= 0 && write(fd, "secret", 6) == 6, "write %s", target);
    if (fd >= 0)
        close(fd);
    path_of(path, sizeof(path), "odd1-o1", "backing");
    CHECK(symlink(target, path) == 0, "symlink %s", path);
    path_of(path, sizeof(path), "odd2-o1", "backing");
    CHECK(link(target, path) == 0, "link %s", path);
    path_of(path, sizeof(path), "odd3-o1", "backing");
    CHECK(mkfifo(path, 0644) == 0, "mkfifo %s", path);

    CHECK_INT(store_scan(store, scan_cb, &seen), 0);
    CHECK(seen.has_backing[0] && !seen.refused[0][0], "a plain backing is refused: %s",
          seen.refused[0]);
    CHECK(!seen.has_backing[1] && strstr(seen.refused[1], "symbolic link"),
          "symlink backing: refused \"%s\"", seen.refused[1]);
    CHECK(!seen.has_backing[2] && strstr(seen.refused[2], "2 links"),
          "hard-linked backing: refused \"%s\"", seen.refused[2]);
    CHECK(!seen.has_backing[3] && strstr(seen.refused[3], "not a regular file"),
          "FIFO backing: refused \"%s\"", seen.refused[3]);

    CHECK_INT(store_image_open_backing(store, "odd0", "o1", &fd), 0);
    if (fd >= 0)
        close(fd);
    CHECK_INT(store_image_open_backing(store, "odd1", "o1", &fd), -ELOOP);
    CHECK_INT(store_image_open_backing(store, "odd2", "o1", &fd), -EMLINK);
    CHECK_INT(store_image_open_backing(store, "odd3", "o1", &fd), -EPERM); /* did not block */
    CHECK(fd < 0, "a refused backing left an fd");

    for (int i = 0; i < 4; i++) {
        char name[8];
        snprintf(name, sizeof(name), "odd%d", i);
        CHECK_INT(store_image_remove(store, name, "o1"), 0);
    }
    snprintf(other, sizeof(other), "%s", target);
    CHECK(access(other, F_OK) == 0, "deleting the image removed the hard link's target");
    unlink(target);
}

static void test_writes_past_the_max_size_are_refused(void)
{
    static char buf[8192];
    struct store_writer *w = NULL;
    struct bim_error err = {0};

    memset(buf, 'x', sizeof(buf));
    store_set_max_size(store, 3 * 4096);
    prepare("big", "b1");
    CHECK_INT(store_writer_open(store, "big", "b1", NULL, STORE_WRITER_NEW, &w, &err), 0);
    if (!w)
        return;
    CHECK_INT(store_writer_pwrite(w, buf, sizeof(buf), 0), 0);
    CHECK_INT(store_writer_pwrite(w, buf, sizeof(buf), 8192), -EFBIG);
    CHECK(strstr(store_writer_strerror(w, -EFBIG), "larger than --max-size (12288 bytes)"),
          "message: %s", store_writer_strerror(w, -EFBIG));
    CHECK_INT(store_writer_skip(w, 8192, 8192), -EFBIG);
    CHECK_INT(store_writer_skip(w, 8192, 4096), 0); /* exactly the max is fine */
    CHECK_INT(store_writer_commit(w, 16384, "upload", NULL, &err), -EFBIG);
    CHECK(strstr(err.message, "larger than --max-size"), "commit message: %s", err.message);
    store_writer_abort(w);
    store_set_max_size(store, STORE_MAX_SIZE_DEFAULT);
    CHECK_INT(store_image_remove(store, "big", "b1"), 0);
}

static void test_an_empty_image_is_refused(void)
{
    struct store_writer *w = NULL;
    struct bim_error err = {0};

    prepare("void", "v1");
    CHECK_INT(store_writer_open(store, "void", "v1", NULL, STORE_WRITER_NEW, &w, &err), 0);
    if (!w)
        return;
    CHECK_INT(store_writer_commit(w, 0, "upload", NULL, &err), -EINVAL);
    CHECK_STR(err.message, "image is empty (0 bytes)");
    store_writer_abort(w);
    CHECK_INT(store_image_remove(store, "void", "v1"), 0);
}

int main(void)
{
    struct bim_error err = {0};
    if (check_dir_make(tmpdir, "disk") < 0)
        return 1;
    if (store_open(tmpdir, &store, &err) < 0) {
        fprintf(stderr, "store_open: %s\n", err.message);
        return 1;
    }
    RUN(test_prepare_leaves_no_staging_directory);
    RUN(test_scan_removes_what_an_interrupted_create_left);
    RUN(test_backing_that_is_not_a_single_link_file_is_refused);
    RUN(test_writes_past_the_max_size_are_refused);
    RUN(test_an_empty_image_is_refused);
    store_close(store);
    check_dir_remove(tmpdir);
    return check_exit();
}
