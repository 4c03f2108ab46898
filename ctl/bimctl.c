/*
 * bimctl.c - the command line client of the control socket (SPEC §7,
 * docs/man/bimctl.1): parse the command, send its request, print the result.
 *
 * Exit status: 0 ok, 1 the daemon refused or the image failed, 2 usage,
 * 3 no daemon at the socket.
 *
 * Threads: single-threaded.
 */
#include "bimctl.h"
#include "version.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char bimctl_usage_text[] =
    "Usage: bimctl [-s SOCKET] COMMAND [ARGS]\n"
    "\n"
    "Talk to a running bimfs daemon over its control socket.\n"
    "\n"
    "Commands:\n"
    "  list [--json]           list every image (a table, or JSON: a map name -> image)\n"
    "  get NAME [--json]       show one image\n"
    "  create NAME (--url URL | --file PATH | --clone NAME | --restore URL) [--uuid U]\n"
    "         [--checksum SUM] [--wait]\n"
    "                          create an image: download URL (http or https), upload the\n"
    "                          local file PATH, copy the ready image NAME, or restore the\n"
    "                          backup URL (TARGET?backingImage=NAME, TARGET vfs:///path,\n"
    "                          nfs://server:/export or s3://bucket@region/prefix/)\n"
    "  sync NAME --uuid U --from HOST:PORT[,HOST:PORT...] [--size N] [--checksum SUM] [--wait]\n"
    "                          fetch an image from other managers\n"
    "  delete NAME             cancel any transfer and delete the image and its data\n"
    "  watch [NAME]            print one line per change of image NAME (or of all):\n"
    "                          EVENT NAME STATE PROGRESS% uuid=UUID [error: MESSAGE]\n"
    "  backup NAME --to TARGET [--compression lz4|gzip|none] [--label K=V]... [--wait]\n"
    "                          back the ready image NAME up to TARGET (vfs:///PATH,\n"
    "                          nfs://SERVER:/EXPORT or s3://BUCKET@REGION/PREFIX/)\n"
    "  backup-status NAME [--json]\n"
    "                          the last backup of NAME: state, progress, error\n"
    "  backups TARGET [--json] list the backups TARGET holds\n"
    "  version                 print the versions of bimctl and of the daemon\n"
    "  help                    print this help\n"
    "\n"
    "Options:\n"
    "  -s, --socket SOCKET     the control socket (default: $BIMFS_SOCKET, then\n"
    "                          " CTL_SOCKET_DEFAULT ")\n"
    "  -h, --help              print this help\n"
    "  --json                  print the daemon's JSON instead of a table\n"
    "  --uuid U                the image's uuid (create: generated when omitted)\n"
    "  --checksum SUM          expected checksum: 128 hex digits or sha512:HEX (SHA-512),\n"
    "                          or sha256:HEX\n"
    "  --size N                the image's size in bytes, if known\n"
    "  --to TARGET             backup: the backup target\n"
    "  --compression C         backup: lz4 (default), gzip or none\n"
    "  --label K=V             backup: a label kept with the backup (repeatable)\n"
    "  --wait                  return when the image is ready (exit 0) or failed (exit 1),\n"
    "                          or the backup complete (0) or in error (1), with a\n"
    "                          progress bar when stderr is a terminal\n"
    "\n"
    "Exit status: 0 ok, 1 the daemon refused or the image failed, 2 usage error,\n"
    "3 no daemon at the socket.\n";

