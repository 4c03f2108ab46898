/*
 * error.c - one error vocabulary for the control socket (SPEC §6) and the
 * HTTP API (SPEC §8, docs/http.md "Errors"): a cause (-errno) has one row,
 * with the socket's code and the HTTP status; the HTTP body's code comes
 * from the status. So `already_exists` on the socket and 409 `conflict` over
 * HTTP come from the same -EEXIST.
 *
 * Threads: no shared state (constant tables).
 */
#include "wire.h"

#include <errno.h>

struct wire_error_row {
    int rc;                /* the cause; 0 for statuses no -errno maps to */
    const char *code;      /* the socket's error.code */
    unsigned http_status;  /* its HTTP status */
    const char *http_code; /* the HTTP body's error.code of that status */
};

/* The first row of a status gives its HTTP code; the last row is the default. */
static const struct wire_error_row wire_errors[] = {
    {-EINVAL, "invalid_argument", 400, "invalid_argument"},
    {0, NULL, 401, "unauthorized"},
    {-ENOENT, "not_found", 404, "not_found"},
    {0, NULL, 405, "method_not_allowed"},
    {-EEXIST, "already_exists", 409, "conflict"},
    {-EBUSY, "busy", 409, "conflict"},
    {-ECANCELED, "internal", 409, "conflict"}, /* deleted while it was being written */
    {-EFBIG, "internal", 413, "too_large"},
    {0, NULL, 416, "range_not_satisfiable"},
    {-EAGAIN, "unavailable", 503, "unavailable"},
    {1, "internal", 500, "internal"}, /* anything else */
};

#define WIRE_ERRORS (sizeof(wire_errors) / sizeof(wire_errors[0]))

static const struct wire_error_row *wire_error_row(int rc)
{
    for (size_t i = 0; i + 1 < WIRE_ERRORS; i++) {
        if (wire_errors[i].rc == rc && rc != 0)
            return &wire_errors[i];
    }
    return &wire_errors[WIRE_ERRORS - 1];
}

const char *wire_error_code(int rc)
{
    return wire_error_row(rc)->code;
}

unsigned wire_error_http_status(int rc)
{
    return wire_error_row(rc)->http_status;
}

const char *wire_error_http_code(unsigned status)
{
    for (size_t i = 0; i < WIRE_ERRORS; i++) {
        if (wire_errors[i].http_status == status)
            return wire_errors[i].http_code;
    }
    return wire_errors[WIRE_ERRORS - 1].http_code;
}
