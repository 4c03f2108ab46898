/*
 * image.c - the image object as JSON and back (SPEC §6): Longhorn's field
 * names of `backing-image-manager backing-image list`, plus bimfs's progress
 * details (bytesDone, bytesTotal, rate) and SPEC §9's verified and
 * lastScrub in status.
 *
 * Threads: no shared state.
 */
#include "wire.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static const char *const wire_states[] = {
    "pending", "starting", "in-progress", "ready", "failed", "unknown",
};

bool wire_state_known(const char *state)
{
    for (size_t i = 0; i < sizeof(wire_states) / sizeof(wire_states[0]); i++) {
        if (strcmp(state, wire_states[i]) == 0)
            return true;
    }
    return false;
}

/* ---- text ---- */

/* Length of the well-formed UTF-8 sequence at s (Unicode table 3-7), or 0. */
static size_t wire_utf8_sequence(const unsigned char *s, size_t left)
{
    unsigned char lo = 0x80, hi = 0xbf;
    size_t n;

    if (s[0] < 0x80)
        return 1;
    if (s[0] >= 0xc2 && s[0] <= 0xdf)
        n = 2;
    else if (s[0] >= 0xe0 && s[0] <= 0xef)
        n = 3;
    else if (s[0] >= 0xf0 && s[0] <= 0xf4)
        n = 4;
    else
        return 0;
    if (s[0] == 0xe0)
        lo = 0xa0;
    else if (s[0] == 0xed)
        hi = 0x9f;
    else if (s[0] == 0xf0)
        lo = 0x90;
    else if (s[0] == 0xf4)
        hi = 0x8f;
    if (left < n || s[1] < lo || s[1] > hi)
        return 0;
    for (size_t i = 2; i < n; i++) {
        if (s[i] < 0x80 || s[i] > 0xbf)
            return 0;
    }
    return n;
}

json_t *wire_json_text(const char *text)
{
    size_t len = strlen(text);
    json_t *value = json_stringn(text, len);
    char *copy;

    if (value)
        return value;
    copy = strdup(text);
    if (!copy)
        return NULL;
    for (size_t i = 0; i < len;) {
        size_t n = wire_utf8_sequence((unsigned char *)copy + i, len - i);
        if (n == 0) {
            copy[i] = '?';
            n = 1;
        }
        i += n;
    }
    value = json_stringn(copy, len);
    free(copy);
    return value;
}

/* ---- encoding ---- */

/* JSON integers are signed 64-bit; no size reaches this, but never wrap. */
static json_t *wire_json_u64(uint64_t value)
{
    return json_integer(value > INT64_MAX ? INT64_MAX : (json_int_t)value);
}

json_t *wire_image_to_json(const struct wire_image *image)
{
    const struct wire_status *st = &image->status;
    json_t *status;

    status = json_pack("{s:o, s:o, s:o, s:o, s:o, s:i, s:o, s:o, s:o, s:o, s:o}", "state",
                       wire_json_text(st->state), "currentChecksum",
                       wire_json_text(st->current_checksum), "sendingReference",
                       wire_json_u64(st->sending_reference), "errorMsg", wire_json_text(st->error),
                       "senderManagerAddress", wire_json_text(st->sender), "progress", st->progress,
                       "bytesDone", wire_json_u64(st->bytes_done), "bytesTotal",
                       wire_json_u64(st->bytes_total), "rate", wire_json_u64(st->rate), "verified",
                       wire_json_text(st->verified), "lastScrub", wire_json_text(st->last_scrub));
    if (!status)
        return NULL;
    return json_pack(
        "{s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o}", "name", wire_json_text(image->name),
        "uuid", wire_json_text(image->uuid), "size", wire_json_u64(image->size), "virtualSize",
        wire_json_u64(image->virtual_size), "realSize", wire_json_u64(image->real_size), "format",
        wire_json_text(image->format), "expectedChecksum", wire_json_text(image->expected_checksum),
        "source", wire_json_text(image->source), "status", status);
}

/* ---- decoding ---- */

static int wire_string_get(const json_t *obj, const char *where, const char *key, bool required,
                           char *out, size_t outlen, struct bim_error *err)
{
    json_t *value = json_object_get(obj, key);
    size_t len;

    if (!value && !required)
        return 0;
    if (!value)
        return bim_error_set(err, -EPROTO, "%smissing field \"%s\"", where, key);
    if (!json_is_string(value))
        return bim_error_set(err, -EPROTO, "%sfield \"%s\" is not a string", where, key);
    len = json_string_length(value);
    if (len >= outlen)
        return bim_error_set(err, -EPROTO, "%sfield \"%s\" is longer than %zu bytes", where, key,
                             outlen - 1);
    if (memchr(json_string_value(value), '\0', len))
        return bim_error_set(err, -EPROTO, "%sfield \"%s\" holds a NUL", where, key);
    memcpy(out, json_string_value(value), len + 1);
    return 0;
}

static int wire_u64_get(const json_t *obj, const char *where, const char *key, bool required,
                        uint64_t *out, struct bim_error *err)
{
    json_t *value = json_object_get(obj, key);

    if (!value && !required)
        return 0;
    if (!value)
        return bim_error_set(err, -EPROTO, "%smissing field \"%s\"", where, key);
    if (!json_is_integer(value) || json_integer_value(value) < 0)
        return bim_error_set(err, -EPROTO, "%sfield \"%s\" is not a non-negative integer", where,
                             key);
    *out = (uint64_t)json_integer_value(value);
    return 0;
}

