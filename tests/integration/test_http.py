"""The HTTP server on --listen (SPEC §8, docs/http.md): routes, Range,
--send-limit, the bearer token, metrics, PUT uploads and bad requests.
Every request goes to 127.0.0.1."""

import json
import os
import signal
import socket
import time

import pytest

from conftest import (MiB, PipeFeeder, expect_ok, make_file, make_random_file, sha512_file,
                      wait_until)
from httphelp import (SPARSE_LAYOUT, HeldGet, allocated, add_image, backing_path, get, metrics,
                      raw, request, status_of, token_file)

TOKEN = "s3cret-token"


@pytest.fixture
def image(daemon, tmp_path):
    """A ready 3 MiB raw image "img" (uuid u1); returns (daemon, path of the source, bytes)."""
    p = tmp_path / "img.raw"
    make_random_file(p, 3 * MiB, seed=3)
    add_image(daemon, "img", p, "u1")
    return daemon, p, p.read_bytes()


@pytest.fixture
def token_daemon(daemon_factory, tmp_path):
    return daemon_factory(args=["--token-file", token_file(tmp_path / "token", TOKEN)], name="t")


# ---------------------------------------------------------------- routes

def test_healthz_answers_ok(daemon):
    r = get(daemon.port, "/healthz")
    assert (r.status, r.body) == (200, b"ok"), "GET /healthz: %r" % (r,)


def test_images_list_and_get_are_the_socket_images(image):
    d, _, _ = image
    listed = get(d.port, "/v1/images")
    assert listed.status == 200, "GET /v1/images: %r" % (listed,)
    assert listed.json() == d.list(), "GET /v1/images differs from the socket's list"
    one = get(d.port, "/v1/images/img")
    assert one.status == 200, "GET /v1/images/img: %r" % (one,)
    assert one.headers["content-type"] == "application/json"
    assert one.json() == d.get_raw("img"), "GET /v1/images/img differs from the socket's get"


def test_unknown_image_is_404(daemon):
    for path in ("/v1/images/nope", "/v1/images/nope/backing", "/v1/images/nope/extents"):
        r = get(daemon.port, path)
        assert r.status == 404, "GET %s: %r" % (path, r)
        assert r.json()["error"]["code"] == "not_found", "GET %s: %r" % (path, r)


def test_invalid_names_in_paths_are_400(image):
    d, _, _ = image
    for path in ("/v1/images/../backing-images/backing", "/v1/images/..%2Fimg/backing",
                 "/v1/images/img%2F..%2Fimg", "/v1/images/.hidden", "/v1/images/a/b/backing",
                 "/v1/images/" + "a" * 65, "/v1/images/x/extents"):
        r = get(d.port, path)
        assert r.status == 400, "GET %s: %r" % (path, r)


def test_unknown_route_is_404(daemon):
    for path in ("/", "/v2/images", "/v1/imagesx", "/metricsx"):
        r = get(daemon.port, path)
        assert r.status == 404, "GET %s: %r" % (path, r)


def test_bad_methods_are_405_with_allow(image):
    d, _, _ = image
    for method, path in (("DELETE", "/v1/images/img"), ("POST", "/v1/images"),
                         ("PUT", "/v1/images/img/backing"), ("POST", "/healthz"),
                         ("FROB", "/metrics")):
        r = request(d.port, method, path, body=b"")
        assert r.status == 405, "%s %s: %r" % (method, path, r)
        assert "allow" in r.headers, "%s %s: 405 without Allow: %r" % (method, path, r)


# ---------------------------------------------------------------- backing

def test_backing_is_the_stored_bytes(image):
    d, _, data = image
    r = get(d.port, "/v1/images/img/backing")
    assert r.status == 200, "GET backing: %r" % (r,)
    assert r.body == data, "GET backing returned other bytes than the image"
    assert r.headers.get("accept-ranges") == "bytes", "no Accept-Ranges: %r" % (r.headers,)
    assert r.headers.get("etag") == '"%s"' % d.get_raw("img")["status"]["currentChecksum"]


