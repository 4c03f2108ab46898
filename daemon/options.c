/*
 * options.c - parse bimfs's command line.
 *
 * Threads: main thread only.
 */
#include <stdio.h>

#include "options.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

void options_usage(FILE *out)
{
    fprintf(out,
            "usage: bimfs [OPTIONS] DISK MOUNTPOINT\n"
            "\n"
            "Manage the backing images of one disk (DISK/backing-images/) and mount them\n"
            "read-only at MOUNTPOINT: one directory per image, with `backing` and `raw`\n"
            "once ready and the status in user.bim.* extended attributes.\n"
            "\n"
            "options:\n"
            "  --socket PATH          control socket (default " BIMFS_DEFAULT_SOCKET ")\n"
            "  --listen HOST:PORT     HTTP server for peers, uploads, metrics\n"
            "                         (default " BIMFS_DEFAULT_LISTEN ")\n"
            "  --disk-uuid UUID       disk identity (default: diskUUID of DISK/longhorn-disk.cfg)\n"
            "  --token-file FILE      shared secret for HTTP (Authorization: Bearer)\n"
            "  --send-limit N         concurrent outgoing transfers per image (default 3)\n"
            "  --ca-file FILE         extra CA bundle (PEM) trusted for https downloads\n"
            "  --max-size BYTES       largest image accepted from any source, stored bytes;\n"
            "                         K, M, G, T multiply by 1024^n (default 1T)\n"
            "  --stall-timeout SEC    retry a download that received nothing this long\n"
            "                         (default 60); one without any data for SEC + 40 s\n"
            "                         over all its attempts fails\n"
            "  --download-retries N   retries of a download that bring no new data before\n"
            "                         it fails (default 5)\n"
            "  --check-interval SEC   how often ready files are checked for changes (default 10)\n"
            "  --workers N            concurrent transfers (default 2)\n"
            "  -f                     stay in the foreground (logs on stderr; in the\n"
            "                         background they go to syslog)\n"
            "  -d                     debug output (implies -f)\n"
            "  -s                     single-threaded FUSE loop\n"
            "  -o OPT[,OPT...]        FUSE mount options (e.g. allow_other)\n"
            "  -h, --help             this help\n"
            "  -V, --version          print the version\n");
}

static int parse_unsigned(const char *opt, const char *text, unsigned min, unsigned max,
                          unsigned *out, struct bim_error *err)
{
    char *end;
    unsigned long v;

    errno = 0;
    v = strtoul(text, &end, 10);
    if (errno || end == text || *end || text[0] == '-' || v < min || v > max)
        return bim_error_set(err, -EINVAL, "%s: expected a number from %u to %u, got '%s'", opt,
                             min, max, text);
    *out = (unsigned)v;
    return 0;
}

/* BYTES: a decimal number, optionally followed by K, M, G or T (powers of
 * 1024); from 1 to INT64_MAX. */
static int parse_bytes(const char *opt, const char *text, uint64_t *out, struct bim_error *err)
{
    static const char suffixes[] = "KMGT";
    unsigned long long v;
    uint64_t scaled;
    const char *unit;
    char *end;

    errno = 0;
    v = strtoull(text, &end, 10);
    if (errno || end == text || text[0] == '-' || text[0] == '+')
        goto bad;
    scaled = v;
    if (*end) {
        unit = strchr(suffixes, *end);
        if (!unit || end[1])
            goto bad;
        for (long i = 0; i <= unit - suffixes; i++)
            if (!size_mul(scaled, 1024, &scaled))
                goto bad;
    }
    if (scaled == 0 || scaled > (uint64_t)INT64_MAX)
        goto bad;
    *out = scaled;
    return 0;
bad:
    return bim_error_set(err, -EINVAL,
                         "%s: expected a number of bytes (with an optional K, M, G or T), "
                         "got '%s'",
                         opt, text);
}

/* Our options that take a value: where the value goes. */
static const char **option_slot(struct options *opts, const char *name)
{
    static const char *unused;

    if (!strcmp(name, "--socket"))
        return &opts->socket_path;
    if (!strcmp(name, "--listen"))
        return &opts->listen;
    if (!strcmp(name, "--disk-uuid"))
        return &opts->disk_uuid;
    if (!strcmp(name, "--token-file"))
        return &opts->token_file;
    if (!strcmp(name, "--ca-file"))
        return &opts->ca_file;
    if (!strcmp(name, "--send-limit") || !strcmp(name, "--check-interval") ||
        !strcmp(name, "--workers") || !strcmp(name, "--stall-timeout") ||
        !strcmp(name, "--download-retries") || !strcmp(name, "--max-size"))
        return &unused;
    return NULL;
}

