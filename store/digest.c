/*
 * digest.c - SHA-512 (and SHA-256: for sha256 expectations, and alone for
 * the pieces) over OpenSSL's EVP interface, and the loop that feeds a range
 * of a file into them with holes and bytes past EOF counted as zeros.
 *
 * Threads: any. The EVP_MD objects are fetched once (pthread_once) and never
 * freed; a struct store_digest_ctx is used by one thread at a time.
 */
#include "store_internal.h"

#include <errno.h>
#include <stdio.h>
#include <unistd.h>

static pthread_once_t store_md_once = PTHREAD_ONCE_INIT;
static EVP_MD *store_md_sha512, *store_md_sha256;
static const unsigned char store_zeros[64 * 1024];

static void store_md_fetch(void)
{
    store_md_sha512 = EVP_MD_fetch(NULL, "SHA512", NULL);
    store_md_sha256 = EVP_MD_fetch(NULL, "SHA256", NULL);
}

static int store_ctx_new(EVP_MD_CTX **ctx, const EVP_MD *md)
{
    *ctx = md ? EVP_MD_CTX_new() : NULL;
    if (!*ctx || EVP_DigestInit_ex2(*ctx, md, NULL) != 1)
        return -EIO;
    return 0;
}

int store_digest_init(struct store_digest_ctx *d, bool with_sha256)
{
    d->sha512 = d->sha256 = NULL;
    pthread_once(&store_md_once, store_md_fetch);
    if (store_ctx_new(&d->sha512, store_md_sha512) < 0 ||
        (with_sha256 && store_ctx_new(&d->sha256, store_md_sha256) < 0)) {
        store_digest_free(d);
        return -EIO;
    }
    return 0;
}

int store_digest_init_sha256(struct store_digest_ctx *d)
{
    d->sha512 = d->sha256 = NULL;
    pthread_once(&store_md_once, store_md_fetch);
    return store_ctx_new(&d->sha256, store_md_sha256);
}

int store_digest_reset(struct store_digest_ctx *d)
{
    if (d->sha512 && EVP_DigestInit_ex2(d->sha512, NULL, NULL) != 1)
        return -EIO;
    if (d->sha256 && EVP_DigestInit_ex2(d->sha256, NULL, NULL) != 1)
        return -EIO;
    return 0;
}

int store_digest_update(struct store_digest_ctx *d, const void *buf, size_t len)
{
    if (d->sha512 && EVP_DigestUpdate(d->sha512, buf, len) != 1)
        return -EIO;
    if (d->sha256 && EVP_DigestUpdate(d->sha256, buf, len) != 1)
        return -EIO;
    return 0;
}

int store_digest_zeros(struct store_digest_ctx *d, uint64_t len)
{
    while (len > 0) {
        size_t n = len < sizeof(store_zeros) ? (size_t)len : sizeof(store_zeros);
        int rc = store_digest_update(d, store_zeros, n);
        if (rc < 0)
            return rc;
        len -= n;
    }
    return 0;
}

static int store_ctx_final_hex(EVP_MD_CTX *ctx, char *hex)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int len = 0;

    if (EVP_DigestFinal_ex(ctx, md, &len) != 1)
        return -EIO;
    for (unsigned int i = 0; i < len; i++)
        snprintf(hex + 2 * i, 3, "%02x", md[i]);
    hex[2 * len] = '\0';
    return 0;
}

int store_digest_final_sha256(struct store_digest_ctx *d, uint8_t out[32])
{
    unsigned int len = 0;

    if (!d->sha256 || EVP_DigestFinal_ex(d->sha256, out, &len) != 1 || len != 32)
        return -EIO;
    return 0;
}

int store_digest_final(struct store_digest_ctx *d, char *sha512, char *sha256)
{
    int rc = d->sha512 ? store_ctx_final_hex(d->sha512, sha512) : -EIO;

    if (rc == 0 && d->sha256 && sha256)
        rc = store_ctx_final_hex(d->sha256, sha256);
    return rc;
}

void store_digest_free(struct store_digest_ctx *d)
{
    EVP_MD_CTX_free(d->sha512);
    EVP_MD_CTX_free(d->sha256);
    d->sha512 = d->sha256 = NULL;
}

/* pread up to len bytes at off; bytes past EOF count as zeros. */
static int store_feed_data(struct store_digest_ctx *d, int fd, void *buf, size_t len, uint64_t off)
{
    size_t got;
    int rc = fd_pread_full(fd, buf, len, off, &got);

    if (rc == 0)
        rc = store_digest_update(d, buf, got);
    if (rc == 0 && got < len)
        rc = store_digest_zeros(d, len - got);
    return rc;
}

/* Without SEEK_DATA support everything is data. */
int store_digest_find_extent(int fd, uint64_t pos, uint64_t end, uint64_t *data_end,
                             uint64_t *hole_end)
{
    off_t data, hole;

    *data_end = end;
    *hole_end = pos;
    data = lseek(fd, (off_t)pos, SEEK_DATA);
    if (data < 0) {
        if (errno == ENXIO) { /* past EOF or in the trailing hole */
            *data_end = pos;
            *hole_end = end;
            return 0;
        }
        return (errno == EINVAL || errno == EOPNOTSUPP) ? 0 : -errno;
    }
    if ((uint64_t)data > pos) {
        *data_end = pos;
        *hole_end = (uint64_t)data < end ? (uint64_t)data : end;
        return 0;
    }
    hole = lseek(fd, (off_t)pos, SEEK_HOLE);
    if (hole < 0)
        return (errno == EINVAL || errno == EOPNOTSUPP || errno == ENXIO) ? 0 : -errno;
    if ((uint64_t)hole > pos && (uint64_t)hole < end)
        *data_end = (uint64_t)hole;
    return 0;
}

int store_digest_feed_fd(struct store_digest_ctx *d, int fd, uint64_t start, uint64_t end,
                         void *buf, const atomic_bool *cancel, _Atomic uint64_t *progress)
{
    uint64_t pos = start, data_end = start, hole_end = start;
    int rc;

    while (pos < end) {
        uint64_t n;

        if (cancel && atomic_load(cancel))
            return -ECANCELED;
        if (pos >= data_end && pos >= hole_end) {
            rc = store_digest_find_extent(fd, pos, end, &data_end, &hole_end);
            if (rc < 0)
                return rc;
        }
        if (pos < hole_end) {
            n = hole_end - pos < STORE_CHUNK ? hole_end - pos : STORE_CHUNK;
            rc = store_digest_zeros(d, n);
        } else {
            n = data_end - pos < STORE_CHUNK ? data_end - pos : STORE_CHUNK;
            rc = store_feed_data(d, fd, buf, (size_t)n, pos);
        }
        if (rc < 0)
            return rc;
        pos += n;
        if (progress)
            atomic_store(progress, pos);
    }
    return 0;
}