def test_backing_range_is_206_with_content_range(image):
    d, _, data = image
    size = len(data)
    for rng, first, last in (("bytes=100-199", 100, 199), ("bytes=%d-" % (size - 10), size - 10,
                                                             size - 1),
                             ("bytes=-5", size - 5, size - 1), ("bytes=0-99999999", 0, size - 1)):
        r = get(d.port, "/v1/images/img/backing", headers={"Range": rng})
        assert r.status == 206, "Range %s: %r" % (rng, r)
        assert r.headers["content-range"] == "bytes %d-%d/%d" % (first, last, size), \
            "Range %s: Content-Range %r" % (rng, r.headers.get("content-range"))
        assert r.body == data[first:last + 1], "Range %s: wrong bytes" % rng


def test_backing_range_past_the_end_is_416(image):
    d, _, data = image
    for rng in ("bytes=%d-" % len(data), "bytes=%d-%d" % (len(data) + 5, len(data) + 9),
                "bytes=-0"):
        r = get(d.port, "/v1/images/img/backing", headers={"Range": rng})
        assert r.status == 416, "Range %s: %r" % (rng, r)
        assert r.headers.get("content-range") == "bytes */%d" % len(data), \
            "Range %s: %r" % (rng, r)


def test_backing_malformed_or_multiple_range_is_ignored(image):
    d, _, data = image
    for rng in ("bytes=abc", "bytes=0-1,5-6", "items=0-5", "bytes=9-3"):
        r = get(d.port, "/v1/images/img/backing", headers={"Range": rng})
        assert r.status == 200 and r.body == data, "Range %s: %r" % (rng, r)


def test_head_backing_has_length_and_no_body(image):
    d, _, data = image
    r = request(d.port, "HEAD", "/v1/images/img/backing")
    assert r.status == 200, "HEAD backing: %r" % (r,)
    assert int(r.headers["content-length"]) == len(data)
    assert r.body == b""


def test_backing_of_image_not_ready_is_409(daemon):
    feeder = PipeFeeder(block=b"x" * 65536, total=None, delay=0.05, close=False).start()
    try:
        expect_ok(daemon.upload_fd("slow", feeder.r))
        daemon.wait_state("slow", ("in-progress", "starting", "pending"))
        r = get(daemon.port, "/v1/images/slow/backing")
        assert r.status == 409, "GET backing of an image in flight: %r" % (r,)
        r = get(daemon.port, "/v1/images/slow/extents")
        assert r.status == 409, "GET extents of an image in flight: %r" % (r,)
    finally:
        feeder.stop()
        feeder.close_read_end()


def test_extents_list_the_data_of_a_sparse_image(daemon, tmp_path):
    p = tmp_path / "sparse.raw"
    make_file(p, SPARSE_LAYOUT, seed=5)
    add_image(daemon, "sparse", p, "s1")
    r = get(daemon.port, "/v1/images/sparse/extents")
    assert r.status == 200, "GET extents: %r" % (r,)
    extents = r.json()
    want = [[0, 2 * MiB], [22 * MiB, MiB], [53 * MiB, MiB]]
    assert extents == want, "extents %r, want %r" % (extents, want)


@pytest.fixture
def big_image(daemon, tmp_path):
    """A ready 32 MiB raw image "big" (uuid b1): a GET of it stays in flight
    while its client does not read."""
    p = tmp_path / "big.raw"
    make_random_file(p, 32 * MiB, seed=4)
    add_image(daemon, "big", p, "b1")
    return daemon


def test_get_counts_in_sending_reference_and_bytes_sent(big_image):
    d = big_image
    held = HeldGet(d.port, "big")
    try:
        assert held.status == 200, "held GET answered %d" % held.status
        wait_until(lambda: d.get_raw("big")["status"]["sendingReference"] == 1, 10,
                   "sendingReference 1 while a GET is in flight")
    finally:
        held.close()
    wait_until(lambda: d.get_raw("big")["status"]["sendingReference"] == 0, 10,
               "sendingReference back to 0 after the GET ended")
    key = 'bimfs_image_sent_bytes_total{name="big",uuid="b1"}'
    before = metrics(d.port)[key]
    assert get(d.port, "/v1/images/big/backing").status == 200
    after = metrics(d.port)[key]
    assert after - before == 32 * MiB, "bytes sent grew by %d, want %d" % (after - before,
                                                                         32 * MiB)