static bool wire_checksum_hex(const char *s)
{
    if (strlen(s) != BIM_CHECKSUM_HEX)
        return false;
    for (; *s; s++) {
        if (!((*s >= '0' && *s <= '9') || (*s >= 'a' && *s <= 'f')))
            return false;
    }
    return true;
}

static bool wire_verified_known(const char *verified)
{
    return !verified[0] || strcmp(verified, "sha512") == 0 || strcmp(verified, "pieces") == 0 ||
           strcmp(verified, "adopted") == 0;
}

/* status.verified and status.lastScrub (both optional). */
static int wire_status_scrub_from_json(const json_t *obj, struct wire_status *st,
                                       struct bim_error *err)
{
    const char *w = "status: ";
    int64_t when;
    int rc;

    rc = wire_string_get(obj, w, "verified", false, st->verified, sizeof(st->verified), err);
    if (!rc && !wire_verified_known(st->verified))
        rc = bim_error_set(err, -EPROTO, "status: unknown verified \"%s\"", st->verified);
    if (!rc)
        rc = wire_string_get(obj, w, "lastScrub", false, st->last_scrub, sizeof(st->last_scrub),
                             err);
    if (!rc && bim_time_rfc3339_parse(st->last_scrub, &when) < 0)
        rc = bim_error_set(err, -EPROTO, "status: field \"lastScrub\" is not an RFC 3339 time");
    return rc;
}

static int wire_status_from_json(const json_t *obj, struct wire_status *st, struct bim_error *err)
{
    const char *w = "status: ";
    uint64_t progress = 0;
    int rc;

    if (!json_is_object(obj))
        return bim_error_set(err, -EPROTO, "field \"status\" is not an object");
    rc = wire_string_get(obj, w, "state", true, st->state, sizeof(st->state), err);
    if (!rc && !wire_state_known(st->state))
        rc = bim_error_set(err, -EPROTO, "status: unknown state \"%s\"", st->state);
    if (!rc)
        rc = wire_string_get(obj, w, "currentChecksum", true, st->current_checksum,
                             sizeof(st->current_checksum), err);
    if (!rc && st->current_checksum[0] && !wire_checksum_hex(st->current_checksum))
        rc = bim_error_set(err, -EPROTO,
                           "status: field \"currentChecksum\" is not 128 lowercase hex digits");
    if (!rc)
        rc = wire_u64_get(obj, w, "sendingReference", true, &st->sending_reference, err);
    if (!rc)
        rc = wire_string_get(obj, w, "errorMsg", true, st->error, sizeof(st->error), err);
    if (!rc)
        rc = wire_string_get(obj, w, "senderManagerAddress", true, st->sender, sizeof(st->sender),
                             err);
    if (!rc)
        rc = wire_u64_get(obj, w, "progress", true, &progress, err);
    if (!rc && progress > WIRE_PROGRESS_MAX)
        rc =
            bim_error_set(err, -EPROTO, "status: field \"progress\" is past %d", WIRE_PROGRESS_MAX);
    st->progress = (int)progress;
    if (!rc)
        rc = wire_u64_get(obj, w, "bytesDone", false, &st->bytes_done, err);
    if (!rc)
        rc = wire_u64_get(obj, w, "bytesTotal", false, &st->bytes_total, err);
    if (!rc)
        rc = wire_u64_get(obj, w, "rate", false, &st->rate, err);
    if (!rc)
        rc = wire_status_scrub_from_json(obj, st, err);
    return rc;
}

int wire_image_from_json(const json_t *value, struct wire_image *out, struct bim_error *err)
{
    int rc;

    memset(out, 0, sizeof(*out));
    if (!json_is_object(value))
        return bim_error_set(err, -EPROTO, "the image is not a JSON object");
    rc = wire_string_get(value, "", "name", true, out->name, sizeof(out->name), err);
    if (!rc)
        rc = wire_string_get(value, "", "uuid", true, out->uuid, sizeof(out->uuid), err);
    if (!rc)
        rc = wire_u64_get(value, "", "size", true, &out->size, err);
    if (!rc)
        rc = wire_u64_get(value, "", "virtualSize", true, &out->virtual_size, err);
    if (!rc)
        rc = wire_u64_get(value, "", "realSize", true, &out->real_size, err);
    if (!rc)
        rc = wire_string_get(value, "", "format", true, out->format, sizeof(out->format), err);
    if (!rc && out->format[0] && strcmp(out->format, "raw") != 0 &&
        strcmp(out->format, "qcow2") != 0)
        rc = bim_error_set(err, -EPROTO, "unknown format \"%s\"", out->format);
    if (!rc)
        rc = wire_string_get(value, "", "expectedChecksum", true, out->expected_checksum,
                             sizeof(out->expected_checksum), err);
    if (!rc)
        rc = wire_string_get(value, "", "source", true, out->source, sizeof(out->source), err);
    if (!rc) {
        json_t *status = json_object_get(value, "status");
        rc = status ? wire_status_from_json(status, &out->status, err)
                    : bim_error_set(err, -EPROTO, "missing field \"status\"");
    }
    return rc;
}

int wire_image_parse(const char *text, size_t len, size_t max, struct wire_image *out,
                     struct bim_error *err)
{
    json_error_t jerr;
    json_t *value;
    int rc;

    memset(out, 0, sizeof(*out));
    if (len > max)
        return bim_error_set(err, -EPROTO, "the image is larger than %zu bytes", max);
    value = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!value)
        return bim_error_set(err, -EPROTO, "the image is not JSON: %s", jerr.text);
    rc = wire_image_from_json(value, out, err);
    json_decref(value);
    return rc;
}
