/*
 * test_http_client.c - the HTTP client (sync/http/client.c) against a real
 * TCP server on loopback that answers each connection with a scripted
 * response: what the client sends (Range, If-Range, the bearer token), what it
 * keeps of the final response, and the cause of each way a GET can end
 * (refused, cut short, stalled, cancelled, a callback's error, redirects);
 * the other methods (HEAD, PUT with its body, DELETE), extra headers and the
 * AWS SigV4 signature (checked in full by tests/integration/s3server.py).
 *
 * Threads: the server runs in one thread per test and serves its script in
 * order, one response per connection; the test reads the recorded requests
 * only after joining it.
 */
#include "check.h"
#include "http/client.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define SCRIPT_MAX 4
#define HEAD_MAX 4096

struct scripted {
    const char *response; /* bytes written as they are; "%PORT%" becomes the port */
    unsigned hold_ms;     /* then keep the connection open this long before closing */
};

struct server {
    int fd;
    int port;
    struct scripted script[SCRIPT_MAX];
    int count;
    char heads[SCRIPT_MAX][HEAD_MAX]; /* the request head of each connection */
    int served;
    pthread_t thread;
};

static void sleep_ms(unsigned ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

static void write_all(int fd, const char *buf, size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, buf, len);
        if (n <= 0)
            return; /* the client went away: that is its business */
        buf += n;
        len -= (size_t)n;
    }
}

static void *server_main(void *arg)
{
    struct server *s = arg;
    for (int i = 0; i < s->count; i++) {
        int c = accept(s->fd, NULL, NULL);
        if (c < 0)
            break;
        size_t got = 0;
        char *head = s->heads[i];
        /* the head, then a body of Content-Length bytes (kept after the head) */
        size_t want = HEAD_MAX - 1;
        while (got < want) {
            ssize_t n = read(c, head + got, HEAD_MAX - 1 - got);
            if (n <= 0)
                break;
            got += (size_t)n;
            head[got] = '\0';
            const char *end = strstr(head, "\r\n\r\n"), *cl = strcasestr(head, "Content-Length: ");
            if (end && want == HEAD_MAX - 1)
                want = (size_t)(end + 4 - head) + (cl && cl < end ? strtoul(cl + 16, NULL, 10) : 0);
        }
        char port[16], body[2048];
        snprintf(port, sizeof(port), "%d", s->port);
        const char *r = s->script[i].response, *mark = strstr(r, "%PORT%");
        if (mark)
            snprintf(body, sizeof(body), "%.*s%s%s", (int)(mark - r), r, port, mark + 6);
        else
            snprintf(body, sizeof(body), "%s", r);
        write_all(c, body, strlen(body));
        if (s->script[i].hold_ms)
            sleep_ms(s->script[i].hold_ms);
        close(c);
        s->served++;
    }
    return NULL;
}

/* Start a server for the script (at most SCRIPT_MAX responses). */
static void server_start(struct server *s, const struct scripted *script, int count)
{
    memset(s, 0, sizeof(*s));
    s->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(a);
    if (s->fd < 0 || bind(s->fd, (struct sockaddr *)&a, sizeof(a)) != 0 || listen(s->fd, 8) != 0 ||
        getsockname(s->fd, (struct sockaddr *)&a, &len) != 0) {
        perror("test server");
        exit(2);
    }
    s->port = ntohs(a.sin_port);
    for (int i = 0; i < count; i++)
        s->script[i] = script[i];
    s->count = count;
    pthread_create(&s->thread, NULL, server_main, s);
}

static void server_stop(struct server *s)
{
    shutdown(s->fd, SHUT_RDWR); /* an accept() still waiting returns */
    pthread_join(s->thread, NULL);
    close(s->fd);
}

/* What the callbacks saw. */
struct sink {
    char body[4096];
    size_t len;
    int calls_response;
    int fail_data;   /* on_data returns this (0: take the data) */
    int skip_status; /* on_response skips the body of this status */
};

static int sink_response(void *ctx, const struct http_response *resp)
{
    struct sink *k = ctx;
    k->calls_response++;
    return resp->status == k->skip_status ? 1 : 0;
}

