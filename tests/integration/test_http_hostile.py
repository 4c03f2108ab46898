"""Hostile HTTP clients (SPEC §8, docs/http.md "Hostile clients"): connections
held open without a complete request, invalid request framing, names that
are only bad after percent-decoding, and bearer tokens with junk after them.
Every request goes to loopback (127.0.0.x)."""

import http.client
import resource
import select
import socket
import threading
import time

import pytest

from conftest import MiB, make_random_file
from httphelp import HOST, add_image, get, raw, status_of, token_file

TOKEN = "s3cret-token"
HELD = 1000  # SPEC §8
ANSWER_S = 2  # SPEC §8: /healthz and transfers answer within 2 s
CLOSED_S = 60  # the held connections are all closed by then (the head timeout is 10 s)


@pytest.fixture
def image(daemon, tmp_path):
    """A ready 1 MiB raw image "web-img"; returns (daemon, its bytes)."""
    p = tmp_path / "web.raw"
    make_random_file(p, MiB, seed=5)
    add_image(daemon, "web-img", p, "a1b2c3d4")
    return daemon, p.read_bytes()


@pytest.fixture
def token_daemon(daemon_factory, tmp_path):
    return daemon_factory(args=["--token-file", token_file(tmp_path / "token", TOKEN)], name="t")


def raise_nofile(need):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < need:
        want = need if hard == resource.RLIM_INFINITY else min(need, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    if resource.getrlimit(resource.RLIMIT_NOFILE)[0] < need:
        pytest.skip("cannot open %d files (RLIMIT_NOFILE hard limit %d)" % (need, hard))


class HeldConnections:
    """HELD connections that never send a complete request head: a third say
    nothing, a third sent half a request line, a third sent a request line
    and keep trickling one byte of a header every 0.2 s."""

    def __init__(self, port, addresses):
        self.socks = []
        self.trickling = []
        for i in range(HELD):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((addresses[i % len(addresses)], 0))
            s.settimeout(30)
            s.connect((HOST, port))
            if i % 3 == 1:
                s.sendall(b"GET /v1/ima")
            elif i % 3 == 2:
                s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-Slow: ")
                self.trickling.append(s)
            self.socks.append(s)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._trickle, daemon=True)
        self.thread.start()

    def _trickle(self):
        live = list(self.trickling)
        while live and not self.stop.wait(0.2):
            for s in list(live):
                try:
                    s.send(b"a")
                except OSError:  # closed by the server: what we wait for
                    live.remove(s)

    def wait_all_closed(self, timeout):
        """Wait until the server closed every held connection (EOF or reset)."""
        open_socks = {s.fileno(): s for s in self.socks}
        poller = select.poll()
        for fd in open_socks:
            poller.register(fd, select.POLLIN)
        deadline = time.monotonic() + timeout
        while open_socks:
            left = deadline - time.monotonic()
            if left <= 0:
                pytest.fail("%d of %d held connections still open after %ds"
                            % (len(open_socks), HELD, timeout))
            for fd, _ in poller.poll(left * 1000):
                try:
                    data = open_socks[fd].recv(65536)
                except OSError:
                    data = b""
                if not data:
                    poller.unregister(fd)
                    del open_socks[fd]

    def close(self):
        self.stop.set()
        self.thread.join(10)
        for s in self.socks:
            s.close()


LATENCIES = {}  # path -> seconds of each timed_get, reported by the held-connections test


def timed_get(port, path, source):
    """GET with the SPEC's 2 s bound as the socket timeout, from `source`."""
    conn = http.client.HTTPConnection(HOST, port, timeout=ANSWER_S,
                                      source_address=(source, 0))
    try:
        t0 = time.monotonic()
        conn.request("GET", path)
        r = conn.getresponse()
        body = r.read()
        LATENCIES.setdefault(path, []).append(time.monotonic() - t0)
        return r.status, body
    except (OSError, http.client.HTTPException) as e:
        pytest.fail("GET %s from %s did not answer within %ds while %d connections are held: %r"
                    % (path, source, ANSWER_S, HELD, e))
    finally:
        conn.close()


# ---------------------------------------------------------------- held connections

@pytest.mark.parametrize("addresses", [["127.0.0.1"], ["127.0.0.%d" % i for i in range(1, 11)]],
                         ids=["one-address", "ten-addresses"])
