/*
 * block.c - one stored block of a backup made bytes again and checked
 * (../shared/notes/backupstore.md A2, A3):
 *
 *   lz4   an LZ4 frame (magic 04 22 4d 18; liblz4's LZ4F_decompress, which
 *         checks the content checksum when the frame has one); frames one
 *         after another are read as one stream, as pierrec/lz4 reads them
 *   gzip  gzip members (zlib, windowBits 15 + 16), one after another
 *   none  the bytes themselves
 *
 * Longhorn's fallback (DecompressAndVerifyWithFallback): a gzip block whose
 * header is not gzip's is read as lz4, an lz4 block without the lz4 magic as
 * gzip. The block's name is the first 64 hex digits of the SHA-512 of its
 * uncompressed bytes; a block whose bytes hash otherwise is corrupt (never
 * retried: the same bytes hash the same).
 *
 * Threads: a decoder belongs to one fetcher thread; no shared state.
 */
#include "restore.h"

#include <errno.h>
#include <lz4frame.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

static const unsigned char lz4_magic[4] = {0x04, 0x22, 0x4d, 0x18};
static const unsigned char gzip_magic[2] = {0x1f, 0x8b};

struct sync_restore_decoder {
    LZ4F_dctx *lz4;
    z_stream z;
    bool z_ready;
};

int sync_restore_decoder_open(struct sync_restore_decoder **out)
{
    struct sync_restore_decoder *d = calloc(1, sizeof(*d));
    int rc = -ENOMEM;

    *out = NULL;
    if (!d)
        return -ENOMEM;
    if (LZ4F_isError(LZ4F_createDecompressionContext(&d->lz4, LZ4F_VERSION)))
        goto out;
    if (inflateInit2(&d->z, 15 + 16) != Z_OK)
        goto out;
    d->z_ready = true;
    *out = d;
    d = NULL;
    rc = 0;
out:
    sync_restore_decoder_close(d);
    return rc;
}

void sync_restore_decoder_close(struct sync_restore_decoder *d)
{
    if (!d)
        return;
    if (d->lz4)
        LZ4F_freeDecompressionContext(d->lz4);
    if (d->z_ready)
        inflateEnd(&d->z);
    free(d);
}

static bool sync_restore_starts(const void *in, size_t inlen, const unsigned char *magic, size_t n)
{
    return inlen >= n && memcmp(in, magic, n) == 0;
}

static int sync_restore_lz4(struct sync_restore_decoder *d, const unsigned char *in, size_t inlen,
                            unsigned char *out, size_t outcap, size_t *outlen,
                            struct bim_error *err)
{
    size_t hint = 1;

    *outlen = 0;
    LZ4F_resetDecompressionContext(d->lz4);
    while (inlen > 0) {
        size_t src = inlen, dst = outcap - *outlen;

        hint = LZ4F_decompress(d->lz4, out + *outlen, &dst, in, &src, NULL);
        if (LZ4F_isError(hint))
            return bim_error_set(err, -EBADMSG, "lz4: %s", LZ4F_getErrorName(hint));
        in += src;
        inlen -= src;
        *outlen += dst;
        if (src == 0 && dst == 0)
            return bim_error_set(err, -EBADMSG, "lz4: larger than %zu bytes uncompressed", outcap);
    }
    if (hint != 0)
        return bim_error_set(err, -EBADMSG, "lz4: the frame is cut short");
    return 0;
}

static int sync_restore_gzip(struct sync_restore_decoder *d, const unsigned char *in, size_t inlen,
                             unsigned char *out, size_t outcap, size_t *outlen,
                             struct bim_error *err)
{
    z_stream *z = &d->z;
    int zrc = Z_OK;

    *outlen = 0;
    if (inflateReset(z) != Z_OK)
        return bim_error_set(err, -EBADMSG, "gzip: cannot reset zlib");
    z->next_in = (unsigned char *)in;
    z->avail_in = (uInt)inlen;
    z->next_out = out;
    z->avail_out = (uInt)outcap;
    while (z->avail_in > 0) {
        zrc = inflate(z, Z_NO_FLUSH);
        if (zrc == Z_STREAM_END) {
            if (z->avail_in > 0 && inflateReset(z) != Z_OK) /* another member follows */
                return bim_error_set(err, -EBADMSG, "gzip: cannot reset zlib");
            continue;
        }
        if (zrc != Z_OK)
            return bim_error_set(err, -EBADMSG, "gzip: %s",
                                 z->msg               ? z->msg
                                 : zrc == Z_BUF_ERROR ? "larger than expected"
                                                      : "corrupt data");
        if (z->avail_out == 0)
            return bim_error_set(err, -EBADMSG, "gzip: larger than %zu bytes uncompressed", outcap);
    }
    *outlen = outcap - z->avail_out;
    if (zrc != Z_STREAM_END)
        return bim_error_set(err, -EBADMSG, "gzip: the stream is cut short");
    return 0;
}

int sync_restore_block_matches(const void *buf, size_t len, const char *checksum, bool *match)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    char got[BK_BLOCK_HEX + 1];
    unsigned int mdlen = 0;

    *match = false;
    if (EVP_Digest(buf, len, md, &mdlen, EVP_sha512(), NULL) != 1 || mdlen != 64)
        return -EIO;
    bk_block_hex(md, got);
    *match = strcmp(got, checksum) == 0;
    return 0;
}

int sync_restore_block_decode(struct sync_restore_decoder *d, enum bk_compression method,
                              const void *in, size_t inlen, void *out, size_t outcap,
                              size_t *outlen, const char *checksum, struct bim_error *err)
{
    bool match;
    int rc;

    *outlen = 0;
    if (method == BK_COMPRESSION_GZIP && !sync_restore_starts(in, inlen, gzip_magic, 2) &&
        sync_restore_starts(in, inlen, lz4_magic, 4))
        method = BK_COMPRESSION_LZ4;
    else if (method == BK_COMPRESSION_LZ4 && !sync_restore_starts(in, inlen, lz4_magic, 4) &&
             sync_restore_starts(in, inlen, gzip_magic, 2))
        method = BK_COMPRESSION_GZIP;
    switch (method) {
    case BK_COMPRESSION_LZ4:
        rc = sync_restore_lz4(d, in, inlen, out, outcap, outlen, err);
        break;
    case BK_COMPRESSION_GZIP:
        rc = sync_restore_gzip(d, in, inlen, out, outcap, outlen, err);
        break;
    default:
        if (inlen > outcap)
            return bim_error_set(err, -EBADMSG, "larger than %zu bytes", outcap);
        memcpy(out, in, inlen);
        *outlen = inlen;
        rc = 0;
        break;
    }
    if (rc < 0)
        return rc;
    rc = sync_restore_block_matches(out, *outlen, checksum, &match);
    if (rc < 0)
        return bim_error_set(err, rc, "cannot compute SHA-512");
    if (!match)
        return bim_error_set(err, -EBADMSG,
                             "its %zu bytes do not hash to its name (a corrupt block)", *outlen);
    return 0;
}
