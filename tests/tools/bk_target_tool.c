/*
 * bk_target_tool.c - runs one operation of a backup target (backup/target.h)
 * from the command line, for the tests of the targets against real servers
 * (tests/integration/test_s3_target.py, test_vfs_target.py); the
 * target comes from bk_target_open, so every scheme is reachable:
 *
 *     bk_target_tool URL list DIR              names, one a line
 *     bk_target_tool URL read PATH [MAX]       the object on stdout
 *     bk_target_tool URL write PATH            stdin becomes the object
 *     bk_target_tool URL write-many DIR N T    DIR/obj-0000 .. N objects from T threads
 *     bk_target_tool URL exists PATH           1 or 0
 *     bk_target_tool URL remove PATH
 *     bk_target_tool URL mtime PATH            Unix seconds
 *     bk_target_tool URL now                   Unix seconds (the server's clock)
 *
 * Exit 0; or 1 with "bk_target_tool: error <-errno>: <message>" on stderr.
 *
 * Threads: write-many runs T threads on the one target (the targets are
 * shared by the backup's workers the same way); the rest is one thread.
 */
#include "http/client.h"
#include "target.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TOOL_READ_MAX (64u << 20)

struct tool_many {
    const struct bk_target_ops *ops;
    struct bk_target *t;
    const char *dir;
    int count;
    int threads;
    int index; /* this thread's first object; it writes every threads-th */
    int rc;
    struct bim_error err;
};

static void *tool_many_run(void *arg)
{
    struct tool_many *m = arg;
    char path[1100], body[64];

    for (int i = m->index; i < m->count && m->rc == 0; i += m->threads) {
        snprintf(path, sizeof(path), "%s/obj-%04d", m->dir, i);
        snprintf(body, sizeof(body), "object %d", i);
        m->rc = m->ops->write(m->t, path, body, strlen(body), &m->err);
    }
    return NULL;
}

static int tool_write_many(const struct bk_target_ops *ops, struct bk_target *t, const char *dir,
                           int count, int threads, struct bim_error *err)
{
    struct tool_many m[16];
    pthread_t tid[16];
    int rc = 0;

    if (threads < 1 || threads > 16)
        return bim_error_set(err, -EINVAL, "1 to 16 threads");
    for (int i = 0; i < threads; i++) {
        m[i] = (struct tool_many){ops, t, dir, count, threads, i, 0, {{0}, 0}};
        pthread_create(&tid[i], NULL, tool_many_run, &m[i]);
    }
    for (int i = 0; i < threads; i++) {
        pthread_join(tid[i], NULL);
        if (m[i].rc < 0 && rc == 0) {
            rc = m[i].rc;
            *err = m[i].err;
        }
    }
    return rc;
}

static int tool_read_stdin(void **buf, size_t *len)
{
    size_t cap = 65536, n;
    char *b = malloc(cap), *grown;

    *len = 0;
    if (!b)
        return -ENOMEM;
    while ((n = fread(b + *len, 1, cap - *len, stdin)) > 0) {
        *len += n;
        if (*len == cap) {
            grown = realloc(b, cap * 2);
            if (!grown) {
                free(b);
                return -ENOMEM;
            }
            b = grown;
            cap *= 2;
        }
    }
    *buf = b;
    return 0;
}

static int tool_run(const struct bk_target_ops *ops, struct bk_target *t, int argc, char **argv,
                    struct bim_error *err)
{
    const char *op = argv[2], *arg = argc > 3 ? argv[3] : "";
    char **names = NULL;
    size_t count = 0, len = 0;
    void *buf = NULL;
    int64_t when;
    int rc = -EINVAL;

    if (strcmp(op, "list") == 0) {
        rc = ops->list(t, arg, &names, &count, err);
        for (size_t i = 0; i < count; i++) {
            if (rc == 0)
                printf("%s\n", names[i]);
            free(names[i]);
        }
        free(names);
    } else if (strcmp(op, "read") == 0) {
        rc = ops->read(t, arg, argc > 4 ? strtoul(argv[4], NULL, 10) : TOOL_READ_MAX, &buf, &len,
                       err);
        if (rc == 0 && len)
            fwrite(buf, 1, len, stdout);
    } else if (strcmp(op, "write") == 0) {
        rc = tool_read_stdin(&buf, &len);
        if (rc == 0)
            rc = ops->write(t, arg, buf, len, err);
    } else if (strcmp(op, "write-many") == 0 && argc == 6) {
        rc = tool_write_many(ops, t, arg, atoi(argv[4]), atoi(argv[5]), err);
    } else if (strcmp(op, "exists") == 0) {
        rc = ops->exists(t, arg, err);
        if (rc >= 0)
            printf("%d\n", rc);
    } else if (strcmp(op, "remove") == 0) {
        rc = ops->remove(t, arg, err);
    } else if (strcmp(op, "mtime") == 0) {
        rc = ops->mtime(t, arg, &when, err);
        if (rc == 0)
            printf("%" PRId64 "\n", when);
    } else if (strcmp(op, "now") == 0) {
        rc = ops->now(t, &when, err);
        if (rc == 0)
            printf("%" PRId64 "\n", when);
    } else {
        bim_error_set(err, -EINVAL, "unknown operation %s", op);
    }
    free(buf);
    return rc < 0 ? rc : 0;
}

int main(int argc, char **argv)
{
    const struct bk_target_ops *ops = NULL;
    struct bim_error err = {{0}, 0};
    struct bk_target *t = NULL;
    int rc;

    if (argc < 3) {
        fprintf(stderr, "usage: bk_target_tool URL OPERATION [ARGS]\n");
        return 2;
    }
    if (http_client_global_init() != 0)
        return 2;
    rc = bk_target_open(argv[1], &t, &ops, &err);
    if (rc == 0)
        rc = tool_run(ops, t, argc, argv, &err);
    if (t)
        ops->close(t);
    http_client_global_cleanup();
    if (rc < 0) {
        fprintf(stderr, "bk_target_tool: error %d: %s\n", rc, err.message);
        return 1;
    }
    return 0;
}
