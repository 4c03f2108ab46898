/*
 * compress.c - a block as Longhorn stores it (notes/backupstore.md A3): the
 * lz4 frame format (liblz4's LZ4F_compressFrame: 4 MB blocks, a content
 * checksum, as pierrec/lz4 writes by default; never the legacy frame), gzip
 * (zlib, one member, MTIME 0 and OS 255 as Go's compress/gzip), or the bytes.
 *
 * Threads: any; no state.
 */
#include "backup_internal.h"

#include <errno.h>
#include <lz4frame.h>
#include <string.h>
#include <zlib.h>

static void bk_lz4_prefs(LZ4F_preferences_t *prefs)
{
    memset(prefs, 0, sizeof(*prefs));
    prefs->frameInfo.blockSizeID = LZ4F_max4MB;
    prefs->frameInfo.blockMode = LZ4F_blockIndependent;
    prefs->frameInfo.contentChecksumFlag = LZ4F_contentChecksumEnabled;
    prefs->frameInfo.frameType = LZ4F_frame;
}

size_t bk_compress_bound(enum bk_compression c, size_t len)
{
    LZ4F_preferences_t prefs;

    switch (c) {
    case BK_COMPRESSION_LZ4:
        bk_lz4_prefs(&prefs);
        return LZ4F_compressFrameBound(len, &prefs);
    case BK_COMPRESSION_GZIP:
        return compressBound(len) + 64; /* the gzip header and trailer */
    case BK_COMPRESSION_NONE:
        break;
    }
    return len;
}

static int bk_gzip(const void *in, size_t len, void *out, size_t cap, size_t *out_len,
                   struct bim_error *err)
{
    gz_header header = {.os = 255};
    z_stream z = {0};
    int zrc;

    if (deflateInit2(&z, Z_DEFAULT_COMPRESSION, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK)
        return bim_error_set(err, -ENOMEM, "gzip: cannot start zlib");
    deflateSetHeader(&z, &header);
    z.next_in = (Bytef *)in;
    z.avail_in = (uInt)len;
    z.next_out = out;
    z.avail_out = (uInt)cap;
    zrc = deflate(&z, Z_FINISH);
    *out_len = z.total_out;
    deflateEnd(&z);
    if (zrc != Z_STREAM_END)
        return bim_error_set(err, -EIO, "gzip: zlib error %d", zrc);
    return 0;
}

int bk_compress(enum bk_compression c, const void *in, size_t len, void *out, size_t cap,
                size_t *out_len, struct bim_error *err)
{
    LZ4F_preferences_t prefs;
    size_t n;

    *out_len = 0;
    switch (c) {
    case BK_COMPRESSION_LZ4:
        bk_lz4_prefs(&prefs);
        n = LZ4F_compressFrame(out, cap, in, len, &prefs);
        if (LZ4F_isError(n))
            return bim_error_set(err, -EIO, "lz4: %s", LZ4F_getErrorName(n));
        *out_len = n;
        return 0;
    case BK_COMPRESSION_GZIP:
        return bk_gzip(in, len, out, cap, out_len, err);
    case BK_COMPRESSION_NONE:
        break;
    }
    if (len > cap)
        return bim_error_set(err, -EIO, "block larger than its buffer");
    memcpy(out, in, len);
    *out_len = len;
    return 0;
}

const char *bk_compression_name(enum bk_compression c)
{
    switch (c) {
    case BK_COMPRESSION_LZ4:
        return "lz4";
    case BK_COMPRESSION_GZIP:
        return "gzip";
    case BK_COMPRESSION_NONE:
        break;
    }
    return "none";
}

int bk_compression_parse(const char *text, enum bk_compression *out)
{
    if (!text || !text[0] || strcmp(text, "lz4") == 0)
        *out = BK_COMPRESSION_LZ4;
    else if (strcmp(text, "gzip") == 0)
        *out = BK_COMPRESSION_GZIP;
    else if (strcmp(text, "none") == 0)
        *out = BK_COMPRESSION_NONE;
    else
        return -EINVAL;
    return 0;
}
