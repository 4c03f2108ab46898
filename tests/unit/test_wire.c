/*
 * test_wire.c - the wire codec (common/wire/): an image encoded and decoded
 * is the image; what a broken or hostile peer could send is refused with a
 * message naming the field; one error table for the socket and HTTP; the
 * syntax of names, uuids and peers.
 */
#include "check.h"
#include "wire.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static const char sum[] = "cf83e1357eefb8bdf1542850d66d8007d620e4050b5715dc83f4a921d36ce9ce"
                          "47d0d13c5d85f2b0ff8318d2877eec2f63b931bd47417a81a538327af927da3e";

static void image_fill(struct wire_image *img)
{
    memset(img, 0, sizeof(*img));
    strcpy(img->name, "ubuntu-22.04");
    strcpy(img->uuid, "0a1b2c3d");
    img->size = 2361393152;
    img->virtual_size = 10737418240;
    img->real_size = 2361393152;
    strcpy(img->format, "qcow2");
    strcpy(img->expected_checksum, "sha256:0123");
    strcpy(img->source, "sync:a:1,[::1]:8080");
    strcpy(img->status.state, "in-progress");
    strcpy(img->status.current_checksum, sum);
    img->status.sending_reference = 3;
    strcpy(img->status.error, "");
    strcpy(img->status.sender, "10.0.0.1:8000");
    img->status.progress = 42;
    img->status.bytes_done = 991785123;
    img->status.bytes_total = 2361393152;
    img->status.rate = 104857600;
    strcpy(img->status.verified, "pieces");
    strcpy(img->status.last_scrub, "2026-05-01T12:34:56Z");
}

static json_t *image_json(void)
{
    struct wire_image img;
    json_t *value;

    image_fill(&img);
    value = wire_image_to_json(&img);
    if (!value)
        abort();
    return value;
}

static void test_image_round_trip_is_the_same_image(void)
{
    struct wire_image in, out;
    struct bim_error err = {0};
    json_t *value;
    char *text;

    image_fill(&in);
    value = wire_image_to_json(&in);
    CHECK(value != NULL, "encoding failed");
    text = json_dumps(value, JSON_COMPACT);
    CHECK_INT(wire_image_parse(text, strlen(text), 1 << 20, &out, &err), 0);
    CHECK(memcmp(&in, &out, sizeof(in)) == 0, "decoded image differs from the encoded one: %s",
          text);
    free(text);
    json_decref(value);
}

static void test_image_fields_keep_longhorn_names(void)
{
    json_t *value = image_json();
    json_t *status = json_object_get(value, "status");
    const char *top[] = {
        "name",   "uuid",  "size", "virtualSize", "realSize", "format", "expectedChecksum",
        "source", "status"};
    const char *st[] = {"state",    "currentChecksum",      "sendingReference",
                        "errorMsg", "senderManagerAddress", "progress"};

    for (size_t i = 0; i < sizeof(top) / sizeof(top[0]); i++)
        CHECK(json_object_get(value, top[i]) != NULL, "SPEC §6 field %s is missing", top[i]);
    for (size_t i = 0; i < sizeof(st) / sizeof(st[0]); i++)
        CHECK(json_object_get(status, st[i]) != NULL, "SPEC §6 field status.%s is missing", st[i]);
    json_decref(value);
}

static void test_image_invalid_utf8_is_sent_as_question_marks(void)
{
    struct wire_image in, out;
    struct bim_error err = {0};
    json_t *value;

    image_fill(&in);
    strcpy(in.status.error, "bad \xff byte");
    value = wire_image_to_json(&in);
    CHECK(value != NULL, "an invalid UTF-8 message made encoding fail");
    CHECK_INT(wire_image_from_json(value, &out, &err), 0);
    CHECK_STR(out.status.error, "bad ? byte");
    json_decref(value);
}

