/*
 * xml.c - the XML answers of S3 read with expat (s3.h): a ListObjectsV2 page
 * (ListBucketResult) and an error (Error). Only the elements named here are
 * looked at, each text value is bounded by S3_TEXT_MAX, a document type
 * declaration stops the parse (no entities, no external anything).
 *
 * Threads: any; the parser lives for one call.
 */
#include "s3.h"

#include <errno.h>
#include <expat.h>
#include <stdlib.h>
#include <string.h>

#define S3_XML_DEPTH_MAX 16

/* Where the parser is, and the text of the innermost element. */
struct s3_xml {
    XML_Parser parser;
    const char *path[S3_XML_DEPTH_MAX]; /* the names of the open elements we know, else "" */
    int depth;
    char text[S3_TEXT_MAX];
    size_t text_len;
    bool text_cut;   /* the value was longer than S3_TEXT_MAX - 1 */
    int rc;          /* an error found in a handler */
    const char *why; /* ... and what it was */
    void (*on_end)(struct s3_xml *x, const char *name);
    void *ctx;
};

static const char *const s3_xml_names[] = {
    "ListBucketResult",      "Contents", "CommonPrefixes", "Key",     "Prefix", "IsTruncated",
    "NextContinuationToken", "Error",    "Code",           "Message",
};

/* The element names that matter, as static strings (the rest are ""). */
static const char *s3_xml_known(const char *name)
{
    for (size_t i = 0; i < sizeof(s3_xml_names) / sizeof(s3_xml_names[0]); i++) {
        if (strcmp(name, s3_xml_names[i]) == 0)
            return s3_xml_names[i];
    }
    return "";
}

static void s3_xml_fail(struct s3_xml *x, int rc, const char *why)
{
    if (x->rc == 0) {
        x->rc = rc;
        x->why = why;
    }
    XML_StopParser(x->parser, XML_FALSE);
}

static void XMLCALL s3_xml_start(void *arg, const XML_Char *name, const XML_Char **attrs)
{
    struct s3_xml *x = arg;

    (void)attrs;
    if (x->depth >= S3_XML_DEPTH_MAX) {
        s3_xml_fail(x, -EPROTO, "elements nested too deep");
        return;
    }
    x->path[x->depth++] = s3_xml_known(name);
    x->text_len = 0;
    x->text_cut = false;
}

static void XMLCALL s3_xml_chars(void *arg, const XML_Char *s, int len)
{
    struct s3_xml *x = arg;
    size_t n = (size_t)len;

    if (x->text_len + n >= sizeof(x->text)) {
        x->text_cut = true;
        n = sizeof(x->text) - 1 - x->text_len;
    }
    memcpy(x->text + x->text_len, s, n);
    x->text_len += n;
}

static void XMLCALL s3_xml_end(void *arg, const XML_Char *name)
{
    struct s3_xml *x = arg;

    (void)name;
    x->text[x->text_len] = '\0';
    x->on_end(x, x->path[x->depth - 1]);
    x->depth--;
    x->text_len = 0;
}

static void XMLCALL s3_xml_doctype(void *arg, const XML_Char *name, const XML_Char *sysid,
                                   const XML_Char *pubid, int has_internal_subset)
{
    (void)name;
    (void)sysid;
    (void)pubid;
    (void)has_internal_subset;
    s3_xml_fail(arg, -EPROTO, "a document type declaration");
}

/* Is the element that just ended `name` inside `parent` (directly)? */
static bool s3_xml_at(const struct s3_xml *x, const char *parent, const char *name)
{
    return x->depth >= 2 && strcmp(x->path[x->depth - 1], name) == 0 &&
           strcmp(x->path[x->depth - 2], parent) == 0;
}

/* Parse xml with x's handlers. 0, x->rc, or -EPROTO (not well-formed). */
static int s3_xml_run(struct s3_xml *x, const char *xml, size_t len, const char **why)
{
    enum XML_Status st;
    int rc = -ENOMEM;

    *why = "";
    if (len > INT32_MAX)
        return -E2BIG;
    x->parser = XML_ParserCreate("UTF-8");
    if (!x->parser)
        return rc;
    XML_SetUserData(x->parser, x);
    XML_SetElementHandler(x->parser, s3_xml_start, s3_xml_end);
    XML_SetCharacterDataHandler(x->parser, s3_xml_chars);
    XML_SetStartDoctypeDeclHandler(x->parser, s3_xml_doctype);
    st = XML_Parse(x->parser, xml, (int)len, XML_TRUE);
    if (x->rc < 0) {
        rc = x->rc;
        *why = x->why;
    } else if (st != XML_STATUS_OK) {
        rc = -EPROTO;
        *why = XML_ErrorString(XML_GetErrorCode(x->parser));
    } else {
        rc = 0;
    }
    XML_ParserFree(x->parser);
    x->parser = NULL;
    return rc;
}

