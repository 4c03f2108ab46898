"""A fake bimfs peer on loopback (SPEC §8, §9): it answers the peer API for
one image from bytes in memory, honestly or in one of the ways a broken or
lying peer would, so that a real receiver can be tried against it.

    GET /v1/images/<name>            the image object (ready)
    GET /v1/images/<name>/pieces     the piece digests (SHA-256 of 4 MiB pieces)
    GET /v1/images/<name>/extents    [[0, size]]
    GET /v1/images/<name>/backing    with Range: 206 and the bytes

`FakePeer.lie` names the lie (None: honest); the lies are listed in LIES.
Every request is recorded (path, Range) so that a test can tell what was
asked for."""

import hashlib
import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HOST = "127.0.0.1"
PIECE = 4 * 1024 * 1024

LIES = {
    # the image object
    "not-json": "GET of the image answers text that is not JSON",
    "wrong-shape": "the image object has fields of the wrong type",
    "huge-json": "the image object never ends",
    "bad-checksum": "currentChecksum is not a checksum",
    # the manifest
    "no-pieces": "GET .../pieces is 404 (a peer without piece digests)",
    "pieces-busy": "GET .../pieces is 503 with Retry-After: 1 for ever",
    "pieces-wrong-digest": "the digest of piece `piece` is another one",
    "pieces-piece-size": "pieceSize is 1 MiB",
    "pieces-short": "one digest too few",
    "pieces-size": "size is one piece larger than the image",
    "pieces-huge": "the manifest never ends",
    "pieces-junk": "the manifest is not a manifest",
    # the bytes
    "ignore-range": "GET .../backing answers 200 with the whole image",
    "wrong-bytes": "every byte served is flipped",
    "bad-piece": "piece `piece` is served with one byte flipped",
    "die-mid-piece": "half of each piece is sent, then the connection closes",
    "backing-busy": "GET .../backing is 503 with Retry-After: 60 for ever (at its send limit)",
    "holds-nothing": "a receiver in progress that never gets a piece: have [], backing 409",
    # the whole image
    "wrong-sha512": "pieces and bytes agree, the SHA-512 it announces is another",
}