static int sink_data(void *ctx, const void *buf, size_t len)
{
    struct sink *k = ctx;
    if (k->fail_data)
        return k->fail_data;
    size_t room = sizeof(k->body) - 1 - k->len;
    size_t n = len < room ? len : room;
    memcpy(k->body + k->len, buf, n);
    k->len += n;
    k->body[k->len] = '\0';
    return 0;
}

/* One GET of path on the server with opts; returns http_client_get's value. */
static int get(const struct server *s, const struct http_client_options *opts,
               struct http_request *req, const char *path, struct sink *k,
               struct http_response *resp, struct bim_error *err)
{
    static const struct http_client_options plain = {.user_agent = "bimfs-test"};
    struct http_client *h = NULL;
    char url[256];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", s ? s->port : 9, path);
    int rc = http_client_open(opts ? opts : &plain, &h);
    CHECK(rc == 0, "http_client_open: %d", rc);
    if (rc != 0)
        return rc;
    req->url = url;
    req->on_response = sink_response;
    req->on_data = sink_data;
    req->ctx = k;
    memset(resp, 0, sizeof(*resp));
    rc = http_client_get(h, req, resp, err);
    http_client_close(h);
    return rc;
}

/* One scripted exchange: the server, what the callbacks saw, the request
 * and its answer. */
struct exchange {
    struct server s;
    struct sink k;
    struct http_request req;
    struct http_response resp;
    struct bim_error err;
};

/* Serve the script's first count responses, GET path through them with opts
 * (NULL: plain), stop the server; returns get()'s value. */
static int exchange_run(struct exchange *x, const struct scripted *script, int count,
                        const struct http_client_options *opts, const char *path)
{
    int rc;

    server_start(&x->s, script, count);
    rc = get(&x->s, opts, &x->req, path, &x->k, &x->resp, &x->err);
    server_stop(&x->s);
    return rc;
}

static void test_ok_keeps_headers_and_whole_body(void)
{
    static const struct scripted script[] = {
        {"HTTP/1.1 200 Fine Thanks\r\nContent-Length: 11\r\nETag: \"v1\"\r\n"
         "Last-Modified: Tue, 01 Dec 2026 10:00:00 GMT\r\nConnection: close\r\n\r\nhello world",
         0},
    };
    struct exchange x = {0};
    int rc = exchange_run(&x, script, 1, NULL, "/disk.raw");
    CHECK(rc == 0, "rc %d: %s", rc, x.err.message);
    CHECK_INT(x.resp.status, 200);
    CHECK_STR(x.resp.reason, "Fine Thanks");
    CHECK_INT(x.resp.length, 11);
    CHECK_STR(x.resp.etag, "\"v1\"");
    CHECK_STR(x.resp.last_modified, "Tue, 01 Dec 2026 10:00:00 GMT");
    CHECK_STR(x.k.body, "hello world");
    CHECK_INT(x.k.calls_response, 1);
    CHECK_INT(x.resp.cause, HTTP_CAUSE_NONE);
    CHECK(strstr(x.s.heads[0], "GET /disk.raw HTTP/1.1\r\n") == x.s.heads[0], "head: %s",
          x.s.heads[0]);
    CHECK(!strstr(x.s.heads[0], "Authorization"), "a token was sent unasked: %s", x.s.heads[0]);
    CHECK(!strstr(x.s.heads[0], "Range"), "a range was sent unasked: %s", x.s.heads[0]);
}

static void test_range_if_range_and_token_are_sent_and_content_range_kept(void)
{
    static const struct scripted script[] = {
        {"HTTP/1.1 206 Partial Content\r\nContent-Length: 5\r\n"
         "Content-Range: bytes 10-14/100\r\nConnection: close\r\n\r\nabcde",
         0},
    };
    struct http_client_options opts = {.user_agent = "bimfs-test", .token = "s3cret"};
    struct exchange x = {
        .req = {.range = true, .range_first = 10, .range_last = -1, .if_range = "\"v1\""}};
    int rc = exchange_run(&x, script, 1, &opts, "/x");
    CHECK(rc == 0, "rc %d: %s", rc, x.err.message);
    CHECK(strstr(x.s.heads[0], "\r\nRange: bytes=10-\r\n"), "head: %s", x.s.heads[0]);
    CHECK(strstr(x.s.heads[0], "\r\nIf-Range: \"v1\"\r\n"), "head: %s", x.s.heads[0]);
    CHECK(strstr(x.s.heads[0], "\r\nAuthorization: Bearer s3cret\r\n"), "head: %s", x.s.heads[0]);
    CHECK_INT(x.resp.status, 206);
    CHECK(x.resp.has_range, "Content-Range not kept");
    CHECK_INT(x.resp.range_first, 10);
    CHECK_INT(x.resp.range_last, 14);
    CHECK_INT(x.resp.range_complete, 100);
    CHECK_STR(x.k.body, "abcde");
}