def test_send_limit_answers_503_with_retry_after(daemon_factory, tmp_path):
    d = daemon_factory(args=["--send-limit", "1"], name="lim")
    p = tmp_path / "big.raw"
    make_random_file(p, 32 * MiB, seed=4)
    add_image(d, "big", p, "b1")
    held = HeldGet(d.port, "big")
    try:
        wait_until(lambda: d.get_raw("big")["status"]["sendingReference"] == 1, 10,
                   "the held GET to count")
        r = get(d.port, "/v1/images/big/backing", headers={"Range": "bytes=0-0"})
        assert r.status == 503, "a GET over --send-limit 1: %r" % (r,)
        assert r.headers.get("retry-after") == "1", "503 without Retry-After: 1: %r" % (r,)
        # HEAD and the image's JSON do not count and are not limited
        assert request(d.port, "HEAD", "/v1/images/big/backing").status == 200
    finally:
        held.close()
    wait_until(lambda: get(d.port, "/v1/images/big/backing",
                           headers={"Range": "bytes=0-0"}).status == 206, 10,
               "GETs to be served again once the held one ended")
    m = metrics(d.port)
    assert m['bimfs_sends_total{result="refused"}'] >= 1, "refusal not counted in metrics"


# ---------------------------------------------------------------- token

def test_token_required_on_every_route_but_healthz(token_daemon, tmp_path):
    d = token_daemon
    p = tmp_path / "t.raw"
    make_random_file(p, MiB)
    add_image(d, "img", p, "u1")
    assert get(d.port, "/healthz").status == 200, "/healthz must not need the token"
    for path in ("/v1/images", "/v1/images/img", "/v1/images/img/backing",
                 "/v1/images/img/extents", "/metrics", "/v1/images/nope"):
        for token in (None, "wrong", TOKEN + "x", TOKEN[:-1], ""):
            r = get(d.port, path, token=token)
            assert r.status == 401, "GET %s with token %r: %r" % (path, token, r)
            assert r.headers.get("www-authenticate", "").startswith("Bearer"), \
                "401 without WWW-Authenticate: Bearer: %r" % (r,)
        r = get(d.port, path, token=TOKEN)
        assert r.status == (404 if path.endswith("nope") else 200), \
            "GET %s with the right token: %r" % (path, r)
    r = request(d.port, "PUT", "/v1/images/up?uuid=x1", body=b"\0" * 512, token="wrong")
    assert r.status == 401, "PUT with a wrong token: %r" % (r,)
    assert d.get_raw("up") is None, "a refused PUT created an image"


# ---------------------------------------------------------------- metrics

def test_metrics_show_images_states_and_failures(image):
    d, p, _ = image
    r = get(d.port, "/metrics")
    assert r.status == 200 and r.headers["content-type"].startswith("text/plain"), repr(r)
    expect_ok(d.upload_file("bad", p, checksum="0" * 128))
    d.wait_state("bad", "failed")
    m = metrics(d.port)
    assert m['bimfs_image_state{name="img",uuid="u1",state="ready"}'] == 1
    assert m['bimfs_image_state{name="img",uuid="u1",state="failed"}'] == 0
    assert m['bimfs_image_bytes_total{name="img",uuid="u1"}'] == 3 * MiB
    assert m['bimfs_image_bytes_done{name="img",uuid="u1"}'] == 3 * MiB
    assert m['bimfs_images{state="failed"}'] == 1
    assert m['bimfs_failures_total{reason="checksum"}'] == 1, "checksum failure not counted"
    assert m['bimfs_transfers_in_flight{direction="out"}'] == 0
    assert 'bimfs_info{version="%s"}' % d.request({"op": "version"})["result"]["version"] in m


# ---------------------------------------------------------------- PUT