int bimctl_usage_error(const char *fmt, ...)
{
    va_list ap;

    fputs("bimctl: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputs("\nTry 'bimctl --help'.\n", stderr);
    return EXIT_USAGE;
}

int bimctl_connect(const struct bimctl_args *a, struct ctl_client *client)
{
    int rc = ctl_client_connect(client, a->socket);

    if (rc) {
        bimctl_reportf(a->name, "cannot connect to %s: %s", a->socket, strerror(-rc));
        return EXIT_NO_DAEMON;
    }
    return 0;
}

/* Send request (consumed) and take its result; errors are printed. */
int bimctl_call(struct ctl_client *client, const char *name, json_t *request, int pass_fd,
                json_t **result)
{
    struct bim_error err = {0};
    struct ctl_reply reply;
    int rc;

    *result = NULL;
    if (!request) {
        bimctl_reportf(name, "out of memory");
        return EXIT_REFUSED;
    }
    rc = ctl_client_call(client, request, pass_fd, &reply, &err);
    json_decref(request);
    if (rc) {
        bimctl_reportf(name, "%s", err.message);
        return EXIT_REFUSED;
    }
    if (!reply.ok) {
        bimctl_report(name, reply.message);
        ctl_reply_clear(&reply);
        return EXIT_REFUSED;
    }
    *result = json_incref(reply.result);
    ctl_reply_clear(&reply);
    return 0;
}

/* Connect, call, close: for one-shot commands. */
int bimctl_call_once(const struct bimctl_args *a, json_t *request, json_t **result)
{
    struct ctl_client client;
    int rc;

    *result = NULL; /* also when there is no daemon: callers decref it */
    rc = bimctl_connect(a, &client);

    if (rc) {
        json_decref(request);
        return rc;
    }
    rc = bimctl_call(&client, a->name, request, -1, result);
    ctl_client_close(&client);
    return rc;
}

void bimctl_json_print(json_t *value)
{
    json_dumpf(value, stdout, JSON_INDENT(2));
    putchar('\n');
}

static const char *bimctl_field(json_t *obj, const char *key)
{
    const char *s = json_string_value(json_object_get(obj, key));

    return s ? s : "";
}

/* An image object of a reply or an event, read with the wire codec (the
 * daemon wrote it with the same code); a failure is printed. */
static int bimctl_image_read(const char *name, json_t *value, struct wire_image *out)
{
    struct bim_error err = {0};

    if (wire_image_from_json(value, out, &err) == 0)
        return 0;
    bimctl_reportf(name, "the daemon sent an image bimctl cannot read: %s", err.message);
    return EXIT_REFUSED;
}

/* ---- --wait ---- */

/*
 * Follow the image (created moments ago, after watch was opened on its name)
 * until it is ready or failed. current is the create reply's state; it is
 * updated with every event of the image.
 */
static int bimctl_wait(struct ctl_client *watch, const char *name, struct wire_image *current)
{
    bool bar = isatty(STDERR_FILENO);
    char uuid[BIM_UUID_MAX + 1];
    struct wire_image next;
    int status;

    str_copy(uuid, sizeof(uuid), current->uuid);
    for (;;) {
        const char *state = current->status.state;
        struct bim_error err = {0};
        json_t *event;
        int rc;

        if (strcmp(state, "ready") == 0 || strcmp(state, "failed") == 0) {
            if (bar)
                bimctl_progress_clear(stderr);
            if (strcmp(state, "ready") == 0) {
                bimctl_status_line(stdout, NULL, current);
                status = 0;
            } else {
                const char *msg = current->status.error;
                bimctl_report(name, msg[0] ? msg : "the image failed");
                status = EXIT_REFUSED;
            }
            break;
        }
        if (bar)
            bimctl_progress_draw(stderr, current);
        rc = ctl_client_event(watch, &event, &err);
        if (rc <= 0) {
            if (bar)
                bimctl_progress_clear(stderr);
            bimctl_reportf(name, "%s", rc ? err.message : "the daemon closed the connection");
            status = EXIT_REFUSED;
            break;
        }
        rc = bimctl_image_read(name, json_object_get(event, "image"), &next);
        if (rc == 0 && strcmp(next.uuid, uuid) == 0) {
            if (strcmp(bimctl_field(event, "event"), "delete") == 0) {
                if (bar)
                    bimctl_progress_clear(stderr);
                bimctl_report(name, "the image was deleted while waiting");
                rc = EXIT_REFUSED;
            } else {
                *current = next;
            }
        }
        json_decref(event);
        if (rc) {
            status = rc;
            break;
        }
    }
    return status;
}

/* Send a create or sync request; with --wait, watch the name first. */
static int bimctl_create_send(const struct bimctl_args *a, json_t *request, int pass_fd)
{
    struct ctl_client client, watch = {.fd = -1};
    json_t *image = NULL, *ignored = NULL;
    struct wire_image current;
    int rc;

    rc = bimctl_connect(a, &client);
    if (rc) {
        json_decref(request);
        return rc;
    }
    if (a->seen & OPT_WAIT) {
        rc = bimctl_connect(a, &watch);
        if (!rc)
            rc = bimctl_call(&watch, a->name,
                             json_pack("{s:s, s:s}", "op", "watch", "name", a->name), -1, &ignored);
        json_decref(ignored);
        if (rc) {
            json_decref(request);
            goto out;
        }
    }
    rc = bimctl_call(&client, a->name, request, pass_fd, &image);
    if (!rc)
        rc = bimctl_image_read(a->name, image, &current);
    if (rc)
        goto out;
    if (a->seen & OPT_WAIT)
        rc = bimctl_wait(&watch, a->name, &current);
    else
        bimctl_status_line(stdout, NULL, &current);
out:
    json_decref(image);
    ctl_client_close(&watch);
    ctl_client_close(&client);
    return rc;
}

/* ---- commands ---- */

static int bimctl_cmd_list(const struct bimctl_args *a)
{
    struct wire_image *images = NULL;
    size_t count = 0;
    const char *key;
    json_t *map, *value;
    int rc = bimctl_call_once(a, json_pack("{s:s}", "op", "list"), &map);

    if (rc)
        return rc;
    if (a->seen & OPT_JSON) {
        bimctl_json_print(map);
        goto out;
    }
    if (!json_is_object(map)) {
        bimctl_reportf(NULL, "the daemon's list is not a JSON object");
        rc = EXIT_REFUSED;
        goto out;
    }
    images = calloc(json_object_size(map) + 1, sizeof(*images));
    if (!images) {
        bimctl_reportf(NULL, "out of memory");
        rc = EXIT_REFUSED;
        goto out;
    }
    json_object_foreach(map, key, value)
    {
        rc = bimctl_image_read(key, value, &images[count++]);
        if (rc)
            goto out;
    }
    bimctl_table_print(stdout, images, count);
out:
    free(images);
    json_decref(map);
    return rc;
}

static int bimctl_cmd_get(const struct bimctl_args *a)
{
    json_t *image;
    int rc = bimctl_call_once(a, json_pack("{s:s, s:s}", "op", "get", "name", a->name), &image);

    if (rc)
        return rc;
    if (a->seen & OPT_JSON) {
        bimctl_json_print(image);
    } else {
        struct wire_image decoded;

        rc = bimctl_image_read(a->name, image, &decoded);
        if (!rc)
            bimctl_image_print(stdout, &decoded);
    }
    json_decref(image);
    return rc;
}

/* Set the optional fields shared by create and sync. */
static json_t *bimctl_request_optional(const struct bimctl_args *a, json_t *request)
{
    if (request && a->uuid && json_object_set_new(request, "uuid", json_string(a->uuid)))
        goto fail;
    if (request && a->checksum &&
        json_object_set_new(request, "checksum", json_string(a->checksum)))
        goto fail;
    return request;
fail:
    json_decref(request);
    return NULL;
}

static int bimctl_cmd_create(const struct bimctl_args *a)
{
    int sources = !!a->url + !!a->file + !!a->clone + !!a->restore;
    json_t *source, *request;
    struct stat st;
    int fd = -1, rc;

    if (sources != 1)
        return bimctl_usage_error(
            "create: give exactly one of --url, --file, --clone or --restore");
    if (a->url) {
        source = json_pack("{s:s, s:s}", "type", "download", "url", a->url);
    } else if (a->restore) {
        source = json_pack("{s:s, s:s}", "type", "restore", "url", a->restore);
    } else if (a->clone) {
        source = json_pack("{s:s, s:s}", "type", "clone", "from", a->clone);
    } else {
        fd = open(a->file, O_RDONLY | O_CLOEXEC);
        if (fd < 0 || fstat(fd, &st) < 0 || S_ISDIR(st.st_mode)) {
            bimctl_reportf(a->name, "cannot open %s: %s", a->file,
                           strerror(fd < 0 ? errno : EISDIR));
            if (fd >= 0)
                close(fd);
            return EXIT_REFUSED;
        }
        source = json_pack("{s:s}", "type", "upload");
    }
    request = json_pack("{s:s, s:s, s:o}", "op", "create", "name", a->name, "source", source);
    rc = bimctl_create_send(a, bimctl_request_optional(a, request), fd);
    if (fd >= 0)
        close(fd);
    return rc;
}

static int bimctl_cmd_sync(const struct bimctl_args *a)
{
    json_t *from = json_array(), *request;
    const char *p = a->from;
    unsigned long long size = 0;
    char *end;

    if (!a->uuid || !a->from) {
        json_decref(from);
        return bimctl_usage_error("sync: --uuid and --from are required");
    }
    if (a->size) {
        errno = 0;
        size = strtoull(a->size, &end, 10);
        if (errno || end == a->size || *end || a->size[0] == '-') {
            json_decref(from);
            return bimctl_usage_error("sync: --size wants a number of bytes, not \"%s\"", a->size);
        }
    }
    while (from) {
        size_t n = strcspn(p, ",");

        if (n == 0) {
            json_decref(from);
            return bimctl_usage_error("sync: --from wants HOST:PORT[,HOST:PORT...]");
        }
        json_array_append_new(from, json_stringn(p, n));
        if (!p[n])
            break;
        p += n + 1;
    }
    request = json_pack("{s:s, s:s, s:o}", "op", "sync", "name", a->name, "from", from);
    if (request && a->size && json_object_set_new(request, "size", json_integer((json_int_t)size)))
        json_decref(request), request = NULL;
    return bimctl_create_send(a, bimctl_request_optional(a, request), -1);
}

static int bimctl_cmd_delete(const struct bimctl_args *a)
{
    json_t *result;
    int rc = bimctl_call_once(a, json_pack("{s:s, s:s}", "op", "delete", "name", a->name), &result);

    json_decref(result);
    return rc;
}

static int bimctl_cmd_watch(const struct bimctl_args *a)
{
    struct ctl_client client;
    json_t *request = json_pack("{s:s}", "op", "watch"), *ignored = NULL;
    struct bim_error err = {0};
    json_t *event;
    int rc;

    if (request && a->name && json_object_set_new(request, "name", json_string(a->name)))
        json_decref(request), request = NULL;
    rc = bimctl_connect(a, &client);
    if (rc) {
        json_decref(request);
        return rc;
    }
    rc = bimctl_call(&client, a->name, request, -1, &ignored);
    json_decref(ignored);
    while (!rc && (rc = ctl_client_event(&client, &event, &err)) > 0) {
        struct wire_image image;

        rc = bimctl_image_read(a->name, json_object_get(event, "image"), &image);
        if (!rc)
            bimctl_status_line(stdout, bimctl_field(event, "event"), &image);
        json_decref(event);
    }
    if (rc <= 0 && rc != EXIT_REFUSED) {
        bimctl_reportf(a->name, "%s", rc ? err.message : "the daemon closed the connection");
        rc = EXIT_REFUSED;
    }
    ctl_client_close(&client);
    return rc;
}

static int bimctl_cmd_version(const struct bimctl_args *a)
{
    json_t *result;
    int rc;

    printf("bimctl %s\n", BIMFS_VERSION);
    fflush(stdout);
    rc = bimctl_call_once(a, json_pack("{s:s}", "op", "version"), &result);
    if (rc)
        return rc;
    printf("bimfs %s (api %lld)\n", bimctl_field(result, "version"),
           (long long)json_integer_value(json_object_get(result, "api")));
    json_decref(result);
    return 0;
}

static int bimctl_cmd_help(const struct bimctl_args *a)
{
    (void)a;
    fputs(bimctl_usage_text, stdout);
    return 0;
}

/* ---- argument parsing ---- */

struct bimctl_command {
    const char *name;
    unsigned options;
    int min_args, max_args;
    int (*run)(const struct bimctl_args *a);
};

static const struct bimctl_command bimctl_commands[] = {
    {"list", OPT_JSON, 0, 0, bimctl_cmd_list},
    {"get", OPT_JSON, 1, 1, bimctl_cmd_get},
    {"create", OPT_URL | OPT_FILE | OPT_CLONE | OPT_RESTORE | OPT_UUID | OPT_CHECKSUM | OPT_WAIT, 1,
     1, bimctl_cmd_create},
    {"sync", OPT_UUID | OPT_FROM | OPT_SIZE | OPT_CHECKSUM | OPT_WAIT, 1, 1, bimctl_cmd_sync},
    {"delete", 0, 1, 1, bimctl_cmd_delete},
    {"watch", 0, 0, 1, bimctl_cmd_watch},
    {"backup", OPT_TO | OPT_COMPRESSION | OPT_LABEL | OPT_WAIT, 1, 1, bimctl_cmd_backup},
    {"backup-status", OPT_JSON, 1, 1, bimctl_cmd_backup_status},
    {"backups", OPT_JSON, 1, 1, bimctl_cmd_backups},
    {"version", 0, 0, 0, bimctl_cmd_version},
    {"help", 0, 0, 0, bimctl_cmd_help},
};

static const struct option bimctl_options[] = {
    {"json", no_argument, NULL, OPT_JSON},
    {"wait", no_argument, NULL, OPT_WAIT},
    {"url", required_argument, NULL, OPT_URL},
    {"file", required_argument, NULL, OPT_FILE},
    {"clone", required_argument, NULL, OPT_CLONE},
    {"restore", required_argument, NULL, OPT_RESTORE},
    {"uuid", required_argument, NULL, OPT_UUID},
    {"checksum", required_argument, NULL, OPT_CHECKSUM},
    {"from", required_argument, NULL, OPT_FROM},
    {"size", required_argument, NULL, OPT_SIZE},
    {"to", required_argument, NULL, OPT_TO},
    {"compression", required_argument, NULL, OPT_COMPRESSION},
    {"label", required_argument, NULL, OPT_LABEL},
    {"help", no_argument, NULL, OPT_HELP},
    {NULL, 0, NULL, 0},
};

/*
 * The option getopt_long() just rejected with '?', for the message. A long one
 * (optopt 0, or the value of a long option without a value that was given one)
 * is the argument getopt consumed. A short one is optopt: within a group
 * ("-xyz") optind has not moved past its argument yet.
 */
static const char *bimctl_option_rejected(const struct option *longopts, char **argv,
                                          char shortopt[3])
{
    bool is_long = optopt == 0;

    for (const struct option *o = longopts; o->name && !is_long; o++)
        is_long = o->val == optopt && o->has_arg == no_argument;
    if (is_long)
        return argv[optind - 1];
    shortopt[0] = '-';
    shortopt[1] = (char)optopt;
    shortopt[2] = '\0';
    return shortopt;
}

static const char *bimctl_option_name(int opt)
{
    for (const struct option *o = bimctl_options; o->name; o++) {
        if (o->val == opt)
            return o->name;
    }
    return "?";
}

/* The command's own options and arguments; argv[0] is the command. */
static int bimctl_command_parse(const struct bimctl_command *cmd, int argc, char **argv,
                                struct bimctl_args *a)
{
    char shortopt[3];
    int opt, nargs;

    optind = 0;
    opterr = 0;
    while ((opt = getopt_long(argc, argv, ":h", bimctl_options, NULL)) != -1) {
        if (opt == 'h')
            opt = OPT_HELP;
        if (opt == '?')
            return bimctl_usage_error("%s: unknown option '%s'", cmd->name,
                                      bimctl_option_rejected(bimctl_options, argv, shortopt));
        if (opt == ':')
            return bimctl_usage_error("%s: option '%s' needs a value", cmd->name, argv[optind - 1]);
        if (opt == OPT_HELP) {
            a->seen |= OPT_HELP;
            return 0;
        }
        if (!(cmd->options & (unsigned)opt))
            return bimctl_usage_error("%s: option --%s does not apply", cmd->name,
                                      bimctl_option_name(opt));
        if (opt == OPT_LABEL) {
            if (a->label_count == BIMCTL_LABELS_MAX)
                return bimctl_usage_error("%s: more than %d labels", cmd->name, BIMCTL_LABELS_MAX);
            if (!strchr(optarg, '=') || optarg[0] == '=')
                return bimctl_usage_error("%s: --label wants KEY=VALUE, not \"%s\"", cmd->name,
                                          optarg);
            a->labels[a->label_count++] = optarg;
            a->seen |= OPT_LABEL;
            continue;
        }
        if (a->seen & (unsigned)opt)
            return bimctl_usage_error("%s: option --%s given twice", cmd->name,
                                      bimctl_option_name(opt));
        a->seen |= (unsigned)opt;
        switch (opt) {
        case OPT_URL:
            a->url = optarg;
            break;
        case OPT_FILE:
            a->file = optarg;
            break;
        case OPT_CLONE:
            a->clone = optarg;
            break;
        case OPT_RESTORE:
            a->restore = optarg;
            break;
        case OPT_UUID:
            a->uuid = optarg;
            break;
        case OPT_CHECKSUM:
            a->checksum = optarg;
            break;
        case OPT_FROM:
            a->from = optarg;
            break;
        case OPT_SIZE:
            a->size = optarg;
            break;
        case OPT_TO:
            a->to = optarg;
            break;
        case OPT_COMPRESSION:
            a->compression = optarg;
            break;
        default:
            break;
        }
    }
    nargs = argc - optind;
    if (nargs < cmd->min_args)
        return bimctl_usage_error("%s: missing %s", cmd->name,
                                  cmd->run == bimctl_cmd_backups ? "TARGET" : "NAME");
    if (nargs > cmd->max_args)
        return bimctl_usage_error("%s: unexpected argument '%s'", cmd->name,
                                  argv[optind + cmd->max_args]);
    if (nargs > 0)
        a->name = argv[optind];
    return 0;
}

int main(int argc, char **argv)
{
    static const struct option global[] = {
        {"socket", required_argument, NULL, 's'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    struct bimctl_args a = {0};
    const struct bimctl_command *cmd = NULL;
    const char *env = getenv("BIMFS_SOCKET");
    char shortopt[3];
    int opt, rc;

    a.socket = env && env[0] ? env : CTL_SOCKET_DEFAULT;
    opterr = 0;
    while ((opt = getopt_long(argc, argv, "+:s:h", global, NULL)) != -1) {
        if (opt == 's') {
            a.socket = optarg;
        } else if (opt == 'h') {
            fputs(bimctl_usage_text, stdout);
            return 0;
        } else if (opt == ':') {
            return bimctl_usage_error("option '%s' needs a value", argv[optind - 1]);
        } else {
            return bimctl_usage_error("unknown option '%s'",
                                      bimctl_option_rejected(global, argv, shortopt));
        }
    }
    if (optind >= argc)
        return bimctl_usage_error("missing COMMAND");
    a.command = argv[optind];
    for (size_t i = 0; i < sizeof(bimctl_commands) / sizeof(bimctl_commands[0]); i++) {
        if (strcmp(a.command, bimctl_commands[i].name) == 0)
            cmd = &bimctl_commands[i];
    }
    if (!cmd)
        return bimctl_usage_error("unknown command '%s'", a.command);
    rc = bimctl_command_parse(cmd, argc - optind, argv + optind, &a);
    if (rc)
        return rc;
    if (a.seen & OPT_HELP)
        return bimctl_cmd_help(&a);
    return cmd->run(&a);
}