static void test_body_cut_short_is_a_transfer_error_worth_retrying(void)
{
    static const struct scripted script[] = {
        {"HTTP/1.1 200 OK\r\nContent-Length: 100\r\nConnection: close\r\n\r\nonly this", 0},
    };
    struct exchange x = {0};
    int rc = exchange_run(&x, script, 1, NULL, "/x");
    CHECK_INT(rc, -EAGAIN);
    CHECK_INT(x.resp.cause, HTTP_CAUSE_TRANSFER);
    CHECK(http_cause_remote(x.resp.cause), "a cut body is not the server's fault?");
    CHECK(x.err.message[0] != '\0', "no message");
}

static void test_refused_connection_is_a_connect_error(void)
{
    /* a port bound and closed again: nobody listens there */
    struct server s;
    server_start(&s, NULL, 0);
    int port = s.port;
    server_stop(&s);
    s.port = port;
    struct sink k = {0};
    struct http_request req = {0};
    struct http_response resp;
    struct bim_error err = {0};
    int rc = get(&s, NULL, &req, "/x", &k, &resp, &err);
    CHECK_INT(rc, -EAGAIN);
    CHECK_INT(resp.cause, HTTP_CAUSE_CONNECT);
    CHECK_INT(resp.status, 0);
    CHECK(http_cause_remote(resp.cause), "refused is remote");
    CHECK_INT(k.calls_response, 0);
    CHECK(strstr(err.message, "Connection refused"), "the system's reason is not named: %s",
          err.message);
}

static void test_stall_ends_the_get(void)
{
    static const struct scripted script[] = {
        {"HTTP/1.1 200 OK\r\nContent-Length: 100\r\nConnection: close\r\n\r\nsome", 1500},
    };
    struct http_client_options opts = {.user_agent = "bimfs-test", .stall_ms = 300};
    struct exchange x = {0};
    int rc = exchange_run(&x, script, 1, &opts, "/x");
    CHECK_INT(rc, -EAGAIN);
    CHECK_INT(x.resp.cause, HTTP_CAUSE_STALL);
    CHECK_STR(x.k.body, "some");
}

static void test_callback_error_is_returned_as_is(void)
{
    static const struct scripted script[] = {
        {"HTTP/1.1 200 OK\r\nContent-Length: 4\r\nConnection: close\r\n\r\ndata", 0},
    };
    struct exchange x = {.k = {.fail_data = -ENOSPC}};
    int rc = exchange_run(&x, script, 1, NULL, "/x");
    CHECK_INT(rc, -ENOSPC);
    CHECK_INT(x.resp.cause, HTTP_CAUSE_CALLBACK);
    CHECK(!http_cause_remote(x.resp.cause), "a callback's error is not remote");
}

static void test_cancel_flag_ends_the_get(void)
{
    static const struct scripted script[] = {
        {"HTTP/1.1 200 OK\r\nContent-Length: 100\r\nConnection: close\r\n\r\nsome", 1500},
    };
    atomic_bool cancel = true;
    struct exchange x = {.req = {.cancel = &cancel}};
    int rc = exchange_run(&x, script, 1, NULL, "/x");
    CHECK_INT(rc, -ECANCELED);
    CHECK_INT(x.resp.cause, HTTP_CAUSE_CANCELLED);
}

static void test_skipped_body_and_retry_after(void)
{
    static const struct scripted script[] = {
        {"HTTP/1.1 503 Busy\r\nRetry-After: 7\r\nContent-Length: 9\r\nConnection: close\r\n\r\n"
         "try later",
         0},
    };
    struct exchange x = {.k = {.skip_status = 503}};
    int rc = exchange_run(&x, script, 1, NULL, "/x");
    CHECK(rc == 0, "rc %d: %s", rc, x.err.message);
    CHECK_INT(x.resp.status, 503);
    CHECK_INT(x.resp.retry_after_s, 7);
    CHECK_INT(x.k.len, 0);
    CHECK(http_status_transient(503) && http_status_transient(429) && http_status_transient(408),
          "transient statuses");
    CHECK(!http_status_transient(404) && !http_status_transient(200), "final statuses");
}