static void test_image_progress_details_are_optional(void)
{
    json_t *value = image_json();
    json_t *status = json_object_get(value, "status");
    struct wire_image out;
    struct bim_error err = {0};

    json_object_del(status, "bytesDone");
    json_object_del(status, "bytesTotal");
    json_object_del(status, "rate");
    json_object_del(status, "verified");
    json_object_del(status, "lastScrub");
    json_object_set_new(value, "someNewField", json_true()); /* a newer peer's */
    CHECK_INT(wire_image_from_json(value, &out, &err), 0);
    CHECK_INT(out.status.bytes_done, 0);
    CHECK_INT(out.status.progress, 42);
    CHECK_STR(out.status.verified, "");
    CHECK_STR(out.status.last_scrub, "");
    json_decref(value);
}

static void test_image_verified_and_last_scrub_are_sent(void)
{
    json_t *value = image_json();
    json_t *status = json_object_get(value, "status");

    CHECK_STR(json_string_value(json_object_get(status, "verified")), "pieces");
    CHECK_STR(json_string_value(json_object_get(status, "lastScrub")), "2026-05-01T12:34:56Z");
    json_decref(value);
}

/* Set path (a top-level key, or "status.key") to v (NULL: delete) and expect
 * -EPROTO with a message containing want. */
static void expect_refused(const char *path, json_t *v, const char *want)
{
    json_t *value = image_json();
    json_t *obj = value;
    const char *key = path;
    struct wire_image out;
    struct bim_error err = {0};
    int rc;

    if (strncmp(path, "status.", 7) == 0) {
        obj = json_object_get(value, "status");
        key = path + 7;
    }
    if (v)
        json_object_set_new(obj, key, v);
    else
        json_object_del(obj, key);
    rc = wire_image_from_json(value, &out, &err);
    CHECK(rc == -EPROTO, "%s: got %d, want -EPROTO", path, rc);
    CHECK(strstr(err.message, want) != NULL, "%s: message \"%s\" lacks \"%s\"", path, err.message,
          want);
    json_decref(value);
}

static void test_image_bad_verified_or_last_scrub_is_refused(void)
{
    expect_refused("status.verified", json_string("trusted"), "unknown verified");
    expect_refused("status.verified", json_integer(1), "\"verified\" is not a string");
    expect_refused("status.lastScrub", json_string("yesterday"), "\"lastScrub\"");
    expect_refused("status.lastScrub", json_string("2026-05-01 12:34:56 +0000 UTC"),
                   "\"lastScrub\"");
}

static void test_image_missing_fields_are_refused(void)
{
    expect_refused("uuid", NULL, "missing field \"uuid\"");
    expect_refused("size", NULL, "missing field \"size\"");
    expect_refused("status", NULL, "missing field \"status\"");
    expect_refused("status.state", NULL, "status: missing field \"state\"");
    expect_refused("status.currentChecksum", NULL, "missing field \"currentChecksum\"");
}

static void test_image_mistyped_fields_are_refused(void)
{
    expect_refused("size", json_string("12"), "\"size\" is not a non-negative integer");
    expect_refused("size", json_integer(-1), "\"size\" is not a non-negative integer");
    expect_refused("size", json_real(1.5), "\"size\" is not a non-negative integer");
    expect_refused("name", json_integer(7), "\"name\" is not a string");
    expect_refused("status", json_string("ready"), "\"status\" is not an object");
    expect_refused("status.progress", json_integer(101), "\"progress\" is past 100");
    expect_refused("status.state", json_string("done"), "unknown state \"done\"");
    expect_refused("format", json_string("vmdk"), "unknown format \"vmdk\"");
    expect_refused("status.currentChecksum", json_string("abc"), "not 128 lowercase hex");
    expect_refused("name", json_stringn("a\0b", 3), "holds a NUL");
}

static void test_image_oversized_fields_are_refused(void)
{
    char long_text[BIM_SOURCE_MAX + 2];

    memset(long_text, 'a', sizeof(long_text) - 1);
    long_text[sizeof(long_text) - 1] = '\0';
    expect_refused("uuid", json_string(long_text), "\"uuid\" is longer than 64 bytes");
    expect_refused("source", json_string(long_text), "\"source\" is longer than 4199 bytes");
    expect_refused("status.errorMsg", json_string(long_text), "longer than 511 bytes");
}

