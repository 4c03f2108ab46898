/*
 * dir.c - directory listings (opendir/readdir/releasedir) and statfs.
 *
 * A listing is a snapshot taken at opendir and owned by that open directory
 * (fi->fh), so paging through it with offsets stays consistent while images
 * come and go; the next opendir sees the changes.
 *
 * Every open directory is also on fs->dirs (under fs->files_lock), so that
 * fs_unmount frees those whose release never came (a stop may overtake it).
 *
 * Threads: handlers run on any libfuse worker; the kernel serialises the
 * requests of one open directory, and the snapshot belongs to it alone.
 */
#include "fs_internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>

/* The kernel asks for at most a few pages per readdir; never trust more. */
#define FS_READDIR_MAX (128u * 1024u)

struct fs_dir_entry {
    fuse_ino_t ino;
    mode_t mode;
    char name[STORE_NAME_MAX + 1];
};

struct fs_dir {
    struct fs_dir *prev, *next; /* in fs->dirs, under fs->files_lock */
    size_t count;
    struct fs_dir_entry entries[];
};

static struct fs_dir *fs_dir_alloc(size_t count)
{
    uint64_t bytes;

    if (!size_mul(count, sizeof(struct fs_dir_entry), &bytes) ||
        !size_add(bytes, sizeof(struct fs_dir), &bytes) || bytes > SIZE_MAX)
        return NULL;
    return calloc(1, (size_t)bytes);
}

static void fs_dir_add(struct fs_dir *dir, fuse_ino_t ino, mode_t mode, const char *name)
{
    struct fs_dir_entry *entry = &dir->entries[dir->count++];

    entry->ino = ino;
    entry->mode = mode;
    str_copy(entry->name, sizeof(entry->name), name);
}

/* ".", ".." and every image, in any state. */
static int fs_dir_list_root(struct fs *fs, struct fs_dir **out)
{
    struct sync_image_info *images = NULL;
    struct fs_dir *dir;
    size_t count = 0;
    int rc;

    rc = sync_list(fs->sync, &images, &count);
    if (rc)
        return rc;
    dir = count <= SIZE_MAX - 2 ? fs_dir_alloc(count + 2) : NULL;
    if (!dir) {
        rc = -ENOMEM;
        goto out;
    }
    fs_dir_add(dir, fs_ino_root(), S_IFDIR, ".");
    fs_dir_add(dir, fs_ino_root(), S_IFDIR, "..");
    for (size_t i = 0; i < count; i++)
        fs_dir_add(dir, fs_ino_dir(images[i].id), S_IFDIR, images[i].name);
    *out = dir;
out:
    free(images);
    return rc;
}

/* ".", ".." and, while the image is ready, its files. */
static int fs_dir_list_image(struct fs *fs, uint64_t id, struct fs_dir **out)
{
    struct sync_image_info info;
    struct fs_dir *dir;

    if (sync_get_by_id(fs->sync, id, &info))
        return -ENOENT;
    dir = fs_dir_alloc(2 + FS_FILE_KIND_COUNT);
    if (!dir)
        return -ENOMEM;
    fs_dir_add(dir, fs_ino_dir(id), S_IFDIR, ".");
    fs_dir_add(dir, fs_ino_root(), S_IFDIR, "..");
    for (size_t i = 0; i < FS_FILE_KIND_COUNT; i++) {
        const struct fs_file_kind *kind = &fs_file_kinds[i];

        if (kind->exists(&info))
            fs_dir_add(dir, fs_ino_file(kind, id), S_IFREG, kind->name);
    }
    *out = dir;
    return 0;
}

static void fs_dir_free(struct fs *fs, struct fs_dir *dir)
{
    pthread_mutex_lock(&fs->files_lock);
    if (dir->prev)
        dir->prev->next = dir->next;
    else
        fs->dirs = dir->next;
    if (dir->next)
        dir->next->prev = dir->prev;
    pthread_mutex_unlock(&fs->files_lock);
    free(dir);
}

void fs_dirs_free_all(struct fs *fs)
{
    while (fs->dirs)
        fs_dir_free(fs, fs->dirs);
}

void fs_op_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    struct fs *fs = fs_from_req(req);
    struct fs_dir *dir = NULL;
    struct fs_node node;
    int rc;

    rc = fs_node_from_ino(ino, &node);
    if (!rc) {
        if (node.type == FS_NODE_ROOT)
            rc = fs_dir_list_root(fs, &dir);
        else if (node.type == FS_NODE_DIR)
            rc = fs_dir_list_image(fs, node.id, &dir);
        else
            rc = -ENOTDIR;
    }
    if (rc) {
        fuse_reply_err(req, -rc);
        return;
    }
    pthread_mutex_lock(&fs->files_lock);
    dir->next = fs->dirs;
    if (fs->dirs)
        fs->dirs->prev = dir;
    fs->dirs = dir;
    pthread_mutex_unlock(&fs->files_lock);
    fi->fh = (uintptr_t)dir;
    if (fuse_reply_open(req, fi) == -ENOENT)
        fs_dir_free(fs, dir); /* the opener was interrupted: no releasedir follows */
}

void fs_op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                   struct fuse_file_info *fi)
{
    const struct fs_dir *dir = (const struct fs_dir *)(uintptr_t)fi->fh;
    char *buf;
    size_t used = 0;

    (void)ino;
    if (size > FS_READDIR_MAX)
        size = FS_READDIR_MAX;
    buf = malloc(size ? size : 1);
    if (!buf) {
        fuse_reply_err(req, ENOMEM);
        return;
    }
    /* an offset is the index of the next entry */
    for (size_t i = off < 0 ? dir->count : (size_t)off; i < dir->count; i++) {
        const struct fs_dir_entry *entry = &dir->entries[i];
        struct stat st = {.st_ino = entry->ino, .st_mode = entry->mode};
        size_t len =
            fuse_add_direntry(req, buf + used, size - used, entry->name, &st, (off_t)(i + 1));

        if (len > size - used)
            break;
        used += len;
    }
    fuse_reply_buf(req, buf, used);
    free(buf);
}

void fs_op_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    (void)ino;
    fs_dir_free(fs_from_req(req), (struct fs_dir *)(uintptr_t)fi->fh);
    fuse_reply_err(req, 0);
}

void fs_op_statfs(fuse_req_t req, fuse_ino_t ino)
{
    struct fs *fs = fs_from_req(req);
    struct sync_image_info *images = NULL;
    struct statvfs st;
    uint64_t bytes = 0;
    uint64_t blocks = 0;
    uint64_t files;
    size_t count = 0;
    int rc;

    (void)ino;
    rc = sync_list(fs->sync, &images, &count);
    if (rc) {
        fuse_reply_err(req, -rc);
        return;
    }
    for (size_t i = 0; i < count; i++) {
        if (!size_add(bytes, images[i].size, &bytes))
            bytes = UINT64_MAX;
    }
    free(images);
    if (!size_align_up(bytes, 4096, &blocks))
        blocks = UINT64_MAX;
    blocks /= 4096;
    /* the root, and per image its directory, backing and raw */
    if (!size_mul(count, 3, &files) || !size_add(files, 1, &files))
        files = UINT64_MAX;

    memset(&st, 0, sizeof(st));
    st.f_bsize = 4096;
    st.f_frsize = 4096;
    st.f_blocks = blocks;
    st.f_files = files;
    st.f_namemax = STORE_NAME_MAX;
    st.f_flag = ST_RDONLY;
    fuse_reply_statfs(req, &st);
}