def test_put_creates_a_ready_sparse_image(daemon, tmp_path):
    p = tmp_path / "sparse.raw"
    digest = make_file(p, SPARSE_LAYOUT, seed=8)
    with open(p, "rb") as f:
        r = request(daemon.port, "PUT", "/v1/images/up?uuid=p1", body=f,
                    headers={"Content-Length": str(os.path.getsize(p))})
    assert r.status == 201, "PUT: %r" % (r,)
    img = r.json()
    assert img["status"]["state"] == "ready" and img["status"]["currentChecksum"] == digest, img
    assert img["uuid"] == "p1" and img["source"] == "upload", img
    real = allocated(backing_path(daemon, "up", "p1"))
    assert real <= 4 * MiB + MiB, "PUT wrote %d bytes of holes as data" % (real - 4 * MiB)
    assert sha512_file(daemon.mnt / "up" / "backing") == digest


def test_put_of_existing_image_is_200_same_uuid_409_other(image):
    d, p, data = image
    r = request(d.port, "PUT", "/v1/images/img?uuid=u1", body=data)
    assert r.status == 200 and r.json()["uuid"] == "u1", "PUT same uuid: %r" % (r,)
    r = request(d.port, "PUT", "/v1/images/img?uuid=u2", body=data)
    assert r.status == 409, "PUT another uuid: %r" % (r,)


def test_put_with_bad_checksum_is_400(daemon, tmp_path):
    data = os.urandom(MiB)
    r = request(daemon.port, "PUT", "/v1/images/up?checksum=abc", body=data)
    assert r.status == 400, "PUT with an invalid checksum: %r" % (r,)
    assert daemon.get_raw("up") is None, "an invalid checksum created an image"
    r = request(daemon.port, "PUT", "/v1/images/up2?checksum=" + "0" * 128, body=data)
    assert r.status == 400 and "checksum mismatch" in r.json()["error"]["message"], repr(r)
    img = daemon.get_raw("up2")
    assert img["status"]["state"] == "failed", "a mismatching PUT left %r" % (img,)
    r = request(daemon.port, "PUT", "/v1/images/up3?colour=red", body=data)
    assert r.status == 400, "PUT with an unknown parameter: %r" % (r,)


