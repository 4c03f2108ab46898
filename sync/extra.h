/*
 * extra.h - a source's own object among the cfg's extra fields (extra.c),
 * for the sources that keep one (download/cfg.c, peer/cfg.c). Apart from
 * the core's header, which sees no jansson.
 */
#ifndef BIMFS_SYNC_EXTRA_H
#define BIMFS_SYNC_EXTRA_H

#include <jansson.h>

/* The object under key in the extras' JSON text (NULL text, not JSON, or
 * no such key: NULL). A new reference: decref it. */
json_t *sync_extra_get(const char *extra, const char *key);

/* The extras with key set to value (its reference is taken, even on
 * failure), the other fields kept, as new JSON text in *out (malloc'd).
 * -ENOMEM. */
int sync_extra_set(const char *extra, const char *key, json_t *value, char **out);

#endif
