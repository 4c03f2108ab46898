/*
 * bimctl.h - the private header of bimctl (bimctl.c: commands on images and
 * the argument parser; bimctl_backup.c: the backup commands): the parsed
 * arguments and the calls every command makes.
 *
 * Threads: single-threaded.
 */
#ifndef BIMFS_BIMCTL_H
#define BIMFS_BIMCTL_H

#include "protocol.h"

#define BIMCTL_LABELS_MAX 64 /* --label options of one backup */

enum {
    EXIT_REFUSED = 1,
    EXIT_USAGE = 2,
    EXIT_NO_DAEMON = 3,
};

enum {
    OPT_JSON = 1 << 0,
    OPT_WAIT = 1 << 1,
    OPT_URL = 1 << 2,
    OPT_FILE = 1 << 3,
    OPT_CLONE = 1 << 4,
    OPT_UUID = 1 << 5,
    OPT_CHECKSUM = 1 << 6,
    OPT_FROM = 1 << 7,
    OPT_SIZE = 1 << 8,
    OPT_HELP = 1 << 9,
    OPT_TO = 1 << 10,
    OPT_COMPRESSION = 1 << 11,
    OPT_LABEL = 1 << 12,
    OPT_RESTORE = 1 << 13,
};

struct bimctl_args {
    const char *socket;
    const char *command;
    unsigned seen;
    const char *name; /* the positional NAME, if any */
    const char *url, *file, *clone, *restore, *uuid, *checksum, *from, *size;
    const char *to, *compression;          /* backup */
    const char *labels[BIMCTL_LABELS_MAX]; /* backup: K=V, as given */
    size_t label_count;
};

/* "bimctl: <message>" and the hint to --help on stderr; EXIT_USAGE. */
int bimctl_usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Connect to the daemon; EXIT_NO_DAEMON (reported) when there is none. */
int bimctl_connect(const struct bimctl_args *a, struct ctl_client *client);

/* Send request (consumed) and take its result; errors are printed and are
 * EXIT_REFUSED. */
int bimctl_call(struct ctl_client *client, const char *name, json_t *request, int pass_fd,
                json_t **result);

/* Connect, call, close: for one-shot commands. */
int bimctl_call_once(const struct bimctl_args *a, json_t *request, json_t **result);

/* The daemon's JSON, indented, on stdout. */
void bimctl_json_print(json_t *value);

/* ---- bimctl_backup.c ---- */

int bimctl_cmd_backup(const struct bimctl_args *a);
int bimctl_cmd_backup_status(const struct bimctl_args *a);
int bimctl_cmd_backups(const struct bimctl_args *a);

#endif
