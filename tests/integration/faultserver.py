"""A loopback HTTP(S) server with fault injection, for the download tests.

    srv = FaultServer().start()              # or FaultServer(tls=(cert, key))
    srv.add("/img.raw", data)                # bytes served at that path
    url = srv.url("/img.raw", drop_after=MiB)
    ...
    srv.requests_for("/img.raw")             # what bimfs asked: Range, If-Range, ...
    srv.stop()

Faults are chosen per request by the query string (so one server serves every
variant); counters are per path:

    status=N             always answer N (a short text body)
    fail=K               the first K requests get fail_status (default 500)
    fail_status=N        ... with this status; retry_after=S adds Retry-After
    drop_after=N         the first drop_times (default 1) responses close the
                         connection after N body bytes
    drop_at=OFF          every response closes the connection at file offset OFF
    stall_at=OFF         the first stall_times (default 1) responses stop sending
                         at file offset OFF for stall seconds (default: until stop)
    norange=1            Range is ignored: always 200 with the whole file
    range_shift=K        a 206 starts K bytes after the offset asked for (and says so)
    range_star=1         a 206 does not tell the complete length ("bytes a-b/*")
    chunked=1            no Content-Length: chunked transfer encoding
    length=N             claim Content-Length N but send the real body, then close
    etag=0, lastmod=0    no ETag / no Last-Modified
    bad_if_range=1       If-Range is not checked (a 206 carries the current ETag)
    auth=1               Basic authentication with srv.credentials ("user:password")
                         required (401 otherwise)
    rate=BPS             send at most BPS bytes per second (64 KiB slices)
    redirect=N, to=PATH  answer 302 to the same URL with redirect=N-1; at 0 to PATH
    redirect_to=URL      answer 302 to URL (any scheme)

A path added with add_versions() serves version i (ETag "v<i>") to its i-th
request (the last one from then on): content that changes between attempts.
"""

import base64
import email.utils
import socket
import ssl
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler

import loopback

SLICE = 64 * 1024