def test_held_connections_do_not_starve_healthz_or_transfers(image, addresses):
    d, data = image
    raise_nofile(HELD + 256)
    held = HeldConnections(d.port, addresses)
    LATENCIES.clear()
    try:
        # from an address the held connections use, and from another one
        for source in ("127.0.0.1", "127.0.0.200"):
            for _ in range(10):  # the latency, not just one answer
                assert timed_get(d.port, "/healthz", source) == (200, b"ok"), \
                    "/healthz from %s with %d connections held" % (source, HELD)
            status, body = timed_get(d.port, "/v1/images/web-img/backing", source)
            assert status == 200 and body == data, \
                "GET backing from %s with %d connections held: %d, %d bytes" % (
                    source, HELD, status, len(body))
        assert d.alive(), "bimfs died with %d connections held" % HELD
        for path, secs in sorted(LATENCIES.items()):
            secs.sort()
            print("%s with %d held from %d address(es): %d GETs, median %.1f ms, max %.1f ms"
                  % (path, HELD, len(addresses), len(secs), secs[len(secs) // 2] * 1000,
                     secs[-1] * 1000))
        held.wait_all_closed(CLOSED_S)
    finally:
        held.close()
    assert get(d.port, "/healthz").status == 200, "the server stopped serving"


# ---------------------------------------------------------------- framing

def put_raw(port, name, headers, body):
    """A raw PUT of /v1/images/{name}; returns the status (0: none)."""
    head = ("PUT /v1/images/%s?uuid=f00dcafe HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
            "%s\r\n" % (name, "".join(h + "\r\n" for h in headers)))
    return status_of(raw(port, head.encode() + body))


@pytest.mark.parametrize("headers,body", [
    (["Content-Length: 4", "Content-Length: 8"], b"abcdefgh"),
    (["Content-Length: 8", "Content-Length: 4"], b"abcdefgh"),
    (["Content-Length: 4", "Transfer-Encoding: chunked"], b"4\r\nabcd\r\n0\r\n\r\n"),
    (["Transfer-Encoding: gzip"], b"abcd"),
    (["Transfer-Encoding: chunked"], b"4\r\nabcd\r\nzz\r\nabcd\r\n0\r\n\r\n"),
    (["Transfer-Encoding: chunked"], b"4\r\nabcdXY2\r\nab\r\n0\r\n\r\n"),
    (["Transfer-Encoding: chunked"], b"4\r\nabcd\r\n\r\n0\r\n\r\n"),
], ids=["two-lengths", "two-lengths-reversed", "length-and-chunked", "unknown-encoding",
        "bad-chunk-size", "chunk-without-crlf", "empty-chunk-size"])
def test_invalid_framing_is_400_and_creates_nothing(daemon, headers, body):
    status = put_raw(daemon.port, "framed", headers, body)
    assert status == 400, "PUT with %r answered %d, want 400" % (headers, status)
    assert daemon.get_raw("framed") is None, "a PUT with invalid framing created an image"
    assert daemon.image_dirs("framed") == [], "a PUT with invalid framing left a directory"
    assert get(daemon.port, "/healthz").status == 200, "the server stopped serving"


def test_repeated_equal_content_length_is_accepted(daemon):
    status = put_raw(daemon.port, "twice", ["Content-Length: 512", "Content-Length: 512"],
                     b"a" * 512)
    assert status == 201, "PUT with Content-Length repeated with one value: %d" % status
    assert daemon.wait_state("twice", "ready")["size"] == 512


def test_invalid_framing_of_a_get_is_400(image):
    d, _ = image
    reply = raw(d.port, b"GET /v1/images/web-img HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                b"Content-Length: 1\r\nContent-Length: 2\r\n\r\nab")
    assert status_of(reply) == 400, "GET with two Content-Length values: %r" % reply[:200]


# ---------------------------------------------------------------- names after decoding

BAD_PATHS = [
    "/v1/images/web-img%00", "/v1/images/web-img%00/backing", "/v1/images/web-img%00/extents",
    "/v1/images/web-img%00junk/backing", "/v1/images/web%2Fimg", "/v1/images/web-img%2Fbacking",
    "/v1/images/web-img%2fextents", "/v1/images/%2E%2E/backing", "/v1/images/web-img%zz",
    "/v1/images/web-img%4", "/v1/images/web-img%", "/v1/images/web%20img/backing",
    "/v1/images/web-img/backing%00", "/v1/images/web-img?x=%00",
]


def test_names_are_validated_after_percent_decoding(image):
    d, _ = image
    for path in BAD_PATHS:
        for method in ("GET", "HEAD"):
            reply = raw(d.port, ("%s %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
                                 % (method, path)).encode())
            assert status_of(reply) == 400, "%s %s: %r" % (method, path, reply[:200])


def test_put_with_a_name_bad_after_decoding_is_400_and_creates_nothing(daemon):
    for name in ("new-img%00", "new-img%00x", "new%2Fimg", "new-img%2Fbacking", "new-img%zz"):
        status = put_raw(daemon.port, name, ["Content-Length: 4"], b"abcd")
        assert status == 400, "PUT /v1/images/%s: %d" % (name, status)
    for name in ("new-img", "new"):
        assert daemon.get_raw(name) is None, "a PUT with a bad name created %s" % name
    assert daemon.list() == {}, "a PUT with a bad name created an image"


def test_put_with_a_nul_in_the_uuid_is_400(daemon):
    head = (b"PUT /v1/images/nul-uuid?uuid=f00dcafe%00zz HTTP/1.1\r\nHost: x\r\n"
            b"Connection: close\r\nContent-Length: 4\r\n\r\nabcd")
    assert status_of(raw(daemon.port, head)) == 400
    assert daemon.get_raw("nul-uuid") is None, "a PUT with a NUL in its uuid created an image"


def test_names_that_decode_to_valid_ones_are_served(image):
    d, data = image
    r = get(d.port, "/v1/images/web%2Dimg/backing")
    assert r.status == 200 and r.body == data, "GET of web%%2Dimg: %r" % (r,)


# ---------------------------------------------------------------- the token

def auth_status(port, value):
    reply = raw(port, b"GET /v1/images HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                b"Authorization: " + value + b"\r\n\r\n")
    return status_of(reply)


def test_token_must_be_exactly_the_bearer_token(token_daemon):
    d = token_daemon
    tok = TOKEN.encode()
    assert auth_status(d.port, b"Bearer " + tok) == 200, "the right token was refused"
    for value in (b"Bearer " + tok + b"\x00junk", b"Bearer " + tok + b" junk",
                  b"Bearer " + tok + b"\x00", b"Bearer  " + tok, b"Bearer\t" + tok,
                  b"Bearer " + tok + b"," + tok, b"Basic " + tok, tok):
        status = auth_status(d.port, value)
        assert status == 401, "Authorization %r answered %d, want 401" % (value, status)
    reply = raw(d.port, b"GET /v1/images HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                b"Authorization: Bearer " + tok + b"\r\nAuthorization: Bearer wrong\r\n\r\n")
    assert status_of(reply) == 401, "two Authorization headers: %r" % reply[:200]
    assert d.alive()
