/*
 * cfg.c - backing.cfg: parse and serialize (jansson), read and write it in an
 * image directory, and Go's time.Time.UTC().String() format used for its
 * modificationTime.
 *
 * The field order is the one Go's json.Marshal gives Longhorn's
 * SyncingFileConfig (backing-image-manager pkg/util/util.go), then bimfs's
 * extras, then the unknown fields found when the cfg was read.
 *
 * Threads: any; no shared state.
 */
#include "store_internal.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void store_time_format(const struct timespec *ts, char out[STORE_TIME_MAX])
{
    struct tm tm;
    char frac[16] = "";
    long nsec = ts->tv_nsec;
    time_t sec = ts->tv_sec;

    if (nsec < 0 || nsec >= 1000000000L) { /* normalize like Go would */
        sec += nsec / 1000000000L;
        nsec %= 1000000000L;
        if (nsec < 0) {
            nsec += 1000000000L;
            sec--;
        }
    }
    gmtime_r(&sec, &tm);
    if (nsec) {
        int n = snprintf(frac, sizeof(frac), ".%09ld", nsec);
        while (n > 1 && frac[n - 1] == '0')
            frac[--n] = '\0';
    }
    snprintf(out, STORE_TIME_MAX, "%04d-%02d-%02d %02d:%02d:%02d%s +0000 UTC", tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, frac);
}

void store_cfg_clear(struct store_cfg *cfg)
{
    free(cfg->extra);
    cfg->extra = NULL;
}

/* The known fields, in serialization order. */
enum cfg_kind {
    CFG_STRING,
    CFG_SIZE,
    CFG_OPTIONAL, /* a string written only when not empty */
};

struct cfg_field {
    const char *key;
    enum cfg_kind kind;
    size_t offset;
    size_t size; /* buffer size of a string field */
};

#define CFG_STR(key, member)                                                                       \
    {                                                                                              \
        key, CFG_STRING, offsetof(struct store_cfg, member),                                       \
            sizeof(((struct store_cfg *)0)->member)                                                \
    }
#define CFG_OPT(key, member)                                                                       \
    {                                                                                              \
        key, CFG_OPTIONAL, offsetof(struct store_cfg, member),                                     \
            sizeof(((struct store_cfg *)0)->member)                                                \
    }
#define CFG_NUM(key, member)                                                                       \
    {                                                                                              \
        key, CFG_SIZE, offsetof(struct store_cfg, member), 0                                       \
    }

static const struct cfg_field store_cfg_fields[] = {
    CFG_STR("name", name),
    CFG_STR("uuid", uuid),
    CFG_NUM("size", size),
    CFG_NUM("virtualSize", virtual_size),
    CFG_NUM("realSize", real_size),
    CFG_STR("expectedChecksum", expected_checksum),
    CFG_STR("currentChecksum", current_checksum),
    CFG_STR("modificationTime", modification_time),
    CFG_STR("state", state),
    CFG_STR("format", format),
    CFG_STR("source", source),
    CFG_STR("errorMsg", error),
    CFG_OPT("verified", verified),
    CFG_OPT("lastScrub", last_scrub),
    CFG_OPT("readyTime", ready_time),
};

#define CFG_NFIELDS (sizeof(store_cfg_fields) / sizeof(store_cfg_fields[0]))

static const struct cfg_field *store_cfg_field_find(const char *key)
{
    for (size_t i = 0; i < CFG_NFIELDS; i++) {
        if (strcmp(store_cfg_fields[i].key, key) == 0)
            return &store_cfg_fields[i];
    }
    return NULL;
}

/* Store one known field; null leaves the zero value, as Go's Unmarshal does. */
static int store_cfg_field_set(struct store_cfg *cfg, const struct cfg_field *f, json_t *value,
                               struct bim_error *err)
{
    char *base = (char *)cfg + f->offset;

    if (json_is_null(value))
        return 0;
    if (f->kind != CFG_SIZE) {
        if (!json_is_string(value))
            return bim_error_set(err, -EINVAL, "corrupt backing.cfg: %s is not a string", f->key);
        if (json_string_length(value) >= f->size ||
            strlen(json_string_value(value)) != json_string_length(value))
            return bim_error_set(err, -EINVAL, "corrupt backing.cfg: %s is too long or has a NUL",
                                 f->key);
        memcpy(base, json_string_value(value), json_string_length(value) + 1);
        return 0;
    }
    if (!json_is_integer(value) || json_integer_value(value) < 0)
        return bim_error_set(err, -EINVAL, "corrupt backing.cfg: %s is not a size", f->key);
    *(uint64_t *)(void *)base = (uint64_t)json_integer_value(value);
    return 0;
}

