/*
 * names.c - image names, uuids and checksums as SPEC §3 defines them:
 * validation (the wire codec's), uuid generation, parsing and canonical text of expected
 * checksums, and the "<name>-<uuid>" directory name.
 *
 * Threads: any; no shared state.
 */
#include "store_internal.h"
#include "wire.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

/* The syntax is the wire codec's (common/wire/check.c), so the store
 * adopts exactly the names that requests may use. */
bool store_name_valid(const char *name)
{
    return wire_name_valid(name);
}

bool store_uuid_valid(const char *uuid)
{
    return wire_uuid_valid(uuid);
}

static void store_random_fill(unsigned char *buf, size_t len)
{
    size_t got = 0;

    while (got < len) {
        ssize_t n = getrandom(buf + got, len - got, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    if (got < len) {
        /* getrandom(2) is missing or failed: not secret, just unique enough */
        struct timespec ts;
        uint64_t mix;

        clock_gettime(CLOCK_REALTIME, &ts);
        mix = (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 20) ^ ((uint64_t)getpid() << 40);
        for (size_t i = got; i < len; i++) {
            mix = mix * 6364136223846793005ull + 1442695040888963407ull;
            buf[i] = (unsigned char)(mix >> 56);
        }
    }
}

void store_uuid_generate(char out[9])
{
    unsigned char bytes[4];

    store_random_fill(bytes, sizeof(bytes));
    snprintf(out, 9, "%02x%02x%02x%02x", bytes[0], bytes[1], bytes[2], bytes[3]);
}

int store_dirname(const char *name, const char *uuid, char out[STORE_DIRNAME_MAX])
{
    if (!store_name_valid(name) || !store_uuid_valid(uuid))
        return -EINVAL;
    snprintf(out, STORE_DIRNAME_MAX, "%s-%s", name, uuid);
    return 0;
}

/* Copy `len` hex digits of `hex` lowercased into out; false on a non-hex
 * character or a wrong length. */
static bool store_hex_copy_lower(const char *hex, size_t len, char *out)
{
    if (strlen(hex) != len)
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = hex[i];
        if (c >= 'A' && c <= 'F')
            c = (char)(c - 'A' + 'a');
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
            return false;
        out[i] = c;
    }
    out[len] = '\0';
    return true;
}

int store_checksum_parse(const char *text, struct store_checksum *out, struct bim_error *err)
{
    memset(out, 0, sizeof(*out));
    if (!text || !*text)
        return 0;
    if (strncmp(text, "sha256:", 7) == 0) {
        if (!store_hex_copy_lower(text + 7, 64, out->hex))
            goto invalid;
        out->algo = STORE_DIGEST_SHA256;
        return 0;
    }
    if (strncmp(text, "sha512:", 7) == 0)
        text += 7;
    if (!store_hex_copy_lower(text, 128, out->hex))
        goto invalid;
    out->algo = STORE_DIGEST_SHA512;
    return 0;

invalid:
    memset(out, 0, sizeof(*out));
    return bim_error_set(err, -EINVAL,
                         "invalid checksum: expected 128 hex digits or sha512:<128 hex digits> "
                         "(SHA-512), or sha256:<64 hex digits> (SHA-256)");
}

void store_checksum_format(const struct store_checksum *sum, char out[STORE_EXPECTED_MAX + 1])
{
    switch (sum->algo) {
    case STORE_DIGEST_SHA512:
        snprintf(out, STORE_EXPECTED_MAX + 1, "%s", sum->hex);
        break;
    case STORE_DIGEST_SHA256:
        snprintf(out, STORE_EXPECTED_MAX + 1, "sha256:%s", sum->hex);
        break;
    default:
        out[0] = '\0';
        break;
    }
}

const char *store_format_name(enum store_format format)
{
    switch (format) {
    case STORE_FORMAT_RAW:
        return "raw";
    case STORE_FORMAT_QCOW2:
        return "qcow2";
    default:
        return "";
    }
}
