/*
 * format.c - format detection (SPEC §3), from content, never from the name.
 * A file that starts with the qcow magic is a qcow2 and must pass the qcow
 * module's checks (header, L1/L2 tables inside the file, nothing bimfs
 * cannot serve) and open in libqcow, which gives the virtual size. Anything
 * else is raw and must be a multiple of 512 bytes. An empty file is no image.
 *
 * Threads: any; each call opens its own handles.
 */
#include "store_internal.h"

#include "qcow.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

int store_format_detect(const char *path, uint64_t size, struct store_format_info *out,
                        struct bim_error *err)
{
    struct qcow_image *img = NULL;
    int fd, rc;

    memset(out, 0, sizeof(*out));
    if (size == 0)
        return bim_error_set(err, -EINVAL, "image is empty (0 bytes)");
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return bim_error_cause(err, BIM_CAUSE_IO, -errno, "cannot open the image: %s",
                               strerror(errno));
    rc = qcow_header_check(fd, NULL, err);
    if (rc == -EMEDIUMTYPE) {
        rc = 0;
        if (size % 512 != 0) {
            rc = bim_error_cause(err, BIM_CAUSE_FORMAT, -EINVAL,
                                 "raw image size %llu is not a multiple of 512 bytes",
                                 (unsigned long long)size);
            goto out;
        }
        out->format = STORE_FORMAT_RAW;
        out->virtual_size = size;
        goto out;
    }
    if (rc == 0)
        rc = qcow_image_open(fd, QCOW_OPEN_CHECK_LIBQCOW, &img, err);
    if (rc) {
        /* what qcow/ refused is the format; a read that failed is I/O */
        if (err)
            err->cause = rc == -EIO || rc == -ENOMEM ? BIM_CAUSE_IO : BIM_CAUSE_FORMAT;
        goto out;
    }
    out->format = STORE_FORMAT_QCOW2;
    out->virtual_size = qcow_image_virtual_size(img); /* equals libqcow's media size */
    qcow_image_close(img);
out:
    close(fd);
    return rc;
}
