/*
 * client.c - the client side of the control socket, used by bimctl: connect,
 * one request and its reply at a time (with a file descriptor for uploads),
 * and the event lines that follow a watch.
 *
 * Threads: single-threaded; a struct ctl_client belongs to its caller.
 */
#include "protocol.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

int ctl_client_connect(struct ctl_client *client, const char *path)
{
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    int fd, rc;

    memset(client, 0, sizeof(*client));
    client->fd = -1;
    client->next_id = 1;
    if (!str_copy(addr.sun_path, sizeof(addr.sun_path), path))
        return -ENAMETOOLONG;
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    if (connect(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0) {
        rc = -errno;
        close(fd);
        return rc;
    }
    client->fd = fd;
    ctl_reader_init(&client->reader, CTL_REPLY_MAX, false);
    return 0;
}

void ctl_client_close(struct ctl_client *client)
{
    if (client->fd >= 0)
        close(client->fd);
    client->fd = -1;
    ctl_reader_clear(&client->reader);
}

/* The next line from the daemon: 1, 0 when it closed, or -errno with a message. */
static int ctl_client_line(struct ctl_client *client, char **line, size_t *len,
                           struct bim_error *err)
{
    int rc = ctl_reader_next(&client->reader, client->fd, line, len);

    if (rc == 0 || rc == -ECONNRESET)
        return 0;
    if (rc == -E2BIG)
        return bim_error_set(err, -EPROTO, "the daemon sent a line longer than %u bytes",
                             CTL_REPLY_MAX);
    if (rc < 0)
        return bim_error_set(err, rc, "reading from the daemon: %s", strerror(-rc));
    return 1;
}

int ctl_client_call(struct ctl_client *client, json_t *request, int pass_fd,
                    struct ctl_reply *reply, struct bim_error *err)
{
    json_int_t id = client->next_id++;
    size_t len;
    char *line;
    int rc;

    memset(reply, 0, sizeof(*reply));
    if (json_object_set_new(request, "id", json_integer(id)))
        return bim_error_set(err, -ENOMEM, "out of memory");
    rc = ctl_send_json(client->fd, request, pass_fd);
    if (rc && rc != -EPIPE && rc != -ECONNRESET)
        return bim_error_set(err, rc, "sending to the daemon: %s", strerror(-rc));
    /* on EPIPE the daemon may still have said why (e.g. too many clients) */
    rc = ctl_client_line(client, &line, &len, err);
    if (rc == 0)
        return bim_error_set(err, -ECONNRESET, "the daemon closed the connection");
    if (rc < 0)
        return rc;
    rc = ctl_reply_parse(line, len, reply, err);
    if (rc)
        return rc;
    /* a reply without an id answers a line the daemon could not read */
    if (reply->id && !(json_is_integer(reply->id) && json_integer_value(reply->id) == id)) {
        ctl_reply_clear(reply);
        return bim_error_set(err, -EPROTO, "the daemon answered another request");
    }
    return 0;
}

int ctl_client_event(struct ctl_client *client, json_t **event, struct bim_error *err)
{
    json_error_t jerr;
    size_t len;
    char *line;
    int rc;

    *event = NULL;
    rc = ctl_client_line(client, &line, &len, err);
    if (rc <= 0)
        return rc;
    *event = json_loadb(line, len, 0, &jerr);
    if (!*event)
        return bim_error_set(err, -EPROTO, "the daemon sent invalid JSON: %s", jerr.text);
    if (!json_is_string(json_object_get(*event, "event")) ||
        !json_is_object(json_object_get(*event, "image"))) {
        json_decref(*event);
        *event = NULL;
        return bim_error_set(err, -EPROTO, "the daemon sent a line that is not an event");
    }
    return 1;
}
