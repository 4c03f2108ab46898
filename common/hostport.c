/*
 * hostport.c - HOST:PORT and [V6]:PORT as --listen and the peer lists
 * spell them (SPEC §1, §9).
 *
 * Threads: any; no state.
 */
#include "common.h"

#include <errno.h>
#include <string.h>

int hostport_split(const char *hostport, char *host, size_t hostlen, const char **port)
{
    const char *colon;
    size_t len;

    if (hostport[0] == '[') {
        const char *close = strchr(hostport, ']');
        if (!close || close[1] != ':')
            return -EINVAL;
        len = (size_t)(close - hostport - 1);
        if (len == 0 || len >= hostlen)
            return -EINVAL;
        memcpy(host, hostport + 1, len);
        colon = close + 1;
    } else {
        colon = strrchr(hostport, ':');
        if (!colon)
            return -EINVAL;
        len = (size_t)(colon - hostport);
        if (len == 0 || len >= hostlen)
            return -EINVAL;
        memcpy(host, hostport, len);
    }
    host[len] = '\0';
    *port = colon + 1;
    if (!**port || strspn(*port, "0123456789") != strlen(*port) || strlen(*port) > 5)
        return -EINVAL;
    return 0;
}
