/*
 * fuzz_peer.c - what a peer sync client reads from a source (SPEC §8,
 * docs/peer-sync.md): the peer list of a request as sync_peer_list_parse()
 * checks it into the job's typed list (and the transfer's sources), the image object of
 * GET /v1/images/<name> as sync_peer_image_judge() judges it, and the
 * piece digests of GET .../pieces as the wire codec decodes them and
 * sync_peer_plan() turns them into pieces.
 *
 * Those functions are static in sync/peer/peer.c, so this file compiles it
 * itself (its public functions then come from here, not from libsync.a).
 *
 * Input: the peers (comma-separated), "\n", the image JSON, "\n", the
 * digests' JSON. Checks beyond the sanitizers: an accepted image is ready
 * with a valid checksum, or in progress without one (SPEC §9); a decoded
 * manifest has one entry per piece and ascending ranges; the plan is one
 * 4 MiB piece per digest tiling [0, size), known where the digest is, a
 * hole exactly where a known digest is that of zeros, and a start inside
 * the image.
 */
#include "../../sync/peer/peer.c"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct sync sync_stub; /* only its lock and listen address are used (the ranks) */
static struct sync_job job;
static struct sync_peer_job list;
static struct sync_peer_transfer transfer;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    json_object_seed(1);
    pthread_mutex_init(&sync_stub.lock, NULL);
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

/* One piece per digest, tiling [0, size); holes where the digest is zeros'. */
static void fuzz_plan_check(const struct sync_peer_transfer *t)
{
    uint8_t zero[32];

    if (t->npieces != t->manifest.count)
        abort();
    for (size_t i = 0; i < t->npieces; i++) {
        const struct sync_peer_piece *p = &t->pieces[i];

        if (p->index != i || p->off != i * STORE_PIECE_SIZE ||
            p->len != store_piece_length(t->size, i) || p->len == 0)
            abort();
        if (p->known != (t->known[i] != 0))
            abort();
        if (store_piece_zero_digest(p->len, zero) < 0 ||
            p->hole != (p->known && memcmp(zero, t->manifest.sha256[i], 32) == 0))
            abort();
    }
}

/* A decoded manifest is what the codec promises. */
static void fuzz_manifest_check(const struct wire_pieces *m)
{
    uint64_t next = 0;

    if (m->piece_size == 0 || (m->piece_size & (m->piece_size - 1)) != 0 ||
        m->count != m->size / m->piece_size + (m->size % m->piece_size != 0))
        abort();
    for (size_t i = 0; i < m->nhave; i++) {
        if (m->have[i][0] < next || m->have[i][0] > m->have[i][1] || m->have[i][1] >= m->count)
            abort();
        next = m->have[i][1] + 1;
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
    json_t *img = NULL;
    struct wire_pieces m = {0};
    uint64_t data_bytes = 0;
    char errors[BIM_ERROR_MAX];
    int rc;

    memset(&job, 0, sizeof(job));
    memset(t, 0, sizeof(*t));
    str_copy(job.name, sizeof(job.name), "img");
    str_copy(job.uuid, sizeof(job.uuid), "b6f0e2a1");
    job.sync = &sync_stub;
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
            /* a source in progress gives no checksum (nor size) yet */
            if ((t->checksum[0] && !sync_peer_hex128(t->checksum)) || t->size > SYNC_PEER_SIZE_MAX)
                abort();
            if (wire_pieces_decode(p, (size_t)(end - p), (size_t)(end - p), &m, &err) == 0) {
                fuzz_manifest_check(&m);
                if (t->size == 0 && m.size <= SYNC_PEER_SIZE_MAX)
                    t->size = m.size; /* a reference in progress: its size is its digests' */
                if (m.piece_size == STORE_PIECE_SIZE && m.size == t->size) {
                    t->manifest.size = m.size;
                    t->manifest.count = m.count;
                    t->manifest.sha256 = m.digest;
                    t->known = m.known;
                    if (sync_peer_plan(t, &data_bytes) == 0) {
                        fuzz_plan_check(t);
                        if (t->ranked || t->start >= (t->npieces ? t->npieces : 1))
                            abort(); /* no --listen here: a random start inside the image */
                    }
                    t->manifest.sha256 = NULL;
                    t->known = NULL;
                    for (size_t k = 0; k < t->nsources; k++)
                        free(t->sources[k].have);
                }
            } else if (err.message[0] == '\0') {
                abort();
            }
            wire_pieces_free(&m);
        }
    }
    json_decref(img);
    free(t->pieces);
    free(image);
    free(source);
    return 0;
}
