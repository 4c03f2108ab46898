"""Endless and hostile sources (SPEC §1 --max-size, §3, §4; docs/peer-sync.md):
each ends as the SPEC says, with the daemon answering and no data left.

Covered elsewhere, not repeated here: an endless HTTP download of zeros with
no Content-Length, an upload from /dev/zero, a PUT whose Content-Length is
over --max-size (test_reliability.py); duplicate and invalid framing headers
(test_http_hostile.py). Here: endless sources of real (random) data through
a pipe and a chunked PUT, and a fake peer that answers the sync protocol with
junk."""

import hashlib
import os
import re
import socket
import threading
import time

import pytest

from conftest import MiB, PipeFeeder, expect_ok, make_random_file, sha512_file
from httphelp import HOST, add_image, sync

MAX = 16 * MiB
MAX_ARGS = ["--max-size", "16M"]


def assert_no_data(d, name, uuid):
    idir = d.image_dir(name, uuid)
    left = sorted(os.listdir(idir)) if idir.exists() else []
    assert "backing.tmp" not in left and "backing" not in left, \
        "the failed %s kept data: %r" % (name, left)


@pytest.fixture
def capped(daemon_factory, tmp_path):
    """A daemon with --max-size 16M and a ready image "keep"; (daemon, sha512)."""
    d = daemon_factory(args=MAX_ARGS, name="d")
    p = tmp_path / "keep.raw"
    digest = make_random_file(p, MiB, seed=31)
    add_image(d, "keep", p, "k1")
    return d, digest


def assert_keep(d, digest):
    assert d.answers_version(), "the daemon does not answer"
    k = d.get_raw("keep")
    assert k["status"]["state"] == "ready", k
    assert sha512_file(d.mnt / "keep" / "backing") == digest


class EndlessBody:
    """From a thread: head on the socket s, then a chunked body of random
    1 MiB chunks that never ends, until the server stops taking it or stop()
    is called. `sent` counts the body's bytes sent; `ended` is set once the
    sending ended."""

    def __init__(self, s, head):
        self.s = s
        self.head = head
        self.sent = 0
        self.ended = threading.Event()
        self.thread = threading.Thread(target=self._pump, daemon=True)
        self.thread.start()

    def _pump(self):
        chunk = os.urandom(MiB)
        frame = b"%x\r\n" % len(chunk) + chunk + b"\r\n"
        try:
            self.s.sendall(self.head)
            while not self.ended.is_set():
                self.s.sendall(frame)
                self.sent += len(chunk)
        except OSError:
            pass
        finally:
            self.ended.set()

    def stop(self):
        self.ended.set()
        self.s.close()
        self.thread.join(10)


# ---------------------------------------------------------------- endless sources

def test_endless_upload_of_data_from_a_pipe_fails_at_max_size(capped):
    d, digest = capped
    feeder = PipeFeeder(block=os.urandom(MiB))  # random: every byte is stored, none a hole
    try:
        expect_ok(d.upload_fd("endless", feeder.r, uuid="e1"))
    finally:
        feeder.close_read_end()
    feeder.start()
    try:
        img = d.wait_failed("endless")
    finally:
        feeder.stop()
    assert img["status"]["errorMsg"].endswith("image larger than --max-size (%d bytes)" % MAX), img
    # the daemon stopped reading: the feeder got EPIPE after at most MAX and what buffers hold
    assert feeder.error is not None, "the daemon still reads the endless pipe"
    assert feeder.written <= MAX + 8 * MiB, "%d bytes read for a %d limit" % (feeder.written, MAX)
    assert_no_data(d, "endless", "e1")
    assert_keep(d, digest)