int store_cfg_parse(const char *text, size_t len, struct store_cfg *out, struct bim_error *err)
{
    json_error_t jerr;
    json_t *root, *extra = NULL, *value;
    const char *key;
    int rc = 0;

    memset(out, 0, sizeof(*out));
    root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!root)
        return bim_error_set(err, -EINVAL, "corrupt backing.cfg: %s", jerr.text);
    if (!json_is_object(root)) {
        rc = bim_error_set(err, -EINVAL, "corrupt backing.cfg: not a JSON object");
        goto out;
    }
    json_object_foreach(root, key, value)
    {
        const struct cfg_field *f = store_cfg_field_find(key);

        if (f) {
            rc = store_cfg_field_set(out, f, value, err);
            if (rc < 0)
                goto out;
            continue;
        }
        if (!extra && !(extra = json_object())) {
            rc = -ENOMEM;
            goto out;
        }
        if (json_object_set(extra, key, value) < 0) {
            rc = -ENOMEM;
            goto out;
        }
    }
    if (extra && !(out->extra = json_dumps(extra, JSON_COMPACT)))
        rc = -ENOMEM;
out:
    json_decref(extra);
    json_decref(root);
    if (rc < 0)
        store_cfg_clear(out);
    return rc;
}

/* Add the known field f of cfg to obj. */
static int store_cfg_field_add(json_t *obj, const struct store_cfg *cfg, const struct cfg_field *f)
{
    const char *base = (const char *)cfg + f->offset;
    json_t *value;

    if (f->kind == CFG_OPTIONAL && !base[0])
        return 0;
    if (f->kind != CFG_SIZE) {
        value = json_stringn(base, strnlen(base, f->size - 1));
    } else {
        uint64_t v = *(const uint64_t *)(const void *)base;
        if (v > (uint64_t)INT64_MAX) /* Go's int64 */
            return -EOVERFLOW;
        value = json_integer((json_int_t)v);
    }
    if (!value || json_object_set_new(obj, f->key, value) < 0)
        return -EINVAL; /* invalid UTF-8 in a string, or no memory */
    return 0;
}

int store_cfg_serialize(const struct store_cfg *cfg, char **out)
{
    json_t *obj = json_object(), *extra = NULL, *value;
    const char *key;
    int rc = -ENOMEM;

    *out = NULL;
    if (!obj)
        return -ENOMEM;
    for (size_t i = 0; i < CFG_NFIELDS; i++) {
        rc = store_cfg_field_add(obj, cfg, &store_cfg_fields[i]);
        if (rc < 0)
            goto out;
    }
    if (cfg->extra) {
        extra = json_loads(cfg->extra, 0, NULL);
        if (!json_is_object(extra)) {
            rc = -EINVAL;
            goto out;
        }
        json_object_foreach(extra, key, value)
        {
            if (store_cfg_field_find(key))
                continue; /* a known field always wins */
            if (json_object_set(obj, key, value) < 0) {
                rc = -ENOMEM;
                goto out;
            }
        }
    }
    *out = json_dumps(obj, JSON_COMPACT);
    rc = *out ? 0 : -ENOMEM;
out:
    json_decref(extra);
    json_decref(obj);
    return rc;
}

int store_cfg_read_at(int dirfd, struct store_cfg *cfg, struct bim_error *err)
{
    char *text;
    size_t len;
    int rc;

    memset(cfg, 0, sizeof(*cfg));
    rc = store_file_read_at(dirfd, STORE_CFG, STORE_CFG_FILE_MAX, &text, &len);
    if (rc == -EFBIG)
        return bim_error_set(err, -EINVAL, "corrupt backing.cfg: larger than %d bytes",
                             STORE_CFG_FILE_MAX);
    if (rc < 0)
        return bim_error_set(err, rc, "cannot read backing.cfg: %s", strerror(-rc));
    rc = store_cfg_parse(text, len, cfg, err);
    free(text);
    return rc;
}

int store_cfg_write_at(int dirfd, const struct store_cfg *cfg)
{
    char *text;
    int rc;

    rc = store_cfg_serialize(cfg, &text);
    if (rc < 0)
        return rc;
    rc = store_durable_write(dirfd, STORE_CFG, text, strlen(text));
    free(text);
    return rc;
}
