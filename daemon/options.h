/*
 * options.h - bimfs's command line (SPEC §1): our options are taken out,
 * everything else (FUSE options such as -f, -d, -s, -o X) is left for libfuse.
 * Our options may also come as mount options (-o socket=PATH,...), the form
 * mount.fuse3 passes from mount(8) and /etc/fstab; they are taken out of the
 * -o list and the rest goes to libfuse.
 *
 * Threads: main thread only, before anything starts.
 */
#ifndef BIMFS_OPTIONS_H
#define BIMFS_OPTIONS_H

#include "common.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#define BIMFS_DEFAULT_SOCKET "/run/bimfs/bimfs.sock"
#define BIMFS_DEFAULT_LISTEN "127.0.0.1:8001"
#define BIMFS_DEFAULT_SEND_LIMIT 3
#define BIMFS_DEFAULT_CHECK_INTERVAL 10
#define BIMFS_DEFAULT_STALL_TIMEOUT 60
#define BIMFS_DEFAULT_DOWNLOAD_RETRIES 5
#define BIMFS_DEFAULT_MAX_SIZE (1ull << 40) /* 1 TiB */
#define BIMFS_DEFAULT_SCRUB_INTERVAL 604800 /* a week */
#define BIMFS_DEFAULT_SCRUB_RATE 100        /* MB/s */
#define BIMFS_SCRUB_INTERVAL_MAX 315360000u /* ten years */
#define BIMFS_SCRUB_RATE_MAX 100000u        /* MB/s */

struct options {
    const char *disk;
    const char *mountpoint;
    const char *socket_path;
    const char *listen;
    const char *disk_uuid;  /* NULL: from DISK/longhorn-disk.cfg */
    const char *token_file; /* NULL: no token */
    const char *ca_file;    /* NULL: system bundle */
    const char *verify;     /* "pieces" (NULL too) or "sha512" */
    unsigned send_limit;
    unsigned check_interval_sec;
    unsigned workers;
    unsigned stall_timeout_sec;  /* downloads: retry an attempt without data this long */
    unsigned download_retries;   /* downloads: retries in a row without new data */
    uint64_t max_size;           /* largest image accepted, stored bytes */
    unsigned scrub_interval_sec; /* 0: no scrub */
    unsigned scrub_rate_mbps;
    bool foreground;
    bool single_threaded;
    bool debug;
    bool help;
    bool version;
    /* what libfuse gets: argv[0] and the FUSE options, NULL-terminated */
    int fuse_argc;
    char **fuse_argv;
    /* copies of -o lists that values and fuse_argv point into */
    char **owned;
    int nowned;
};

/* Parse argv. -EINVAL with a one-line message on a usage error. */
int options_parse(int argc, char **argv, struct options *opts, struct bim_error *err);
void options_free(struct options *opts);
void options_usage(FILE *out);

#endif