/* ---- ListObjectsV2 ---- */

static int s3_listing_add(struct s3_listing *l, const char *name, size_t len)
{
    size_t strip = strlen(l->strip);
    char **grown;

    if (len < strip || strncmp(name, l->strip, strip) != 0 || len == strip)
        return 0; /* not under the prefix, or the prefix itself */
    if (l->count >= S3_LIST_MAX)
        return -E2BIG;
    if (l->count == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 64;
        grown = realloc(l->names, cap * sizeof(*grown));
        if (!grown)
            return -ENOMEM;
        l->names = grown;
        l->cap = cap;
    }
    l->names[l->count] = strndup(name + strip, len - strip);
    if (!l->names[l->count])
        return -ENOMEM;
    l->count++;
    return 0;
}

static void s3_listing_end(struct s3_xml *x, const char *name)
{
    struct s3_listing *l = x->ctx;
    size_t len = x->text_len;
    int rc = 0;

    (void)name;
    if (x->depth == 1 && strcmp(x->path[0], "ListBucketResult") != 0) {
        s3_xml_fail(x, -EPROTO, "not a ListBucketResult");
        return;
    }
    if (s3_xml_at(x, "ListBucketResult", "IsTruncated")) {
        l->truncated = strcmp(x->text, "true") == 0;
    } else if (s3_xml_at(x, "ListBucketResult", "NextContinuationToken")) {
        if (x->text_cut) {
            s3_xml_fail(x, -EPROTO, "a continuation token too long");
            return;
        }
        str_copy(l->next_token, sizeof(l->next_token), x->text);
    } else if (s3_xml_at(x, "Contents", "Key") || s3_xml_at(x, "CommonPrefixes", "Prefix")) {
        if (x->text_cut || len > S3_KEY_MAX) {
            s3_xml_fail(x, -EPROTO, "a key too long");
            return;
        }
        if (strcmp(x->path[x->depth - 2], "CommonPrefixes") == 0 && len > 0 &&
            x->text[len - 1] == '/')
            len--;
        rc = s3_listing_add(l, x->text, len);
        if (rc < 0)
            s3_xml_fail(x, rc, rc == -E2BIG ? "too many names" : "out of memory");
    }
}

int s3_listing_parse(struct s3_listing *l, const char *xml, size_t len, struct bim_error *err)
{
    struct s3_xml x = {.on_end = s3_listing_end, .ctx = l};
    const char *why;
    int rc;

    l->truncated = false;
    l->next_token[0] = '\0';
    rc = s3_xml_run(&x, xml, len, &why);
    if (rc == -EPROTO)
        return bim_error_set(err, rc, "the listing is not ListObjectsV2 XML: %s", why);
    if (rc == -E2BIG)
        return bim_error_set(err, rc, "more than %u names in one listing", S3_LIST_MAX);
    if (rc < 0)
        return bim_error_set(err, rc, "out of memory");
    if (l->truncated && !l->next_token[0])
        return bim_error_set(err, -EPROTO,
                             "the listing is truncated but has no NextContinuationToken");
    return 0;
}

void s3_listing_free(struct s3_listing *l)
{
    for (size_t i = 0; i < l->count; i++)
        free(l->names[i]);
    free(l->names);
    l->names = NULL;
    l->count = l->cap = 0;
}

/* ---- errors ---- */

struct s3_error_text {
    char *code;
    size_t code_len;
    char *message;
    size_t message_len;
};

/* Copy text keeping printable ASCII only (a message goes to users). */
static void s3_printable_copy(char *dst, size_t dst_len, const char *src)
{
    size_t o = 0;

    for (; *src && o + 1 < dst_len; src++)
        dst[o++] = *src >= 0x20 && *src < 0x7f ? *src : ' ';
    dst[o] = '\0';
}

static void s3_error_end(struct s3_xml *x, const char *name)
{
    struct s3_error_text *e = x->ctx;

    (void)name;
    if (s3_xml_at(x, "Error", "Code"))
        s3_printable_copy(e->code, e->code_len, x->text);
    else if (s3_xml_at(x, "Error", "Message"))
        s3_printable_copy(e->message, e->message_len, x->text);
}

void s3_error_parse(const char *xml, size_t len, char *code, size_t code_len, char *message,
                    size_t message_len)
{
    struct s3_error_text e = {code, code_len, message, message_len};
    struct s3_xml x = {.on_end = s3_error_end, .ctx = &e};
    const char *why;

    code[0] = message[0] = '\0';
    if (len && s3_xml_run(&x, xml, len, &why) < 0)
        code[0] = message[0] = '\0';
}
