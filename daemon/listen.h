/*
 * listen.h - bind the HTTP address given with --listen at start, so that a
 * taken port stops bimfs before it mounts (SPEC §1).
 *
 * Threads: main thread only.
 */
#ifndef BIMFS_LISTEN_H
#define BIMFS_LISTEN_H

#include "common.h"

/* Bind and listen on "HOST:PORT" or "[V6]:PORT" (SO_REUSEADDR, CLOEXEC).
 * -EINVAL for a malformed address, -EADDRINUSE when taken, with a message. */
int listen_bind(const char *hostport, int *fd_out, struct bim_error *err);

#endif
