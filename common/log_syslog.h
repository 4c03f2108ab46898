/*
 * log_syslog.h - the syslog sink of log_msg() (common.c only).
 */
#ifndef BIMFS_LOG_SYSLOG_H
#define BIMFS_LOG_SYSLOG_H

/* Open the connection to syslog (ident "bimfs", facility daemon). */
void log_syslog_open(void);

/* Send one line (no newline) at level 0 debug .. 3 error. */
void log_syslog_write(int level, const char *line);

#endif
