/*
 * fuzz_url.c - download URLs and peer addresses, as requests bring them:
 * the one URL syntax check (sync's http_url_check, libcurl's parser) with
 * the URL shown to users, the redaction of its credentials from messages
 * (http_url_redact), and "host:port" peers as the wire codec accepts them
 * (wire_peer_valid) and sync turns them into a source list
 * (sync_peer_list_parse).
 *
 * Input: the URL or address (a NUL ends it). Checks beyond the sanitizers:
 * the shown URL has no user info; a message quoting the URL keeps none of
 * the user info as written; a peer the wire accepts is one sync accepts.
 */
#include "request.h"
#include "http/client.h"
#include "peer/peer.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The user info as written ("user:pw" of "http://user:pw@host/"), or NULL. */
static char *fuzz_userinfo(const char *url)
{
    const char *sep = strstr(url, "://"), *auth, *end, *at;

    if (!sep)
        return NULL;
    auth = sep + 3;
    end = auth + strcspn(auth, "/?#");
    at = memrchr(auth, '@', (size_t)(end - auth));
    return at && at > auth ? strndup(auth, (size_t)(at - auth)) : NULL;
}

static void fuzz_url_check(const char *url)
{
    char shown[HTTP_URL_MAX + 1], text[4 * HTTP_URL_MAX + 64];
    struct bim_error err = {0};
    bool credentials = false;
    char *info;
    int rc;

    rc = http_url_check(url, shown, sizeof(shown), &credentials, &err);
    if (rc < 0 && err.message[0] == '\0')
        abort();
    info = fuzz_userinfo(url);
    if (rc == 0 && info && strlen(shown) != strlen(url) - strlen(info) - 1)
        abort(); /* the shown URL is not the URL without its "user:pw@" */
    snprintf(text, sizeof(text), "cannot fetch %s: failed", url);
    http_url_redact(url, text, sizeof(text));
    if (info && !strchr(info, '*') && strstr(text, info))
        abort(); /* credentials left in a message */
    free(info);
}

static void fuzz_peer_check(const char *peer)
{
    const char *peers[] = {peer, NULL};
    static struct sync_peer_job list;
    char out[STORE_SOURCE_MAX];
    struct bim_error err = {0};

    if (wire_peer_valid(peer) && sync_peer_list_parse(peers, &list, out, sizeof(out), &err) != 0)
        abort(); /* the wire accepts a peer that the peer sync refuses */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *s = malloc(size + 1);

    if (!s)
        abort();
    memcpy(s, data, size);
    s[size] = '\0';
    fuzz_url_check(s);
    fuzz_peer_check(s);
    free(s);
    return 0;
}
