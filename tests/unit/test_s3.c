/*
 * test_s3.c - the pure pieces of the s3 target (backup/s3/s3.h): key and
 * query encoding as SigV4 wants them, the payload hash, HTTP dates, and the
 * XML of ListObjectsV2 pages and S3 errors. The target against a real
 * endpoint is tests/integration/test_s3_target.py.
 */
#include "check.h"
#include "s3.h"

#include <errno.h>
#include <stdlib.h>

static void test_uri_encode_keeps_unreserved_and_encodes_the_rest(void)
{
    char out[64];
    CHECK_INT(s3_uri_encode("a-Z_0.~/b c+=%", true, out, sizeof(out)), 0);
    CHECK_STR(out, "a-Z_0.~/b%20c%2B%3D%25");
    CHECK_INT(s3_uri_encode("x/y", false, out, sizeof(out)), 0);
    CHECK_STR(out, "x%2Fy");
    CHECK_INT(s3_uri_encode("\xc3\xa9", false, out, sizeof(out)), 0);
    CHECK_STR(out, "%C3%A9");
    CHECK_INT(s3_uri_encode("abcd", false, out, 4), -ENAMETOOLONG);
    CHECK_INT(s3_uri_encode("abc", false, out, 4), 0);
    CHECK_INT(s3_uri_encode("a/", false, out, 4), -ENAMETOOLONG);
}

static void test_query_is_sorted_and_encoded(void)
{
    /* the example of the note: curl 7.88 signs the query as sent */
    struct s3_param p[] = {{"list-type", "2"},
                           {"prefix", "backupstore/"},
                           {"delimiter", "/"},
                           {"continuation-token", "1ab+/=="}};
    char out[256];
    CHECK_INT(s3_query_build(p, 3, out, sizeof(out)), 0);
    CHECK_STR(out, "delimiter=%2F&list-type=2&prefix=backupstore%2F");
    CHECK_INT(s3_query_build(p, 4, out, sizeof(out)), 0);
    CHECK_STR(out, "continuation-token=1ab%2B%2F%3D%3D&delimiter=%2F&list-type=2&prefix="
                   "backupstore%2F");
    CHECK_INT(s3_query_build(p, 0, out, sizeof(out)), 0);
    CHECK_STR(out, "");
    CHECK_INT(s3_query_build(p, 3, out, 20), -ENAMETOOLONG);
}

