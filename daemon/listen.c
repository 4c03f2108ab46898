/*
 * listen.c - bind the --listen TCP address.
 *
 * Threads: main thread only.
 */
#include "listen.h"

#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

int listen_bind(const char *hostport, int *fd_out, struct bim_error *err)
{
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE};
    struct addrinfo *res = NULL;
    char host[256];
    const char *port;
    int fd = -1;
    int one = 1;
    int rc, gai;

    rc = hostport_split(hostport, host, sizeof(host), &port);
    if (rc) {
        bim_error_set(err, rc, "--listen %s: expected HOST:PORT", hostport);
        goto out;
    }
    gai = getaddrinfo(host, port, &hints, &res);
    if (gai) {
        rc = bim_error_set(err, -EINVAL, "--listen %s: %s", hostport, gai_strerror(gai));
        goto out;
    }
    fd = socket(res->ai_family, res->ai_socktype | SOCK_CLOEXEC, res->ai_protocol);
    if (fd < 0) {
        rc = bim_error_set(err, -errno, "--listen %s: %s", hostport, strerror(errno));
        goto out;
    }
    (void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(fd, res->ai_addr, res->ai_addrlen) < 0 || listen(fd, SOMAXCONN) < 0) {
        rc = -errno;
        bim_error_set(err, rc, "cannot listen on %s: %s", hostport, strerror(-rc));
        goto out;
    }
    *fd_out = fd;
    fd = -1;
out:
    if (fd >= 0)
        close(fd);
    if (res)
        freeaddrinfo(res);
    return rc;
}
