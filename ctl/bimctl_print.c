/*
 * bimctl_print.c - how bimctl shows images (docs/man/bimctl.1): the `list`
 * table, the `get` view, the one-line status of `watch` and `create`,
 * human-readable sizes, the --wait progress bar, and error lines. Images
 * come decoded by the wire codec (common/wire/wire.h), as the daemon sent
 * them.
 *
 * Threads: bimctl is single-threaded.
 */
#include "protocol.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

void bimctl_status_line(FILE *out, const char *event, const struct wire_image *image)
{
    const struct wire_status *st = &image->status;

    if (event)
        fprintf(out, "%s ", event);
    fprintf(out, "%s %s %d%% uuid=%s", image->name, st->state, st->progress, image->uuid);
    if (st->error[0])
        fprintf(out, " error: %s", st->error);
    fputc('\n', out);
    fflush(out);
}

/* ---- list ---- */

enum { BIMCTL_COLUMNS = 8 };

static void bimctl_row_fill(const struct wire_image *image, char cells[BIMCTL_COLUMNS][64],
                            const char *text[])
{
    text[0] = image->name;
    text[1] = image->uuid;
    text[2] = bimctl_or_dash(image->status.state);
    snprintf(cells[3], sizeof(cells[3]), "%d%%", image->status.progress);
    text[3] = cells[3];
    if (image->size)
        bimctl_size_format(image->size, cells[4], sizeof(cells[4]));
    else
        snprintf(cells[4], sizeof(cells[4]), "-");
    text[4] = cells[4];
    text[5] = bimctl_or_dash(image->format);
    text[6] = bimctl_or_dash(image->status.verified);
    text[7] = bimctl_or_dash(image->source);
}

void bimctl_table_print(FILE *out, const struct wire_image *images, size_t count)
{
    static const char *const header[BIMCTL_COLUMNS] = {"NAME", "UUID",   "STATE",    "PROGRESS",
                                                       "SIZE", "FORMAT", "VERIFIED", "SOURCE"};
    size_t width[BIMCTL_COLUMNS];
    char cells[BIMCTL_COLUMNS][64];
    const char *text[BIMCTL_COLUMNS];

    for (int c = 0; c < BIMCTL_COLUMNS; c++)
        width[c] = strlen(header[c]);
    for (size_t i = 0; i < count; i++) {
        bimctl_row_fill(&images[i], cells, text);
        for (int c = 0; c < BIMCTL_COLUMNS; c++) {
            if (strlen(text[c]) > width[c])
                width[c] = strlen(text[c]);
        }
    }
    for (int c = 0; c < BIMCTL_COLUMNS - 1; c++)
        fprintf(out, "%-*s  ", (int)width[c], header[c]);
    fprintf(out, "%s\n", header[BIMCTL_COLUMNS - 1]);
    for (size_t i = 0; i < count; i++) {
        bimctl_row_fill(&images[i], cells, text);
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

void bimctl_image_print(FILE *out, const struct wire_image *image)
{
    const struct wire_status *st = &image->status;

    fprintf(out, "%-19s%s\n", "name:", image->name);
    fprintf(out, "%-19s%s\n", "uuid:", image->uuid);
    fprintf(out, "%-19s%s\n", "state:", st->state);
    fprintf(out, "%-19s%d%%\n", "progress:", st->progress);
    bimctl_size_field(out, "size:", image->size);
    bimctl_size_field(out, "virtual size:", image->virtual_size);
    bimctl_size_field(out, "real size:", image->real_size);
    fprintf(out, "%-19s%s\n", "format:", bimctl_or_dash(image->format));
    fprintf(out, "%-19s%s\n", "source:", bimctl_or_dash(image->source));
    fprintf(out, "%-19s%s\n", "expected checksum:", bimctl_or_dash(image->expected_checksum));
    fprintf(out, "%-19s%s\n", "checksum:", bimctl_or_dash(st->current_checksum));
    fprintf(out, "%-19s%s\n", "error:", bimctl_or_dash(st->error));
    fprintf(out, "%-19s%s\n", "verified:", bimctl_or_dash(st->verified));
    fprintf(out, "%-19s%s\n", "last scrub:", bimctl_or_dash(st->last_scrub));
    fprintf(out, "%-19s%" PRIu64 "\n", "sending reference:", st->sending_reference);
    fprintf(out, "%-19s%s\n", "sender:", bimctl_or_dash(st->sender));
}

/* ---- progress bar (a terminal on stderr only) ---- */

void bimctl_progress_draw(FILE *out, const struct wire_image *image)
{
    enum { BAR = 30 };
    const struct wire_status *st = &image->status;
    char bar[BAR + 1], d[32], t[32], r[32];
    int filled = st->progress * BAR / 100;

    memset(bar, '#', (size_t)filled);
    memset(bar + filled, '-', (size_t)(BAR - filled));
    bar[BAR] = '\0';
    bimctl_size_format(st->bytes_done, d, sizeof(d));
    bimctl_size_format(st->bytes_total, t, sizeof(t));
    bimctl_size_format(st->rate, r, sizeof(r));
    fprintf(out, "\r\033[K%s %-11s [%s] %3d%%", image->name, st->state, bar, st->progress);
    if (st->bytes_total)
        fprintf(out, " %s/%s", d, t);
    if (st->rate)
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
