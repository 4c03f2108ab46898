"""Helpers for the HTTP and peer sync tests (test_http.py, test_peer_sync.py).

Plain http.client against a daemon's --listen port on 127.0.0.1, raw sockets
for requests http.client will not send, a Prometheus text parser, and the
`sync` op. Nothing here leaves loopback.
"""

import http.client
import json
import os
import re
import socket
import time

import pytest

from conftest import MiB, wait_until

HOST = "127.0.0.1"


class Reply:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers  # lower-case names
        self.body = body

    def json(self):
        try:
            return json.loads(self.body)
        except ValueError:
            pytest.fail("HTTP %d body is not JSON: %r" % (self.status, self.body[:300]))

    def __repr__(self):
        return "HTTP %d %r %r" % (self.status, self.headers, self.body[:200])


def request(port, method, path, token=None, headers=None, body=None, timeout=60):
    """One request on a fresh connection; returns a Reply."""
    h = dict(headers or {})
    if token is not None:
        h["Authorization"] = "Bearer " + token
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=h)
        r = conn.getresponse()
        data = r.read()
        return Reply(r.status, {k.lower(): v for k, v in r.getheaders()}, data)
    finally:
        conn.close()


def get(port, path, token=None, headers=None):
    return request(port, "GET", path, token=token, headers=headers)


def raw(port, data, timeout=10):
    """Send raw bytes, return what the server answered until it closed or
    went quiet (bytes)."""
    s = socket.create_connection((HOST, port), timeout=timeout)
    out = b""
    try:
        s.sendall(data)
        while True:
            try:
                chunk = s.recv(65536)
            except (socket.timeout, ConnectionResetError):
                break
            if not chunk:
                break
            out += chunk
            if b"\r\n\r\n" in out and len(out) > 4096:
                break
    finally:
        s.close()
    return out


def status_of(raw_reply):
    """The status code of a raw HTTP answer (0 when there was none)."""
    m = re.match(rb"HTTP/1\.[01] (\d{3})", raw_reply)
    return int(m.group(1)) if m else 0


class HeldGet:
    """A GET of backing whose body is not read: the server keeps it in flight
    (counted in sendingReference) until close(). The image must be much larger
    than what loopback socket buffers hold (use >= 32 MiB)."""

    def __init__(self, port, name, token=None):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connect
        self.sock.settimeout(30)
        self.sock.connect((HOST, port))
        auth = ("Authorization: Bearer %s\r\n" % token) if token else ""
        self.sock.sendall(("GET /v1/images/%s/backing HTTP/1.1\r\nHost: x\r\n%s\r\n"
                           % (name, auth)).encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.sock.recv(1024)
            assert chunk, "the server closed the held GET before answering"
            head += chunk
        self.status = status_of(head)

    def close(self):
        self.sock.close()


def metrics(port, token=None):
    """GET /metrics parsed into {'name{labels}': value}."""
    r = get(port, "/metrics", token=token)
    assert r.status == 200, "GET /metrics: %r" % (r,)
    out = {}
    for line in r.body.decode().splitlines():
        if not line or line.startswith("#"):
            continue
        key, _, value = line.rpartition(" ")
        out[key] = float(value)
    return out


def token_file(path, token):
    path.write_text(token + "\n")
    return str(path)


def peer(daemon):
    return "%s:%d" % (HOST, daemon.port)


def sync(daemon, name, uuid, sources, size=None, checksum=None):
    """The `sync` op; returns the reply."""
    req = {"op": "sync", "name": name, "uuid": uuid,
           "from": [peer(s) if hasattr(s, "port") else s for s in sources]}
    if size is not None:
        req["size"] = size
    if checksum is not None:
        req["checksum"] = checksum
    return daemon.request(req)


def wait_final(daemon, name, timeout):
    """Poll until the image is ready or failed; returns (image, seconds)."""
    t0 = time.monotonic()
    img = wait_until(lambda: (lambda i: i if i and i["status"]["state"] in ("ready", "failed")
                              else None)(daemon.get_raw(name)),
                     timeout, "%s to end ready or failed" % name, interval=0.1)
    return img, time.monotonic() - t0


def allocated(path):
    return os.stat(path).st_blocks * 512


def backing_path(daemon, name, uuid):
    return daemon.image_dir(name, uuid) / "backing"


def add_image(daemon, name, path, uuid):
    """Upload path into daemon as name/uuid; returns the ready image."""
    return daemon.add_ready(name, path, uuid=uuid)


def pieces_of(daemon, name):
    """GET /v1/images/NAME/pieces, answered 200: its JSON."""
    r = get(daemon.port, "/v1/images/%s/pieces" % name)
    assert r.status == 200, "GET pieces of %s: %r" % (name, r)
    return r.json()


# 64 MiB with 4 MiB of data in three extents
SPARSE_LAYOUT = [("data", 2 * MiB), ("hole", 20 * MiB), ("data", MiB), ("hole", 30 * MiB),
                 ("data", MiB), ("hole", 10 * MiB)]
