"""Malformed requests on the control socket (SPEC §6): each gets an
invalid_argument reply, the connection stays usable, and the daemon keeps
answering `version` on a new connection. Nothing is created by a bad request."""

import json
import os
import socket
import time

import pytest

from conftest import MiB, expect_error, expect_ok


def assert_still_serving(daemon):
    assert daemon.alive(), "bimfs died; log:\n%s" % daemon.log()
    assert daemon.answers_version(), "bimfs no longer answers version on a new connection"


def send_bad_line(daemon, line):
    """Send line, expect invalid_argument, then check the same connection still works."""
    with daemon.client() as c:
        c.send_line(line)
        reply = c.recv_json(timeout=10)
        expect_error(reply, "invalid_argument")
        expect_ok(c.request({"op": "version"}))
    assert_still_serving(daemon)
    return reply


BAD_LINES = {
    "not-json": b"this is not json",
    "truncated-json": b'{"id": 1, "op": "get", "name": "x"',
    "array": b'[1, 2, 3]',
    "number": b"42",
    "string": b'"version"',
    "null": b"null",
    "invalid-utf8": b'{"id": 1, "op": "get", "name": "ab\xff\xfe"}',
    "invalid-utf8-op": b'{"id": 1, "op": "ver\xc3\x28sion"}',
    "unknown-op": b'{"id": 1, "op": "frobnicate"}',
    "missing-op": b'{"id": 1, "name": "x1"}',
    "op-number": b'{"id": 1, "op": 5}',
    "op-null": b'{"id": 1, "op": null}',
    "get-no-name": b'{"id": 1, "op": "get"}',
    "get-name-number": b'{"id": 1, "op": "get", "name": 12}',
    "get-name-object": b'{"id": 1, "op": "get", "name": {"a": 1}}',
    "delete-name-list": b'{"id": 1, "op": "delete", "name": ["x1"]}',
    "create-no-source": b'{"id": 1, "op": "create", "name": "x1"}',
    "create-source-string": b'{"id": 1, "op": "create", "name": "x1", "source": "upload"}',
    "create-source-unknown": b'{"id": 1, "op": "create", "name": "x1", "source": {"type": "magic"}}',
    "create-source-no-type": b'{"id": 1, "op": "create", "name": "x1", "source": {}}',
    "create-url-number": b'{"id": 1, "op": "create", "name": "x1", '
                         b'"source": {"type": "download", "url": 5}}',
    "create-clone-no-from": b'{"id": 1, "op": "create", "name": "x1", "source": {"type": "clone"}}',
    "create-uuid-number": b'{"id": 1, "op": "create", "name": "x1", "uuid": 5, '
                          b'"source": {"type": "clone", "from": "y1"}}',
    "create-checksum-number": b'{"id": 1, "op": "create", "name": "x1", "checksum": 5, '
                              b'"source": {"type": "clone", "from": "y1"}}',
    "sync-no-from": b'{"id": 1, "op": "sync", "name": "x1", "uuid": "u1"}',
    "sync-from-number": b'{"id": 1, "op": "sync", "name": "x1", "uuid": "u1", "from": 80}',
    "sync-size-string": b'{"id": 1, "op": "sync", "name": "x1", "uuid": "u1", '
                        b'"from": "127.0.0.1:1", "size": "big"}',
    "watch-name-number": b'{"id": 1, "op": "watch", "name": 3}',
    "nested-deep": b"[" * 100000 + b"]" * 100000,
    "nested-deep-object": b'{"id": 1, "op": "version", "x": ' + b'{"a":' * 50000 + b"1" +
                          b"}" * 50000 + b"}",
}


@pytest.mark.parametrize("kind", sorted(BAD_LINES))
def test_malformed_line_is_invalid_argument(daemon, kind):
    send_bad_line(daemon, BAD_LINES[kind])
    assert daemon.list() == {}, "a malformed request created an image"


def test_error_reply_echoes_id(daemon):
    reply = send_bad_line(daemon, b'{"id": 99, "op": "frobnicate"}')
    assert reply.get("id") == 99, "error reply does not echo the id: %r" % reply


BAD_NAMES = ["../x", "a/b", "x" * 65, "", "a", "-ab", ".ab", "_ab", "ab cd", "ab\u0000cd",
             "ab\ncd", "ab/", "..", "ümlaut", "ab*"]


@pytest.mark.parametrize("op", ["get", "delete", "create", "sync", "watch"])
def test_invalid_names_are_invalid_argument_for_every_op(daemon, op):
    wrong = []
    for name in BAD_NAMES:
        req = {"op": op, "name": name}
        if op == "create":
            req["source"] = {"type": "download", "url": "http://127.0.0.1:1/x.img"}
        if op == "sync":
            req.update(uuid="u1", **{"from": "127.0.0.1:1"})
        with daemon.client() as c:
            c.send_line(req)
            reply = c.recv_json(timeout=10)
        if reply.get("ok") is not False or reply["error"].get("code") != "invalid_argument":
            wrong.append((name, reply))
    assert not wrong, "%s with these names did not give invalid_argument: %r" % (op, wrong)
    assert daemon.list() == {}
    if daemon.images_dir.exists():
        assert os.listdir(daemon.images_dir) == [], "bad names left %r" % os.listdir(
            daemon.images_dir)