static void test_redirects_followed_only_when_asked(void)
{
    static const struct scripted script[] = {
        {"HTTP/1.1 302 Found\r\nLocation: http://127.0.0.1:%PORT%/moved\r\nContent-Length: 0\r\n"
         "Connection: close\r\n\r\n",
         0},
        {"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok", 0},
    };
    struct server s;
    server_start(&s, script, 2);
    struct http_client_options opts = {.user_agent = "bimfs-test", .follow_redirects = true};
    struct sink k = {0};
    struct http_request req = {0};
    struct http_response resp;
    struct bim_error err = {0};
    int rc = get(&s, &opts, &req, "/first", &k, &resp, &err);
    server_stop(&s);
    CHECK(rc == 0, "rc %d: %s", rc, err.message);
    CHECK_INT(resp.status, 200);
    CHECK_STR(k.body, "ok");
    CHECK(strstr(s.heads[1], "GET /moved ") == s.heads[1], "second head: %s", s.heads[1]);
    char want[64];
    snprintf(want, sizeof(want), "http://127.0.0.1:%d/moved", s.port);
    CHECK_STR(resp.effective_url, want);

    server_start(&s, script, 1);
    struct sink k2 = {0};
    struct http_request req2 = {0};
    rc = get(&s, NULL, &req2, "/first", &k2, &resp, &err);
    server_stop(&s);
    CHECK(rc == 0, "rc %d: %s", rc, err.message);
    CHECK_INT(resp.status, 302);
}

/* One request of method on the server with opts (a fresh client). */
static int call(const struct server *s, const struct http_client_options *opts,
                struct http_request *req, const char *method, struct sink *k,
                struct http_response *resp, struct bim_error *err)
{
    req->method = method;
    return get(s, opts, req, "/bucket/some/key", k, resp, err);
}

static void test_put_sends_its_body_and_extra_headers_without_expect(void)
{
    static const struct scripted script[] = {
        {"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nDate: Wed, 02 Dec 2026 10:00:00 GMT\r\n\r\n", 0},
    };
    static const char *const headers[] = {"x-test-one: 1", "x-test-two: two", NULL};
    struct server s;
    server_start(&s, script, 1);
    struct sink k = {0};
    struct http_request req = {.body = "0123456789", .body_len = 10, .headers = headers};
    struct http_response resp;
    struct bim_error err = {0};
    int rc = call(&s, NULL, &req, "PUT", &k, &resp, &err);
    server_stop(&s);
    CHECK(rc == 0, "rc %d: %s", rc, err.message);
    CHECK_INT(resp.status, 200);
    CHECK_STR(resp.date, "Wed, 02 Dec 2026 10:00:00 GMT");
    const char *h = s.heads[0];
    CHECK(strstr(h, "PUT /bucket/some/key HTTP/1.1\r\n") == h, "head: %s", h);
    CHECK(strstr(h, "Content-Length: 10\r\n"), "no length: %s", h);
    CHECK(strstr(h, "x-test-one: 1\r\n") && strstr(h, "x-test-two: two\r\n"),
          "extra headers missing: %s", h);
    CHECK(!strcasestr(h, "Expect:"), "100-continue asked: %s", h);
    CHECK(strstr(h, "\r\n\r\n0123456789"), "the body was not sent: %s", h);
}

