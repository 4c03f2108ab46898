/*
 * options.c - parse bimfs's command line.
 *
 * Threads: main thread only.
 */
#include <stdio.h>

#include "options.h"

#include <errno.h>
#include <stdbool.h>
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
            "  --verify MODE          how a peer sync proves its bytes: pieces (every piece\n"
            "                         checked against the first source's digests; the\n"
            "                         default) or sha512 (the whole image hashed as well)\n"
            "  --stall-timeout SEC    retry a download that received nothing this long\n"
            "                         (default 60); one without any data for SEC + 40 s\n"
            "                         over all its attempts fails\n"
            "  --download-retries N   retries of a download that bring no new data before\n"
            "                         it fails (default 5)\n"
            "  --scrub-interval SEC   re-compute the SHA-512 of every ready image at least\n"
            "                         this often (images verified by pieces first, at\n"
            "                         once); 0: never (default 604800, a week)\n"
            "  --scrub-rate MBPS      read rate of the scrub in MB/s (default 100)\n"
            "  --check-interval SEC   how often ready files are checked for changes (default 10)\n"
            "  --workers N            concurrent transfers (default 2)\n"
            "  -f                     stay in the foreground (logs on stderr; in the\n"
            "                         background they go to syslog)\n"
            "  -d                     debug output (implies -f)\n"
            "  -s                     single-threaded FUSE loop\n"
            "  -o OPT[,OPT...]        mount options: every option above as NAME=VALUE\n"
            "                         (-o socket=PATH,listen=HOST:PORT; '_' may stand\n"
            "                         for '-'), the rest FUSE's (e.g. allow_other);\n"
            "                         so mount -t fuse.bimfs and /etc/fstab work\n"
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
    if (!strcmp(name, "--verify"))
        return &opts->verify;
    if (!strcmp(name, "--send-limit") || !strcmp(name, "--check-interval") ||
        !strcmp(name, "--workers") || !strcmp(name, "--stall-timeout") ||
        !strcmp(name, "--download-retries") || !strcmp(name, "--max-size") ||
        !strcmp(name, "--scrub-interval") || !strcmp(name, "--scrub-rate"))
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
    if (!strcmp(name, "--scrub-interval"))
        return parse_unsigned(name, value, 0, BIMFS_SCRUB_INTERVAL_MAX, &opts->scrub_interval_sec,
                              err);
    if (!strcmp(name, "--scrub-rate"))
        return parse_unsigned(name, value, 1, BIMFS_SCRUB_RATE_MAX, &opts->scrub_rate_mbps, err);
    if (!strcmp(name, "--verify") && strcmp(value, "pieces") != 0 && strcmp(value, "sha512") != 0)
        return bim_error_set(err, -EINVAL, "--verify: \"%.64s\" is not pieces or sha512", value);
    if (!value[0])
        return bim_error_set(err, -EINVAL, "%s needs a non-empty value", name);
    *slot = value;
    return 0;
}

/* The name of one of our options as a mount option ("socket", "send-limit"
 * or "send_limit") in its command-line form ("--socket"); false if it is not
 * ours (then it is a FUSE option). */
static bool mount_option_name(struct options *opts, const char *name, size_t len, char *out,
                              size_t outlen)
{
    if (len == 0 || len + 3 > outlen)
        return false;
    memcpy(out, "--", 2);
    for (size_t i = 0; i < len; i++)
        out[2 + i] = name[i] == '_' ? '-' : name[i];
    out[2 + len] = '\0';
    return option_slot(opts, out) != NULL;
}

/*
 * One -o value: a comma-separated list. Our options ("socket=PATH",
 * "listen=HOST:PORT", ...) are taken as if given as --name VALUE, so that
 * mount(8) and fstab lines work through mount.fuse3; the rest is handed to
 * libfuse as one -o. The copy the values point into lives until
 * options_free().
 */
static int options_take_mount_list(struct options *opts, const char *list, struct bim_error *err)
{
    char *copy = strdup(list);
    char *fuse_list = malloc(strlen(list) + 1);
    char *item, *next;
    size_t fuse_len = 0;
    int rc = 0;

    if (!copy || !fuse_list) {
        rc = bim_error_set(err, -ENOMEM, "out of memory");
        goto out;
    }
    opts->owned[opts->nowned++] = copy;
    for (item = copy; item; item = next) {
        char name[64];
        char *eq = strchr(item, '=');
        size_t len;

        next = strchr(item, ',');
        if (next)
            *next++ = '\0';
        len = eq ? (size_t)(eq - item) : strlen(item);
        if (!mount_option_name(opts, item, len, name, sizeof(name))) {
            if (item[0]) {
                if (fuse_len)
                    fuse_list[fuse_len++] = ',';
                memcpy(fuse_list + fuse_len, item, strlen(item));
                fuse_len += strlen(item);
            }
            continue;
        }
        if (!eq) {
            rc = bim_error_set(err, -EINVAL, "-o %s needs a value (-o %s=VALUE)", item, item);
            goto out;
        }
        rc = option_take(opts, name, eq + 1, err);
        if (rc)
            goto out;
    }
    if (fuse_len) {
        fuse_list[fuse_len] = '\0';
        opts->owned[opts->nowned++] = fuse_list;
        opts->fuse_argv[opts->fuse_argc++] = "-o";
        opts->fuse_argv[opts->fuse_argc++] = fuse_list;
        fuse_list = NULL;
    }
out:
    free(fuse_list);
    return rc;
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
    opts->scrub_interval_sec = BIMFS_DEFAULT_SCRUB_INTERVAL;
    opts->scrub_rate_mbps = BIMFS_DEFAULT_SCRUB_RATE;
    /* argv[0], then per argument at most two entries ("-oX" becomes "-o" and a
     * list), and the NULL */
    opts->fuse_argv = calloc((size_t)argc * 2 + 2, sizeof(char *));
    opts->owned = calloc((size_t)argc * 2 + 1, sizeof(char *));
    if (!opts->fuse_argv || !opts->owned)
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
            rc = options_take_mount_list(opts, argv[++i], err);
            if (rc)
                goto out;
        } else if (!strncmp(arg, "-o", 2)) {
            rc = options_take_mount_list(opts, arg + 2, err);
            if (rc)
                goto out;
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
    for (int i = 0; opts->owned && i < opts->nowned; i++)
        free(opts->owned[i]);
    free(opts->owned);
    opts->owned = NULL;
    opts->nowned = 0;
    free(opts->fuse_argv);
    opts->fuse_argv = NULL;
}
