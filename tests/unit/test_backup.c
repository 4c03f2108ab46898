/*
 * test_backup.c - the pure pieces of backups (backup/cfg.c, layout.c,
 * compress.c): the cfg byte for byte as Go's encoding/json writes Longhorn's
 * struct (notes/backupstore.md A4), the layout's paths and URLs, the lz4 frame
 * and gzip headers.
 */
#include "backup_internal.h"
#include "check.h"

#include <errno.h>
#include <stdlib.h>

#define SUM128                                                                                     \
    "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"                             \
    "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
#define ZERO_BLOCK "731859029215873fdac1c9f2f8bd25a334abf0f3a9e1b057cf2cacc2826d86b0"

static void test_initial_cfg_is_longhorns(void)
{
    struct bk_cfg cfg = {.name = "parrot",
                         .size = 4194304,
                         .checksum = SUM128,
                         .compression = BK_COMPRESSION_LZ4,
                         .created = "2024-01-01T00:00:00Z"};
    char *text = bk_cfg_encode(&cfg);

    CHECK_STR(
        text,
        "{\"Name\":\"parrot\",\"Size\":\"4194304\",\"BlockCount\":\"0\",\"Checksum\":\"" SUM128
        "\",\"Labels\":null,\"CompressionMethod\":\"lz4\",\"CreatedTime\":\"2024-01-"
        "01T00:00:00Z\",\"CompleteTime\":\"\",\"Secret\":\"\",\"SecretNamespace\":"
        "\"\",\"ProcessingBlocks\":null}");
    free(text);
}

static void test_final_cfg_is_longhorns(void)
{
    struct bk_label labels[] = {{"k", "v"}};
    struct bk_cfg_block blocks[] = {{0, ZERO_BLOCK}, {2097152, ZERO_BLOCK}};
    struct bk_cfg cfg = {.name = "parrot",
                         .size = 4194304,
                         .checksum = SUM128,
                         .compression = BK_COMPRESSION_GZIP,
                         .created = "2024-01-01T00:00:00Z",
                         .completed = "2024-01-01T00:01:00Z",
                         .labels = labels,
                         .label_count = 1,
                         .blocks = blocks,
                         .block_count = 2};
    char *text = bk_cfg_encode(&cfg);

    CHECK_STR(
        text,
        "{\"Name\":\"parrot\",\"Size\":\"4194304\",\"BlockCount\":\"2\",\"Checksum\":\"" SUM128
        "\",\"Labels\":{\"k\":\"v\"},\"CompressionMethod\":\"gzip\",\"CreatedTime\":"
        "\"2024-01-01T00:00:00Z\",\"CompleteTime\":\"2024-01-01T00:01:00Z\","
        "\"Secret\":\"\",\"SecretNamespace\":\"\",\"ProcessingBlocks\":{\"Blocks\":{}"
        "},\"Blocks\":[{\"Offset\":0,\"BlockChecksum\":\"" ZERO_BLOCK
        "\"},{\"Offset\":2097152,\"BlockChecksum\":\"" ZERO_BLOCK "\"}]}");
    free(text);
    cfg.block_count = 0; /* Blocks is omitempty */
    cfg.label_count = 0;
    text = bk_cfg_encode(&cfg);
    CHECK(text && !strstr(text, "\"Blocks\":[") && strstr(text, "\"Labels\":{}"), "%s", text);
    free(text);
}

static void test_cfg_is_read_tolerantly(void)
{
    const char *longhorn =
        "{\"Name\":\"x\",\"Size\":\"1024\",\"BlockCount\":\"0\",\"Checksum\":\"\","
        "\"Labels\":null,\"CompressionMethod\":\"\",\"CreatedTime\":\"t\","
        "\"CompleteTime\":\"\",\"ProcessingBlocks\":{\"Blocks\":{}}}";
    struct bk_backup_entry e;
    struct bim_error err = {{0}, 0};

    CHECK_INT(bk_cfg_decode_entry(longhorn, strlen(longhorn), &e, &err), 0);
    CHECK_INT(e.size, 1024);
    CHECK_STR(e.compression, "gzip"); /* empty: Longhorn's legacy method */
    CHECK_STR(e.completed, "");
    bk_entry_clear(&e);
    /* Size is a string in Longhorn's; a JSON number is taken too, nothing else */
    CHECK_INT(bk_cfg_decode_entry("{\"Size\":4}", 10, &e, &err), 0);
    CHECK_INT(e.size, 4);
    bk_entry_clear(&e);
    CHECK_INT(bk_cfg_decode_entry("{\"Size\":-4}", 11, &e, &err), -EINVAL);
    CHECK_INT(bk_cfg_decode_entry("{\"Size\":4.5}", 12, &e, &err), -EINVAL);
    CHECK_INT(bk_cfg_decode_entry("{\"Size\":true}", 13, &e, &err), -EINVAL);
    CHECK_INT(bk_cfg_decode_entry("[]", 2, &e, &err), -EINVAL);
}

static void test_layout(void)
{
    char path[BK_PATH_MAX], url[BK_URL_MAX];

    bk_block_path(ZERO_BLOCK, path);
    CHECK_STR(path, "backupstore/backing-images/blocks/73/18/" ZERO_BLOCK ".blk");
    bk_cfg_path("parrot", path);
    CHECK_STR(path, "backupstore/backing-images/backing-images/parrot/backing-image.cfg");
    CHECK_INT(bk_backup_url("s3://bk@us-east-1/path", "parrot", url), 0);
    CHECK_STR(url, "s3://bk@us-east-1/path?backingImage=parrot");
    CHECK_INT(bk_backup_url("nfs://h:/e?nfsOptions=soft", "parrot", url), 0);
    CHECK_STR(url, "nfs://h:/e?nfsOptions=soft&backingImage=parrot");
}

static void test_compressed_headers(void)
{
    static unsigned char in[BK_BLOCK_SIZE], out[BK_BLOCK_SIZE + 65536];
    struct bim_error err = {{0}, 0};
    size_t n = 0;

    memset(in, 'a', sizeof(in));
    CHECK_INT(bk_compress(BK_COMPRESSION_LZ4, in, sizeof(in), out, sizeof(out), &n, &err), 0);
    CHECK(n > 7 && memcmp(out, "\x04\x22\x4d\x18\x64\x70", 6) == 0, "lz4 frame header");
    CHECK_INT(bk_compress(BK_COMPRESSION_GZIP, in, sizeof(in), out, sizeof(out), &n, &err), 0);
    CHECK(n > 10 && memcmp(out, "\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff", 10) == 0,
          "gzip header is not Go's");
    CHECK(bk_compress_bound(BK_COMPRESSION_LZ4, BK_BLOCK_SIZE) <= sizeof(out), "lz4 bound");
}

int main(void)
{
    RUN(test_initial_cfg_is_longhorns);
    RUN(test_final_cfg_is_longhorns);
    RUN(test_cfg_is_read_tolerantly);
    RUN(test_layout);
    RUN(test_compressed_headers);
    return check_exit();
}
