/*
 * fuzz_restore.c - what a restore reads from a backup target, which bimfs did
 * not write (sync/restore/): the first byte picks the parser.
 *
 *   0  a backup's cfg, backing-image.cfg (sync_restore_backup_parse)
 *   1  a stored block (sync_restore_block_decode): the next byte picks the
 *      method (lz4, gzip, none: enum bk_compression), the next 64 bytes are
 *      the name checked
 *   2  a backup URL (sync_restore_url_parse) and the cfg object that keeps
 *      it (sync_restore_saved_put, then _get)
 *
 * Checks beyond the sanitizers: an accepted backup's blocks are sorted,
 * disjoint, 2 MiB-aligned, inside the image, each as long as its place;
 * decoded bytes fit the buffer; an accepted URL names a valid backing image
 * and survives the cfg; an error has a message.
 */
#include "restore/restore.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct sync_restore_decoder *decoder;
static unsigned char *out;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    json_object_seed(1);
    out = malloc(SYNC_RESTORE_BLOCK_STORED_MAX);
    if (!out || sync_restore_decoder_open(&decoder) != 0)
        abort();
    return 0;
}

static void fuzz_backup(const uint8_t *data, size_t size)
{
    struct sync_restore_backup b;
    struct bim_error err = {0};

    if (sync_restore_backup_parse((const char *)data, size, &b, &err) != 0) {
        if (!err.message[0])
            abort();
        return;
    }
    if (b.size == 0)
        abort();
    for (size_t i = 0; i < b.count; i++) {
        const struct sync_restore_block *k = &b.blocks[i];
        uint64_t want = b.size - k->off < BK_BLOCK_SIZE ? b.size - k->off : BK_BLOCK_SIZE;

        if (k->off % BK_BLOCK_SIZE || k->off >= b.size || k->len != want ||
            strlen(k->checksum) != BK_BLOCK_HEX)
            abort();
        if (i > 0 && b.blocks[i - 1].off + b.blocks[i - 1].len > k->off)
            abort();
    }
    sync_restore_backup_free(&b);
}

static void fuzz_block(const uint8_t *data, size_t size)
{
    char name[BK_BLOCK_HEX + 1];
    struct bim_error err = {0};
    size_t n = 0;

    if (size < 1 + BK_BLOCK_HEX)
        return;
    memcpy(name, data + 1, BK_BLOCK_HEX);
    name[BK_BLOCK_HEX] = '\0';
    if (sync_restore_block_decode(decoder, (enum bk_compression)(data[0] % 3),
                                  data + 1 + BK_BLOCK_HEX, size - 1 - BK_BLOCK_HEX, out,
                                  SYNC_RESTORE_BLOCK_STORED_MAX, &n, name, &err) != 0) {
        if (!err.message[0])
            abort();
        return;
    }
    if (n > SYNC_RESTORE_BLOCK_STORED_MAX)
        abort();
}

static void fuzz_url(const uint8_t *data, size_t size)
{
    struct sync_restore_job job, back;
    struct bim_error err = {0};
    char *text, *extra = NULL;

    text = malloc(size + 1);
    if (!text)
        return;
    memcpy(text, data, size);
    text[size] = '\0';
    if (sync_restore_url_parse(text, &job, &err) != 0) {
        if (!err.message[0])
            abort();
        free(text);
        return;
    }
    if (!store_name_valid(job.backup) || strcmp(job.url, text) != 0)
        abort();
    if (sync_restore_saved_put(NULL, &job, &extra) != 0 ||
        sync_restore_saved_get(extra, &back) != 1 || strcmp(back.url, job.url) != 0 ||
        strcmp(back.backup, job.backup) != 0)
        abort();
    free(extra);
    free(text);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    switch (data[0] % 3) {
    case 0:
        fuzz_backup(data + 1, size - 1);
        break;
    case 1:
        fuzz_block(data + 1, size - 1);
        break;
    default:
        fuzz_url(data + 1, size - 1);
        break;
    }
    return 0;
}
