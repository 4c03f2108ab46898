/*
 * request.c - parse and validate one control socket request (SPEC §6):
 * JSON shape, nesting depth, op, the fields each op allows and their types,
 * names, uuids and peer addresses (with the wire codec's checks, the ones
 * sync uses). What passes here is a well-formed request; sync decides the
 * rest (URL and checksum syntax, whether a source is supported, existence).
 *
 * Threads: no shared state; called from connection threads.
 */
#include "request.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

struct ctl_op_spec {
    const char *name;
    enum ctl_op op;
    bool name_required;
    const char *fields[8]; /* every field the op allows, NULL-terminated */
};

static const struct ctl_op_spec ctl_ops[] = {
    {"version", CTL_OP_VERSION, false, {"id", "op", NULL}},
    {"list", CTL_OP_LIST, false, {"id", "op", NULL}},
    {"get", CTL_OP_GET, true, {"id", "op", "name", NULL}},
    {"create", CTL_OP_CREATE, true, {"id", "op", "name", "uuid", "checksum", "source", NULL}},
    {"sync", CTL_OP_SYNC, true, {"id", "op", "name", "uuid", "from", "size", "checksum", NULL}},
    {"delete", CTL_OP_DELETE, true, {"id", "op", "name", NULL}},
    {"watch", CTL_OP_WATCH, false, {"id", "op", "name", NULL}},
    {"backup", CTL_OP_BACKUP, true, {"id", "op", "name", "target", "compression", "labels", NULL}},
    {"backup-status", CTL_OP_BACKUP_STATUS, true, {"id", "op", "name", NULL}},
    {"backups", CTL_OP_BACKUPS, false, {"id", "op", "target", NULL}},
};

const char *ctl_op_name(enum ctl_op op)
{
    for (size_t i = 0; i < sizeof(ctl_ops) / sizeof(ctl_ops[0]); i++) {
        if (ctl_ops[i].op == op)
            return ctl_ops[i].name;
    }
    return "?";
}

/* ---- helpers ---- */

static bool ctl_json_depth_ok(json_t *value, int depth)
{
    const char *key;
    json_t *child;
    size_t i;

    if (depth > CTL_DEPTH_MAX)
        return false;
    if (json_is_object(value)) {
        json_object_foreach(value, key, child)
        {
            if (!ctl_json_depth_ok(child, depth + 1))
                return false;
        }
    } else if (json_is_array(value)) {
        json_array_foreach(value, i, child)
        {
            if (!ctl_json_depth_ok(child, depth + 1))
                return false;
        }
    }
    return true;
}

/* Whether a string anywhere in value holds a NUL byte (allowed by the parser
 * so that the request's id can still be echoed; never accepted). */
static bool ctl_json_has_nul(json_t *value)
{
    const char *key;
    json_t *child;
    size_t i;

    if (json_is_string(value))
        return strlen(json_string_value(value)) != json_string_length(value);
    if (json_is_object(value)) {
        json_object_foreach(value, key, child)
        {
            if (ctl_json_has_nul(child))
                return true;
        }
    } else if (json_is_array(value)) {
        json_array_foreach(value, i, child)
        {
            if (ctl_json_has_nul(child))
                return true;
        }
    }
    return false;
}

/* Reject the keys of obj that are not in allowed; where names obj. */
static int ctl_fields_check(json_t *obj, const char *const *allowed, const char *where,
                            struct bim_error *err)
{
    const char *key;
    json_t *value;

    json_object_foreach(obj, key, value)
    {
        bool known = false;

        for (size_t i = 0; allowed[i] && !known; i++)
            known = strcmp(key, allowed[i]) == 0;
        if (!known)
            return bim_error_set(err, -EINVAL, "unknown field \"%.64s\" for %s", key, where);
    }
    return 0;
}

/*
 * A string field: *out = NULL when absent or null and not required. The
 * prefix ("<name>: " or "") starts the message.
 */
static int ctl_string_field(json_t *obj, const char *key, bool required, const char *prefix,
                            const char **out, struct bim_error *err)
{
    json_t *value = json_object_get(obj, key);

    *out = NULL;
    if (!value || json_is_null(value)) {
        if (required)
            return bim_error_set(err, -EINVAL, "%smissing field \"%s\"", prefix, key);
        return 0;
    }
    if (!json_is_string(value))
        return bim_error_set(err, -EINVAL, "%sfield \"%s\" must be a string", prefix, key);
    *out = json_string_value(value);
    return 0;
}

/* A name field (SPEC §3); messages start with the name itself. */
static int ctl_name_field(json_t *obj, const char *key, bool required, const char *prefix,
                          const char **out, struct bim_error *err)
{
    int rc = ctl_string_field(obj, key, required, prefix, out, err);

    struct bim_error cause = {0};

    if (rc || !*out)
        return rc;
    rc = wire_name_check(*out, &cause);
    if (rc)
        return bim_error_set(err, rc, "%s%s", prefix, cause.message);
    return 0;
}

