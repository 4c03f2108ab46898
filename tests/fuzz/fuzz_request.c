/*
 * fuzz_request.c - the control socket as a client reaches it: bytes framed
 * into lines by ctl_reader (over a socketpair, as the session reads them),
 * each line parsed as a request (ctl_request_parse) and answered the way
 * session.c answers it (ctl_reply_error / ctl_reply_ok), and that reply
 * read back the way bimctl reads it (ctl_reply_parse). Each line is also
 * parsed as a reply, since bimctl reads the daemon's lines.
 *
 * Checks beyond the sanitizers: an error always has a message and a reply
 * can always be built and read back (the daemon must be able to answer
 * anything); an accepted request has what its op requires.
 */
#include "request.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define FUZZ_INPUT_MAX (64 * 1024) /* fits a socketpair's buffer: no writer thread */
#define FUZZ_SMALL_LINE 64         /* a second pass where lines are often too long */

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    json_object_seed(1); /* the same key order in every run */
    return 0;
}

/* The session's answer to one request, serialized and read back as bimctl does. */
static void fuzz_reply_check(const struct ctl_request *req, int rc, const struct bim_error *err)
{
    struct ctl_reply reply;
    struct bim_error perr = {0};
    json_t *value;
    char *text;

    if (rc < 0)
        value = ctl_reply_error(req->id, rc, err->message);
    else
        value = ctl_reply_ok(req->id, json_string(ctl_op_name(req->op)));
    if (!value)
        abort(); /* the daemon could not answer this line */
    text = json_dumps(value, JSON_COMPACT);
    if (!text || strchr(text, '\n'))
        abort();
    if (ctl_reply_parse(text, strlen(text), &reply, &perr) != 0)
        abort(); /* bimctl would not understand the answer */
    if (reply.ok != (rc == 0) || (req->id && !json_equal(reply.id, req->id)))
        abort();
    ctl_reply_clear(&reply);
    free(text);
    json_decref(value);
}

static void fuzz_request_check(const char *line, size_t len)
{
    struct ctl_request req;
    struct ctl_reply reply;
    struct bim_error err = {0};
    int rc = ctl_request_parse(line, len, &req, &err);

    if (rc < 0 && err.message[0] == '\0')
        abort(); /* an error a user reads without its cause */
    if (rc == 0) {
        if (req.op != CTL_OP_VERSION && req.op != CTL_OP_LIST && req.op != CTL_OP_WATCH &&
            !req.name)
            abort();
        if (req.name && !store_name_valid(req.name))
            abort();
        if (req.op == CTL_OP_SYNC && (req.peer_count == 0 || req.peer_count > BIM_PEERS_MAX ||
                                      req.peers[req.peer_count] != NULL))
            abort();
        for (size_t i = 0; i < req.peer_count; i++) {
            if (!wire_peer_valid(req.peers[i]))
                abort();
        }
        if (req.source == SYNC_SOURCE_DOWNLOAD && !req.url)
            abort();
    }
    fuzz_reply_check(&req, rc, &err);
    ctl_request_clear(&req);

    if (ctl_reply_parse(line, len, &reply, &err) == 0 && !reply.ok &&
        (!reply.code || !reply.message))
        abort();
    ctl_reply_clear(&reply);
}

/* Frame data into lines with a reader of max bytes per line; parse them when parse. */
static void fuzz_lines(const uint8_t *data, size_t size, size_t max, bool parse)
{
    struct ctl_reader reader;
    int sv[2];
    char *line;
    size_t len;

    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
        abort();
    if (size > 0 && send(sv[1], data, size, MSG_NOSIGNAL) != (ssize_t)size)
        abort();
    shutdown(sv[1], SHUT_WR);
    ctl_reader_init(&reader, max, true);
    while (ctl_reader_next(&reader, sv[0], &line, &len) == 1) {
        if (len > max || line[len] != '\0')
            abort();
        if (parse)
            fuzz_request_check(line, len);
        ctl_reader_fd_drop_stale(&reader);
    }
    ctl_reader_clear(&reader);
    close(sv[0]);
    close(sv[1]);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > FUZZ_INPUT_MAX)
        return 0;
    fuzz_lines(data, size, CTL_LINE_MAX, true);
    fuzz_lines(data, size, FUZZ_SMALL_LINE, false);
    return 0;
}