def test_name_of_64_bytes_is_valid(daemon, small_image):
    src, _ = small_image
    name = "n" * 64
    img = daemon.add_ready(name, src)
    assert img["name"] == name
    assert (daemon.mnt / name / "backing").is_file()


@pytest.mark.parametrize("uuid", ["a_b", "x" * 65, "a/b", "../u", "a b", "é"], ids=repr)
def test_invalid_uuid_is_invalid_argument(daemon, uuid):
    req = {"op": "create", "name": "okname", "uuid": uuid,
           "source": {"type": "download", "url": "http://127.0.0.1:1/x.img"}}
    expect_error(daemon.request(req), "invalid_argument")
    assert daemon.list() == {}


@pytest.mark.parametrize("url", [
    "file:///etc/passwd",
    "ftp://127.0.0.1/x.img",
    "gopher://127.0.0.1/x",
    "http://",
    "http:///x.img",
    "https://",
    "127.0.0.1/x.img",
    "",
    "http//127.0.0.1/x",
    "javascript:alert(1)",
])
def test_download_with_bad_url_is_invalid_argument(daemon, url):
    req = {"op": "create", "name": "dl", "source": {"type": "download", "url": url}}
    expect_error(daemon.request(req), "invalid_argument")
    assert daemon.get_raw("dl") is None, "a create with url %r left an image" % url
    if daemon.images_dir.exists():
        assert os.listdir(daemon.images_dir) == []


def test_line_over_1_mib_closes_the_connection(daemon):
    line = b'{"op": "version", "pad": "' + b"a" * (MiB + 1024) + b'"}\n'
    with daemon.client() as c:
        try:
            c.sock.sendall(line)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the daemon may close while we still send
        # An error reply before closing is fine; the connection must then end.
        deadline = time.monotonic() + 10
        while True:
            got = c.recv_line(timeout=10)
            if got is None:
                break
            assert json.loads(got).get("ok") is False, "an over-long line was served: %r" % got
            assert time.monotonic() < deadline, "connection not closed after an over-long line"
    assert_still_serving(daemon)


def test_line_just_under_1_mib_is_served(daemon):
    pad = MiB - 200
    line = b'{"id": 3, "op": "version", "pad": "' + b"a" * pad + b'"}\n'
    assert len(line) < MiB
    with daemon.client() as c:
        c.sock.sendall(line)
        reply = c.recv_json(timeout=10)
    # Unknown fields may be ignored or refused, but the line must be answered.
    assert reply.get("id") == 3, "a line under 1 MiB was not answered: %r" % reply


def test_garbage_bytes_then_version(daemon):
    rng = __import__("random").Random(5)
    garbage = bytes(rng.randrange(256) for _ in range(8192))
    with daemon.client() as c:
        c.sock.sendall(garbage + b"\n")
        c.send_line({"id": "after", "op": "version"})
        while True:
            reply = c.recv_json(timeout=10)
            if reply.get("id") == "after":
                break
            assert reply.get("ok") is False, "garbage was accepted: %r" % reply
        assert reply.get("ok") is True, reply
    assert_still_serving(daemon)


def test_empty_lines_are_harmless(daemon):
    with daemon.client() as c:
        c.sock.sendall(b"\n\n\r\n")
        c.send_line({"id": "x", "op": "version"})
        while True:
            reply = c.recv_json(timeout=10)
            if reply.get("id") == "x":
                break
        assert reply.get("ok") is True
    assert_still_serving(daemon)


def test_client_closing_mid_line_does_not_hurt(daemon):
    for _ in range(20):
        c = daemon.client()
        c.sock.sendall(b'{"id": 1, "op": "cre')
        c.close()
    assert_still_serving(daemon)


def test_client_closing_before_reading_reply(daemon):
    for _ in range(20):
        c = daemon.client()
        c.sock.sendall(b'{"op": "list"}\n' * 100)
        c.sock.shutdown(socket.SHUT_RDWR)
        c.close()
    assert_still_serving(daemon)


def test_many_connections_then_new_client(daemon):
    conns = []
    try:
        for _ in range(80):
            try:
                conns.append(daemon.client(timeout=5))
            except OSError:
                break
    finally:
        for c in conns:
            c.close()
    time.sleep(0.5)
    assert_still_serving(daemon)


def test_fd_sent_with_a_request_that_takes_none(daemon, small_image):
    src, _ = small_image
    fd = os.open(src, os.O_RDONLY)
    try:
        with daemon.client() as c:
            expect_ok(c.request({"op": "list"}, fds=[fd]))
            expect_ok(c.request({"op": "version"}))
    finally:
        os.close(fd)
    assert_still_serving(daemon)


def test_several_fds_with_an_upload_are_refused_or_use_one(daemon, small_image):
    src, _ = small_image
    fds = [os.open(src, os.O_RDONLY) for _ in range(3)]
    try:
        reply = daemon.request({"op": "create", "name": "manyfds", "source": {"type": "upload"}},
                               fds=fds)
    finally:
        for fd in fds:
            os.close(fd)
    if reply.get("ok") is False:
        assert reply["error"]["code"] == "invalid_argument", reply
    else:
        daemon.wait_state("manyfds", "ready")
    assert_still_serving(daemon)