/* ---- per-op fields ---- */

static int ctl_source_parse(json_t *source, struct ctl_request *req, struct bim_error *err)
{
    static const char *const download_fields[] = {"type", "url", NULL};
    static const char *const upload_fields[] = {"type", NULL};
    static const char *const clone_fields[] = {"type", "from", NULL};
    static const char *const restore_fields[] = {"type", "url", NULL};
    const char *name = req->name;
    struct bim_error cause = {0};
    char prefix[BIM_NAME_MAX + 3];
    const char *type;
    int rc;

    snprintf(prefix, sizeof(prefix), "%s: ", name);
    if (!source || json_is_null(source))
        return bim_error_set(err, -EINVAL, "%s: missing field \"source\"", name);
    if (!json_is_object(source) || !json_is_string(json_object_get(source, "type")))
        return bim_error_set(err, -EINVAL,
                             "%s: field \"source\" must be an object with a string \"type\"", name);
    type = json_string_value(json_object_get(source, "type"));
    if (strcmp(type, "download") == 0) {
        req->source = SYNC_SOURCE_DOWNLOAD;
        rc = ctl_fields_check(source, download_fields, "a download source", &cause);
        if (!rc) /* its syntax is sync's (the parser that fetches it judges it) */
            rc = ctl_string_field(source, "url", true, "", &req->url, &cause);
    } else if (strcmp(type, "upload") == 0) {
        req->source = SYNC_SOURCE_UPLOAD;
        rc = ctl_fields_check(source, upload_fields, "an upload source", &cause);
    } else if (strcmp(type, "clone") == 0) {
        req->source = SYNC_SOURCE_CLONE;
        rc = ctl_fields_check(source, clone_fields, "a clone source", &cause);
        if (!rc)
            return ctl_name_field(source, "from", true, prefix, &req->clone_from, err);
    } else if (strcmp(type, "restore") == 0) {
        req->source = SYNC_SOURCE_RESTORE;
        rc = ctl_fields_check(source, restore_fields, "a restore source", &cause);
        if (!rc) /* the backup URL is sync's to judge */
            rc = ctl_string_field(source, "url", true, "", &req->url, &cause);
    } else {
        rc = bim_error_set(&cause, -EINVAL,
                           "unknown source type \"%.32s\" (download, upload, "
                           "clone or restore)",
                           type);
    }
    if (rc)
        return bim_error_set(err, rc, "%s%s", prefix, cause.message);
    return 0;
}

static int ctl_peers_parse(json_t *from, struct ctl_request *req, struct bim_error *err)
{
    const char *name = req->name;
    json_t *item;
    size_t i;

    if (!from || json_is_null(from))
        return bim_error_set(err, -EINVAL, "%s: missing field \"from\"", name);
    if (json_is_string(from)) {
        req->peers[req->peer_count++] = json_string_value(from);
    } else if (json_is_array(from) && json_array_size(from) > 0) {
        if (json_array_size(from) > BIM_PEERS_MAX)
            return bim_error_set(err, -EINVAL, "%s: more than %d peers in \"from\"", name,
                                 BIM_PEERS_MAX);
        json_array_foreach(from, i, item)
        {
            if (!json_is_string(item))
                return bim_error_set(err, -EINVAL, "%s: \"from\" must hold strings", name);
            req->peers[req->peer_count++] = json_string_value(item);
        }
    } else {
        return bim_error_set(err, -EINVAL,
                             "%s: field \"from\" must be a \"host:port\" string or a non-empty "
                             "list of them",
                             name);
    }
    req->peers[req->peer_count] = NULL;
    for (i = 0; i < req->peer_count; i++) {
        struct bim_error cause = {0};
        int rc = wire_peer_check(req->peers[i], &cause);

        if (rc)
            return bim_error_set(err, rc, "%s: %s", name, cause.message);
    }
    return 0;
}

static int ctl_uuid_parse(struct ctl_request *req, bool required, const char *prefix,
                          struct bim_error *err)
{
    struct bim_error cause = {0};
    int rc = ctl_string_field(req->root, "uuid", required, prefix, &req->uuid, err);

    if (rc || !req->uuid)
        return rc;
    rc = wire_uuid_check(req->uuid, &cause);
    if (rc)
        return bim_error_set(err, rc, "%s%s", prefix, cause.message);
    return 0;
}

