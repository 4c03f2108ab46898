/*
 * url.c - URLs of the HTTP client (client.h; SPEC §6 for downloads): what is
 * accepted (http or https with a host) and what users see of them (the URL
 * without its user name, password and login options: user.bim.source,
 * errors, logs). Parsing is libcurl's (CURLU), so the URL judged here is the
 * URL curl fetches.
 *
 * The URL with its credentials lives only in memory (the caller's) and in
 * what curl sends; every message client.c builds from curl's own text goes
 * through http_url_redact() first.
 *
 * Threads: any; no shared state.
 */
#include "client.h"

#include <curl/curl.h>
#include <errno.h>
#include <string.h>
#include <strings.h>

/* "scheme://" must be followed by a host: curl would read "http:///x" as
 * host "x". */
static bool http_url_has_authority(const char *url)
{
    const char *sep = strstr(url, "://");

    return sep && sep[3] != '\0' && sep[3] != '/' && sep[3] != '?' && sep[3] != '#';
}

static int http_url_cause(CURLUcode uc, struct bim_error *err)
{
    return bim_error_set(err, -EINVAL, "invalid URL: %s", curl_url_strerror(uc));
}

/* Does the part exist (and is it non-empty for a host)? */
static bool http_url_part(CURLU *u, CURLUPart part)
{
    char *v = NULL;
    bool present = curl_url_get(u, part, &v, 0) == CURLUE_OK && v != NULL;

    curl_free(v);
    return present;
}

/* url without the user info of its authority ("user:pw@"); false when it
 * does not fit in out. */
static bool http_url_strip_userinfo(const char *url, char *out, size_t out_len)
{
    const char *sep = strstr(url, "://"), *auth, *end, *at;
    size_t head, tail;

    if (!sep)
        return str_copy(out, out_len, url);
    auth = sep + 3;
    end = auth + strcspn(auth, "/?#");
    at = memrchr(auth, '@', (size_t)(end - auth));
    if (!at)
        return str_copy(out, out_len, url);
    head = (size_t)(auth - url);
    tail = strlen(at + 1);
    if (head + tail + 1 > out_len)
        return false;
    memcpy(out, url, head);
    memcpy(out + head, at + 1, tail + 1);
    return true;
}

int http_url_check(const char *url, char *shown, size_t shown_len, bool *has_credentials,
                   struct bim_error *err)
{
    CURLU *u = NULL;
    CURLUcode uc;
    char *scheme = NULL, *host = NULL;
    int rc = 0;

    if (!url || !url[0])
        return bim_error_set(err, -EINVAL, "the URL is empty");
    if (strlen(url) > HTTP_URL_MAX)
        return bim_error_set(err, -EINVAL, "the URL is longer than %d bytes", HTTP_URL_MAX);
    u = curl_url();
    if (!u)
        return bim_error_set(err, -ENOMEM, "out of memory");
    uc = curl_url_set(u, CURLUPART_URL, url, 0);
    if (uc != CURLUE_OK) {
        rc = http_url_cause(uc, err);
        goto out;
    }
    uc = curl_url_get(u, CURLUPART_SCHEME, &scheme, 0);
    if (uc != CURLUE_OK || (strcasecmp(scheme, "http") != 0 && strcasecmp(scheme, "https") != 0)) {
        rc = bim_error_set(err, -EINVAL, "unsupported URL scheme \"%.16s\": only http and https",
                           scheme ? scheme : "");
        goto out;
    }
    uc = curl_url_get(u, CURLUPART_HOST, &host, 0);
    if (uc != CURLUE_OK || !host[0] || !http_url_has_authority(url)) {
        rc = bim_error_set(err, -EINVAL, "the URL has no host");
        goto out;
    }
    *has_credentials = http_url_part(u, CURLUPART_USER) || http_url_part(u, CURLUPART_PASSWORD) ||
                       http_url_part(u, CURLUPART_OPTIONS);
    /* shown: the URL as the user wrote it (SPEC §5: download:<url without
     * credentials>), only the user info cut out; curl's normalised form
     * (lower-cased scheme, "/" added, dot segments removed) is not shown */
    if (!http_url_strip_userinfo(url, shown, shown_len))
        rc = bim_error_set(err, -EINVAL, "the URL is too long");
out:
    curl_free(host);
    curl_free(scheme);
    curl_url_cleanup(u);
    return rc;
}

/* Replace every occurrence of secret (n bytes) in text, a buffer of
 * text_len bytes, by "***"; what no longer fits is cut. */
static void http_url_redact_one(char *text, size_t text_len, const char *secret, size_t n)
{
    size_t pos = 0;

    if (n == 0)
        return;
    for (;;) {
        size_t len = strlen(text), at, tail;
        char *p = memmem(text + pos, len - pos, secret, n);

        if (!p)
            return;
        at = (size_t)(p - text);
        if (at + 3 >= text_len) {
            text[at] = '\0';
            return;
        }
        tail = len - at - n;
        if (tail > text_len - 1 - (at + 3))
            tail = text_len - 1 - (at + 3);
        memmove(text + at + 3, text + at + n, tail);
        text[at + 3 + tail] = '\0';
        memcpy(text + at, "***", 3);
        pos = at + 3;
    }
}

void http_url_redact(const char *url, char *text, size_t text_len)
{
    static const CURLUPart parts[] = {CURLUPART_PASSWORD, CURLUPART_USER, CURLUPART_OPTIONS};
    const char *sep = strstr(url, "://"), *auth, *end, *at;
    CURLU *u;

    if (text_len == 0)
        return;
    /* the user info exactly as written in the URL */
    if (sep) {
        auth = sep + 3;
        end = auth + strcspn(auth, "/?#");
        at = memrchr(auth, '@', (size_t)(end - auth));
        if (at)
            http_url_redact_one(text, text_len, auth, (size_t)(at - auth));
    }
    /* and each part, raw and decoded, where it is long enough to be told
     * apart from ordinary words */
    u = curl_url();
    if (!u || curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK) {
        curl_url_cleanup(u);
        return;
    }
    for (size_t i = 0; i < sizeof(parts) / sizeof(parts[0]); i++) {
        for (int decode = 0; decode < 2; decode++) {
            char *v = NULL;
            if (curl_url_get(u, parts[i], &v, decode ? CURLU_URLDECODE : 0) == CURLUE_OK && v &&
                strlen(v) >= HTTP_URL_SECRET_MIN)
                http_url_redact_one(text, text_len, v, strlen(v));
            curl_free(v);
        }
    }
    curl_url_cleanup(u);
}