@pytest.mark.parametrize("case", ["max-size", "refused"])
def test_endless_chunked_put_fails_and_the_connection_ends(capped, case):
    """max-size: the upload fails at --max-size; refused: the name exists with
    another uuid (409, answered only after the body). Either way the server
    drops at most CTL_HTTP_DRAIN_MAX more of the body, then closes."""
    d, digest = capped
    target = b"/v1/images/endless?uuid=e2" if case == "max-size" else b"/v1/images/keep?uuid=zz"
    s = socket.create_connection((HOST, d.port), timeout=30)
    reply = b""
    body = EndlessBody(s, b"PUT " + target + b" HTTP/1.1\r\nHost: x\r\n"
                       b"Transfer-Encoding: chunked\r\n\r\n")
    try:
        if case == "max-size":
            img = d.wait_failed("endless")
        # the server answers (or closes) rather than reading the stream for ever
        s.settimeout(15)
        try:
            reply = s.recv(4096)
        except OSError:
            pass
        assert body.ended.wait(15), \
            "the server still reads the endless PUT %d bytes in" % body.sent
    finally:
        body.stop()
    if case == "max-size":
        assert "larger than --max-size (%d bytes)" % MAX in img["status"]["errorMsg"], img
        assert_no_data(d, "endless", "e2")
    else:
        assert d.list().keys() == {"keep"}, "a refused PUT created %r" % sorted(d.list())
    if reply:
        assert re.match(rb"HTTP/1\.1 4\d\d", reply), "the PUT answered %r" % reply[:200]
    # MAX, then at most 16 MiB dropped (ctl/http/http_upload.c), and what socket buffers hold
    assert body.sent <= MAX + 32 * MiB, "%d bytes taken for a %d limit" % (body.sent, MAX)
    assert_keep(d, digest)


def test_endless_body_to_a_route_that_reads_none_ends_the_connection(capped):
    """A chunked body that never ends sent with GET /healthz (no token needed):
    at most CTL_HTTP_DRAIN_MAX is dropped, then the server closes."""
    d, digest = capped
    s = socket.create_connection((HOST, d.port), timeout=30)
    body = EndlessBody(s, b"GET /healthz HTTP/1.1\r\nHost: x\r\n"
                       b"Transfer-Encoding: chunked\r\n\r\n")
    try:
        assert body.ended.wait(60), \
            "the server still reads the endless body %d bytes in" % body.sent
    finally:
        body.stop()
    assert body.sent <= 16 * MiB + 32 * MiB, \
        "%d bytes taken by a route that reads none" % body.sent
    assert_keep(d, digest)


# ---------------------------------------------------------------- a fake peer

SIZE = 4 * MiB
GOOD = os.urandom(SIZE)
GOOD_SUM = hashlib.sha512(GOOD).hexdigest()


@pytest.fixture
def fake_peer(fakes):
    return fakes(GOOD)


PEER_CASES = {  # lie -> what the error must say
    "not-json": r"no source can provide the image: .*its answer is not JSON",
    "wrong-shape": r"no source can provide the image: .*described the image in an unknown way",
    "huge-json": r"no source can provide the image: .*its answer is larger than \d+ bytes",
    "bad-checksum": r"no source can provide the image: .*(gave no valid checksum|currentChecksum)",
    "pieces-junk": r"no source can provide the image: .*piece digests unusable",
    "ignore-range": r"no source can finish the image: .*answered HTTP 200",
    "wrong-bytes": r"no source can finish the image: .*sent piece 0 with SHA-256 [0-9a-f]{16}\.\.\., "
                   r"not the reference's digest",
}


@pytest.mark.parametrize("mode", sorted(PEER_CASES))
def test_a_peer_that_sends_garbage_fails_the_sync_with_a_clear_message(capped, fake_peer, mode):
    d, digest = capped
    fake_peer.lie = mode
    addr = fake_peer.addr
    t0 = time.monotonic()
    expect_ok(sync(d, "img", "u1", [addr]))
    img = d.wait_failed("img", timeout=60)
    took = time.monotonic() - t0
    msg = img["status"]["errorMsg"]
    assert re.search(PEER_CASES[mode], msg), "%s: error %r" % (mode, msg)
    assert addr in msg, "%s: the error does not name the source: %r" % (mode, msg)
    assert_no_data(d, "img", "u1")
    assert_keep(d, digest)
    print("%s: failed in %.2f s: %s" % (mode, took, msg[:160]))