static void test_image_text_that_is_not_an_image_is_refused(void)
{
    struct wire_image out;
    struct bim_error err = {0};
    const char *text = "{\"name\": \"a\"";

    CHECK_INT(wire_image_parse(text, strlen(text), 100, &out, &err), -EPROTO);
    CHECK(strstr(err.message, "not JSON") != NULL, "message: %s", err.message);
    CHECK_INT(wire_image_parse("[]", 2, 100, &out, &err), -EPROTO);
    CHECK(strstr(err.message, "not a JSON object") != NULL, "message: %s", err.message);
    CHECK_INT(wire_image_parse("{}", 2, 1, &out, &err), -EPROTO);
    CHECK(strstr(err.message, "larger than 1 bytes") != NULL, "message: %s", err.message);
    text = "{\"name\":\"a\",\"name\":\"b\"}";
    CHECK_INT(wire_image_parse(text, strlen(text), 100, &out, &err), -EPROTO);
}

static void test_errors_socket_and_http_come_from_one_cause(void)
{
    CHECK_STR(wire_error_code(-EINVAL), "invalid_argument");
    CHECK_INT(wire_error_http_status(-EINVAL), 400);
    CHECK_STR(wire_error_code(-ENOENT), "not_found");
    CHECK_INT(wire_error_http_status(-ENOENT), 404);
    CHECK_STR(wire_error_code(-EEXIST), "already_exists");
    CHECK_INT(wire_error_http_status(-EEXIST), 409);
    CHECK_STR(wire_error_http_code(409), "conflict");
    CHECK_STR(wire_error_code(-EBUSY), "busy");
    CHECK_INT(wire_error_http_status(-EBUSY), 409);
    CHECK_STR(wire_error_code(-EAGAIN), "unavailable");
    CHECK_INT(wire_error_http_status(-EAGAIN), 503);
    CHECK_STR(wire_error_http_code(503), "unavailable");
    CHECK_INT(wire_error_http_status(-EFBIG), 413);
    CHECK_STR(wire_error_http_code(413), "too_large");
    CHECK_STR(wire_error_code(-EIO), "internal");
    CHECK_INT(wire_error_http_status(-EIO), 500);
    CHECK_STR(wire_error_http_code(500), "internal");
    CHECK_STR(wire_error_http_code(401), "unauthorized");
    CHECK_STR(wire_error_http_code(405), "method_not_allowed");
    CHECK_STR(wire_error_http_code(416), "range_not_satisfiable");
    CHECK_STR(wire_error_http_code(418), "internal");
}

static void test_names_uuids_and_peers(void)
{
    struct bim_error err = {0};
    char long_name[BIM_NAME_MAX + 2];

    CHECK(wire_name_valid("ubuntu-22.04_x"), "a valid name refused");
    CHECK(!wire_name_valid("a"), "a one-byte name accepted");
    CHECK(!wire_name_valid("-ab"), "a name starting with '-' accepted");
    CHECK(!wire_name_valid("a/b"), "a name with '/' accepted");
    memset(long_name, 'a', sizeof(long_name) - 1);
    long_name[sizeof(long_name) - 1] = '\0';
    CHECK_INT(wire_name_check(long_name, &err), -EINVAL);
    CHECK(strstr(err.message, "invalid name: longer than 64 bytes") != NULL, "%s", err.message);
    CHECK_INT(wire_name_check("../x", &err), -EINVAL);
    CHECK(strncmp(err.message, "../x: invalid name: must match", 30) == 0, "%s", err.message);
    CHECK(wire_uuid_valid("0a1b-C"), "a valid uuid refused");
    CHECK_INT(wire_uuid_check("a b", &err), -EINVAL);
    CHECK_STR(err.message, "invalid uuid \"a b\": must match ^[a-zA-Z0-9-]{1,64}$");
    CHECK(wire_peer_valid("host.example:8000"), "a DNS peer refused");
    CHECK(wire_peer_valid("10.0.0.1:1"), "an IPv4 peer refused");
    CHECK(wire_peer_valid("[::1]:65535"), "an IPv6 peer refused");
    CHECK(!wire_peer_valid("host"), "a peer without a port accepted");
    CHECK(!wire_peer_valid("host:0"), "port 0 accepted");
    CHECK(!wire_peer_valid("host:65536"), "port 65536 accepted");
    CHECK(!wire_peer_valid("h/x:80"), "a peer with '/' accepted");
    CHECK(!wire_peer_valid("[]:80"), "an empty IPv6 host accepted");
    CHECK_INT(wire_peer_check("a,b:1", &err), -EINVAL);
    CHECK_STR(err.message, "invalid peer address \"a,b:1\": expected host:port");
}

