/*
 * fuzz_peer.c - what a peer sync client reads from a source (SPEC §8,
 * docs/peer-sync.md): the peer list of a request as sync_peer_list_parse()
 * checks it into the job's typed list (and the transfer's sources), the image object of
 * GET /v1/images/<name> as sync_peer_image_judge() judges it, and the
 * extents of GET .../extents as sync_peer_extents_usable() checks them and
 * sync_peer_plan() cuts them into pieces.
 *
 * Those functions are static in sync/peer/peer.c, so this file compiles it
 * itself (its public functions then come from here, not from libsync.a).
 *
 * Input: the peers (comma-separated), "\n", the image JSON, "\n", the extents JSON.
 * Checks beyond the sanitizers: an accepted image is ready with a valid
 * checksum; the plan covers [0, size) in order, without gaps or empty
 * pieces, data pieces at most SYNC_CHUNK_MAX, and data wherever an extent
 * says there is data.
 */
#include "../../sync/peer/peer.c"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct sync_job job;
static struct sync_peer_job list;
static struct sync_peer_transfer transfer;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    json_object_seed(1);
    return 0;
}

/* Next "\n"-terminated part of [*p, end) as a NUL-terminated copy. */
static char *fuzz_part(const char **p, const char *end)
{
    const char *nl = memchr(*p, '\n', (size_t)(end - *p));
    const char *stop = nl ? nl : end;
    size_t n = (size_t)(stop - *p);
    char *s = malloc(n + 1);

    if (!s)
        abort();
    memcpy(s, *p, n);
    s[n] = '\0';
    *p = nl ? nl + 1 : end;
    return s;
}

/* Data wherever extents say so, and the pieces tile [0, size). */
static void fuzz_plan_check(const struct sync_peer_transfer *t, json_t *extents)
{
    uint64_t at = 0;

    for (size_t i = 0; i < t->npieces; i++) {
        const struct sync_peer_piece *p = &t->pieces[i];
        if (p->off != at || p->len == 0 || (!p->hole && p->len > SYNC_CHUNK_MAX))
            abort();
        at += p->len;
    }
    if (at != t->size)
        abort();
    for (size_t i = 0; extents && i < json_array_size(extents); i++) {
        uint64_t off, len;
        size_t k = 0;

        sync_peer_extent_at(extents, i, &off, &len);
        while (k < t->npieces && t->pieces[k].off + t->pieces[k].len <= off)
            k++;
        for (; k < t->npieces && t->pieces[k].off < off + len; k++) {
            if (t->pieces[k].hole)
                abort(); /* data an extent lists would not be fetched */
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *p = (const char *)data, *end = p + size;
    struct sync_peer_transfer *t = &transfer;
    struct bim_error err = {0};
    char *source = fuzz_part(&p, end);
    char *image = fuzz_part(&p, end);
    const char *peers[SYNC_PEER_MAX + 2];
    size_t npeers = 0;
    json_t *img = NULL, *extents = NULL;
    char errors[BIM_ERROR_MAX];
    int rc;

    memset(&job, 0, sizeof(job));
    memset(t, 0, sizeof(*t));
    str_copy(job.name, sizeof(job.name), "img");
    str_copy(job.uuid, sizeof(job.uuid), "b6f0e2a1");
    t->job = &job;

    /* the first line: the peers as a request lists them, comma-separated */
    for (char *q = source; npeers < SYNC_PEER_MAX + 1; npeers++) {
        peers[npeers] = q;
        q = strchr(q, ',');
        if (!q) {
            npeers++;
            break;
        }
        *q++ = '\0';
    }
    peers[npeers] = NULL;
    rc =
        sync_peer_list_parse(source[0] ? peers : NULL, &list, job.source, sizeof(job.source), &err);
    if (rc < 0 && err.message[0] == '\0')
        abort();
    if (rc == 0)
        rc = sync_peer_sources_init(t, &list, &err);
    if (rc == 0 && (t->nsources == 0 || t->nsources > SYNC_PEER_MAX || t->nsources != list.count))
        abort();

    img = json_loadb(image, strlen(image), JSON_REJECT_DUPLICATES, NULL);
    if (img && t->nsources > 0) {
        struct sync_peer_source *s = &t->sources[0];

        rc = sync_peer_image_judge(t, s, img);
        if (rc < 0 && s->error[0] == '\0')
            abort();
        sync_peer_errors(t, errors, sizeof(errors));
        if (rc == 0) {
            if (!sync_peer_hex128(t->checksum) || t->size > SYNC_PEER_SIZE_MAX)
                abort();
            extents = json_loadb(p, (size_t)(end - p), JSON_REJECT_DUPLICATES, NULL);
            if (!sync_peer_extents_usable(extents, t->size)) {
                json_decref(extents);
                extents = NULL;
            }
            if (sync_peer_plan(t, extents) == 0)
                fuzz_plan_check(t, extents);
        }
    }
    json_decref(extents);
    json_decref(img);
    free(t->pieces);
    free(image);
    free(source);
    return 0;
}
