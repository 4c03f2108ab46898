/*
 * bimctl_backup.c - bimctl's backup commands (SPEC §10, docs/man/bimctl.1):
 * `backup NAME --to TARGET [--compression C] [--label K=V]... [--wait]`,
 * `backup-status NAME` and `backups TARGET`. A backup's progress has no
 * event stream: --wait asks for backup-status ten times a second on one
 * connection until the backup is complete or in error.
 *
 * Threads: single-threaded.
 */
#include "bimctl.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define BIMCTL_BACKUP_POLL_MS 100

/* The status of a reply, read with the wire codec; a failure is printed. */
static int bimctl_backup_read(const char *name, json_t *value, struct wire_backup_status *out)
{
    struct bim_error err = {0};

    if (wire_backup_status_from_json(value, out, &err) == 0)
        return 0;
    bimctl_reportf(name, "the daemon sent a backup status bimctl cannot read: %s", err.message);
    return EXIT_REFUSED;
}

/* "NAME backup STATE PROGRESS% URL[ error: MESSAGE]" */
static void bimctl_backup_line(const char *name, const struct wire_backup_status *st)
{
    printf("%s backup %s %d%% %s", name, st->state, st->progress, st->url);
    if (st->error[0])
        printf(" error: %s", st->error);
    putchar('\n');
    fflush(stdout);
}

static void bimctl_backup_bar(const char *name, const struct wire_backup_status *st)
{
    enum { BAR = 30 };
    char bar[BAR + 1];
    int filled = st->progress * BAR / 100;

    memset(bar, '#', (size_t)filled);
    memset(bar + filled, '-', (size_t)(BAR - filled));
    bar[BAR] = '\0';
    fprintf(stderr, "\r\033[K%s backup %-11s [%s] %3d%%", name, st->state, bar, st->progress);
    fflush(stderr);
}

/* Ask for the status until the backup is complete (0) or in error (1). */
static int bimctl_backup_wait(struct ctl_client *client, const char *name,
                              struct wire_backup_status *st)
{
    bool bar = isatty(STDERR_FILENO);
    struct timespec pause = {0, BIMCTL_BACKUP_POLL_MS * 1000000L};
    json_t *result;
    int rc = 0;

    while (strcmp(st->state, "in_progress") == 0) {
        if (bar)
            bimctl_backup_bar(name, st);
        nanosleep(&pause, NULL);
        rc = bimctl_call(client, name, json_pack("{s:s, s:s}", "op", "backup-status", "name", name),
                         -1, &result);
        if (!rc)
            rc = bimctl_backup_read(name, result, st);
        json_decref(result);
        if (rc)
            break;
    }
    if (bar)
        fputs("\r\033[K", stderr);
    if (rc)
        return rc;
    if (strcmp(st->state, "complete") != 0) {
        bimctl_reportf(name, "backup to %s: %s", st->url,
                       st->error[0] ? st->error : "the backup failed");
        return EXIT_REFUSED;
    }
    bimctl_backup_line(name, st);
    return 0;
}

static json_t *bimctl_backup_request(const struct bimctl_args *a)
{
    json_t *request =
               json_pack("{s:s, s:s, s:s}", "op", "backup", "name", a->name, "target", a->to),
           *labels = a->label_count ? json_object() : NULL;

    for (size_t i = 0; labels && i < a->label_count; i++) {
        const char *eq = strchr(a->labels[i], '=');
        char key[512];

        snprintf(key, sizeof(key), "%.*s", (int)(eq - a->labels[i]), a->labels[i]);
        json_object_set_new(labels, key, json_string(eq + 1));
    }
    if (request && labels && json_object_set_new(request, "labels", labels) < 0)
        labels = NULL;
    else if (!request)
        json_decref(labels);
    if (request && a->compression)
        json_object_set_new(request, "compression", json_string(a->compression));
    return request;
}

