"""A small S3 endpoint on loopback for the s3 backup target's tests.

    srv = S3Server(bucket="bk", region="us-east-1", key_id="AKID", secret="...").start()
    srv = S3Server(..., tls=(cert_pem, key_pem))     # https
    srv.endpoint                                     # for AWS_ENDPOINTS
    srv.requests                                     # (method, path, query) in arrival order
    srv.stop()

Path-style requests only (http://host:port/<bucket>/<key>). Objects live in a
directory (one file per key, the key percent-encoded as the file name), so
every key is independent of every other, as on S3:

    GET    /<bucket>/<key>       GetObject (404 NoSuchKey)
    PUT    /<bucket>/<key>       PutObject (the whole body; x-amz-content-sha256 checked)
    HEAD   /<bucket>/<key>       HeadObject (Content-Length, Last-Modified, ETag)
    DELETE /<bucket>/<key>       DeleteObject (204, missing or not)
    GET    /<bucket>?list-type=2 ListObjectsV2: prefix, delimiter, max-keys (at most
                                 srv.max_keys), continuation-token, start-after

EVERY request must carry a valid AWS SigV4 Authorization header: the signature
is recomputed with botocore's signer (botocore.auth.S3SigV4Auth, Debian's
python3-botocore) from the request as it arrived, with the canonical query
built from the decoded parameters as AWS does; a wrong key id, a wrong
signature, another region or service, a stale x-amz-date, or a payload hash
that is not the body's get 403 with the S3 error XML (Code
InvalidAccessKeyId, SignatureDoesNotMatch, AuthorizationHeaderMalformed,
RequestTimeTooSkewed, XAmzContentSHA256Mismatch). Other buckets are
NoSuchBucket (404). srv.fail_next = [503, ...] answers the next requests with
those statuses (SlowDown), for retries. srv.hold = (substring, threading.Event())
makes every PUT of a key holding the substring wait for the event (srv.held counts
them), so a test can stop a client in the middle of its writes. srv.fail_puts =
(substring, status) answers every PUT of a key holding the substring with that status
(503 SlowDown, or InternalError for another), as a store that keeps failing writes.
"""

import base64
import datetime
import email.utils
import hashlib
import hmac
import os
import re
import ssl
import tempfile
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler
from xml.sax.saxutils import escape

from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

import loopback

NS = "http://s3.amazonaws.com/doc/2006-03-01/"
AUTH_RE = re.compile(r"AWS4-HMAC-SHA256 Credential=([^/]+)/(\d{8})/([^/]+)/([^/]+)/aws4_request,"
                     r"\s*SignedHeaders=([a-z0-9;-]+),\s*Signature=([0-9a-f]{64})$")
SKEW_S = 15 * 60


class S3Error(Exception):
    def __init__(self, status, code, message):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "s3server"

    def log_message(self, fmt, *args):  # quiet
        pass

    def _any(self):
        try:
            self.server.owner._serve(self)
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
            self.close_connection = True

    do_GET = do_PUT = do_HEAD = do_DELETE = do_POST = _any


