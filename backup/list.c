/*
 * list.c - what a target holds (backups): every directory of
 * backupstore/backing-images/backing-images/ with its backing-image.cfg read.
 *
 * Threads: any; the target is opened and closed by the call.
 */
#include "backup_internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

void bk_entry_clear(struct bk_backup_entry *e)
{
    for (size_t i = 0; i < e->label_count; i++) {
        free((char *)e->labels[i].key);
        free((char *)e->labels[i].value);
    }
    free(e->labels);
    e->labels = NULL;
    e->label_count = 0;
}

void bk_backup_entries_free(struct bk_backup_entry *entries, size_t count)
{
    for (size_t i = 0; i < count; i++)
        bk_entry_clear(&entries[i]);
    free(entries);
}

static int bk_name_compare(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Read the cfg of names[i] into e: 1 read, 0 left out (missing, not a cfg). */
static int bk_list_one(const struct bk_target_ops *ops, struct bk_target *t, const char *target,
                       const char *name, struct bk_backup_entry *e, struct bim_error *err)
{
    struct bim_error cause = {{0}, 0};
    char path[BK_PATH_MAX];
    void *buf = NULL;
    size_t len = 0;
    int rc;

    if (strlen(name) > BIM_NAME_MAX)
        return 0;
    bk_cfg_path(name, path);
    rc = ops->read(t, path, BK_CFG_MAX, &buf, &len, &cause);
    if (rc == -ENOENT)
        return 0;
    if (rc < 0) {
        *err = cause;
        return rc;
    }
    rc = bk_cfg_decode_entry(buf, len, e, &cause);
    free(buf);
    if (rc < 0) {
        log_warn("backup target %s: %s is not a backing-image cfg: %s; left out", target, path,
                 cause.message);
        return 0;
    }
    str_copy(e->name, sizeof(e->name), name); /* the directory names the backup */
    bk_backup_url(target, name, e->url);
    return 1;
}

int bk_backup_list(const char *target, struct bk_backup_entry **out, size_t *count,
                   struct bim_error *err)
{
    const struct bk_target_ops *ops = NULL;
    struct bk_backup_entry *entries = NULL;
    struct bim_error cause = {{0}, 0};
    struct bk_target *t = NULL;
    char **names = NULL;
    size_t name_count = 0, n = 0;
    int rc;

    *out = NULL;
    *count = 0;
    rc = bk_target_open(target, &t, &ops, &cause);
    if (rc < 0)
        return bim_error_set(err, -EINVAL, "%s", cause.message);
    rc = ops->list(t, BK_CFG_DIR, &names, &name_count, &cause);
    if (rc < 0) {
        rc = bim_error_set(err, -EINVAL, "%s", cause.message);
        goto out;
    }
    qsort(names, name_count, sizeof(*names), bk_name_compare);
    entries = calloc(name_count + 1, sizeof(*entries));
    if (!entries) {
        rc = bim_error_set(err, -ENOMEM, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < name_count; i++) {
        rc = bk_list_one(ops, t, target, names[i], &entries[n], &cause);
        if (rc < 0) {
            rc = bim_error_set(err, -EINVAL, "%s", cause.message);
            goto out;
        }
        n += (size_t)rc;
    }
    rc = 0;
    *out = entries;
    *count = n;
    entries = NULL;
    n = 0;
out:
    bk_backup_entries_free(entries, n);
    for (size_t i = 0; i < name_count; i++)
        free(names[i]);
    free(names);
    if (t)
        ops->close(t);
    return rc;
}
