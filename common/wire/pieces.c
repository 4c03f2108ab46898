/*
 * pieces.c - the piece digests as JSON (SPEC §9, GET .../pieces):
 *
 *   {"pieceSize": 4194304, "size": S, "checksum": "<sha512>" | "",
 *    "pieces": ["<sha256>" | null, ...], "have": [[first, last], ...]}
 *
 * Encoding writes the text straight into one buffer (a 128 GiB image has
 * 32,768 pieces: about 2.2 MB, no tree of 32,768 JSON strings); decoding
 * (a receiver reading a source's answer) checks every field and bound.
 *
 * Threads: no shared state.
 */
#include "wire.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int wire_pieces_encode(const struct wire_pieces *p, char **out, size_t *len)
{
    static const char hex[] = "0123456789abcdef";
    size_t cap = 320 + (size_t)p->count * 67 + p->nhave * 44,
           n; /* the head with a SHA-512, then per entry */
    char *buf, *at;

    *out = NULL;
    *len = 0;
    buf = malloc(cap);
    if (!buf)
        return -ENOMEM;
    n = (size_t)snprintf(
        buf, cap, "{\"pieceSize\":%llu,\"size\":%llu,\"checksum\":\"%s\",\"pieces\":[",
        (unsigned long long)p->piece_size, (unsigned long long)p->size, p->checksum);
    at = buf + n;
    for (uint64_t i = 0; i < p->count; i++) {
        if (i)
            *at++ = ',';
        if (!p->known || !p->known[i]) {
            memcpy(at, "null", 4);
            at += 4;
            continue;
        }
        *at++ = '"';
        for (int k = 0; k < 32; k++) {
            *at++ = hex[p->digest[i][k] >> 4];
            *at++ = hex[p->digest[i][k] & 15];
        }
        *at++ = '"';
    }
    memcpy(at, "],\"have\":[", 10);
    at += 10;
    for (size_t i = 0; i < p->nhave; i++)
        at += snprintf(at, cap - (size_t)(at - buf), "%s[%llu,%llu]", i ? "," : "",
                       (unsigned long long)p->have[i][0], (unsigned long long)p->have[i][1]);
    memcpy(at, "]}", 3);
    at += 2;
    *out = buf;
    *len = (size_t)(at - buf);
    return 0;
}

static int wire_hex_digit(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

static bool wire_hex32(const char *s, size_t len, uint8_t out[32])
{
    if (len != 64)
        return false;
    for (size_t i = 0; i < 32; i++) {
        int hi = wire_hex_digit(s[2 * i]), lo = wire_hex_digit(s[2 * i + 1]);

        if (hi < 0 || lo < 0)
            return false;
        out[i] = (uint8_t)(hi << 4 | lo);
    }
    return true;
}

static bool wire_u64(json_t *v, uint64_t *out)
{
    if (!json_is_integer(v) || json_integer_value(v) < 0)
        return false;
    *out = (uint64_t)json_integer_value(v);
    return true;
}

static int wire_pieces_have(json_t *have, struct wire_pieces *out, struct bim_error *err)
{
    size_t i;
    json_t *item;
    uint64_t next = 0;

    if (!json_is_array(have))
        return bim_error_set(err, -EPROTO, "\"have\" is not an array");
    out->have = calloc(json_array_size(have) ? json_array_size(have) : 1, sizeof(*out->have));
    if (!out->have)
        return bim_error_set(err, -ENOMEM, "out of memory");
    json_array_foreach(have, i, item)
    {
        uint64_t first, last;

        if (!json_is_array(item) || json_array_size(item) != 2 ||
            !wire_u64(json_array_get(item, 0), &first) ||
            !wire_u64(json_array_get(item, 1), &last) || first > last || last >= out->count ||
            (i > 0 && first < next))
            return bim_error_set(err, -EPROTO, "\"have\" [%zu] is not an ascending range of pieces",
                                 i);
        out->have[i][0] = first;
        out->have[i][1] = last;
        next = last + 1;
        out->nhave = i + 1;
    }
    return 0;
}

int wire_pieces_decode(const char *text, size_t len, size_t max, struct wire_pieces *out,
                       struct bim_error *err)
{
    json_t *root = NULL, *pieces, *sum, *item;
    json_error_t jerr;
    size_t i;
    int rc = -EPROTO;

    memset(out, 0, sizeof(*out));
    if (len > max)
        return bim_error_set(err, -EPROTO, "larger than %zu bytes", max);
    root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!json_is_object(root)) {
        bim_error_set(err, -EPROTO, "not a JSON object");
        goto out;
    }
    if (!wire_u64(json_object_get(root, "pieceSize"), &out->piece_size) || out->piece_size == 0 ||
        (out->piece_size & (out->piece_size - 1)) != 0) {
        bim_error_set(err, -EPROTO, "\"pieceSize\" is not a power of two");
        goto out;
    }
    if (!wire_u64(json_object_get(root, "size"), &out->size) || out->size > (uint64_t)INT64_MAX) {
        bim_error_set(err, -EPROTO, "\"size\" is not a size");
        goto out;
    }
    sum = json_object_get(root, "checksum");
    if (!json_is_string(sum) ||
        (json_string_length(sum) != 0 && json_string_length(sum) != BIM_CHECKSUM_HEX)) {
        bim_error_set(err, -EPROTO, "\"checksum\" is not \"\" or a SHA-512");
        goto out;
    }
    str_copy(out->checksum, sizeof(out->checksum), json_string_value(sum));
    for (const char *c = out->checksum; *c; c++)
        if (wire_hex_digit(*c) < 0) {
            bim_error_set(err, -EPROTO, "\"checksum\" is not \"\" or a SHA-512");
            goto out;
        }
    out->count = out->size / out->piece_size + (out->size % out->piece_size != 0);
    pieces = json_object_get(root, "pieces");
    if (!json_is_array(pieces) || json_array_size(pieces) != out->count) {
        bim_error_set(err, -EPROTO, "\"pieces\" does not hold one entry per piece");
        goto out;
    }
    out->digest = calloc(out->count ? out->count : 1, 32);
    out->known = calloc(out->count ? out->count : 1, 1);
    if (!out->digest || !out->known) {
        rc = bim_error_set(err, -ENOMEM, "out of memory");
        goto out;
    }
    json_array_foreach(pieces, i, item)
    {
        if (json_is_null(item))
            continue;
        if (!json_is_string(item) ||
            !wire_hex32(json_string_value(item), json_string_length(item), out->digest[i])) {
            bim_error_set(err, -EPROTO, "\"pieces\" [%zu] is not null or a SHA-256", i);
            goto out;
        }
        out->known[i] = 1;
    }
    rc = wire_pieces_have(json_object_get(root, "have"), out, err);
out:
    json_decref(root);
    return rc;
}

void wire_pieces_free(struct wire_pieces *p)
{
    free(p->digest);
    free(p->known);
    free(p->have);
    memset(p, 0, sizeof(*p));
}
