/*
 * fuzz_http_range.c - the range headers of HTTP: Range as the server judges
 * it (ctl_http_range_parse, SPEC §8) and Content-Range as the peer client
 * and the downloader read it (http_content_range_parse).
 *
 * Input: 8 bytes of representation size (little-endian), then the header
 * value. Checks beyond the sanitizers: a partial range lies inside the
 * representation; a Content-Range read has first <= last < complete.
 */
#include "http.h"
#include "http/client.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint64_t rep_size = 0, first = UINT64_MAX, last = UINT64_MAX;
    int64_t complete = 0;
    char *value;

    if (size < 8)
        return 0;
    for (int i = 7; i >= 0; i--)
        rep_size = rep_size << 8 | data[i];
    value = malloc(size - 8 + 1);
    if (!value)
        abort();
    memcpy(value, data + 8, size - 8);
    value[size - 8] = '\0';

    switch (ctl_http_range_parse(value, rep_size, &first, &last)) {
    case CTL_HTTP_RANGE_PARTIAL:
        if (first > last || last >= rep_size)
            abort();
        break;
    case CTL_HTTP_RANGE_NONE:
    case CTL_HTTP_RANGE_UNSATISFIABLE:
        break;
    default:
        abort();
    }
    if (http_content_range_parse(value, &first, &last, &complete) &&
        (first > last || (complete != -1 && (complete < 0 || (uint64_t)complete <= last))))
        abort();
    free(value);
    return 0;
}
