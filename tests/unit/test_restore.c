/*
 * test_restore.c - the pure pieces of the restore source (sync/restore/): a
 * backup's cfg read (backup.c) as Longhorn writes it and as bimfs's backup
 * writes it (backup/cfg.c), its refusals; stored blocks decoded and checked
 * (block.c) from bimfs's own compressor (backup/compress.c) and by hand
 * (concatenated gzip members, a bad name, the fallback); backup URLs.
 * Independent writers (Python's) are the integration tests' business
 * (tests/integration/lhbackup_write.py).
 */
#include "backup_internal.h"
#include "check.h"
#include "restore/restore.h"

#include <errno.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <zlib.h>

#define SUM128                                                                                     \
    "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"                             \
    "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
#define ZERO_BLOCK "731859029215873fdac1c9f2f8bd25a334abf0f3a9e1b057cf2cacc2826d86b0"
#define B2 "b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2"

static int parse(const char *text, struct sync_restore_backup *b, struct bim_error *err)
{
    memset(err, 0, sizeof(*err));
    return sync_restore_backup_parse(text, strlen(text), b, err);
}

static void test_longhorns_final_cfg_is_read(void)
{
    struct sync_restore_backup b;
    struct bim_error err;
    const char *text =
        "{\"Name\":\"parrot\",\"Size\":\"4194816\",\"BlockCount\":\"2\",\"Checksum\":\"" SUM128
        "\",\"Labels\":{\"k\":\"v\"},\"CompressionMethod\":\"lz4\",\"CreatedTime\":\"2024-01-"
        "01T00:00:00Z\",\"CompleteTime\":\"2024-01-01T00:01:00Z\",\"Secret\":\"\","
        "\"SecretNamespace\":\"\",\"ProcessingBlocks\":{\"Blocks\":{}},\"Blocks\":["
        "{\"Offset\":4194304,\"BlockChecksum\":\"" B2 "\"},"
        "{\"Offset\":0,\"BlockChecksum\":\"" ZERO_BLOCK "\"}]}";

    CHECK_INT(parse(text, &b, &err), 0);
    CHECK_INT(b.size, 4194816);
    CHECK_STR(b.checksum, SUM128);
    CHECK_INT(b.method, BK_COMPRESSION_LZ4);
    CHECK_INT(b.count, 2);
    if (b.count == 2) { /* sorted, the last one short */
        CHECK_INT(b.blocks[0].off, 0);
        CHECK_INT(b.blocks[0].len, 2097152);
        CHECK_STR(b.blocks[0].checksum, ZERO_BLOCK);
        CHECK_INT(b.blocks[1].off, 4194304);
        CHECK_INT(b.blocks[1].len, 512);
    }
    sync_restore_backup_free(&b);
}

static void test_tolerant_fields(void)
{
    struct sync_restore_backup b;
    struct bim_error err;

    /* numbers for sizes, legacy (empty) method, null ProcessingBlocks and Labels, no Blocks */
    CHECK_INT(parse("{\"Size\":1048576,\"BlockCount\":0,\"Checksum\":\"\","
                    "\"CompressionMethod\":\"\",\"CompleteTime\":\"x\",\"Labels\":null,"
                    "\"ProcessingBlocks\":null}",
                    &b, &err),
              0);
    CHECK_INT(b.method, BK_COMPRESSION_GZIP);
    CHECK_INT(b.count, 0);
    CHECK_STR(b.checksum, "");
    sync_restore_backup_free(&b);
}

