/*
 * log_syslog.c - the syslog sink of log_msg(), for a daemon in the
 * background (its stderr is /dev/null then). A file of its own because
 * <syslog.h> defines LOG_DEBUG and LOG_INFO, names common.h uses for its
 * levels.
 *
 * Threads: openlog() once, when the daemon is up (other threads run then:
 * glibc's openlog() and syslog() take the same internal lock).
 */
#include "log_syslog.h"

#include <syslog.h>

void log_syslog_open(void)
{
    openlog("bimfs", LOG_PID | LOG_NDELAY, LOG_DAEMON);
}

void log_syslog_write(int level, const char *line)
{
    static const int priorities[] = {LOG_DEBUG, LOG_INFO, LOG_WARNING, LOG_ERR};

    if (level < 0 || level > 3)
        level = 3;
    syslog(priorities[level], "%s", line);
}