static int ctl_size_parse(struct ctl_request *req, const char *prefix, struct bim_error *err)
{
    json_t *size = json_object_get(req->root, "size");

    if (!size || json_is_null(size))
        return 0;
    if (!json_is_integer(size) || json_integer_value(size) < 0)
        return bim_error_set(err, -EINVAL, "%sfield \"size\" must be a non-negative integer",
                             prefix);
    req->size = (uint64_t)json_integer_value(size);
    return 0;
}

/* backup's labels: an object of strings (the backup's own checks bound them). */
static int ctl_labels_parse(struct ctl_request *req, const char *prefix, struct bim_error *err)
{
    json_t *labels = json_object_get(req->root, "labels"), *value;
    const char *key;

    if (!labels || json_is_null(labels))
        return 0;
    if (!json_is_object(labels))
        return bim_error_set(err, -EINVAL, "%sfield \"labels\" must be an object of strings",
                             prefix);
    json_object_foreach(labels, key, value)
    {
        if (!json_is_string(value))
            return bim_error_set(err, -EINVAL, "%slabel \"%.64s\" must be a string", prefix, key);
    }
    req->labels = labels;
    return 0;
}

/* The fields of a known op, after the name. */
static int ctl_op_fields_parse(struct ctl_request *req, const char *prefix, struct bim_error *err)
{
    int rc = 0;

    switch (req->op) {
    case CTL_OP_CREATE:
        rc = ctl_uuid_parse(req, false, prefix, err);
        if (!rc)
            rc = ctl_string_field(req->root, "checksum", false, prefix, &req->checksum, err);
        if (!rc)
            rc = ctl_source_parse(json_object_get(req->root, "source"), req, err);
        break;
    case CTL_OP_SYNC:
        req->source = SYNC_SOURCE_PEER;
        rc = ctl_uuid_parse(req, true, prefix, err);
        if (!rc)
            rc = ctl_peers_parse(json_object_get(req->root, "from"), req, err);
        if (!rc)
            rc = ctl_size_parse(req, prefix, err);
        if (!rc)
            rc = ctl_string_field(req->root, "checksum", false, prefix, &req->checksum, err);
        break;
    case CTL_OP_BACKUP:
        rc = ctl_string_field(req->root, "target", true, prefix, &req->target, err);
        if (!rc)
            rc = ctl_string_field(req->root, "compression", false, prefix, &req->compression, err);
        if (!rc)
            rc = ctl_labels_parse(req, prefix, err);
        break;
    default:
        break;
    }
    return rc;
}

int ctl_request_parse(const char *line, size_t len, struct ctl_request *req, struct bim_error *err)
{
    const struct ctl_op_spec *spec = NULL;
    char prefix[BIM_NAME_MAX + 3] = "";
    char where[32];
    const char *op;
    json_error_t jerr;
    int rc;

    memset(req, 0, sizeof(*req));
    req->root = json_loadb(line, len, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &jerr);
    if (!req->root)
        return bim_error_set(err, -EINVAL, "invalid JSON at byte %d: %s", jerr.position, jerr.text);
    if (!json_is_object(req->root))
        return bim_error_set(err, -EINVAL, "a request must be a JSON object");
    if (!ctl_json_depth_ok(req->root, 1))
        return bim_error_set(err, -EINVAL, "the request is nested deeper than %d levels",
                             CTL_DEPTH_MAX);
    req->id = json_object_get(req->root, "id");
    if (req->id && ctl_json_has_nul(req->id))
        req->id = NULL; /* an id holding NUL is not echoed: no client could read it back */
    if (ctl_json_has_nul(req->root))
        return bim_error_set(err, -EINVAL, "strings must not contain NUL (\\u0000)");
    rc = ctl_string_field(req->root, "op", true, "", &op, err);
    if (rc)
        return rc;
    for (size_t i = 0; i < sizeof(ctl_ops) / sizeof(ctl_ops[0]) && !spec; i++) {
        if (strcmp(op, ctl_ops[i].name) == 0)
            spec = &ctl_ops[i];
    }
    if (!spec)
        return bim_error_set(err, -EINVAL, "unknown op \"%.32s\"", op);
    req->op = spec->op;
    snprintf(where, sizeof(where), "op \"%s\"", spec->name);
    rc = ctl_fields_check(req->root, spec->fields, where, err);
    if (rc)
        return rc;
    if (spec->op == CTL_OP_BACKUPS)
        return ctl_string_field(req->root, "target", true, "", &req->target, err);
    rc = ctl_name_field(req->root, "name", spec->name_required, "", &req->name, err);
    if (rc || !req->name)
        return rc;
    snprintf(prefix, sizeof(prefix), "%s: ", req->name);
    return ctl_op_fields_parse(req, prefix, err);
}

void ctl_request_clear(struct ctl_request *req)
{
    json_decref(req->root);
    memset(req, 0, sizeof(*req));
}
