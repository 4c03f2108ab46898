/*
 * check.c - the syntax of names, uuids (SPEC §3) and peer addresses (SPEC
 * §6), in one place: store (what it adopts), sync (what it creates) and ctl
 * (what requests name) all check with these.
 *
 * Threads: no shared state.
 */
#include "wire.h"

#include <errno.h>
#include <string.h>

static bool wire_alnum(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

bool wire_name_valid(const char *name)
{
    size_t len;

    if (!name)
        return false;
    len = strnlen(name, BIM_NAME_MAX + 1);
    /* the regex needs the first character and at least one more */
    if (len < 2 || len > BIM_NAME_MAX || !wire_alnum(name[0]))
        return false;
    for (size_t i = 1; i < len; i++) {
        char c = name[i];
        if (!wire_alnum(c) && c != '_' && c != '.' && c != '-')
            return false;
    }
    return true;
}

bool wire_uuid_valid(const char *uuid)
{
    size_t len;

    if (!uuid)
        return false;
    len = strnlen(uuid, BIM_UUID_MAX + 1);
    if (len < 1 || len > BIM_UUID_MAX)
        return false;
    for (size_t i = 0; i < len; i++) {
        if (!wire_alnum(uuid[i]) && uuid[i] != '-')
            return false;
    }
    return true;
}

static bool wire_port_valid(const char *p, size_t len)
{
    unsigned long port = 0;

    if (len == 0 || len > 5)
        return false;
    for (size_t i = 0; i < len; i++) {
        if (p[i] < '0' || p[i] > '9')
            return false;
        port = port * 10 + (unsigned long)(p[i] - '0');
    }
    return port >= 1 && port <= 65535;
}

bool wire_peer_valid(const char *peer)
{
    size_t len = strlen(peer);
    const char *colon;

    if (len == 0 || len > BIM_PEER_ADDR_MAX)
        return false;
    if (peer[0] == '[') {
        const char *close = strchr(peer, ']');
        if (!close || close == peer + 1 || close[1] != ':')
            return false;
        for (const char *p = peer + 1; p < close; p++) {
            if (!strchr("0123456789abcdefABCDEF:.", *p))
                return false;
        }
        colon = close + 1;
    } else {
        colon = strrchr(peer, ':');
        if (!colon || colon == peer)
            return false;
        for (const char *p = peer; p < colon; p++) {
            if (!strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_", *p))
                return false;
        }
    }
    return wire_port_valid(colon + 1, strlen(colon + 1));
}

int wire_name_check(const char *name, struct bim_error *err)
{
    if (wire_name_valid(name))
        return 0;
    if (!name)
        name = "";
    if (strlen(name) > BIM_NAME_MAX)
        return bim_error_set(err, -EINVAL, "%.64s...: invalid name: longer than %d bytes", name,
                             BIM_NAME_MAX);
    return bim_error_set(err, -EINVAL,
                         "%s: invalid name: must match ^[a-zA-Z0-9][a-zA-Z0-9_.-]+$ "
                         "(at most %d bytes)",
                         name, BIM_NAME_MAX);
}

int wire_uuid_check(const char *uuid, struct bim_error *err)
{
    if (wire_uuid_valid(uuid))
        return 0;
    if (!uuid)
        uuid = "";
    return bim_error_set(err, -EINVAL, "invalid uuid \"%.64s%s\": must match ^[a-zA-Z0-9-]{1,64}$",
                         uuid, strlen(uuid) > BIM_UUID_MAX ? "..." : "");
}

int wire_peer_check(const char *peer, struct bim_error *err)
{
    if (wire_peer_valid(peer))
        return 0;
    return bim_error_set(err, -EINVAL, "invalid peer address \"%.64s\": expected host:port", peer);
}
