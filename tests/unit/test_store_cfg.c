/*
 * test_store_cfg.c - backing.cfg parse/serialize (Longhorn's field order,
 * unknown fields kept), Go's time format, and the cfg files on a disk.
 */
#include "check.h"
#include "store.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#define SUM                                                                                        \
    "cf83e1357eefb8bdf1542850d66d8007d620e4050b5715dc83f4a921d36ce9ce"                             \
    "47d0d13c5d85f2b0ff8318d2877eec2f63b931bd47417a81a538327af927da3e"

/* What Longhorn's backing-image-manager writes (json.Marshal of its
 * SyncingFileConfig): compact, in struct order, `name` its container path. */
static const char longhorn_cfg[] =
    "{\"name\":\"/data/backing-images/foo-abc123/backing\",\"uuid\":\"abc123\","
    "\"size\":1073741824,\"virtualSize\":10737418240,\"realSize\":524288000,"
    "\"expectedChecksum\":\"\",\"currentChecksum\":\"" SUM "\","
    "\"modificationTime\":\"2024-03-05 10:11:12.123456789 +0000 UTC\"}";

static char tmpdir[CHECK_DIR_MAX];

static void time_check(time_t sec, long nsec, const char *want)
{
    struct timespec ts = {sec, nsec};
    char got[STORE_TIME_MAX];

    store_time_format(&ts, got);
    CHECK(strcmp(got, want) == 0, "%lld.%09ld: got \"%s\", want \"%s\"", (long long)sec, nsec, got,
          want);
}

static void test_time_like_go(void)
{
    /* 1777638896 = 2026-05-01 12:34:56 UTC */
    time_check(1777638896, 0, "2026-05-01 12:34:56 +0000 UTC");
    time_check(1777638896, 123400000, "2026-05-01 12:34:56.1234 +0000 UTC");
    time_check(1777638896, 1, "2026-05-01 12:34:56.000000001 +0000 UTC");
    time_check(1777638896, 999999999, "2026-05-01 12:34:56.999999999 +0000 UTC");
    time_check(0, 500000000, "1970-01-01 00:00:00.5 +0000 UTC");
}

static void test_parse_longhorn_cfg(void)
{
    struct bim_error err = {0};
    struct store_cfg cfg;

    CHECK_INT(store_cfg_parse(longhorn_cfg, strlen(longhorn_cfg), &cfg, &err), 0);
    CHECK_STR(cfg.name, "/data/backing-images/foo-abc123/backing");
    CHECK_STR(cfg.uuid, "abc123");
    CHECK_INT(cfg.size, 1073741824);
    CHECK_INT(cfg.virtual_size, 10737418240LL);
    CHECK_INT(cfg.real_size, 524288000);
    CHECK_STR(cfg.expected_checksum, "");
    CHECK_STR(cfg.current_checksum, SUM);
    CHECK_STR(cfg.modification_time, "2024-03-05 10:11:12.123456789 +0000 UTC");
    CHECK_STR(cfg.state, "");
    CHECK_STR(cfg.format, "");
    CHECK(cfg.extra == NULL, "a Longhorn cfg has no unknown fields, got extra %s", cfg.extra);
    store_cfg_clear(&cfg);
}

static void test_serialize_field_order(void)
{
    static const char want[] =
        "{\"name\":\"/d/backing-images/img-1/backing\",\"uuid\":\"1\",\"size\":1024,"
        "\"virtualSize\":2048,\"realSize\":4096,\"expectedChecksum\":\"sha256:ab\","
        "\"currentChecksum\":\"cd\",\"modificationTime\":\"2026-05-01 12:34:56 +0000 UTC\","
        "\"state\":\"ready\",\"format\":\"qcow2\",\"source\":\"upload\",\"errorMsg\":\"\"}";
    struct store_cfg cfg = {0};
    char *text = NULL;

    strcpy(cfg.name, "/d/backing-images/img-1/backing");
    strcpy(cfg.uuid, "1");
    cfg.size = 1024;
    cfg.virtual_size = 2048;
    cfg.real_size = 4096;
    strcpy(cfg.expected_checksum, "sha256:ab");
    strcpy(cfg.current_checksum, "cd");
    strcpy(cfg.modification_time, "2026-05-01 12:34:56 +0000 UTC");
    strcpy(cfg.state, "ready");
    strcpy(cfg.format, "qcow2");
    strcpy(cfg.source, "upload");
    CHECK_INT(store_cfg_serialize(&cfg, &text), 0);
    CHECK_STR(text ? text : "(null)", want);
    free(text);
}