/* ---- piece digests ---- */

static void pieces_sample(struct wire_pieces *p, uint64_t size)
{
    memset(p, 0, sizeof(*p));
    p->piece_size = WIRE_PIECE_SIZE;
    p->size = size;
    p->count = size / WIRE_PIECE_SIZE + (size % WIRE_PIECE_SIZE != 0);
    p->digest = calloc(p->count + 1, 32);
    p->known = calloc(p->count + 1, 1);
    p->have = calloc(2, sizeof(*p->have));
    for (uint64_t i = 0; i < p->count; i++) {
        memset(p->digest[i], (int)(i * 7 + 1), 32);
        p->known[i] = i != 1;
    }
    memset(p->checksum, 'a', BIM_CHECKSUM_HEX);
    if (p->count > 2) {
        p->have[0][0] = 0;
        p->have[0][1] = 0;
        p->have[1][0] = 2;
        p->have[1][1] = p->count - 1;
        p->nhave = 2;
    }
}

static void test_pieces_round_trip(void)
{
    struct wire_pieces p, q;
    struct bim_error err = {0};
    char *text = NULL;
    size_t len = 0;

    pieces_sample(&p, 5 * (uint64_t)WIRE_PIECE_SIZE + 512);
    CHECK_INT(wire_pieces_encode(&p, &text, &len), 0);
    CHECK(strstr(text, "\"pieces\":[\"0101") && strstr(text, ",null,") &&
              strstr(text, "\"have\":[[0,0],[2,5]]}"),
          "encoded: %s", text);
    CHECK(wire_pieces_decode(text, len, len, &q, &err) == 0, "decode: %s", err.message);
    CHECK_INT(q.count, 6);
    CHECK_INT(q.size, p.size);
    CHECK(strcmp(q.checksum, p.checksum) == 0, "checksum %s", q.checksum);
    for (uint64_t i = 0; i < q.count; i++) {
        CHECK_INT(q.known[i], p.known[i]);
        if (p.known[i])
            CHECK(memcmp(q.digest[i], p.digest[i], 32) == 0, "digest %llu", (unsigned long long)i);
    }
    CHECK_INT(q.nhave, 2);
    CHECK_INT(q.have[1][1], 5);
    wire_pieces_free(&q);
    CHECK(wire_pieces_decode(text, len, len - 1, &q, &err) == -EPROTO, "over the bound decoded");
    wire_pieces_free(&q);
    free(text);
    wire_pieces_free(&p);
    /* an empty image */
    pieces_sample(&p, 0);
    p.checksum[0] = '\0';
    CHECK_INT(wire_pieces_encode(&p, &text, &len), 0);
    CHECK(strcmp(text, "{\"pieceSize\":4194304,\"size\":0,\"checksum\":\"\",\"pieces\":[],"
                       "\"have\":[]}") == 0,
          "empty: %s", text);
    CHECK(wire_pieces_decode(text, len, len, &q, &err) == 0, "decode: %s", err.message);
    CHECK_INT(q.count, 0);
    wire_pieces_free(&q);
    free(text);
    wire_pieces_free(&p);
}

