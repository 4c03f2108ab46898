/*
 * image.c - sync's image records as the wire codec's image objects (SPEC
 * §6; common/wire/wire.h holds the JSON, which the HTTP API, bimctl and the
 * peer client read with the same code).
 *
 * Threads: no shared state; called from connection and HTTP threads.
 */
#include "request.h"

#include <stdlib.h>
#include <string.h>

void ctl_image_from_info(const struct sync_image_info *info, struct wire_image *out)
{
    struct wire_status *st = &out->status;

    memset(out, 0, sizeof(*out));
    str_copy(out->name, sizeof(out->name), info->name);
    str_copy(out->uuid, sizeof(out->uuid), info->uuid);
    out->size = info->size;
    out->virtual_size = info->virtual_size;
    out->real_size = info->real_size;
    str_copy(out->format, sizeof(out->format), store_format_name(info->format));
    str_copy(out->expected_checksum, sizeof(out->expected_checksum), info->expected_checksum);
    str_copy(out->source, sizeof(out->source), info->source);
    str_copy(st->state, sizeof(st->state), sync_state_name(info->state));
    str_copy(st->current_checksum, sizeof(st->current_checksum), info->current_checksum);
    st->sending_reference = info->sending_reference > 0 ? (uint64_t)info->sending_reference : 0;
    str_copy(st->error, sizeof(st->error), info->error);
    str_copy(st->sender, sizeof(st->sender), info->sender);
    st->progress = info->progress;
    st->bytes_done = info->bytes_done;
    st->bytes_total = info->bytes_total;
    st->rate = info->rate;
    if (info->state == SYNC_STATE_READY)
        str_copy(st->verified, sizeof(st->verified), info->verified);
    bim_time_rfc3339(info->last_scrub, st->last_scrub);
}

json_t *ctl_image_to_json(const struct sync_image_info *info)
{
    struct wire_image *image = malloc(sizeof(*image)); /* ~5 KiB: not on a pool thread's stack */
    json_t *value = NULL;

    if (image) {
        ctl_image_from_info(info, image);
        value = wire_image_to_json(image);
        free(image);
    }
    return value;
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
