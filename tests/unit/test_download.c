/*
 * test_download.c - the pure parts of downloads: URL checks and the URL users
 * see (sync/http/url.c), redaction of credentials in curl's messages, the
 * Content-Range parser (sync/http/client.c), and what the cfg keeps to resume
 * (sync/download/cfg.c). The transfers themselves are tested against a real
 * server in tests/integration/test_download.py.
 */
#include "check.h"
#include "download/download.h"

#include <errno.h>
#include <stdlib.h>

static void test_url_accepts_http_and_https_and_strips_credentials(void)
{
    static const struct {
        const char *url, *shown;
        bool creds;
    } cases[] = {
        {"http://127.0.0.1:8000/x.img", "http://127.0.0.1:8000/x.img", false},
        {"https://h.example/a/b.qcow2?x=1", "https://h.example/a/b.qcow2?x=1", false},
        {"http://user:secret@127.0.0.1:8000/x.img", "http://127.0.0.1:8000/x.img", true},
        {"http://user@h/x", "http://h/x", true},
        {"http://:pw@h/x", "http://h/x", true},
        {"https://u;opt@h/x", "https://h/x", true},
        /* shown as written: no normalisation (SPEC §5 "exactly") */
        {"HTTP://h:80/x", "HTTP://h:80/x", false},
        {"http://h", "http://h", false},
        {"http://h/a/../img.raw", "http://h/a/../img.raw", false},
        {"http://u:p@h/a@b", "http://h/a@b", true},
        {"http://[::1]:99/x", "http://[::1]:99/x", false},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char shown[SYNC_URL_MAX + 1] = "";
        struct bim_error err = {0};
        bool creds = !cases[i].creds;
        int rc = http_url_check(cases[i].url, shown, sizeof(shown), &creds, &err);
        CHECK(rc == 0, "%s refused: %s", cases[i].url, err.message);
        CHECK_STR(shown, cases[i].shown);
        CHECK(creds == cases[i].creds, "%s: credentials %d", cases[i].url, creds);
    }
}

static void test_url_refuses_other_schemes_and_no_host(void)
{
    static const char *const bad[] = {
        "file:///etc/passwd",
        "ftp://h/x",
        "gopher://h/x",
        "http://",
        "http:///x.img",
        "https://",
        "h/x.img",
        "",
        "javascript:alert(1)",
        "http://user:secret@/x",
        "http://:8080/x",
        "http://h:99999/",
        "http://exa mple.com/",
        "http://h/a\x01b",
        "HTTPS:///path",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char shown[SYNC_URL_MAX + 1];
        struct bim_error err = {0};
        bool creds;
        int rc = http_url_check(bad[i], shown, sizeof(shown), &creds, &err);
        CHECK(rc == -EINVAL, "\"%s\" accepted (rc %d)", bad[i], rc);
        CHECK(err.message[0] != '\0', "\"%s\" refused without a message", bad[i]);
        CHECK(strstr(err.message, "secret") == NULL, "\"%s\": the message leaks credentials: %s",
              bad[i], err.message);
    }
}

static void test_redact_removes_user_info_and_long_secrets(void)
{
    char text[256];

    snprintf(text, sizeof(text), "Failed for http://user:s3cret@h/x as user, s3cret");
    http_url_redact("http://user:s3cret@h/x", text, sizeof(text));
    CHECK_STR(text, "Failed for http://***@h/x as ***, ***");

    /* short names are replaced only where they are the URL's user info */
    snprintf(text, sizeof(text), "a b http://a:b@h/");
    http_url_redact("http://a:b@h/", text, sizeof(text));
    CHECK_STR(text, "a b http://***@h/");

    /* percent-encoded and decoded password */
    snprintf(text, sizeof(text), "p%%40ssword p@ssword");
    http_url_redact("http://u:p%40ssword@h/", text, sizeof(text));
    CHECK_STR(text, "*** ***");

    /* growing never overflows the buffer */
    char small[8];
    snprintf(small, sizeof(small), "x a y");
    http_url_redact("http://a@h/", small, sizeof(small));
    CHECK_STR(small, "x *** y");
    snprintf(small, sizeof(small), "aaaaaa");
    http_url_redact("http://a@h/", small, sizeof(small));
    CHECK(strlen(small) < sizeof(small), "overflow: %zu", strlen(small));
}

static void test_content_range_parse(void)
{
    uint64_t first, last;
    int64_t complete;

    CHECK(http_content_range_parse("bytes 100-199/1000", &first, &last, &complete), "valid");
    CHECK_INT(first, 100);
    CHECK_INT(last, 199);
    CHECK_INT(complete, 1000);
    CHECK(http_content_range_parse("bytes 0-0/*", &first, &last, &complete), "star");
    CHECK_INT(complete, -1);
    static const char *const bad[] = {
        "bytes 10-5/100",
        "bytes 0-99/99",
        "bytes -5/100",
        "items 0-1/2",
        "bytes 0-1/",
        "bytes 0-1/2x",
        "bytes a-1/2",
        "bytes 0-1",
        "bytes */100",
        "bytes 0-99999999999999999999/1",
        "bytes 0-1/99999999999999999999",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        CHECK(!http_content_range_parse(bad[i], &first, &last, &complete), "\"%s\" accepted",
              bad[i]);
}

static void test_saved_round_trip_keeps_other_fields(void)
{
    struct sync_download_saved *in = calloc(1, sizeof(*in)), *out = calloc(1, sizeof(*out));
    char *extra = NULL;

    in->present = true;
    in->size = 12345;
    str_copy(in->url, sizeof(in->url), "http://h/x");
    str_copy(in->etag, sizeof(in->etag), "\"v1\"");
    str_copy(in->last_modified, sizeof(in->last_modified), "Sat, 01 Jan 2026 00:00:00 GMT");
    CHECK(sync_download_saved_put("{\"other\":[1,2]}", in, &extra) == 0, "put");
    CHECK(extra && strstr(extra, "\"other\":[1,2]"), "other field lost: %s", extra);
    CHECK(sync_download_saved_get(extra, out) == 0, "get");
    CHECK(out->present && !out->credentials, "flags");
    CHECK_STR(out->url, "http://h/x");
    CHECK_STR(out->etag, "\"v1\"");
    CHECK_STR(out->last_modified, "Sat, 01 Jan 2026 00:00:00 GMT");
    CHECK_INT(out->size, 12345);
    free(extra);

    memset(in, 0, sizeof(*in));
    in->present = in->credentials = true;
    in->size = -1;
    CHECK(sync_download_saved_put(NULL, in, &extra) == 0, "put credentials");
    CHECK(extra && !strstr(extra, "url"), "a URL was written: %s", extra);
    CHECK(sync_download_saved_get(extra, out) == 0 && out->credentials && !out->url[0] &&
              out->size == -1,
          "credentials flag lost: %s", extra);
    free(extra);

    CHECK(sync_download_saved_get("{\"x\":1}", out) == 0 && !out->present, "absent");
    CHECK(sync_download_saved_get("not json", out) == 0 && !out->present, "corrupt");
    free(in);
    free(out);
}

int main(void)
{
    http_client_global_init();
    RUN(test_url_accepts_http_and_https_and_strips_credentials);
    RUN(test_url_refuses_other_schemes_and_no_host);
    RUN(test_redact_removes_user_info_and_long_secrets);
    RUN(test_content_range_parse);
    RUN(test_saved_round_trip_keeps_other_fields);
    http_client_global_cleanup();
    return check_exit();
}