static void test_round_trip_keeps_unknown_fields(void)
{
    static const char in[] =
        "{\"future\":{\"a\":[1,2]},\"name\":\"n\",\"uuid\":\"u1\",\"size\":5,\"zz\":\"x\","
        "\"state\":\"failed\",\"errorMsg\":\"boom\",\"source\":\"download:http://h/x\"}";
    struct store_cfg cfg, again;
    char *text = NULL;

    CHECK_INT(store_cfg_parse(in, strlen(in), &cfg, NULL), 0);
    CHECK(cfg.extra && strstr(cfg.extra, "\"future\"") && strstr(cfg.extra, "\"zz\""),
          "unknown fields not kept: extra=%s", cfg.extra ? cfg.extra : "(null)");
    CHECK_INT(store_cfg_serialize(&cfg, &text), 0);
    CHECK(text && strstr(text, "\"errorMsg\":\"boom\",\"future\":{\"a\":[1,2]},\"zz\":\"x\"}"),
          "unknown fields must follow the known ones: %s", text ? text : "(null)");
    CHECK_INT(store_cfg_parse(text, strlen(text), &again, NULL), 0);
    CHECK_STR(again.uuid, "u1");
    CHECK_INT(again.size, 5);
    CHECK_STR(again.state, "failed");
    CHECK_STR(again.error, "boom");
    CHECK_STR(again.source, "download:http://h/x");
    CHECK_STR(again.extra ? again.extra : "(null)", cfg.extra ? cfg.extra : "");
    store_cfg_clear(&again);
    store_cfg_clear(&cfg);
    free(text);
}

static void test_scrub_fields_round_trip_after_the_others(void)
{
    struct store_cfg cfg = {0}, again;
    char *text = NULL;

    strcpy(cfg.uuid, "u1");
    strcpy(cfg.state, "ready");
    strcpy(cfg.verified, STORE_VERIFIED_PIECES);
    strcpy(cfg.last_scrub, "2026-05-01T12:34:56Z");
    strcpy(cfg.ready_time, "2026-04-30T01:02:03Z");
    CHECK_INT(store_cfg_serialize(&cfg, &text), 0);
    CHECK(text && strstr(text, "\"errorMsg\":\"\",\"verified\":\"pieces\","
                               "\"lastScrub\":\"2026-05-01T12:34:56Z\","
                               "\"readyTime\":\"2026-04-30T01:02:03Z\"}"),
          "verified, lastScrub, readyTime must follow errorMsg: %s", text ? text : "(null)");
    CHECK_INT(store_cfg_parse(text, strlen(text), &again, NULL), 0);
    CHECK_STR(again.verified, "pieces");
    CHECK_STR(again.last_scrub, "2026-05-01T12:34:56Z");
    CHECK_STR(again.ready_time, "2026-04-30T01:02:03Z");
    CHECK(again.extra == NULL, "known fields landed in extra: %s", again.extra);
    store_cfg_clear(&again);
    free(text);
}

static void test_empty_scrub_fields_are_not_written(void)
{
    struct store_cfg cfg = {0};
    char *text = NULL;

    strcpy(cfg.uuid, "u1");
    CHECK_INT(store_cfg_serialize(&cfg, &text), 0);
    CHECK(text && !strstr(text, "verified") && !strstr(text, "lastScrub") &&
              !strstr(text, "readyTime"),
          "empty fields written: %s", text ? text : "(null)");
    free(text);
}

static void test_wrong_types_are_corrupt(void)
{
    const char *bad[] = {
        "{\"size\":\"12\"}",
        "{\"uuid\":7}",
        "{\"size\":-1}",
        "{\"virtualSize\":1.5}",
        "[1,2]",
        "{\"name\":}",
        "",
        "{\"state\":true}",
        "{\"a\":1,\"a\":2}",
        "{\"uuid\":\"" /* unterminated */,
    };

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct bim_error err = {0};
        struct store_cfg cfg;

        CHECK(store_cfg_parse(bad[i], strlen(bad[i]), &cfg, &err) == -EINVAL,
              "\"%s\" should be corrupt", bad[i]);
        CHECK(strncmp(err.message, "corrupt backing.cfg", 19) == 0, "message for %s: \"%s\"",
              bad[i], err.message);
    }
}

static void test_null_fields_read_as_empty(void)
{
    static const char in[] = "{\"uuid\":\"u\",\"size\":null,\"currentChecksum\":null}";
    struct store_cfg cfg;

    CHECK_INT(store_cfg_parse(in, strlen(in), &cfg, NULL), 0);
    CHECK_INT(cfg.size, 0);
    CHECK_STR(cfg.current_checksum, "");
    store_cfg_clear(&cfg);
}

static void test_too_long_string_is_corrupt(void)
{
    char in[400];
    struct store_cfg cfg;

    snprintf(in, sizeof(in), "{\"uuid\":\"%0100d\"}", 0); /* 100 > STORE_UUID_MAX */
    CHECK_INT(store_cfg_parse(in, strlen(in), &cfg, NULL), -EINVAL);
}

