/*
 * start.c - going to the background after start-up, and sd_notify.
 *
 * Threads: see start.h. The pipe's write end is only touched by
 * start_ready(); ready is an atomic flag read at shutdown.
 */
#include "start.h"

#include "common.h"

#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

static int start_pipe_fd = -1; /* the child's write end; -1 in the foreground */
static atomic_bool start_ready_done;

/* The parent: wait for the child's byte (ready) or its exit (failed start). */
static void __attribute__((noreturn)) start_parent_wait(pid_t child, int fd)
{
    char byte;
    ssize_t n;
    int status;

    do
        n = read(fd, &byte, 1);
    while (n < 0 && errno == EINTR);
    if (n == 1)
        _exit(0);
    /* the child stopped before it was ready; it printed why */
    while (waitpid(child, &status, 0) < 0) {
        if (errno != EINTR) {
            fprintf(stderr, "bimfs: start-up failed: %s\n", strerror(errno));
            _exit(1);
        }
    }
    if (WIFEXITED(status))
        _exit(WEXITSTATUS(status) ? WEXITSTATUS(status) : 1);
    fprintf(stderr, "bimfs: start-up failed: killed by signal %d\n", WTERMSIG(status));
    _exit(1);
}

int start_detach(void)
{
    int fds[2];
    pid_t pid;

    if (pipe2(fds, O_CLOEXEC) < 0)
        return -errno;
    fflush(NULL);
    pid = fork();
    if (pid < 0) {
        int rc = -errno;
        close(fds[0]);
        close(fds[1]);
        return rc;
    }
    if (pid > 0) {
        close(fds[1]);
        start_parent_wait(pid, fds[0]);
    }
    close(fds[0]);
    start_pipe_fd = fds[1];
    if (setsid() < 0 || chdir("/") < 0)
        log_warn("cannot start a new session: %s", strerror(errno));
    return 0;
}

void start_ready(void)
{
    char byte = 0;
    char status[128];
    int null_fd;

    (void)snprintf(status, sizeof(status), "READY=1\nMAINPID=%ld", (long)getpid());
    int rc = start_notify(status);

    if (rc < 0)
        log_warn("cannot notify the service manager ($NOTIFY_SOCKET): %s", strerror(-rc));
    if (start_pipe_fd >= 0) {
        /* no stderr from here: whoever reads the parent's must see EOF */
        log_use_syslog();
        null_fd = open("/dev/null", O_RDWR | O_CLOEXEC);
        if (null_fd >= 0) {
            dup2(null_fd, STDIN_FILENO);
            dup2(null_fd, STDOUT_FILENO);
            dup2(null_fd, STDERR_FILENO);
            close(null_fd);
        }
        if (write(start_pipe_fd, &byte, 1) != 1)
            log_warn("cannot tell the starting process that bimfs is up: %s", strerror(errno));
        close(start_pipe_fd);
        start_pipe_fd = -1;
    }
    atomic_store(&start_ready_done, true);
}

bool start_is_ready(void)
{
    return atomic_load(&start_ready_done);
}

int start_notify(const char *message)
{
    const char *path = getenv("NOTIFY_SOCKET");
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    socklen_t addrlen;
    size_t len;
    int fd, rc = 0;

    if (!path || !path[0])
        return 0;
    len = strlen(path);
    if ((path[0] != '/' && path[0] != '@') || len >= sizeof(addr.sun_path))
        return -EINVAL;
    memcpy(addr.sun_path, path, len);
    if (path[0] == '@')
        addr.sun_path[0] = '\0'; /* abstract namespace: no terminating NUL */
    addrlen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len + (path[0] == '/'));
    fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    if (sendto(fd, message, strlen(message), MSG_NOSIGNAL, (struct sockaddr *)&addr, addrlen) < 0)
        rc = -errno;
    close(fd);
    return rc;
}
