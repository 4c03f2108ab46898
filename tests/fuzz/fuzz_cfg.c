/*
 * fuzz_cfg.c - backing.cfg as found on a disk: Longhorn's fields and
 * bimfs's (store_cfg_parse), then what adoption reads from it: the expected
 * checksum (store_checksum_parse) and a download's resume object among the
 * extra fields (sync_download_saved_get, sync_download_saved_put).
 *
 * Checks beyond the sanitizers: a cfg that parses serializes, and the
 * serialized text parses to the same cfg and serializes to the same text (a
 * rewrite of the cfg loses nothing and converges); an error has a message.
 */
#include "store.h"
#include "download/download.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct store_cfg cfg, again; /* 10 KiB each: not on the stack */

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    json_object_seed(1);
    return 0;
}

/* Resume fields, as adoption reads them; then written back as download.c does. */
static void fuzz_saved_check(const char *extra)
{
    struct sync_download_saved saved, back;
    char *text = NULL;

    sync_download_saved_get(extra, &saved);
    if (!saved.present)
        return;
    if (sync_download_saved_put(extra, &saved, &text) != 0)
        abort();
    sync_download_saved_get(text, &back);
    if (!back.present || back.credentials != saved.credentials || back.size != saved.size ||
        strcmp(back.url, saved.url) != 0 || strcmp(back.etag, saved.etag) != 0 ||
        strcmp(back.last_modified, saved.last_modified) != 0)
        abort();
    free(text);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct bim_error err = {0};
    struct store_checksum sum;
    char *text = NULL, *text2 = NULL;

    if (store_cfg_parse((const char *)data, size, &cfg, &err) != 0) {
        if (err.message[0] == '\0')
            abort();
        return 0;
    }
    if (store_checksum_parse(cfg.expected_checksum, &sum, &err) < 0 && err.message[0] == '\0')
        abort();
    fuzz_saved_check(cfg.extra);

    if (store_cfg_serialize(&cfg, &text) != 0)
        abort(); /* a cfg we read could not be written back */
    if (store_cfg_parse(text, strlen(text), &again, &err) != 0)
        abort(); /* we wrote a cfg we cannot read */
    if (memcmp(&again, &cfg, offsetof(struct store_cfg, extra)) != 0)
        abort();
    if (store_cfg_serialize(&again, &text2) != 0 || strcmp(text, text2) != 0)
        abort();
    free(text2);
    free(text);
    store_cfg_clear(&again);
    store_cfg_clear(&cfg);
    return 0;
}
