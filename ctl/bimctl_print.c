/*
 * bimctl_print.c - how bimctl shows images (docs/man/bimctl.1): the `list`
 * table, the `get` view, the one-line status of `watch` and `create`,
 * human-readable sizes, the --wait progress bar, and error lines.
 *
 * Threads: bimctl is single-threaded.
 */
#include "protocol.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *bimctl_str(json_t *obj, const char *key)
{
    const char *s = json_string_value(json_object_get(obj, key));

    return s ? s : "";
}

static uint64_t bimctl_u64(json_t *obj, const char *key)
{
    json_int_t v = json_integer_value(json_object_get(obj, key));

    return v > 0 ? (uint64_t)v : 0;
}

/* An empty value shows as "-". */
static const char *bimctl_or_dash(const char *s)
{
    return s[0] ? s : "-";
}

void bimctl_size_format(uint64_t bytes, char *out, size_t outlen)
{
    static const char units[] = "KMGTPE";
    double v = (double)bytes;
    int u = -1;

    if (bytes < 1024) {
        snprintf(out, outlen, "%" PRIu64 "B", bytes);
        return;
    }
    while (v >= 1024 && u < 5) {
        v /= 1024;
        u++;
    }
    snprintf(out, outlen, "%.1f%c", v, units[u]);
}

void bimctl_status_line(FILE *out, const char *event, json_t *image)
{
    json_t *status = json_object_get(image, "status");
    const char *error = bimctl_str(status, "errorMsg");

    if (event)
        fprintf(out, "%s ", event);
    fprintf(out, "%s %s %d%% uuid=%s", bimctl_str(image, "name"), bimctl_str(status, "state"),
            (int)bimctl_u64(status, "progress"), bimctl_str(image, "uuid"));
    if (error[0])
        fprintf(out, " error: %s", error);
    fputc('\n', out);
    fflush(out);
}

/* ---- list ---- */

enum { BIMCTL_COLUMNS = 7 };

static void bimctl_row_fill(json_t *image, char cells[BIMCTL_COLUMNS][64], const char *text[])
{
    json_t *status = json_object_get(image, "status");
    uint64_t size = bimctl_u64(image, "size");

    text[0] = bimctl_str(image, "name");
    text[1] = bimctl_str(image, "uuid");
    text[2] = bimctl_or_dash(bimctl_str(status, "state"));
    snprintf(cells[3], sizeof(cells[3]), "%d%%", (int)bimctl_u64(status, "progress"));
    text[3] = cells[3];
    if (size)
        bimctl_size_format(size, cells[4], sizeof(cells[4]));
    else
        snprintf(cells[4], sizeof(cells[4]), "-");
    text[4] = cells[4];
    text[5] = bimctl_or_dash(bimctl_str(image, "format"));
    text[6] = bimctl_or_dash(bimctl_str(image, "source"));
}

void bimctl_table_print(FILE *out, json_t *map)
{
    static const char *const header[BIMCTL_COLUMNS] = {"NAME", "UUID",   "STATE", "PROGRESS",
                                                       "SIZE", "FORMAT", "SOURCE"};
    size_t width[BIMCTL_COLUMNS];
    char cells[BIMCTL_COLUMNS][64];
    const char *text[BIMCTL_COLUMNS];
    const char *key;
    json_t *image;

    for (int c = 0; c < BIMCTL_COLUMNS; c++)
        width[c] = strlen(header[c]);
    json_object_foreach(map, key, image)
    {
        bimctl_row_fill(image, cells, text);
        for (int c = 0; c < BIMCTL_COLUMNS; c++) {
            if (strlen(text[c]) > width[c])
                width[c] = strlen(text[c]);
        }
    }
    for (int c = 0; c < BIMCTL_COLUMNS - 1; c++)
        fprintf(out, "%-*s  ", (int)width[c], header[c]);
    fprintf(out, "%s\n", header[BIMCTL_COLUMNS - 1]);
    json_object_foreach(map, key, image)
    {
        bimctl_row_fill(image, cells, text);
        for (int c = 0; c < BIMCTL_COLUMNS - 1; c++)
            fprintf(out, "%-*s  ", (int)width[c], text[c]);
        fprintf(out, "%s\n", text[BIMCTL_COLUMNS - 1]);
    }
}

/* ---- get ---- */

