/*
 * request.h - the server side of the control socket's protocol (SPEC §6,
 * docs/protocol.md): parsing a request (request.c), sync's records as the
 * wire codec's image objects (image.c), serving one connection
 * (session.c). These link sync; bimctl does not include this header.
 *
 * Threads: nothing here has shared state; a struct ctl_request belongs to
 * one thread.
 */
#ifndef BIMFS_CTL_REQUEST_H
#define BIMFS_CTL_REQUEST_H

#include "ctl.h"
#include "protocol.h"
#include "backup.h"
#include "sync.h" /* enum sync_source_type */

/* ---- server side: requests ---- */

enum ctl_op {
    CTL_OP_VERSION,
    CTL_OP_LIST,
    CTL_OP_GET,
    CTL_OP_CREATE,
    CTL_OP_SYNC,
    CTL_OP_DELETE,
    CTL_OP_WATCH,
    CTL_OP_BACKUP,
    CTL_OP_BACKUP_STATUS,
    CTL_OP_BACKUPS,
};

/* A validated request; the strings borrow from root. */
struct ctl_request {
    json_t *root;
    json_t *id; /* NULL if the request had none */
    enum ctl_op op;
    const char *name; /* NULL when absent (list, version, watch of all) */
    const char *uuid; /* NULL when absent */
    const char *checksum;
    enum sync_source_type source;         /* create and sync (SYNC_SOURCE_PEER) */
    const char *url;                      /* download, restore */
    const char *clone_from;               /* clone */
    const char *peers[BIM_PEERS_MAX + 1]; /* sync: NULL-terminated */
    size_t peer_count;
    uint64_t size;           /* sync: 0 if absent */
    const char *target;      /* backup, backups: the backup target URL */
    const char *compression; /* backup: NULL when absent */
    json_t *labels;          /* backup: an object of strings, or NULL */
};

/*
 * Parse and validate one request line. On -EINVAL the message says why
 * ("<name>: <cause>" when the name is known) and req->id is still set when
 * the line was an object with an id. Always call ctl_request_clear().
 */
int ctl_request_parse(const char *line, size_t len, struct ctl_request *req, struct bim_error *err);
void ctl_request_clear(struct ctl_request *req);

/* "version", "list", ... */
const char *ctl_op_name(enum ctl_op op);

/* ---- server side: records as JSON (the wire codec's image object) ---- */

/* A record as the wire carries it. */
void ctl_image_from_info(const struct sync_image_info *info, struct wire_image *out);

/* wire_image_to_json() of the record; NULL on allocation failure. */
json_t *ctl_image_to_json(const struct sync_image_info *info);

/* {"event": "update"|"delete", "image": {...}} */
json_t *ctl_event_to_json(const struct sync_event *ev);

/* The `list` result: an object name -> image. NULL on allocation failure. */
json_t *ctl_images_to_json(const struct sync_image_info *images, size_t count);

/* ---- server side: one connection (session.c) ---- */

/* Serve one connection until the client closes it, a line is too long, or
 * the fd is shut down by ctl_server_stop(). Does not close fd. */
void ctl_session_run(struct sync *sync, struct bk_backups *backups, const char *version, int fd);

/* ---- server side: backups (backup.c) ---- */

/* The ops backup, backup-status and backups (SPEC §10) into *result. */
int ctl_backup_dispatch(struct sync *sync, struct bk_backups *backups,
                        const struct ctl_request *req, json_t **result, struct bim_error *err);

#endif
