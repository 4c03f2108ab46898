/*
 * test_store_names.c - SPEC §3 names, uuids and expected checksums.
 */
#include "check.h"
#include "store.h"

#include <errno.h>

static const char hex128[] = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
                             "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
static const char hex64[] = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

static void test_name_accepts_spec_examples(void)
{
    const char *good[] = {"ubuntu", "ab", "Ubuntu-22.04_server", "0x", "a.b-c_d", "9-9"};

    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
        CHECK(store_name_valid(good[i]), "\"%s\" should be a valid name", good[i]);
}

static void test_name_rejects_bad(void)
{
    const char *bad[] = {"", "a", "../x", "-x", ".hidden", "_x", "a/b", "a b", "ä-name", "x\n"};

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        CHECK(!store_name_valid(bad[i]), "\"%s\" should be rejected", bad[i]);
    CHECK(!store_name_valid(NULL), "NULL should be rejected");
}

static void test_name_length_limit_is_64_bytes(void)
{
    char name[80];

    memset(name, 'a', sizeof(name));
    name[64] = '\0';
    CHECK(store_name_valid(name), "a 64-byte name should be valid");
    name[64] = 'a';
    name[65] = '\0';
    CHECK(!store_name_valid(name), "a 65-byte name should be rejected");
}

static void test_uuid_rules(void)
{
    char uuid[80];

    CHECK(store_uuid_valid("a"), "one character is a valid uuid");
    CHECK(store_uuid_valid("3f2a-9B0c"), "letters, digits and '-' are valid");
    CHECK(store_uuid_valid("-"), "a lone '-' matches the uuid regex");
    CHECK(!store_uuid_valid(""), "an empty uuid is invalid");
    CHECK(!store_uuid_valid("ab_cd"), "'_' is not allowed in a uuid");
    CHECK(!store_uuid_valid("../x"), "'../x' is not a uuid");
    memset(uuid, 'f', sizeof(uuid));
    uuid[64] = '\0';
    CHECK(store_uuid_valid(uuid), "a 64-character uuid is valid");
    uuid[64] = 'f';
    uuid[65] = '\0';
    CHECK(!store_uuid_valid(uuid), "a 65-character uuid is invalid");
}

static void test_uuid_generate_is_8_lowercase_hex(void)
{
    char a[9], b[9];

    store_uuid_generate(a);
    store_uuid_generate(b);
    CHECK_INT(strlen(a), 8);
    CHECK(strspn(a, "0123456789abcdef") == 8, "\"%s\" is not 8 lowercase hex digits", a);
    CHECK(store_uuid_valid(a), "generated uuid \"%s\" fails validation", a);
    CHECK(strcmp(a, b) != 0, "two generated uuids are equal (%s)", a);
}

static void test_checksum_none(void)
{
    struct store_checksum sum;
    char text[STORE_EXPECTED_MAX + 1];

    CHECK_INT(store_checksum_parse("", &sum, NULL), 0);
    CHECK_INT(sum.algo, STORE_DIGEST_NONE);
    CHECK_INT(store_checksum_parse(NULL, &sum, NULL), 0);
    CHECK_INT(sum.algo, STORE_DIGEST_NONE);
    store_checksum_format(&sum, text);
    CHECK_STR(text, "");
}

static void test_checksum_sha512_forms(void)
{
    struct store_checksum sum;
    char text[STORE_EXPECTED_MAX + 1], upper[sizeof(hex128)], prefixed[160];

    CHECK_INT(store_checksum_parse(hex128, &sum, NULL), 0);
    CHECK_INT(sum.algo, STORE_DIGEST_SHA512);
    CHECK_STR(sum.hex, hex128);

    for (size_t i = 0; i < sizeof(hex128); i++)
        upper[i] = (hex128[i] >= 'a' && hex128[i] <= 'f') ? (char)(hex128[i] - 32) : hex128[i];
    CHECK_INT(store_checksum_parse(upper, &sum, NULL), 0);
    CHECK_STR(sum.hex, hex128);

    snprintf(prefixed, sizeof(prefixed), "sha512:%s", upper);
    CHECK_INT(store_checksum_parse(prefixed, &sum, NULL), 0);
    CHECK_INT(sum.algo, STORE_DIGEST_SHA512);
    store_checksum_format(&sum, text);
    CHECK_STR(text, hex128); /* canonical text drops the prefix */
}

static void test_checksum_sha256(void)
{
    struct store_checksum sum;
    char text[STORE_EXPECTED_MAX + 1], in[80];

    snprintf(in, sizeof(in), "sha256:%s", hex64);
    CHECK_INT(store_checksum_parse(in, &sum, NULL), 0);
    CHECK_INT(sum.algo, STORE_DIGEST_SHA256);
    CHECK_STR(sum.hex, hex64);
    store_checksum_format(&sum, text);
    CHECK_STR(text, in);
}

static void test_checksum_garbage_is_invalid(void)
{
    struct bim_error err = {0};
    struct store_checksum sum;
    char in[200];
    const char *bad[] = {"abc", "sha256:abc", "md5:0123", hex64, "sha1:" /* empty */};

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        err.message[0] = '\0';
        CHECK_INT(store_checksum_parse(bad[i], &sum, &err), -EINVAL);
        CHECK(err.message[0] != '\0', "no message for \"%s\"", bad[i]);
    }
    snprintf(in, sizeof(in), "sha256:%s", hex128); /* SHA-512 length under sha256: */
    CHECK_INT(store_checksum_parse(in, &sum, &err), -EINVAL);
    snprintf(in, sizeof(in), "%.127sg", hex128); /* a non-hex digit */
    CHECK_INT(store_checksum_parse(in, &sum, &err), -EINVAL);
    snprintf(in, sizeof(in), "%s0", hex128); /* one digit too many */
    CHECK_INT(store_checksum_parse(in, &sum, &err), -EINVAL);
    CHECK_INT(sum.algo, STORE_DIGEST_NONE);
}

static void test_format_names(void)
{
    CHECK_STR(store_format_name(STORE_FORMAT_RAW), "raw");
    CHECK_STR(store_format_name(STORE_FORMAT_QCOW2), "qcow2");
    CHECK_STR(store_format_name(STORE_FORMAT_NONE), "");
}

int main(void)
{
    RUN(test_name_accepts_spec_examples);
    RUN(test_name_rejects_bad);
    RUN(test_name_length_limit_is_64_bytes);
    RUN(test_uuid_rules);
    RUN(test_uuid_generate_is_8_lowercase_hex);
    RUN(test_checksum_none);
    RUN(test_checksum_sha512_forms);
    RUN(test_checksum_sha256);
    RUN(test_checksum_garbage_is_invalid);
    RUN(test_format_names);
    return check_exit();
}