static void bimctl_size_field(FILE *out, const char *label, uint64_t bytes)
{
    char human[32];

    bimctl_size_format(bytes, human, sizeof(human));
    if (bytes >= 1024)
        fprintf(out, "%-19s%" PRIu64 " (%s)\n", label, bytes, human);
    else
        fprintf(out, "%-19s%" PRIu64 "\n", label, bytes);
}

void bimctl_image_print(FILE *out, json_t *image)
{
    json_t *status = json_object_get(image, "status");

    fprintf(out, "%-19s%s\n", "name:", bimctl_str(image, "name"));
    fprintf(out, "%-19s%s\n", "uuid:", bimctl_str(image, "uuid"));
    fprintf(out, "%-19s%s\n", "state:", bimctl_str(status, "state"));
    fprintf(out, "%-19s%d%%\n", "progress:", (int)bimctl_u64(status, "progress"));
    bimctl_size_field(out, "size:", bimctl_u64(image, "size"));
    bimctl_size_field(out, "virtual size:", bimctl_u64(image, "virtualSize"));
    bimctl_size_field(out, "real size:", bimctl_u64(image, "realSize"));
    fprintf(out, "%-19s%s\n", "format:", bimctl_or_dash(bimctl_str(image, "format")));
    fprintf(out, "%-19s%s\n", "source:", bimctl_or_dash(bimctl_str(image, "source")));
    fprintf(out, "%-19s%s\n",
            "expected checksum:", bimctl_or_dash(bimctl_str(image, "expectedChecksum")));
    fprintf(out, "%-19s%s\n", "checksum:", bimctl_or_dash(bimctl_str(status, "currentChecksum")));
    fprintf(out, "%-19s%s\n", "error:", bimctl_or_dash(bimctl_str(status, "errorMsg")));
    fprintf(out, "%-19s%" PRIu64 "\n",
            "sending reference:", bimctl_u64(status, "sendingReference"));
    fprintf(out, "%-19s%s\n",
            "sender:", bimctl_or_dash(bimctl_str(status, "senderManagerAddress")));
}

/* ---- progress bar (a terminal on stderr only) ---- */

void bimctl_progress_draw(FILE *out, json_t *image)
{
    enum { BAR = 30 };
    json_t *status = json_object_get(image, "status");
    int progress = (int)bimctl_u64(status, "progress");
    uint64_t done = bimctl_u64(status, "bytesDone"), total = bimctl_u64(status, "bytesTotal");
    char bar[BAR + 1], d[32], t[32], r[32];
    int filled = (progress > 100 ? 100 : progress) * BAR / 100;

    memset(bar, '#', (size_t)filled);
    memset(bar + filled, '-', (size_t)(BAR - filled));
    bar[BAR] = '\0';
    bimctl_size_format(done, d, sizeof(d));
    bimctl_size_format(total, t, sizeof(t));
    bimctl_size_format(bimctl_u64(status, "rate"), r, sizeof(r));
    fprintf(out, "\r\033[K%s %-11s [%s] %3d%%", bimctl_str(image, "name"),
            bimctl_str(status, "state"), bar, progress);
    if (total)
        fprintf(out, " %s/%s", d, t);
    if (bimctl_u64(status, "rate"))
        fprintf(out, " %s/s", r);
    fflush(out);
}

void bimctl_progress_clear(FILE *out)
{
    fputs("\r\033[K", out);
    fflush(out);
}

/* ---- errors ---- */

/* "bimctl: <name>: <message>", or "bimctl: <message>" for a command that names no image. */
void bimctl_reportf(const char *name, const char *fmt, ...)
{
    va_list ap;

    fputs("bimctl: ", stderr);
    if (name)
        fprintf(stderr, "%s: ", name);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

/*
 * The daemon's messages already start with the name, or, for a name too long
 * to be valid, with its first bytes and "..." (ctl/request.c): report the rest
 * so that the name appears once.
 */
void bimctl_report(const char *name, const char *message)
{
    size_t n = name ? strlen(name) : 0;
    const char *cut = name ? strstr(message, "...: ") : NULL;

    if (name && strncmp(message, name, n) == 0 && message[n] == ':')
        message += n + 1 + (message[n + 1] == ' ');
    else if (cut && cut > message && (size_t)(cut - message) < n &&
             strncmp(message, name, (size_t)(cut - message)) == 0)
        message = cut + strlen("...: ");
    bimctl_reportf(name, "%s", message);
}
