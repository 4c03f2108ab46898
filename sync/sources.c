/*
 * sources.c - the table of sources: enum sync_source_type -> its operations
 * (source.h). A switch without a default, so that a source type without an
 * entry is a -Wswitch error, never silently another source.
 *
 * Threads: any; the table is constant.
 */
#include "source.h"

#include <stddef.h>

const struct sync_source_ops *sync_source_get(enum sync_source_type type)
{
    switch (type) {
    case SYNC_SOURCE_UPLOAD:
        return &sync_upload_ops;
    case SYNC_SOURCE_CLONE:
        return &sync_clone_ops;
    case SYNC_SOURCE_DOWNLOAD:
        return &sync_download_ops;
    case SYNC_SOURCE_PEER:
        return &sync_peer_ops;
    case SYNC_SOURCE_STREAM:
        return &sync_stream_ops;
    case SYNC_SOURCE_RESTORE:
        return &sync_restore_ops;
    }
    return NULL;
}