class S3Server:
    def __init__(self, bucket="bk", region="us-east-1", key_id="AKIDBIMFSTEST",
                 secret="bimfs/Secret+Key/0123456789abcdefghij", tls=None, max_keys=1000,
                 root=None):
        self.bucket, self.region = bucket, region
        self.key_id, self.secret = key_id, secret
        self.tls = tls
        self.max_keys = max_keys
        self._tmp = None
        if root is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="s3server-")
            root = self._tmp.name
        self.root = root
        self.lock = threading.Lock()
        self.requests = []
        self.rejected = []  # (code, message) of every 403 for a signature
        self.signed = []  # {header: value} of the signed headers of every request let in
        self.fail_next = []
        self.hold = None  # (key substring, threading.Event): such PUTs wait for the event
        self.held = 0  # PUTs that waited (or wait) on hold
        self.fail_puts = None  # (key substring, status): such PUTs fail with that status
        self.httpd = None

    # ------------------------------------------------------------ set-up
    def start(self):
        self.httpd, _ = loopback.serve(self, _Handler, self.tls)
        return self

    def stop(self):
        loopback.shut(self.httpd)
        self.httpd = None
        if self._tmp:
            self._tmp.cleanup()
            self._tmp = None

    @property
    def port(self):
        return self.httpd.server_address[1]

    @property
    def endpoint(self):
        return "%s://127.0.0.1:%d" % ("https" if self.tls else "http", self.port)

    # ------------------------------------------------------------ objects
    def _file(self, key):
        return os.path.join(self.root, urllib.parse.quote(key, safe=""))

    def keys(self):
        return sorted(urllib.parse.unquote(n) for n in os.listdir(self.root)
                      if not n.startswith(".tmp"))

    def put(self, key, data):
        tmp = os.path.join(self.root, ".tmp%d.%d" % (threading.get_ident(), time.monotonic_ns()))
        with open(tmp, "wb") as f:
            f.write(data)
        os.rename(tmp, self._file(key))  # atomic, as a PutObject is

    def get(self, key):
        with open(self._file(key), "rb") as f:
            return f.read()

    # ------------------------------------------------------------ serving
    def _serve(self, h):
        split = urllib.parse.urlsplit(h.path)
        n = int(h.headers.get("Content-Length") or 0)
        body = h.rfile.read(n) if n else b""
        with self.lock:
            self.requests.append((h.command, split.path, split.query))
            fail = self.fail_next.pop(0) if self.fail_next else None
        try:
            self._verify(h, split, body)
            if fail:
                raise S3Error(fail, "SlowDown", "Please reduce your request rate.")
            self._route(h, split, body)
        except S3Error as e:
            self._error(h, e)

    def _error(self, h, e):
        xml = ("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>%s</Code>"
               "<Message>%s</Message><RequestId>0</RequestId></Error>"
               % (escape(e.code), escape(e.message))).encode()
        h.send_response(e.status)
        h.send_header("Content-Type", "application/xml")
        h.send_header("Date", email.utils.formatdate(usegmt=True))
        h.send_header("Content-Length", str(len(xml)))
        h.end_headers()
        if h.command != "HEAD":
            h.wfile.write(xml)

    def _deny(self, code, message):
        with self.lock:
            self.rejected.append((code, message))
        raise S3Error(403, code, message)

    def _verify(self, h, split, body):
        auth = h.headers.get("Authorization", "")
        m = AUTH_RE.match(auth)
        if not m:
            self._deny("AccessDenied" if not auth else "AuthorizationHeaderMalformed",
                       "a SigV4 Authorization header is required, got %r" % auth[:80])
        key_id, day, region, service, signed, signature = m.groups()
        if key_id != self.key_id:
            self._deny("InvalidAccessKeyId",
                       "The AWS Access Key Id you provided does not exist in our records.")
        if region != self.region or service != "s3":
            self._deny("AuthorizationHeaderMalformed",
                       "the region '%s' is wrong; expecting '%s'" % (region, self.region))
        amz_date = h.headers.get("x-amz-date", "")
        try:
            when = datetime.datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(
                tzinfo=datetime.timezone.utc)
        except ValueError:
            self._deny("AccessDenied", "no valid x-amz-date")
        if abs(time.time() - when.timestamp()) > SKEW_S or amz_date[:8] != day:
            self._deny("RequestTimeTooSkewed", "x-amz-date is too far from the server's time")
        names = signed.split(";")
        if "host" not in names or "x-amz-date" not in names or \
                "x-amz-content-sha256" not in names:
            self._deny("AccessDenied", "host, x-amz-date and x-amz-content-sha256 must be signed")
        payload = h.headers.get("x-amz-content-sha256", "")
        if payload != "UNSIGNED-PAYLOAD" and payload != hashlib.sha256(body).hexdigest():
            raise S3Error(400, "XAmzContentSHA256Mismatch",
                          "The provided 'x-amz-content-sha256' header does not match what was "
                          "computed.")
        headers = {}
        for name in names:
            values = h.headers.get_all(name)
            if values is None:
                self._deny("AccessDenied", "signed header %s is missing" % name)
            headers[name] = ",".join(values)
        scheme = "https" if self.tls else "http"
        url = "%s://%s%s" % (scheme, headers["host"], split.path)
        params = urllib.parse.parse_qsl(split.query, keep_blank_values=True)
        req = AWSRequest(method=h.command, url=url, headers=headers, data=body,
                         params=params or None)
        req.context["timestamp"] = amz_date
        signer = S3SigV4Auth(Credentials(self.key_id, self.secret), "s3", self.region)
        canonical = signer.canonical_request(req)
        want = signer.signature(signer.string_to_sign(req, canonical), req)
        if not hmac.compare_digest(want, signature):
            self._deny("SignatureDoesNotMatch",
                       "The request signature we calculated does not match the signature you "
                       "provided. Check your key and signing method.")
        with self.lock:
            self.signed.append(headers)

    def _route(self, h, split, body):
        parts = split.path.lstrip("/").split("/", 1)
        bucket = urllib.parse.unquote(parts[0])
        key = urllib.parse.unquote(parts[1]) if len(parts) > 1 else ""
        if bucket != self.bucket:
            raise S3Error(404, "NoSuchBucket", "The specified bucket does not exist")
        if not key:
            if h.command != "GET":
                raise S3Error(405, "MethodNotAllowed", "not on a bucket here")
            return self._list(h, dict(urllib.parse.parse_qsl(split.query,
                                                             keep_blank_values=True)))
        if h.command == "PUT":
            fail = self.fail_puts
            if fail and fail[0] in key:
                raise S3Error(fail[1], "SlowDown" if fail[1] == 503 else "InternalError",
                              "this key's writes fail here")
            hold = self.hold
            if hold and hold[0] in key:
                with self.lock:
                    self.held += 1
                hold[1].wait(120)
            self.put(key, body)
            return self._reply(h, 200, b"", {"ETag": '"%s"' % hashlib.md5(body).hexdigest()})
        if h.command == "DELETE":
            try:
                os.unlink(self._file(key))
            except FileNotFoundError:
                pass
            return self._reply(h, 204, b"")
        if h.command not in ("GET", "HEAD"):
            raise S3Error(405, "MethodNotAllowed", "not here")
        try:
            st = os.stat(self._file(key))
            data = self.get(key) if h.command == "GET" else b""
        except FileNotFoundError:
            raise S3Error(404, "NoSuchKey", "The specified key does not exist.")
        extra = {"Last-Modified": email.utils.formatdate(st.st_mtime, usegmt=True),
                 "ETag": '"%x-%x"' % (st.st_ino, st.st_mtime_ns)}
        self._reply(h, 200, data, extra, length=st.st_size)

    def _reply(self, h, status, data, extra=None, length=None):
        h.send_response(status)
        h.send_header("Date", email.utils.formatdate(usegmt=True))
        for k, v in (extra or {}).items():
            h.send_header(k, v)
        if status != 204:
            h.send_header("Content-Length", str(len(data) if length is None else length))
        h.end_headers()
        if h.command != "HEAD":
            h.wfile.write(data)

    def _list(self, h, q):
        if q.get("list-type") != "2":
            raise S3Error(400, "InvalidArgument", "only ListObjectsV2 here")
        prefix, delim = q.get("prefix", ""), q.get("delimiter", "")
        try:
            max_keys = min(int(q.get("max-keys", "1000")), self.max_keys)
        except ValueError:
            raise S3Error(400, "InvalidArgument", "bad max-keys")
        after = q.get("start-after", "")
        token = q.get("continuation-token")
        if token is not None:
            try:
                after = base64.b64decode(token.encode(), validate=True).decode()
            except ValueError:
                raise S3Error(400, "InvalidArgument", "The continuation token is not valid.")
        entries = []  # (sort name, kind, value), sorted, each common prefix once
        seen = set()
        for key in self.keys():
            if not key.startswith(prefix):
                continue
            rest = key[len(prefix):]
            if delim and delim in rest:
                cp = prefix + rest[:rest.index(delim) + len(delim)]
                if cp not in seen:
                    seen.add(cp)
                    entries.append((cp, "prefix", cp))
            else:
                entries.append((key, "key", key))
        entries = [e for e in entries if e[0] > after]
        page, more = entries[:max_keys], len(entries) > max_keys
        out = ["<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<ListBucketResult xmlns=\"%s\">" % NS,
               "<Name>%s</Name><Prefix>%s</Prefix><KeyCount>%d</KeyCount><MaxKeys>%d</MaxKeys>"
               % (escape(self.bucket), escape(prefix), len(page), max_keys)]
        if delim:
            out.append("<Delimiter>%s</Delimiter>" % escape(delim))
        out.append("<IsTruncated>%s</IsTruncated>" % ("true" if more else "false"))
        if token is not None:
            out.append("<ContinuationToken>%s</ContinuationToken>" % escape(token))
        if more:
            nxt = base64.b64encode(page[-1][0].encode()).decode()
            out.append("<NextContinuationToken>%s</NextContinuationToken>" % escape(nxt))
        for _, kind, value in page:
            if kind == "key":
                st = os.stat(self._file(value))
                mtime = datetime.datetime.fromtimestamp(st.st_mtime, datetime.timezone.utc)
                out.append("<Contents><Key>%s</Key><LastModified>%s</LastModified>"
                           "<ETag>\"x\"</ETag><Size>%d</Size><StorageClass>STANDARD"
                           "</StorageClass></Contents>"
                           % (escape(value), mtime.strftime("%Y-%m-%dT%H:%M:%S.000Z"),
                              st.st_size))
        for _, kind, value in page:
            if kind == "prefix":
                out.append("<CommonPrefixes><Prefix>%s</Prefix></CommonPrefixes>"
                           % escape(value))
        out.append("</ListBucketResult>")
        self._reply(h, 200, "".join(out).encode(), {"Content-Type": "application/xml"})
