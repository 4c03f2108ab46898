/*
 * image.c - sync's image records as the control socket's JSON (SPEC §6):
 * the field names of Longhorn's `backing-image-manager backing-image list`,
 * plus bimfs's progress details (bytesDone, bytesTotal, rate) in status.
 *
 * Threads: no shared state; called from connection threads.
 */
#include "protocol.h"

#include <stdint.h>

/* JSON integers are signed 64-bit; no size reaches this, but never wrap. */
static json_t *ctl_json_u64(uint64_t value)
{
    return json_integer(value > INT64_MAX ? INT64_MAX : (json_int_t)value);
}

json_t *ctl_image_to_json(const struct sync_image_info *info)
{
    json_t *status, *image;

    status = json_pack("{s:s, s:o, s:i, s:o, s:o, s:i, s:o, s:o, s:o}", "state",
                       sync_state_name(info->state), "currentChecksum",
                       ctl_json_text(info->current_checksum), "sendingReference",
                       info->sending_reference, "errorMsg", ctl_json_text(info->error),
                       "senderManagerAddress", ctl_json_text(info->sender), "progress",
                       info->progress, "bytesDone", ctl_json_u64(info->bytes_done), "bytesTotal",
                       ctl_json_u64(info->bytes_total), "rate", ctl_json_u64(info->rate));
    if (!status)
        return NULL;
    image = json_pack(
        "{s:o, s:o, s:o, s:o, s:o, s:s, s:o, s:o, s:o}", "name", ctl_json_text(info->name), "uuid",
        ctl_json_text(info->uuid), "size", ctl_json_u64(info->size), "virtualSize",
        ctl_json_u64(info->virtual_size), "realSize", ctl_json_u64(info->real_size), "format",
        store_format_name(info->format), "expectedChecksum", ctl_json_text(info->expected_checksum),
        "source", ctl_json_text(info->source), "status", status);
    return image;
}

json_t *ctl_event_to_json(const struct sync_event *ev)
{
    json_t *image = ctl_image_to_json(&ev->image);

    if (!image)
        return NULL;
    return json_pack("{s:s, s:o}", "event", ev->type == SYNC_EVENT_DELETE ? "delete" : "update",
                     "image", image);
}

json_t *ctl_images_to_json(const struct sync_image_info *images, size_t count)
{
    json_t *map = json_object();

    for (size_t i = 0; map && i < count; i++) {
        if (json_object_set_new(map, images[i].name, ctl_image_to_json(&images[i]))) {
            json_decref(map);
            map = NULL;
        }
    }
    return map;
}