def piece_digests(data):
    return [hashlib.sha256(data[i:i + PIECE]).hexdigest() for i in range(0, len(data), PIECE)]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        pass

    def send(self, status, body, headers=()):
        self.send_response(status)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def endless(self, start):
        self.send_response(200)
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(start)
        while True:
            self.wfile.write(b"a" * 65536)

    def do_GET(self):
        peer = self.server.peer
        if peer.dead:  # as a killed daemon: no answer, the connection dropped
            self.close_connection = True
            return None
        peer.record(self.path, self.headers.get("Range"))
        base = "/v1/images/" + peer.name
        try:
            if self.path == base:
                return self.image()
            if self.path == base + "/pieces":
                return self.pieces()
            if self.path == base + "/extents":
                return self.send(200, b"[[0, %d]]" % len(peer.data))
            if self.path == base + "/backing":
                return self.backing()
            return self.send(404, b"no\n")
        except OSError:
            self.close_connection = True

    def image(self):
        peer, lie = self.server.peer, self.server.peer.lie
        if lie == "not-json":
            return self.send(200, b"<html>definitely not {json")
        if lie == "wrong-shape":
            return self.send(200, b'{"uuid": 7, "size": "big", "status": []}')
        if lie == "huge-json":
            return self.endless(b'{"uuid": "%s", "junk": "' % peer.uuid.encode())
        status = {"state": "ready", "currentChecksum": peer.announced_sha512(),
                  "sendingReference": 0, "errorMsg": "", "senderManagerAddress": "",
                  "progress": 100}
        if lie == "bad-checksum":
            status["currentChecksum"] = "xyz"
        if lie == "holds-nothing":
            status.update(state="in-progress", currentChecksum="", progress=0)
        n = len(peer.data)
        img = {"name": peer.name, "uuid": peer.uuid, "size": n, "virtualSize": n,
               "realSize": n, "format": "raw", "expectedChecksum": "", "source": "upload",
               "status": status}
        return self.send(200, json.dumps(img).encode())

    def pieces(self):
        peer, lie = self.server.peer, self.server.peer.lie
        if lie == "no-pieces":
            return self.send(404, b"no\n")
        if lie == "pieces-busy":
            return self.send(503, b"computing\n", [("Retry-After", "1")])
        if lie == "pieces-huge":
            return self.endless(b'{"pieceSize": 4194304, "pieces": ["')
        if lie == "pieces-junk":
            return self.send(200, b'{"pieceSize": "big", "pieces": {"0": 1}}')
        digests = piece_digests(peer.data)
        size, piece = len(peer.data), PIECE
        if lie == "pieces-wrong-digest":
            digests[peer.piece] = hashlib.sha256(b"another piece").hexdigest()
        if lie == "pieces-piece-size":
            piece = 1024 * 1024
            digests = [hashlib.sha256(peer.data[i:i + piece]).hexdigest()
                       for i in range(0, size, piece)]
        if lie == "pieces-short":
            digests = digests[:-1]
        if lie == "pieces-size":
            size += PIECE
            digests.append(hashlib.sha256(bytes(PIECE)).hexdigest())
        body = {"pieceSize": piece, "size": size, "checksum": peer.announced_sha512(),
                "pieces": digests, "have": [[0, len(digests) - 1]] if digests else []}
        if lie == "holds-nothing":
            body.update(checksum="", pieces=[None] * len(digests), have=[])
        return self.send(200, json.dumps(body).encode())

    def backing(self):
        peer, lie = self.server.peer, self.server.peer.lie
        data = peer.data
        m = re.match(r"bytes=(\d+)-(\d+)$", self.headers.get("Range", ""))
        if lie == "holds-nothing":
            return self.send(409, b"not held\n")
        if lie == "backing-busy":
            return self.send(503, b"busy\n", [("Retry-After", "60")])
        if lie == "ignore-range" or not m:
            return self.send(200, data)
        a, b = int(m.group(1)), min(int(m.group(2)), len(data) - 1)
        body = bytearray(data[a:b + 1])
        if lie == "wrong-bytes":
            body = bytearray(x ^ 0x5A for x in body)
        if lie == "bad-piece":
            at = peer.piece * PIECE
            if a <= at <= b:
                body[at - a] ^= 0x01
        headers = [("Content-Range", "bytes %d-%d/%d" % (a, b, len(data))),
                   ("ETag", '"%s"' % peer.announced_sha512())]
        if lie == "die-mid-piece":
            self.send_response(206)
            for k, v in headers:
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(bytes(body[:len(body) // 2]))
            self.wfile.flush()
            self.close_connection = True
            return None
        self.send_response(206)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if peer.rate or peer.link_rate:  # bytes per second, in 64 KiB steps
            for i in range(0, len(body), 65536):
                peer.pace(min(65536, len(body) - i))
                if peer.dead:
                    self.close_connection = True
                    return None
                self.wfile.write(bytes(body[i:i + 65536]))
        else:
            self.wfile.write(bytes(body))
        peer.served(len(body))
        return None


class FakePeer:
    def __init__(self, data, name="img", uuid="u1", lie=None, piece=0, rate=0, link_rate=0):
        """rate: bytes per second of each GET of backing; link_rate: of all of
        them together (one link that every receiver shares), 0: unlimited."""
        self.data, self.name, self.uuid, self.lie, self.piece = data, name, uuid, lie, piece
        self.rate, self.link_rate = rate, link_rate
        self._link_free = 0.0  # when the shared link is free again (monotonic)
        self.dead = False  # die(): answers nothing any more
        self.sha512 = hashlib.sha512(data).hexdigest()
        self.requests = []
        self.bytes_served = 0
        self._lock = threading.Lock()
        self._srv = ThreadingHTTPServer((HOST, 0), _Handler)
        self._srv.daemon_threads = True
        self._srv.peer = self
        self._thread = threading.Thread(target=self._srv.serve_forever, daemon=True)
        self._thread.start()

    @property
    def addr(self):
        return "%s:%d" % (HOST, self._srv.server_address[1])

    def announced_sha512(self):
        if self.lie == "wrong-sha512":
            return hashlib.sha512(b"another image").hexdigest()
        return self.sha512

    def pace(self, n):
        """Wait until n more bytes may go out: each GET at `rate`, and all of
        them at `link_rate` (slots taken in turn on the shared link)."""
        delay = n / self.rate if self.rate else 0.0
        if self.link_rate:
            with self._lock:
                now = time.monotonic()
                start = max(now, self._link_free)
                self._link_free = start + n / self.link_rate
            delay = max(delay, self._link_free - now)
        time.sleep(delay)

    def record(self, path, rng):
        with self._lock:
            self.requests.append((path, rng))

    def served(self, n):
        with self._lock:
            self.bytes_served += n

    def asked(self, suffix):
        """Requests whose path ends with suffix."""
        with self._lock:
            return [r for r in self.requests if r[0].endswith(suffix)]

    def die(self):
        """From now on, as a daemon killed with -9: every request, and the
        GETs under way, end with the connection dropped and no answer."""
        self.dead = True

    def stop(self):
        self._srv.shutdown()
        self._srv.server_close()