def start_put(port, name, uuid, length, send):
    """A PUT of `length` announced bytes that sends only `send` of them and
    keeps the connection open (the caller closes it)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(b"PUT /v1/images/%s?uuid=%s HTTP/1.1\r\nHost: x\r\n"
              b"Content-Length: %d\r\n\r\n" % (name.encode(), uuid.encode(), length))
    s.sendall(os.urandom(send))
    return s


def bytes_done(daemon, name):
    return ((daemon.get_raw(name) or {}).get("status") or {}).get("bytesDone", 0)


def data_files(daemon, name):
    """backing and backing.tmp files under every <name>-* directory."""
    return sorted(str(f) for d in daemon.image_dirs(name)
                  for f in d.iterdir() if f.name in ("backing", "backing.tmp"))


def test_cut_put_ends_failed_with_the_cause_and_no_data(daemon):
    s = start_put(daemon.port, "cut", "c1", 4 * MiB, MiB)
    try:
        wait_until(lambda: bytes_done(daemon, "cut") >= MiB, 10,
                   "the cut upload to show its 1 MiB")
    finally:
        s.close()
    wait_until(lambda: daemon.get_raw("cut")["status"]["state"] == "failed", 10,
               "the cut upload to end failed")
    img = daemon.get_raw("cut")
    want = "upload cut short: received 1048576 of 4194304 bytes"
    assert want in img["status"]["errorMsg"], "errorMsg %r lacks %r" % (
        img["status"]["errorMsg"], want)
    assert data_files(daemon, "cut") == [], "a cut upload left %r" % (data_files(daemon, "cut"),)
    cfg = json.loads((daemon.image_dir("cut", "c1") / "backing.cfg").read_text())
    assert cfg["state"] == "failed" and want in cfg.get("errorMsg", ""), (
        "the failure is not persisted: %r" % (cfg,))
    expect_ok(daemon.request({"op": "delete", "name": "cut"}))
    assert daemon.image_dirs("cut") == [], "delete left %r" % (daemon.image_dirs("cut"),)


def test_delete_during_a_stalled_put_returns_at_once(daemon, tmp_path):
    s = start_put(daemon.port, "stall", "s1", 4 * MiB, MiB + MiB // 2)
    try:
        wait_until(lambda: bytes_done(daemon, "stall") >= MiB, 10,
                   "the stalled upload to show progress")
        started = time.monotonic()
        expect_ok(daemon.request({"op": "delete", "name": "stall"}))
        took = time.monotonic() - started
        assert took < 5, "delete of a stalled upload took %.1f s" % took
        assert daemon.get_raw("stall") is None, "the deleted upload is still listed"
        assert daemon.image_dirs("stall") == [], "delete left %r" % (daemon.image_dirs("stall"),)
        assert get(daemon.port, "/healthz").status == 200, "the server stopped serving"
        # the same name and uuid again, while the old connection is still open
        p = tmp_path / "again.raw"
        make_random_file(p, 2 * MiB, seed=11)
        r = request(daemon.port, "PUT", "/v1/images/stall?uuid=s1", body=p.read_bytes())
        assert r.status == 201, "a new PUT after the delete: %r" % (r,)
    finally:
        s.close()
    # the old connection's end must not touch the new image
    time.sleep(1)
    img = daemon.get_raw("stall")
    assert img and img["status"]["state"] == "ready", "the old upload's end changed %r" % (img,)
    assert sha512_file(daemon.mnt / "stall" / "backing") == sha512_file(p)
    expect_ok(daemon.request({"op": "delete", "name": "stall"}))
    time.sleep(0.5)
    assert daemon.image_dirs("stall") == [], "files reappeared: %r" % (daemon.image_dirs("stall"),)
    assert daemon.alive(), "bimfs died"


def test_closing_a_deleted_put_leaves_nothing(daemon):
    s = start_put(daemon.port, "gone", "g1", 4 * MiB, MiB + MiB // 2)
    try:
        wait_until(lambda: bytes_done(daemon, "gone") >= MiB, 10,
                   "the upload to show progress")
        expect_ok(daemon.request({"op": "delete", "name": "gone"}))
    finally:
        s.close()
    time.sleep(1)
    assert daemon.get_raw("gone") is None, "the deleted upload came back"
    assert daemon.image_dirs("gone") == [], "files reappeared: %r" % (daemon.image_dirs("gone"),)
    assert get(daemon.port, "/healthz").status == 200, "the server stopped serving"


# ---------------------------------------------------------------- bad requests

def test_bad_requests_get_4xx_and_the_server_keeps_serving(image):
    d, _, _ = image
    answers = {
        "huge header": status_of(raw(d.port, b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " +
                                     b"a" * (256 * 1024) + b"\r\n\r\n")),
        "bad request line": status_of(raw(d.port, b"GET / FOO\r\n\r\n")),
        "no host": status_of(raw(d.port, b"GET /healthz HTTP/1.1\r\n\r\n")),
        "huge url": status_of(raw(d.port, b"GET /" + b"a" * (200 * 1024) +
                                  b" HTTP/1.1\r\nHost: x\r\n\r\n")),
    }
    for what, status in answers.items():
        assert 400 <= status < 500, "%s: answered %d, want 4xx" % (what, status)
    # a line that is no request at all: libmicrohttpd closes without a word
    status = status_of(raw(d.port, b"GARBAGE\r\n\r\n"))
    assert status == 0 or 400 <= status < 500, "garbage: answered %d" % status
    # a client that connects and says nothing, and one that stops mid-request
    idle = socket.create_connection(("127.0.0.1", d.port))
    half = socket.create_connection(("127.0.0.1", d.port))
    half.sendall(b"GET /v1/images HTTP/1.1\r\nHo")
    try:
        for _ in range(3):
            assert get(d.port, "/healthz").status == 200, "the server stopped serving"
        assert get(d.port, "/v1/images/img/backing").status == 200
    finally:
        idle.close()
        half.close()
    assert d.alive(), "bimfs died after bad requests"


def test_stop_with_a_get_in_flight_is_clean(big_image):
    d = big_image
    held = HeldGet(d.port, "big")
    try:
        d.stop(signal.SIGTERM)  # exit status 0, unmounted, socket gone
    finally:
        held.close()
