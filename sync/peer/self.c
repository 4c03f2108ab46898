/*
 * self.c - this daemon in a sync's list of sources. An operator fanning an
 * image out may give every receiver the same list, itself included (SPEC §9
 * "N daemons that sync from one origin and from each other"): such an entry
 * is left out of the sources, and its text is the name the others know this
 * daemon by, which the ranks of peer.c need. When the list leaves it out and
 * --listen has a wildcard host (0.0.0.0, ::), that name is guessed: the
 * local address on the way to the origin, with --listen's port.
 *
 * An entry is this daemon when it is --listen's text, or has its port and a
 * host that resolves to --listen's address (localhost for 127.0.0.1), or,
 * with a wildcard --listen, to any address of this host (one a socket can be
 * bound to: no other daemon can listen on that port there).
 *
 * Threads: the job's thread, before its fetchers start; no state. Names are
 * resolved (getaddrinfo) with no lock held.
 */
#include "peer.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define HOST_MAX 256

static bool sync_self_wildcard(const char *host)
{
    return strcmp(host, "0.0.0.0") == 0 || strcmp(host, "::") == 0 || strcmp(host, "*") == 0;
}

static struct addrinfo *sync_self_resolve(const char *host, const char *port)
{
    struct addrinfo hints = {.ai_socktype = SOCK_DGRAM};
    struct addrinfo *res = NULL;

    if (getaddrinfo(host, port, &hints, &res) != 0)
        return NULL;
    return res;
}

/* The address bytes of a, and their length (port left out). */
static const void *sync_self_bytes(const struct addrinfo *a, size_t *len)
{
    if (a->ai_family == AF_INET) {
        *len = 4;
        return &((const struct sockaddr_in *)(const void *)a->ai_addr)->sin_addr;
    }
    if (a->ai_family == AF_INET6) {
        *len = 16;
        return &((const struct sockaddr_in6 *)(const void *)a->ai_addr)->sin6_addr;
    }
    *len = 0;
    return NULL;
}

static bool sync_self_same(const struct addrinfo *a, const struct addrinfo *b)
{
    size_t la, lb;
    const void *pa = sync_self_bytes(a, &la), *pb = sync_self_bytes(b, &lb);

    return pa && pb && la == lb && memcmp(pa, pb, la) == 0;
}

/* Can a socket be bound to a's address (is it one of this host's)? */
static bool sync_self_local(const struct addrinfo *a)
{
    struct sockaddr_storage ss;
    int fd = socket(a->ai_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    bool local;

    if (fd < 0 || a->ai_addrlen > sizeof(ss)) {
        if (fd >= 0)
            close(fd);
        return false;
    }
    memcpy(&ss, a->ai_addr, a->ai_addrlen);
    if (ss.ss_family == AF_INET)
        ((struct sockaddr_in *)&ss)->sin_port = 0;
    else
        ((struct sockaddr_in6 *)&ss)->sin6_port = 0;
    local = bind(fd, (struct sockaddr *)&ss, a->ai_addrlen) == 0;
    close(fd);
    return local;
}

bool sync_peer_is_self(const char *addr, const char *listen)
{
    char host[HOST_MAX], lhost[HOST_MAX];
    const char *port, *lport;
    struct addrinfo *res = NULL, *lres = NULL;
    bool self = false;

    if (!listen[0])
        return false;
    if (strcmp(addr, listen) == 0)
        return true;
    if (hostport_split(addr, host, sizeof(host), &port) < 0 ||
        hostport_split(listen, lhost, sizeof(lhost), &lport) < 0 ||
        strtoul(port, NULL, 10) != strtoul(lport, NULL, 10))
        return false;
    res = sync_self_resolve(host, port);
    if (!res)
        goto out;
    if (sync_self_wildcard(lhost)) {
        for (const struct addrinfo *a = res; a && !self; a = a->ai_next)
            self = sync_self_local(a);
        goto out;
    }
    lres = sync_self_resolve(lhost, lport);
    for (const struct addrinfo *a = res; a && !self; a = a->ai_next)
        for (const struct addrinfo *b = lres; b && !self; b = b->ai_next)
            self = sync_self_same(a, b);
out:
    if (res)
        freeaddrinfo(res);
    if (lres)
        freeaddrinfo(lres);
    return self;
}

void sync_peer_self_name(const char *listen, const char *origin, char *out, size_t outlen)
{
    char lhost[HOST_MAX], host[HOST_MAX], ip[INET6_ADDRSTRLEN];
    const char *lport, *port;
    struct addrinfo *res = NULL;
    struct sockaddr_storage ss;
    socklen_t sslen = sizeof(ss);
    int fd = -1;

    str_copy(out, outlen, listen);
    if (hostport_split(listen, lhost, sizeof(lhost), &lport) < 0 || !sync_self_wildcard(lhost) ||
        hostport_split(origin, host, sizeof(host), &port) < 0)
        return;
    res = sync_self_resolve(host, port);
    if (!res)
        return;
    /* a datagram socket "connected" sends nothing: it only picks the route */
    fd = socket(res->ai_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || connect(fd, res->ai_addr, res->ai_addrlen) < 0 ||
        getsockname(fd, (struct sockaddr *)&ss, &sslen) < 0)
        goto out;
    if (ss.ss_family == AF_INET &&
        inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr, ip, sizeof(ip)))
        snprintf(out, outlen, "%s:%s", ip, lport);
    else if (ss.ss_family == AF_INET6 &&
             inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&ss)->sin6_addr, ip, sizeof(ip)))
        snprintf(out, outlen, "[%s]:%s", ip, lport);
out:
    if (fd >= 0)
        close(fd);
    freeaddrinfo(res);
}