static void test_pieces_bad_answers_are_refused(void)
{
    static const char *const bad[] = {
        "[]",
        "{\"pieceSize\":3,\"size\":3,\"checksum\":\"\",\"pieces\":[null],\"have\":[]}",
        "{\"pieceSize\":4,\"size\":9,\"checksum\":\"\",\"pieces\":[null,null],\"have\":[]}",
        "{\"pieceSize\":4,\"size\":-4,\"checksum\":\"\",\"pieces\":[],\"have\":[]}",
        "{\"pieceSize\":4,\"size\":4,\"checksum\":\"xy\",\"pieces\":[null],\"have\":[]}",
        "{\"pieceSize\":4,\"size\":4,\"checksum\":\"\",\"pieces\":[\"ABCD\"],\"have\":[]}",
        "{\"pieceSize\":4,\"size\":4,\"checksum\":\"\",\"pieces\":[7],\"have\":[]}",
        "{\"pieceSize\":4,\"size\":8,\"checksum\":\"\",\"pieces\":[null,null],\"have\":[[1,0]]}",
        "{\"pieceSize\":4,\"size\":8,\"checksum\":\"\",\"pieces\":[null,null],\"have\":[[0,2]]}",
        "{\"pieceSize\":4,\"size\":8,\"checksum\":\"\",\"pieces\":[null,null],"
        "\"have\":[[1,1],[0,0]]}",
        "{\"pieceSize\":4,\"size\":8,\"checksum\":\"\",\"pieces\":[null,null]}",
        "{\"pieceSize\":4,\"pieceSize\":4,\"size\":0,\"checksum\":\"\",\"pieces\":[],"
        "\"have\":[]}",
    };
    struct bim_error err = {0};
    struct wire_pieces q;

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        CHECK(wire_pieces_decode(bad[i], strlen(bad[i]), 4096, &q, &err) == -EPROTO, "decoded: %s",
              bad[i]);
        wire_pieces_free(&q);
    }
}

static void test_backup_status_round_trip_and_bad_ones_refused(void)
{
    struct wire_backup_status st = {.url = "vfs:///bk?backingImage=u",
                                    .state = "error",
                                    .progress = 42,
                                    .error = "block at offset 0: EIO"},
                              back;
    struct bim_error err = {0};
    const char *keys[] = {"k"}, *values[] = {"v"};
    struct wire_backup_entry e = {.url = "u",
                                  .size = 4096,
                                  .checksum = "c",
                                  .created = "t",
                                  .completed = "",
                                  .compression = "lz4",
                                  .label_keys = keys,
                                  .label_values = values,
                                  .label_count = 1};
    json_t *v = wire_backup_status_to_json(&st);
    char *text;

    CHECK_INT(wire_backup_status_from_json(v, &back, &err), 0);
    CHECK(memcmp(&st, &back, sizeof(st)) == 0, "the status came back changed");
    json_object_set_new(v, "state", json_string("running"));
    CHECK_INT(wire_backup_status_from_json(v, &back, &err), -EPROTO);
    json_object_set_new(v, "state", json_string("complete"));
    json_object_set_new(v, "progress", json_integer(101));
    CHECK_INT(wire_backup_status_from_json(v, &back, &err), -EPROTO);
    json_decref(v);
    v = wire_backup_entry_to_json(&e);
    text = json_dumps(v, JSON_COMPACT | JSON_SORT_KEYS);
    CHECK_STR(text, "{\"checksum\":\"c\",\"completed\":\"\",\"compression\":\"lz4\","
                    "\"created\":\"t\",\"labels\":{\"k\":\"v\"},\"size\":4096,\"url\":\"u\"}");
    free(text);
    json_decref(v);
}

int main(void)
{
    RUN(test_image_round_trip_is_the_same_image);
    RUN(test_image_fields_keep_longhorn_names);
    RUN(test_image_invalid_utf8_is_sent_as_question_marks);
    RUN(test_image_progress_details_are_optional);
    RUN(test_image_verified_and_last_scrub_are_sent);
    RUN(test_image_bad_verified_or_last_scrub_is_refused);
    RUN(test_image_missing_fields_are_refused);
    RUN(test_image_mistyped_fields_are_refused);
    RUN(test_image_oversized_fields_are_refused);
    RUN(test_image_text_that_is_not_an_image_is_refused);
    RUN(test_errors_socket_and_http_come_from_one_cause);
    RUN(test_names_uuids_and_peers);
    RUN(test_pieces_round_trip);
    RUN(test_pieces_bad_answers_are_refused);
    RUN(test_backup_status_round_trip_and_bad_ones_refused);
    return check_exit();
}
