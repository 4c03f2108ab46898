/*
 * download.h - what the files of sync/download/ share: the download source
 * (an http or https URL; docs/download.md). Its operations are
 * sync_download_ops (source.h); this header is the folder's own.
 *
 * Threads: the worker running the job; create and adoption for the cfg
 * helpers (no shared state).
 */
#ifndef BIMFS_SYNC_DOWNLOAD_H
#define BIMFS_SYNC_DOWNLOAD_H

#include "../http/client.h"
#include "../sync_internal.h"

#include <jansson.h>

#define SYNC_DOWNLOAD_BUFFER                                                                       \
    STORE_RING_CHUNK              /* received bytes are written in pieces this large               \
                                   */
#define SYNC_URL_MAX HTTP_URL_MAX /* bytes of a download URL */
/* longer ETag / Last-Modified values are not used */
#define SYNC_VALIDATOR_MAX HTTP_VALIDATOR_MAX

/* The download's own state (the job's `state`). */
struct sync_download_job {
    char *url;   /* as given, credentials included (malloc'd; never logged, shown or written) */
    bool resume; /* continue the backing.tmp a restart left (its validators are in the cfg) */
};

/* ---- cfg.c: what a download keeps in its cfg to resume ---- */

struct sync_download_saved {
    bool present;     /* the cfg has the download's object */
    bool credentials; /* the URL had credentials: it is not kept */
    char url[SYNC_URL_MAX + 1];
    char etag[SYNC_VALIDATOR_MAX];
    char last_modified[SYNC_VALIDATOR_MAX];
    int64_t size; /* -1 when not known */
};

/* Read it from a cfg's extra fields (NULL: none; absent = !present). */
int sync_download_saved_get(const char *extra, struct sync_download_saved *out);

/* extra (may be NULL) with the object set to s; *out malloc'd JSON text. */
int sync_download_saved_put(const char *extra, const struct sync_download_saved *s, char **out);

/* Rewrite <name>-<uuid>/backing.cfg with the object set to s. */
int sync_download_saved_store(struct sync *sync, const char *name, const char *uuid,
                              const struct sync_download_saved *s, struct bim_error *err);

#endif
