/*
 * start.h - how bimfs tells whoever started it that it is up:
 *
 *  - in the background (no -f): start_detach() forks before any thread is
 *    started; the parent waits, and exits 0 only when the child calls
 *    start_ready() (mount answering, socket and HTTP listening), or with the
 *    child's exit status when the child stops before that. So mount(8),
 *    mount.fuse3 and a shell see a failed start in the exit status, with the
 *    child's error on the same stderr.
 *  - under a supervisor: start_notify() sends the sd_notify(3) datagrams
 *    (READY=1, STOPPING=1) to $NOTIFY_SOCKET, the protocol systemd documents
 *    in sd_notify(3) "NOTES": one AF_UNIX datagram of newline-separated
 *    VAR=VALUE lines to the path in $NOTIFY_SOCKET ('@' first: an abstract
 *    socket). No libsystemd needed; nothing happens when it is unset.
 *
 * Threads: start_detach() on the main thread before any other thread exists;
 * start_ready() and start_notify() from any one thread at a time (the
 * readiness thread, then main at shutdown).
 */
#ifndef BIMFS_START_H
#define BIMFS_START_H

#include <stdbool.h>

/* Fork; the parent never returns (it exits as described above). The child
 * returns 0 in a new session, its cwd "/". -errno if fork or pipe fail. */
int start_detach(void);

/* The daemon is up: READY=1 to $NOTIFY_SOCKET and, when detached, stdin,
 * stdout and stderr to /dev/null and logs to syslog, then the parent exits 0. */
void start_ready(void);

/* Whether start_ready() has run. */
bool start_is_ready(void);

/* Send one sd_notify message ("READY=1", "STOPPING=1", "STATUS=...") to
 * $NOTIFY_SOCKET. 0 (also when unset) or -errno. */
int start_notify(const char *message);

#endif