class _Stop(Exception):
    """The response ends here (the connection is closed)."""


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "faultserver"

    def log_message(self, fmt, *args):  # quiet
        pass

    def setup(self):
        super().setup()
        if isinstance(self.connection, ssl.SSLSocket):
            try:
                self.connection.do_handshake()
            except (ssl.SSLError, OSError):
                self.close_connection = True
                raise

    def do_GET(self):
        try:
            self.server.owner._serve(self)
        except (_Stop, BrokenPipeError, ConnectionResetError, ssl.SSLError):
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class FaultServer:
    def __init__(self, tls=None, credentials="user:s3cr3tpw"):
        self.tls = tls
        self.credentials = credentials
        self.files = {}  # path -> list of versions (bytes)
        self.lock = threading.Lock()
        self.requests = []  # dicts, in arrival order
        self.counts = {}  # path -> requests so far
        self.sent = {}  # path -> body bytes sent
        self.stopping = threading.Event()
        self.httpd = None
        self.thread = None
        self.mtime = time.time() - 3600

    # ------------------------------------------------------------ set-up
    def add(self, path, data):
        self.files[path] = [bytes(data)]

    def add_versions(self, path, versions):
        self.files[path] = [bytes(v) for v in versions]

    def start(self):
        self.httpd, self.thread = loopback.serve(self, _Handler, self.tls,
                                                 handshake_on_connect=False)
        return self

    def stop(self):
        self.stopping.set()
        loopback.shut(self.httpd)
        self.httpd = None

    @property
    def port(self):
        return self.httpd.server_address[1]

    def url(self, path, userinfo=None, host="127.0.0.1", **query):
        scheme = "https" if self.tls else "http"
        auth = userinfo + "@" if userinfo else ""
        q = ("?" + urllib.parse.urlencode(query)) if query else ""
        return "%s://%s%s:%d%s%s" % (scheme, auth, host, self.port, path, q)

    # ------------------------------------------------------------ inspection
    def requests_for(self, path):
        with self.lock:
            return [r for r in self.requests if r["path"] == path]

    def bytes_sent(self, path):
        with self.lock:
            return self.sent.get(path, 0)

    # ------------------------------------------------------------ serving
    def _record(self, h, path, query):
        with self.lock:
            n = self.counts.get(path, 0)
            self.counts[path] = n + 1
            rec = {"path": path, "query": query, "index": n,
                   "range": h.headers.get("Range"), "if_range": h.headers.get("If-Range"),
                   "referer": h.headers.get("Referer"),
                   "authorization": h.headers.get("Authorization"),
                   "user_agent": h.headers.get("User-Agent"), "status": None}
            self.requests.append(rec)
        return rec

    def _send_head(self, h, rec, status, headers):
        rec["status"] = status
        h.send_response(status)
        for k, v in headers:
            h.send_header(k, v)
        h.end_headers()

    def _send_text(self, h, rec, status, text, extra=()):
        body = text.encode()
        self._send_head(h, rec, status, [("Content-Type", "text/plain"),
                                         ("Content-Length", str(len(body)))] + list(extra))
        h.wfile.write(body)

    def _serve(self, h):
        parsed = urllib.parse.urlsplit(h.path)  # also an absolute URL (as a proxy)
        path = h.file_path = parsed.path
        q = {k: v[-1] for k, v in urllib.parse.parse_qs(parsed.query).items()}
        rec = self._record(h, path, q)
        n = rec["index"]

        if q.get("auth") == "1":
            want = "Basic " + base64.b64encode(self.credentials.encode()).decode()
            if h.headers.get("Authorization") != want:
                return self._send_text(h, rec, 401, "unauthorized\n",
                                       [("WWW-Authenticate", 'Basic realm="t"')])
        if "redirect_to" in q:
            return self._send_text(h, rec, 302, "moved\n", [("Location", q["redirect_to"])])
        if "redirect" in q:
            left = int(q["redirect"])
            if left > 0:
                q2 = dict(q, redirect=str(left - 1))
                loc = path + "?" + urllib.parse.urlencode(q2)
            else:
                q2 = {k: v for k, v in q.items() if k not in ("redirect", "to")}
                loc = q.get("to", path) + ("?" + urllib.parse.urlencode(q2) if q2 else "")
            return self._send_text(h, rec, 302, "moved\n", [("Location", loc)])
        if "status" in q:
            return self._send_text(h, rec, int(q["status"]), "status %s\n" % q["status"])
        if n < int(q.get("fail", 0)):
            extra = [("Retry-After", q["retry_after"])] if "retry_after" in q else []
            return self._send_text(h, rec, int(q.get("fail_status", 500)), "failing\n", extra)
        versions = self.files.get(path)
        if versions is None:
            return self._send_text(h, rec, 404, "no such file\n")
        version = min(n, len(versions) - 1)
        self._send_file(h, rec, q, n, versions[version], '"v%d"' % version)

    def _range_start(self, h, q, etag, size):
        """The first byte asked for, or None for the whole file."""
        rng = h.headers.get("Range")
        if not rng or q.get("norange") == "1" or not rng.startswith("bytes="):
            return None
        first, _, last = rng[6:].partition("-")
        if not first.isdigit() or last:
            return None
        if_range = h.headers.get("If-Range")
        if if_range and q.get("bad_if_range") != "1":
            if if_range.startswith('"') and (if_range != etag or q.get("etag") == "0"):
                return None
            if not if_range.startswith('"') and if_range != self._last_modified():
                return None
        return int(first)

    def _last_modified(self):
        return email.utils.formatdate(self.mtime, usegmt=True)

    def _send_file(self, h, rec, q, n, data, etag):
        size = len(data)
        start = self._range_start(h, q, etag, size)
        headers = [("Content-Type", "application/octet-stream")]
        if q.get("etag") != "0":
            headers.append(("ETag", etag))
        if q.get("lastmod") != "0":
            headers.append(("Last-Modified", self._last_modified()))
        if start is not None and start >= size:
            self._send_head(h, rec, 416, headers + [("Content-Range", "bytes */%d" % size),
                                                   ("Content-Length", "0")])
            return
        status = 200
        if start is not None:
            start += int(q.get("range_shift", 0))
            status = 206
            total = "*" if q.get("range_star") == "1" else str(size)
            headers.append(("Content-Range", "bytes %d-%d/%s" % (start, size - 1, total)))
        else:
            start = 0
        chunked = q.get("chunked") == "1"
        if chunked:
            headers.append(("Transfer-Encoding", "chunked"))
        else:
            headers.append(("Content-Length", q.get("length", str(size - start))))
        self._send_head(h, rec, status, headers)
        self._send_body(h, q, n, data, start, chunked)
        if "length" in q:
            raise _Stop()

    def _send_body(self, h, q, n, data, off, chunked):
        size = len(data)
        sent = 0
        drop_after = int(q["drop_after"]) if n < int(q.get("drop_times", 1)) and \
            "drop_after" in q else None
        drop_at = int(q["drop_at"]) if "drop_at" in q else None
        stall_at = int(q["stall_at"]) if n < int(q.get("stall_times", 1)) and \
            "stall_at" in q else None
        rate = int(q.get("rate", 0))
        began = time.monotonic()
        while off < size:
            if off == drop_at:
                h.wfile.flush()
                raise _Stop()
            if off == stall_at:
                h.wfile.flush()
                self.stopping.wait(float(q.get("stall", 3600)))
                stall_at = None
            end = min(size, off + SLICE)
            if drop_after is not None:
                end = min(end, off + max(0, drop_after - sent))
            for limit in (drop_at, stall_at):
                if limit is not None and off < limit:
                    end = min(end, limit)
            if end == off:
                continue  # at drop_at or stall_at: the top of the loop acts
            if end > off:
                self._write(h, data[off:end], chunked)
                with self.lock:
                    self.sent[h.file_path] = self.sent.get(h.file_path, 0) + end - off
                sent += end - off
                off = end
            if drop_after is not None and sent >= drop_after:
                h.wfile.flush()
                raise _Stop()
            if rate:
                ahead = sent / rate - (time.monotonic() - began)
                if ahead > 0 and self.stopping.wait(ahead):
                    raise _Stop()
        if chunked:
            h.wfile.write(b"0\r\n\r\n")
        h.wfile.flush()

    @staticmethod
    def _write(h, b, chunked):
        if chunked:
            h.wfile.write(b"%x\r\n" % len(b) + b + b"\r\n")
        else:
            h.wfile.write(b)