static void test_refusals_have_causes(void)
{
    static const struct {
        const char *text, *cause;
    } cases[] = {
        {"not json", "not a JSON object"},
        {"{\"Size\":\"1024\",\"CompleteTime\":\"\"}", "not complete"},
        {"{\"Size\":\"0\",\"CompleteTime\":\"t\"}", "Size is 0"},
        {"{\"Size\":\"12x\",\"CompleteTime\":\"t\"}", "bad Size"},
        {"{\"Size\":\"-1\",\"CompleteTime\":\"t\"}", "bad Size"},
        {"{\"Size\":\"4096\",\"CompleteTime\":\"t\",\"CompressionMethod\":\"zstd\"}",
         "not none, gzip or lz4"},
        {"{\"Size\":\"4096\",\"CompleteTime\":\"t\",\"Checksum\":\"abc\"}", "not a SHA-512"},
        {"{\"Size\":\"4194304\",\"CompleteTime\":\"t\",\"Blocks\":[{\"Offset\":512,"
         "\"BlockChecksum\":\"" B2 "\"}]}",
         "not a multiple of 2 MiB"},
        {"{\"Size\":\"4194304\",\"CompleteTime\":\"t\",\"Blocks\":[{\"Offset\":4194304,"
         "\"BlockChecksum\":\"" B2 "\"}]}",
         "inside the image"},
        {"{\"Size\":\"4194304\",\"CompleteTime\":\"t\",\"Blocks\":[{\"Offset\":0,"
         "\"BlockChecksum\":\"B2\"}]}",
         "64 hex digits"},
        {"{\"Size\":\"4194304\",\"CompleteTime\":\"t\",\"Blocks\":[{\"Offset\":0,"
         "\"BlockChecksum\":\"" B2 "\"},{\"Offset\":0,\"BlockChecksum\":\"" B2 "\"}]}",
         "two blocks at offset 0"},
    };

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct sync_restore_backup b;
        struct bim_error err;

        CHECK_INT(parse(cases[i].text, &b, &err), -EINVAL);
        CHECK(strstr(err.message, cases[i].cause) != NULL, "case %zu: \"%s\" does not say \"%s\"",
              i, err.message, cases[i].cause);
    }
}

/* What bimfs's own backup writes, bimfs's restore reads. */
static void test_our_backups_cfg_is_read(void)
{
    struct bk_cfg_block blocks[] = {{0, ZERO_BLOCK}, {2097152, B2}};
    struct bk_cfg cfg = {.name = "parrot",
                         .size = 4194304,
                         .checksum = SUM128,
                         .compression = BK_COMPRESSION_NONE,
                         .created = "2024-01-01T00:00:00Z",
                         .completed = "2024-01-01T00:01:00Z",
                         .blocks = blocks,
                         .block_count = 2};
    char *text = bk_cfg_encode(&cfg);
    struct sync_restore_backup b;
    struct bim_error err;

    CHECK(text != NULL, "no cfg");
    CHECK_INT(parse(text, &b, &err), 0);
    CHECK_INT(b.method, BK_COMPRESSION_NONE);
    CHECK_INT(b.count, 2);
    sync_restore_backup_free(&b);
    free(text);
    cfg.completed[0] = '\0';
    text = bk_cfg_encode(&cfg);
    CHECK_INT(parse(text, &b, &err), -EINVAL);
    free(text);
}

static void name_of(const void *data, size_t len, char out[65])
{
    static const char hex[] = "0123456789abcdef";
    unsigned char md[64];

    EVP_Digest(data, len, md, NULL, EVP_sha512(), NULL);
    for (int i = 0; i < 32; i++) {
        out[2 * i] = hex[md[i] >> 4];
        out[2 * i + 1] = hex[md[i] & 15];
    }
    out[64] = '\0';
}

static void test_blocks_decode_and_are_checked(void)
{
    static const enum bk_compression ours[] = {BK_COMPRESSION_LZ4, BK_COMPRESSION_GZIP,
                                               BK_COMPRESSION_NONE};
    size_t len = BK_BLOCK_SIZE, cap = bk_compress_bound(BK_COMPRESSION_GZIP, len) + 4096;
    unsigned char *data = malloc(len), *stored = malloc(cap);
    unsigned char *out = malloc(SYNC_RESTORE_BLOCK_STORED_MAX);
    struct sync_restore_decoder *d = NULL;
    struct bim_error err = {0};
    char name[65];

    CHECK_INT(sync_restore_decoder_open(&d), 0);
    for (size_t i = 0; i < len; i++)
        data[i] = (unsigned char)(i * 7 + i / 4096);
    name_of(data, len, name);
    for (size_t m = 0; m < 3; m++) {
        size_t n = 0, got = 0;

        CHECK_INT(bk_compress(ours[m], data, len, stored, cap, &n, &err), 0);
        CHECK_INT(sync_restore_block_decode(d, ours[m], stored, n, out,
                                            SYNC_RESTORE_BLOCK_STORED_MAX, &got, name, &err),
                  0);
        CHECK(got == len && memcmp(out, data, len) == 0, "method %zu: other bytes", m);
        /* Longhorn's fallback: lz4 and gzip read whatever the cfg says of them */
        if (ours[m] != BK_COMPRESSION_NONE)
            CHECK_INT(sync_restore_block_decode(d, ours[1 - m], stored, n, out,
                                                SYNC_RESTORE_BLOCK_STORED_MAX, &got, name, &err),
                      0);
        /* a byte flipped: the frame's checksum, gzip's CRC, or the name catches it */
        stored[n / 2] ^= 1;
        CHECK_INT(sync_restore_block_decode(d, ours[m], stored, n, out,
                                            SYNC_RESTORE_BLOCK_STORED_MAX, &got, name, &err),
                  -EBADMSG);
        CHECK(err.message[0], "method %zu: no cause", m);
    }
    /* another block's name */
    CHECK_INT(sync_restore_block_decode(d, BK_COMPRESSION_NONE, data, len, out,
                                        SYNC_RESTORE_BLOCK_STORED_MAX, &(size_t){0}, ZERO_BLOCK,
                                        &err),
              -EBADMSG);
    CHECK(strstr(err.message, "do not hash to its name") != NULL, "\"%s\"", err.message);
    sync_restore_decoder_close(d);
    free(out);
    free(stored);
    free(data);
}