static int option_take(struct options *opts, const char *name, const char *value,
                       struct bim_error *err)
{
    const char **slot = option_slot(opts, name);

    if (!strcmp(name, "--send-limit"))
        return parse_unsigned(name, value, 1, 1000, &opts->send_limit, err);
    if (!strcmp(name, "--check-interval"))
        return parse_unsigned(name, value, 1, 86400, &opts->check_interval_sec, err);
    if (!strcmp(name, "--workers"))
        return parse_unsigned(name, value, 1, 64, &opts->workers, err);
    if (!strcmp(name, "--stall-timeout"))
        return parse_unsigned(name, value, 1, 3600, &opts->stall_timeout_sec, err);
    if (!strcmp(name, "--download-retries"))
        return parse_unsigned(name, value, 1, 100, &opts->download_retries, err);
    if (!strcmp(name, "--max-size"))
        return parse_bytes(name, value, &opts->max_size, err);
    if (!value[0])
        return bim_error_set(err, -EINVAL, "%s needs a non-empty value", name);
    *slot = value;
    return 0;
}

int options_parse(int argc, char **argv, struct options *opts, struct bim_error *err)
{
    const char *positional[2];
    int npositional = 0;
    int rc = 0;

    memset(opts, 0, sizeof(*opts));
    opts->socket_path = BIMFS_DEFAULT_SOCKET;
    opts->listen = BIMFS_DEFAULT_LISTEN;
    opts->send_limit = BIMFS_DEFAULT_SEND_LIMIT;
    opts->check_interval_sec = BIMFS_DEFAULT_CHECK_INTERVAL;
    opts->workers = 2;
    opts->stall_timeout_sec = BIMFS_DEFAULT_STALL_TIMEOUT;
    opts->download_retries = BIMFS_DEFAULT_DOWNLOAD_RETRIES;
    opts->max_size = BIMFS_DEFAULT_MAX_SIZE;
    opts->fuse_argv = calloc((size_t)argc + 1, sizeof(char *));
    if (!opts->fuse_argv)
        return bim_error_set(err, -ENOMEM, "out of memory");
    opts->fuse_argv[opts->fuse_argc++] = argv[0];

    for (int i = 1; i < argc; i++) {
        char *arg = argv[i];
        char *eq;

        if (!strcmp(arg, "-h") || !strcmp(arg, "--help")) {
            opts->help = true;
        } else if (!strcmp(arg, "-V") || !strcmp(arg, "--version")) {
            opts->version = true;
        } else if (!strcmp(arg, "-f")) {
            opts->foreground = true;
        } else if (!strcmp(arg, "-d")) {
            opts->debug = true;
            opts->foreground = true;
        } else if (!strcmp(arg, "-s")) {
            opts->single_threaded = true;
        } else if (!strcmp(arg, "-o")) {
            if (i + 1 >= argc) {
                rc = bim_error_set(err, -EINVAL, "-o needs a value");
                goto out;
            }
            opts->fuse_argv[opts->fuse_argc++] = arg;
            opts->fuse_argv[opts->fuse_argc++] = argv[++i];
        } else if (!strncmp(arg, "-o", 2)) {
            opts->fuse_argv[opts->fuse_argc++] = arg;
        } else if (!strncmp(arg, "--", 2) && (eq = strchr(arg, '=')) != NULL) {
            *eq = '\0';
            if (!option_slot(opts, arg)) {
                rc = bim_error_set(err, -EINVAL, "unknown option %s", arg);
                *eq = '=';
                goto out;
            }
            rc = option_take(opts, arg, eq + 1, err);
            *eq = '=';
            if (rc)
                goto out;
        } else if (!strncmp(arg, "--", 2) && option_slot(opts, arg)) {
            if (i + 1 >= argc) {
                rc = bim_error_set(err, -EINVAL, "%s needs a value", arg);
                goto out;
            }
            rc = option_take(opts, arg, argv[++i], err);
            if (rc)
                goto out;
        } else if (arg[0] == '-' && arg[1]) {
            rc = bim_error_set(err, -EINVAL, "unknown option %s (see bimfs --help)", arg);
            goto out;
        } else {
            if (npositional == 2) {
                rc = bim_error_set(err, -EINVAL, "unexpected argument '%s'", arg);
                goto out;
            }
            positional[npositional++] = arg;
        }
    }
    if (opts->help || opts->version)
        goto out;
    if (npositional != 2) {
        rc = bim_error_set(err, -EINVAL, "expected DISK and MOUNTPOINT (see bimfs --help)");
        goto out;
    }
    opts->disk = positional[0];
    opts->mountpoint = positional[1];
out:
    return rc;
}

void options_free(struct options *opts)
{
    free(opts->fuse_argv);
    opts->fuse_argv = NULL;
}