static void test_sha256_of_empty_and_abc(void)
{
    char hex[65];
    CHECK_INT(s3_sha256_hex("", 0, hex), 0);
    CHECK_STR(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    CHECK_INT(s3_sha256_hex("abc", 3, hex), 0);
    CHECK_STR(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

static void test_http_dates_in_all_three_forms(void)
{
    int64_t t = 0;
    CHECK_INT(s3_http_date_parse("Sun, 06 Nov 1994 08:49:37 GMT", &t), 0);
    CHECK_INT(t, 784111777);
    CHECK_INT(s3_http_date_parse("Sunday, 06-Nov-94 08:49:37 GMT", &t), 0);
    CHECK_INT(t, 784111777);
    CHECK_INT(s3_http_date_parse("Sun Nov  6 08:49:37 1994", &t), 0);
    CHECK_INT(t, 784111777);
    CHECK_INT(s3_http_date_parse("Tue, 29 Feb 2028 23:59:59 GMT", &t), 0);
    CHECK_INT(t, 1835481599);
    CHECK_INT(s3_http_date_parse("Sun, 06 Nov 1994 08:49:37 CET", &t), -EINVAL);
    CHECK_INT(s3_http_date_parse("Sun, 06 Foo 1994 08:49:37 GMT", &t), -EINVAL);
    CHECK_INT(s3_http_date_parse("", &t), -EINVAL);
    CHECK_INT(s3_http_date_parse("Sun, 06 Nov 1994 08:49:37 GMT trailing", &t), -EINVAL);
}

static const char page1[] =
    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
    "<ListBucketResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">"
    "<Name>bk</Name><Prefix>root/dir/</Prefix><KeyCount>3</KeyCount><MaxKeys>3</MaxKeys>"
    "<Delimiter>/</Delimiter><IsTruncated>true</IsTruncated>"
    "<Contents><Key>root/dir/</Key><Size>0</Size></Contents>"
    "<Contents><Key>root/dir/a&amp;b.cfg</Key><LastModified>2026-01-01T00:00:00.000Z"
    "</LastModified><Size>12</Size></Contents>"
    "<CommonPrefixes><Prefix>root/dir/sub/</Prefix></CommonPrefixes>"
    "<NextContinuationToken>tok+/=</NextContinuationToken></ListBucketResult>";

static const char page2[] = "<ListBucketResult><IsTruncated>false</IsTruncated>"
                            "<Contents><Key>root/dir/z</Key></Contents>"
                            "<Contents><Key>elsewhere/q</Key></Contents></ListBucketResult>";

static void test_listing_pages_add_up_without_the_prefix(void)
{
    struct s3_listing l = {.strip = "root/dir/"};
    struct bim_error err = {0};
    CHECK_INT(s3_listing_parse(&l, page1, sizeof(page1) - 1, &err), 0);
    CHECK(l.truncated, "IsTruncated not read");
    CHECK_STR(l.next_token, "tok+/=");
    CHECK_INT(l.count, 2);
    if (l.count == 2) {
        CHECK_STR(l.names[0], "a&b.cfg");
        CHECK_STR(l.names[1], "sub");
    }
    CHECK_INT(s3_listing_parse(&l, page2, sizeof(page2) - 1, &err), 0);
    CHECK(!l.truncated, "the last page is truncated?");
    CHECK_STR(l.next_token, "");
    CHECK_INT(l.count, 3);
    if (l.count == 3)
        CHECK_STR(l.names[2], "z");
    s3_listing_free(&l);
}

static void test_listing_rejects_what_is_not_a_page(void)
{
    static const char *const bad[] = {
        "<Error><Code>AccessDenied</Code></Error>",
        "<ListBucketResult><Contents><Key>x</Key>",
        "<!DOCTYPE x [<!ENTITY a \"aaaa\">]><ListBucketResult>&a;</ListBucketResult>",
        "<ListBucketResult><IsTruncated>true</IsTruncated></ListBucketResult>",
        "not xml at all",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct s3_listing l = {.strip = ""};
        struct bim_error err = {0};
        int rc = s3_listing_parse(&l, bad[i], strlen(bad[i]), &err);
        CHECK_INT(rc, -EPROTO);
        CHECK(err.message[0], "no message for %s", bad[i]);
        s3_listing_free(&l);
    }
    /* a key longer than S3's limit */
    size_t n = S3_KEY_MAX + 100;
    char *xml = malloc(n + 100);
    strcpy(xml, "<ListBucketResult><Contents><Key>");
    size_t at = strlen(xml);
    memset(xml + at, 'k', n);
    strcpy(xml + at + n, "</Key></Contents></ListBucketResult>");
    struct s3_listing l = {.strip = ""};
    CHECK_INT(s3_listing_parse(&l, xml, strlen(xml), NULL), -EPROTO);
    s3_listing_free(&l);
    free(xml);
}

static void test_error_code_and_message(void)
{
    static const char body[] = "<?xml version=\"1.0\"?><Error><Code>SignatureDoesNotMatch</Code>"
                               "<Message>The request signature we calculated does not match"
                               "\n</Message><RequestId>1</RequestId></Error>";
    char code[64], msg[64];
    s3_error_parse(body, sizeof(body) - 1, code, sizeof(code), msg, sizeof(msg));
    CHECK_STR(code, "SignatureDoesNotMatch");
    CHECK_STR(msg, "The request signature we calculated does not match ");
    s3_error_parse("<html>nope", 10, code, sizeof(code), msg, sizeof(msg));
    CHECK_STR(code, "");
    CHECK_STR(msg, "");
    s3_error_parse("", 0, code, sizeof(code), msg, sizeof(msg));
    CHECK_STR(code, "");
}

int main(void)
{
    RUN(test_uri_encode_keeps_unreserved_and_encodes_the_rest);
    RUN(test_query_is_sorted_and_encoded);
    RUN(test_sha256_of_empty_and_abc);
    RUN(test_http_dates_in_all_three_forms);
    RUN(test_listing_pages_add_up_without_the_prefix);
    RUN(test_listing_rejects_what_is_not_a_page);
    RUN(test_error_code_and_message);
    return check_exit();
}