int bimctl_cmd_backup(const struct bimctl_args *a)
{
    struct wire_backup_status st;
    struct ctl_client client;
    json_t *result = NULL;
    int rc;

    if (!a->to)
        return bimctl_usage_error("backup: --to TARGET is required");
    rc = bimctl_connect(a, &client);
    if (rc)
        return rc;
    rc = bimctl_call(&client, a->name, bimctl_backup_request(a), -1, &result);
    if (!rc)
        rc = bimctl_backup_read(a->name, result, &st);
    json_decref(result);
    if (!rc && (a->seen & OPT_WAIT))
        rc = bimctl_backup_wait(&client, a->name, &st);
    else if (!rc)
        bimctl_backup_line(a->name, &st);
    ctl_client_close(&client);
    return rc;
}

int bimctl_cmd_backup_status(const struct bimctl_args *a)
{
    struct wire_backup_status st;
    json_t *result;
    int rc = bimctl_call_once(a, json_pack("{s:s, s:s}", "op", "backup-status", "name", a->name),
                              &result);

    if (rc)
        return rc;
    if (a->seen & OPT_JSON)
        bimctl_json_print(result);
    else if ((rc = bimctl_backup_read(a->name, result, &st)) == 0)
        bimctl_backup_line(a->name, &st);
    json_decref(result);
    return rc;
}

static const char *bimctl_text(json_t *obj, const char *key)
{
    const char *s = json_string_value(json_object_get(obj, key));

    return s ? s : "";
}

/* NAME SIZE COMPRESSION COMPLETED (or "in progress") CREATED */
static void bimctl_backups_table(json_t *map)
{
    const char *name;
    json_t *entry;
    char size[32];

    printf("%-32s %8s %-11s %-20s %s\n", "NAME", "SIZE", "COMPRESSION", "COMPLETED", "CREATED");
    json_object_foreach(map, name, entry)
    {
        const char *completed = bimctl_text(entry, "completed");
        json_t *bytes = json_object_get(entry, "size");

        bimctl_size_format(json_is_integer(bytes) ? (uint64_t)json_integer_value(bytes) : 0, size,
                           sizeof(size));
        printf("%-32s %8s %-11s %-20s %s\n", name, size, bimctl_text(entry, "compression"),
               completed[0] ? completed : "(in progress)", bimctl_text(entry, "created"));
    }
}

/* The target as the error lines show it: a URL that may hold credentials
 * (as the daemon sees them, backup/target.c: a ':' before the last '@' up to
 * the query, a vfs:/// path aside) only from its last '@' on. */
static void bimctl_target_shown(const char *url, char *out, size_t len)
{
    const char *rest, *at = NULL, *colon = NULL;

    if (!url) {
        out[0] = '\0';
        return;
    }
    rest = strstr(url, "://");
    snprintf(out, len, "%s", url);
    if (!rest || (strncmp(url, "vfs:///", 7) == 0))
        return;
    for (const char *p = rest + 3; *p && *p != '?' && *p != '#'; p++) {
        if (*p == '@')
            at = p;
        else if (*p == ':' && !colon)
            colon = p;
    }
    if (at && colon && colon < at)
        snprintf(out, len, "%.*s://(credentials not shown)%s", (int)(rest - url), url, at);
}

int bimctl_cmd_backups(const struct bimctl_args *a)
{
    struct bimctl_args shown_args = *a;
    char shown[BIM_URL_MAX + 64];
    json_t *map;
    int rc;

    bimctl_target_shown(a->name, shown, sizeof(shown));
    shown_args.name = shown; /* what error lines name; the request has the URL */
    rc = bimctl_call_once(&shown_args, json_pack("{s:s, s:s}", "op", "backups", "target", a->name),
                          &map);

    if (rc)
        return rc;
    if (a->seen & OPT_JSON) {
        bimctl_json_print(map);
    } else if (!json_is_object(map)) {
        bimctl_reportf(NULL, "the daemon's backups are not a JSON object");
        rc = EXIT_REFUSED;
    } else {
        bimctl_backups_table(map);
    }
    json_decref(map);
    return rc;
}