/* Two gzip members one after another read as one stream (Go's reader). */
static void test_gzip_members_are_concatenated(void)
{
    const char *a = "first member ", *b = "second member";
    unsigned char stored[256], *out = malloc(SYNC_RESTORE_BLOCK_STORED_MAX);
    struct sync_restore_decoder *d = NULL;
    struct bim_error err = {0};
    size_t n = 0, got = 0;
    char name[65], both[64];

    for (int i = 0; i < 2; i++) {
        const char *part = i ? b : a;
        z_stream z = {0};

        deflateInit2(&z, 6, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY);
        z.next_in = (unsigned char *)part;
        z.avail_in = (uInt)strlen(part);
        z.next_out = stored + n;
        z.avail_out = (uInt)(sizeof(stored) - n);
        deflate(&z, Z_FINISH);
        n = sizeof(stored) - z.avail_out;
        deflateEnd(&z);
    }
    snprintf(both, sizeof(both), "%s%s", a, b);
    name_of(both, strlen(both), name);
    CHECK_INT(sync_restore_decoder_open(&d), 0);
    CHECK_INT(sync_restore_block_decode(d, BK_COMPRESSION_GZIP, stored, n, out,
                                        SYNC_RESTORE_BLOCK_STORED_MAX, &got, name, &err),
              0);
    CHECK(got == strlen(both) && memcmp(out, both, got) == 0, "got %zu bytes", got);
    sync_restore_decoder_close(d);
    free(out);
}

static void test_backup_urls(void)
{
    struct sync_restore_job job;
    struct bim_error err;

    CHECK_INT(sync_restore_url_parse("vfs:///b?backingImage=parrot", &job, &err), 0);
    CHECK_STR(job.backup, "parrot");
    CHECK_STR(job.url, "vfs:///b?backingImage=parrot");
    CHECK_INT(
        sync_restore_url_parse("s3://bk@us-east-1/p/?x=1&backingImage=a.b_c-d&y=2", &job, &err), 0);
    CHECK_STR(job.backup, "a.b_c-d");
    CHECK_INT(sync_restore_url_parse("vfs:///b?xbackingImage=parrot", &job, &err), -EINVAL);
    CHECK_INT(sync_restore_url_parse("vfs:///b", &job, &err), -EINVAL);
    CHECK_INT(sync_restore_url_parse("vfs:///b?backingImage=", &job, &err), -EINVAL);
    CHECK_INT(sync_restore_url_parse("vfs:///b?backingImage=../x", &job, &err), -EINVAL);
    CHECK_INT(sync_restore_url_parse("vfs:///a b?backingImage=parrot", &job, &err), -EINVAL);
    CHECK_INT(sync_restore_url_parse("", &job, &err), -EINVAL);
}

int main(void)
{
    RUN(test_longhorns_final_cfg_is_read);
    RUN(test_tolerant_fields);
    RUN(test_refusals_have_causes);
    RUN(test_our_backups_cfg_is_read);
    RUN(test_blocks_decode_and_are_checked);
    RUN(test_gzip_members_are_concatenated);
    RUN(test_backup_urls);
    return check_exit();
}