static void test_open_creates_images_dir(void)
{
    struct bim_error err = {0};
    struct store *store = NULL;
    char path[256];
    struct stat st;

    CHECK_INT(store_open(tmpdir, &store, &err), 0);
    snprintf(path, sizeof(path), "%s/backing-images", tmpdir);
    CHECK(stat(path, &st) == 0 && S_ISDIR(st.st_mode), "%s was not created", path);
    CHECK_STR(store ? store_images_path(store) : "", path);
    store_close(store);
}

static void test_open_missing_disk_fails(void)
{
    struct bim_error err = {0};
    struct store *store = NULL;
    char path[256];

    snprintf(path, sizeof(path), "%s/nope", tmpdir);
    CHECK_INT(store_open(path, &store, &err), -ENOENT);
    CHECK(strstr(err.message, "nope") != NULL, "message should name the disk: \"%s\"", err.message);
    snprintf(path, sizeof(path), "%s/file", tmpdir);
    close(open(path, O_CREAT | O_WRONLY, 0644));
    CHECK_INT(store_open(path, &store, &err), -ENOTDIR);
}

static void test_disk_uuid(void)
{
    struct store *store = NULL;
    char uuid[STORE_UUID_MAX + 1] = "x", path[256];
    FILE *f;

    CHECK_INT(store_open(tmpdir, &store, NULL), 0);
    CHECK_INT(store_disk_uuid(store, uuid), 0);
    CHECK_STR(uuid, ""); /* no longhorn-disk.cfg */
    snprintf(path, sizeof(path), "%s/longhorn-disk.cfg", tmpdir);
    f = fopen(path, "w");
    fputs("{\"diskUUID\":\"5c1c4b05-2f0e-4c0b-a5c8-0d2f5d4c1a11\"}", f);
    fclose(f);
    CHECK_INT(store_disk_uuid(store, uuid), 0);
    CHECK_STR(uuid, "5c1c4b05-2f0e-4c0b-a5c8-0d2f5d4c1a11");
    unlink(path);
    store_close(store);
}

static void test_prepare_writes_cfg_with_path_and_uuid(void)
{
    struct bim_error err = {0};
    struct store_cfg cfg = {0}, back;
    struct store *store = NULL;
    char path[512], text[8192] = "", want[512];
    FILE *f;

    CHECK_INT(store_open(tmpdir, &store, NULL), 0);
    strcpy(cfg.state, "in-progress");
    strcpy(cfg.source, "upload");
    CHECK_INT(store_image_prepare(store, "img", "u1", &cfg, &err), 0);
    snprintf(path, sizeof(path), "%s/backing-images/img-u1/backing.cfg", tmpdir);
    f = fopen(path, "r");
    CHECK(f != NULL, "%s missing", path);
    if (f) {
        if (!fgets(text, sizeof(text), f))
            text[0] = '\0';
        fclose(f);
    }
    CHECK_INT(store_cfg_parse(text, strlen(text), &back, NULL), 0);
    snprintf(want, sizeof(want), "%s/backing-images/img-u1/backing", tmpdir);
    CHECK_STR(back.name, want);
    CHECK_STR(back.uuid, "u1");
    CHECK_STR(back.state, "in-progress");
    store_cfg_clear(&back);

    strcpy(cfg.state, "failed");
    CHECK_INT(store_image_save_cfg(store, "img", "u1", &cfg, &err), 0);
    snprintf(path, sizeof(path), "%s/backing-images/img-u1/backing.cfg.tmp", tmpdir);
    CHECK(access(path, F_OK) != 0, "the durable write left %s behind", path);

    CHECK_INT(store_image_prepare(store, "../x", "u1", &cfg, &err), -EINVAL);
    CHECK_INT(store_image_remove(store, "img", "u1"), 0);
    snprintf(path, sizeof(path), "%s/backing-images/img-u1", tmpdir);
    CHECK(access(path, F_OK) != 0, "%s still exists after remove", path);
    CHECK_INT(store_image_remove(store, "img", "u1"), 0); /* missing is fine */
    store_close(store);
}

int main(void)
{
    if (check_dir_make(tmpdir, "cfg") < 0)
        return 1;
    RUN(test_time_like_go);
    RUN(test_parse_longhorn_cfg);
    RUN(test_serialize_field_order);
    RUN(test_round_trip_keeps_unknown_fields);
    RUN(test_scrub_fields_round_trip_after_the_others);
    RUN(test_empty_scrub_fields_are_not_written);
    RUN(test_wrong_types_are_corrupt);
    RUN(test_null_fields_read_as_empty);
    RUN(test_too_long_string_is_corrupt);
    RUN(test_open_creates_images_dir);
    RUN(test_open_missing_disk_fails);
    RUN(test_disk_uuid);
    RUN(test_prepare_writes_cfg_with_path_and_uuid);
    check_dir_remove(tmpdir);
    return check_exit();
}
