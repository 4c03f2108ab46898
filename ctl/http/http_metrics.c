/*
 * http_metrics.c - GET /metrics: the Prometheus text format (version 0.0.4)
 * built from sync's snapshots and counters and the server's response counts.
 * Every name starts with bimfs_; the list is in docs/http.md.
 *
 * Label values need no escaping: image names and uuids are
 * [a-zA-Z0-9_.-] (SPEC §3), sources are host:port as checked by the wire
 * codec (wire_peer_valid), the other labels are constants.
 *
 * Threads: libmicrohttpd pool threads; everything read here is a copy.
 */
#include "http.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>

static const enum sync_state ctl_http_states[] = {
    SYNC_STATE_PENDING, SYNC_STATE_STARTING, SYNC_STATE_IN_PROGRESS,
    SYNC_STATE_READY,   SYNC_STATE_FAILED,   SYNC_STATE_UNKNOWN,
};
#define CTL_HTTP_STATE_COUNT (sizeof(ctl_http_states) / sizeof(ctl_http_states[0]))

static int ctl_http_metric_head(struct ctl_http_text *t, const char *name, const char *type,
                                const char *help)
{
    return ctl_http_text_printf(t, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* A family of two samples told apart by one label: label="first" and
 * label="second". */
static int ctl_http_metric_two(struct ctl_http_text *t, const char *name, const char *type,
                               const char *help, const char *label, const char *first,
                               uint64_t first_value, const char *second, uint64_t second_value)
{
    int rc = ctl_http_metric_head(t, name, type, help);

    if (rc == 0)
        rc = ctl_http_text_printf(t, "%s{%s=\"%s\"} %" PRIu64 "\n%s{%s=\"%s\"} %" PRIu64 "\n", name,
                                  label, first, first_value, name, label, second, second_value);
    return rc;
}

/* A family of one sample without labels. */
static int ctl_http_metric_one(struct ctl_http_text *t, const char *name, const char *type,
                               const char *help, uint64_t value)
{
    int rc = ctl_http_metric_head(t, name, type, help);

    if (rc == 0)
        rc = ctl_http_text_printf(t, "%s %" PRIu64 "\n", name, value);
    return rc;
}

/* One per-image family: a line per image with value(info). */
static int ctl_http_metric_images(struct ctl_http_text *t, const struct sync_image_info *images,
                                  size_t count, const char *name, const char *type,
                                  const char *help,
                                  uint64_t (*value)(const struct sync_image_info *))
{
    int rc = ctl_http_metric_head(t, name, type, help);

    for (size_t i = 0; rc == 0 && i < count; i++)
        rc = ctl_http_text_printf(t, "%s{name=\"%s\",uuid=\"%s\"} %" PRIu64 "\n", name,
                                  images[i].name, images[i].uuid, value(&images[i]));
    return rc;
}

static uint64_t ctl_http_value_done(const struct sync_image_info *i)
{
    return i->bytes_done;
}

static uint64_t ctl_http_value_total(const struct sync_image_info *i)
{
    return i->bytes_total;
}

static uint64_t ctl_http_value_size(const struct sync_image_info *i)
{
    return i->size;
}

static uint64_t ctl_http_value_sent(const struct sync_image_info *i)
{
    return i->bytes_sent;
}

static uint64_t ctl_http_value_sending(const struct sync_image_info *i)
{
    return i->sending_reference > 0 ? (uint64_t)i->sending_reference : 0;
}

static uint64_t ctl_http_value_progress(const struct sync_image_info *i)
{
    return i->progress > 0 ? (uint64_t)i->progress : 0;
}

static uint64_t ctl_http_value_rate(const struct sync_image_info *i)
{
    return i->rate;
}

static int ctl_http_metric_states(struct ctl_http_text *t, const struct sync_image_info *images,
                                  size_t count)
{
    uint64_t by_state[CTL_HTTP_STATE_COUNT] = {0};
    int rc = ctl_http_metric_head(t, "bimfs_image_state", "gauge",
                                  "1 for the state the image is in, 0 for the others.");

    for (size_t i = 0; rc == 0 && i < count; i++) {
        for (size_t s = 0; rc == 0 && s < CTL_HTTP_STATE_COUNT; s++) {
            bool in = images[i].state == ctl_http_states[s];
            by_state[s] += in;
            rc = ctl_http_text_printf(
                t, "bimfs_image_state{name=\"%s\",uuid=\"%s\",state=\"%s\"} %d\n", images[i].name,
                images[i].uuid, sync_state_name(ctl_http_states[s]), in ? 1 : 0);
        }
    }
    if (rc == 0)
        rc = ctl_http_metric_head(t, "bimfs_images", "gauge", "Images by state.");
    for (size_t s = 0; rc == 0 && s < CTL_HTTP_STATE_COUNT; s++)
        rc = ctl_http_text_printf(t, "bimfs_images{state=\"%s\"} %" PRIu64 "\n",
                                  sync_state_name(ctl_http_states[s]), by_state[s]);
    return rc;
}

/* Transfers in flight: incoming (pending, starting, in-progress) and
 * outgoing (GETs of backing). */
static int ctl_http_metric_transfers(struct ctl_http_text *t, const struct sync_image_info *images,
                                     size_t count)
{
    uint64_t in = 0, out = 0;

    for (size_t i = 0; i < count; i++) {
        enum sync_state s = images[i].state;
        in += s == SYNC_STATE_PENDING || s == SYNC_STATE_STARTING || s == SYNC_STATE_IN_PROGRESS;
        out += ctl_http_value_sending(&images[i]);
    }
    return ctl_http_metric_two(t, "bimfs_transfers_in_flight", "gauge",
                               "Transfers in flight: in = images being received, out = GETs of "
                               "backing being served.",
                               "direction", "in", in, "out", out);
}

static int ctl_http_metric_counters(struct ctl_http *http, struct ctl_http_text *t)
{
    struct sync_stats st;
    int rc;

    sync_stats_get(http->sync, &st);
    rc = ctl_http_metric_head(t, "bimfs_failures_total", "counter",
                              "Images that ended failed since start, by reason.");
    for (int r = 0; rc == 0 && r < BIM_CAUSE_COUNT; r++)
        rc = ctl_http_text_printf(t, "bimfs_failures_total{reason=\"%s\"} %" PRIu64 "\n",
                                  bim_cause_name((enum bim_cause)r), st.failures[r]);
    if (rc == 0)
        rc = ctl_http_metric_two(t, "bimfs_sends_total", "counter",
                                 "GETs of backing served or refused since start.", "result",
                                 "served", st.sends, "refused", st.sends_refused);
    if (rc == 0)
        rc = ctl_http_metric_one(t, "bimfs_sent_bytes_total", "counter",
                                 "Bytes of backing served to peers since start (completed GETs).",
                                 st.bytes_sent);
    if (rc == 0)
        rc = ctl_http_metric_head(t, "bimfs_http_responses_total", "counter",
                                  "HTTP responses since start, by status class.");
    for (int c = 1; rc == 0 && c < 6; c++)
        rc = ctl_http_text_printf(t, "bimfs_http_responses_total{class=\"%dxx\"} %" PRIu64 "\n", c,
                                  atomic_load(&http->responses[c]));
    return rc;
}

/* The scrub's (docs/scrub.md): zeros while it is off or has done nothing. */
static int ctl_http_metric_scrub(struct ctl_http *http, struct ctl_http_text *t)
{
    struct sync_stats st;
    int rc;

    sync_stats_get(http->sync, &st);
    rc = ctl_http_metric_one(t, "bimfs_scrub_bytes_total", "counter",
                             "Bytes the scrub read since start.", st.scrub_bytes);
    if (rc == 0)
        rc = ctl_http_metric_one(t, "bimfs_scrubs_total", "counter",
                                 "Scrubs of an image that ended in a match or a mismatch.",
                                 st.scrubs);
    if (rc == 0)
        rc = ctl_http_metric_one(t, "bimfs_scrub_mismatches_total", "counter",
                                 "Scrubs that found an image whose bytes differ (failed it).",
                                 st.scrub_mismatches);
    if (rc == 0) /* an epoch time, never before 1970 */
        rc = ctl_http_metric_one(t, "bimfs_scrub_last_timestamp_seconds", "gauge",
                                 "When the last scrub ended (Unix time), 0 before the first.",
                                 st.scrub_last > 0 ? (uint64_t)st.scrub_last : 0);
    return rc;
}

/* The per-image families, in the order they are shown. */
static const struct ctl_http_image_metric {
    const char *name;
    const char *type;
    const char *help;
    uint64_t (*value)(const struct sync_image_info *info);
} ctl_http_image_metrics[] = {
    {"bimfs_image_progress_percent", "gauge", "Progress of the image, 0-100.",
     ctl_http_value_progress},
    {"bimfs_image_bytes_done", "gauge", "Bytes transferred or re-hashed so far.",
     ctl_http_value_done},
    {"bimfs_image_bytes_total", "gauge", "Bytes expected, 0 when not known.", ctl_http_value_total},
    {"bimfs_image_size_bytes", "gauge", "Bytes of backing, 0 until known.", ctl_http_value_size},
    {"bimfs_image_rate_bytes_per_second", "gauge", "Recent transfer rate.", ctl_http_value_rate},
    {"bimfs_image_sent_bytes_total", "counter", "Bytes of backing served to peers since start.",
     ctl_http_value_sent},
    {"bimfs_image_sending", "gauge", "GETs of backing in flight (sendingReference).",
     ctl_http_value_sending},
};

/* The disk's filesystem (omitted when statvfs fails). */
static int ctl_http_metric_disk(struct ctl_http *http, struct ctl_http_text *t)
{
    uint64_t avail, total;
    int rc;

    if (sync_disk_space(http->sync, &avail, &total) < 0)
        return 0;
    rc = ctl_http_metric_one(t, "bimfs_disk_available_bytes", "gauge",
                             "Bytes of the disk's filesystem available to bimfs.", avail);
    if (rc == 0)
        rc = ctl_http_metric_one(t, "bimfs_disk_size_bytes", "gauge",
                                 "Bytes of the disk's filesystem.", total);
    return rc;
}

/* Fan-out (SPEC §9): the pieces each image holds, and the bytes a peer
 * sync received from each of its sources (host:port). */
static int ctl_http_metric_pieces(struct ctl_http *http, struct ctl_http_text *t,
                                  const struct sync_image_info *images, size_t count)
{
    int rc = ctl_http_metric_head(t, "bimfs_image_pieces_held", "gauge",
                                  "Pieces of 4 MiB the image holds and serves (SPEC 9).");

    for (size_t i = 0; rc == 0 && i < count; i++)
        rc = ctl_http_text_printf(
            t, "bimfs_image_pieces_held{name=\"%s\",uuid=\"%s\"} %" PRIu64 "\n", images[i].name,
            images[i].uuid, sync_pieces_held(http->sync, &images[i]));
    if (rc == 0)
        rc = ctl_http_metric_head(t, "bimfs_image_received_bytes_total", "counter",
                                  "Bytes of pieces a peer sync received from each source.");
    for (size_t i = 0; rc == 0 && i < count; i++) {
        struct sync_received *got = NULL;
        size_t n = 0;

        if (sync_received_get(http->sync, images[i].name, &got, &n) < 0)
            continue;
        for (size_t k = 0; rc == 0 && k < n; k++)
            rc = ctl_http_text_printf(t,
                                      "bimfs_image_received_bytes_total{name=\"%s\",uuid=\"%s\","
                                      "source=\"%s\"} %" PRIu64 "\n",
                                      images[i].name, images[i].uuid, got[k].addr, got[k].bytes);
        free(got);
    }
    return rc;
}

static int ctl_http_metrics_build(struct ctl_http *http, struct ctl_http_text *t)
{
    struct sync_image_info *images = NULL;
    size_t count = 0;
    int rc;

    rc = sync_list(http->sync, &images, &count);
    if (rc < 0)
        return rc;
    rc = ctl_http_metric_head(t, "bimfs_info", "gauge", "The daemon's version.");
    if (rc == 0)
        rc = ctl_http_text_printf(t, "bimfs_info{version=\"%s\"} 1\n", http->version);
    if (rc == 0)
        rc = ctl_http_metric_states(t, images, count);
    for (size_t i = 0;
         rc == 0 && i < sizeof(ctl_http_image_metrics) / sizeof(ctl_http_image_metrics[0]); i++) {
        const struct ctl_http_image_metric *m = &ctl_http_image_metrics[i];
        rc = ctl_http_metric_images(t, images, count, m->name, m->type, m->help, m->value);
    }
    if (rc == 0)
        rc = ctl_http_metric_transfers(t, images, count);
    if (rc == 0)
        rc = ctl_http_metric_pieces(http, t, images, count);
    if (rc == 0)
        rc = ctl_http_metric_counters(http, t);
    if (rc == 0)
        rc = ctl_http_metric_scrub(http, t);
    if (rc == 0)
        rc = ctl_http_metric_disk(http, t);
    free(images);
    return rc;
}

enum MHD_Result ctl_http_metrics(struct ctl_http_request *req, struct MHD_Connection *conn)
{
    struct ctl_http_text text = {.max = CTL_HTTP_METRICS_MAX};
    int rc = ctl_http_metrics_build(req->http, &text);

    if (rc < 0) {
        free(text.buf);
        return ctl_http_reply_error(req, conn, MHD_HTTP_INTERNAL_SERVER_ERROR,
                                    rc == -E2BIG ? "metrics too large" : "cannot build metrics");
    }
    return ctl_http_reply_buffer(req, conn, MHD_HTTP_OK, "text/plain; version=0.0.4; charset=utf-8",
                                 &text);
}