static void test_head_takes_no_body_and_delete_is_sent_as_delete(void)
{
    static const struct scripted script[] = {
        {"HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n"
         "Last-Modified: Tue, 01 Dec 2026 10:00:00 GMT\r\n\r\n",
         0},
        {"HTTP/1.1 204 No Content\r\n\r\n", 0},
        {"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", 0},
    };
    struct server s;
    server_start(&s, script, 3);
    struct sink k = {0};
    struct http_request req = {0};
    struct http_response resp;
    struct bim_error err = {0};
    /* one client for the three: a HEAD, then a DELETE, then a GET on the same handle */
    struct http_client *h = NULL;
    static const struct http_client_options plain = {.user_agent = "bimfs-test"};
    char url[128];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/b/k", s.port);
    CHECK(http_client_open(&plain, &h) == 0, "open");
    req.url = url;
    req.on_response = sink_response;
    req.on_data = sink_data;
    req.ctx = &k;
    req.method = "HEAD";
    int rc = http_client_request(h, &req, &resp, &err);
    CHECK(rc == 0, "HEAD rc %d: %s", rc, err.message);
    CHECK_INT(resp.length, 1234);
    CHECK_STR(resp.last_modified, "Tue, 01 Dec 2026 10:00:00 GMT");
    req.method = "DELETE";
    rc = http_client_request(h, &req, &resp, &err);
    CHECK(rc == 0, "DELETE rc %d: %s", rc, err.message);
    CHECK_INT(resp.status, 204);
    req.method = NULL;
    rc = http_client_request(h, &req, &resp, &err);
    CHECK(rc == 0, "GET rc %d: %s", rc, err.message);
    CHECK_STR(k.body, "ok");
    req.method = "PATCH";
    rc = http_client_request(h, &req, &resp, &err);
    CHECK_INT(rc, -EINVAL);
    http_client_close(h);
    server_stop(&s);
    CHECK(strstr(s.heads[0], "HEAD /b/k HTTP/1.1\r\n") == s.heads[0], "head: %s", s.heads[0]);
    CHECK(strstr(s.heads[1], "DELETE /b/k HTTP/1.1\r\n") == s.heads[1], "head: %s", s.heads[1]);
    CHECK(strstr(s.heads[2], "GET /b/k HTTP/1.1\r\n") == s.heads[2],
          "the GET after a HEAD and a DELETE: %s", s.heads[2]);
}

static void test_aws_sigv4_signs_with_the_key_and_never_sends_the_secret(void)
{
    static const struct scripted script[] = {
        {"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", 0},
    };
    static const char *const headers[] = {
        "x-amz-content-sha256: e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        NULL};
    static const struct http_client_options signed_opts = {
        .user_agent = "bimfs-test",
        .aws_sigv4 = "aws:amz:eu-west-3:s3",
        .aws_key = "AKIDEXAMPLE",
        .aws_secret = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
    };
    struct server s;
    server_start(&s, script, 1);
    struct sink k = {0};
    struct http_request req = {.headers = headers};
    struct http_response resp;
    struct bim_error err = {0};
    int rc = call(&s, &signed_opts, &req, "GET", &k, &resp, &err);
    server_stop(&s);
    CHECK(rc == 0, "rc %d: %s", rc, err.message);
    const char *h = s.heads[0];
    CHECK(strstr(h, "Authorization: AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/"),
          "not signed with SigV4: %s", h);
    CHECK(strstr(h, "/eu-west-3/s3/aws4_request"), "the region or service is not signed: %s", h);
    CHECK(strstr(h, "x-amz-content-sha256") && strstr(h, "SignedHeaders=") &&
              strstr(strstr(h, "SignedHeaders="), "x-amz-content-sha256"),
          "the payload hash is not signed: %s", h);
    CHECK(strstr(h, "X-Amz-Date: ") || strstr(h, "x-amz-date: "), "no date: %s", h);
    CHECK(!strstr(h, "wJalrXUtnFEMI"), "the secret was sent: %s", h);
}

int main(void)
{
    if (http_client_global_init() != 0)
        return 2;
    RUN(test_ok_keeps_headers_and_whole_body);
    RUN(test_range_if_range_and_token_are_sent_and_content_range_kept);
    RUN(test_body_cut_short_is_a_transfer_error_worth_retrying);
    RUN(test_refused_connection_is_a_connect_error);
    RUN(test_stall_ends_the_get);
    RUN(test_callback_error_is_returned_as_is);
    RUN(test_cancel_flag_ends_the_get);
    RUN(test_skipped_body_and_retry_after);
    RUN(test_redirects_followed_only_when_asked);
    RUN(test_put_sends_its_body_and_extra_headers_without_expect);
    RUN(test_head_takes_no_body_and_delete_is_sent_as_delete);
    RUN(test_aws_sigv4_signs_with_the_key_and_never_sends_the_secret);
    http_client_global_cleanup();
    return check_exit();
}
