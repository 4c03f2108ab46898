"""Fixtures and helpers for the bimfs integration tests.

Every test runs the real daemon ($BIMFS) in the foreground on a disk and a
mountpoint under its own tmp_path, talks to it through bimctl ($BIMCTL) or the
raw control socket, and reads the real FUSE mount with plain syscalls. The
fixtures stop the daemon (SIGTERM, exit status 0, mount and socket gone) at the
end of each test and always clean up (kill, fusermount3 -u -z), even when the
test failed.

Run with Debian's pytest: BIMFS=... BIMCTL=... /usr/bin/python3 -m pytest tests/integration
(`meson test` sets both variables).
"""

import contextlib
import datetime
import errno
import hashlib
import json
import os
import random
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest

from fakepeer import FakePeer

BIMFS = os.environ.get("BIMFS", "")
BIMCTL = os.environ.get("BIMCTL", "")
# tools/test.sh sets this for the ASan/UBSan pass: slow tests may use less data there.
SANITIZED = os.environ.get("BIMFS_TEST_SANITIZE") == "1"

# Daemon start-up and shutdown deadlines (seconds); generous for sanitizer builds.
START_TIMEOUT = 30
STOP_TIMEOUT = 30
READY_TIMEOUT = 60

STATES = ("pending", "starting", "in-progress", "ready", "failed", "unknown")
IMAGE_FIELDS = ("name", "uuid", "size", "virtualSize", "realSize", "format",
                "expectedChecksum", "source", "status")
STATUS_FIELDS = ("state", "currentChecksum", "sendingReference", "errorMsg",
                 "senderManagerAddress", "progress", "verified", "lastScrub")
XATTRS = ("user.bim.state", "user.bim.uuid", "user.bim.size", "user.bim.virtual_size",
          "user.bim.real_size", "user.bim.format", "user.bim.expected_checksum",
          "user.bim.checksum", "user.bim.progress", "user.bim.error", "user.bim.source",
          "user.bim.sending_reference", "user.bim.sender", "user.bim.verified",
          "user.bim.scrubbed")
SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:",
                     "WARNING: ThreadSanitizer", "SUMMARY: UndefinedBehaviorSanitizer")

MiB = 1024 * 1024


def pytest_configure(config):
    missing = [v for v, p in (("BIMFS", BIMFS), ("BIMCTL", BIMCTL))
               if not p or not os.access(p, os.X_OK)]
    if missing:
        pytest.exit("set %s to the built binaries (meson test does this)" % " and ".join(missing),
                    returncode=2)


# ---------------------------------------------------------------- small helpers

def free_port():
    """A loopback TCP port that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fuse_mounted(path):
    """True when path is the mountpoint of a FUSE filesystem (per /proc/self/mountinfo)."""
    path = os.path.realpath(path)
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            sep = fields.index("-")
            mnt = fields[4].replace("\\040", " ").replace("\\011", "\t").replace("\\134", "\\")
            if mnt == path and fields[sep + 1].startswith("fuse"):
                return True
    return False


def hash_file(path, algorithm, chunk=4 * MiB):
    """The hex digest of a file's contents with hashlib's algorithm."""
    h = hashlib.new(algorithm)
    with open(path, "rb", buffering=0) as f:
        while True:
            b = f.read(chunk)
            if not b:
                break
            h.update(b)
    return h.hexdigest()


def sha512_file(path, chunk=4 * MiB):
    return hash_file(path, "sha512", chunk)


def sha256_file(path, chunk=4 * MiB):
    return hash_file(path, "sha256", chunk)


def sha512_bytes(data):
    return hashlib.sha512(data).hexdigest()


def make_file(path, layout, seed=1):
    """Write a file from a layout: a list of (kind, nbytes) with kind "data"
    (random bytes), "zero" (zero bytes actually written) or "hole" (skipped;
    reads as zeros). Returns the SHA-512 of the logical contents."""
    rng = random.Random(seed)
    h = hashlib.sha512()
    zero = bytes(MiB)
    off = 0
    with open(path, "wb") as f:
        for kind, n in layout:
            if kind == "hole":
                f.seek(off + n)
                left = n
                while left:
                    k = min(left, MiB)
                    h.update(zero[:k])
                    left -= k
            else:
                left = n
                while left:
                    k = min(left, MiB)
                    b = rng.randbytes(k) if kind == "data" else zero[:k]
                    f.write(b)
                    h.update(b)
                    left -= k
            off += n
        f.truncate(off)
    return h.hexdigest()


def make_random_file(path, size, seed=1):
    return make_file(path, [("data", size)], seed=seed)


def go_time(ns):
    """A time in nanoseconds since the epoch as Go's time.Time.UTC().String()
    prints it: "2026-05-01 12:34:56.1234 +0000 UTC" (no fraction when zero)."""
    sec, frac = divmod(ns, 10**9)
    t = datetime.datetime.fromtimestamp(sec, datetime.timezone.utc)
    f = ("%09d" % frac).rstrip("0")
    return t.strftime("%Y-%m-%d %H:%M:%S") + ("." + f if f else "") + " +0000 UTC"


def xattr(path, name):
    return os.getxattr(path, name).decode()


def run(cmd, check=True, timeout=120, **kw):
    """Run a helper command (qemu-img, mkfs...) and fail with its stderr."""
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)
    if check and p.returncode != 0:
        pytest.fail("%s exited %d: %s" % (" ".join(map(str, cmd)), p.returncode, p.stderr))
    return p


def wait_until(pred, timeout, what, interval=0.05):
    """Poll pred() until it returns a true value; fail with `what` at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            pytest.fail("timed out after %.1fs waiting for %s" % (timeout, what))
        time.sleep(interval)


# ---------------------------------------------------------------- the raw socket

class Client:
    """A raw control-socket client: one JSON object per line each way."""

    def __init__(self, path, timeout=30):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(str(path))
        self.buf = b""
        self.next_id = 1

    def close(self):
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def send_line(self, data, fds=None):
        """Send bytes (a newline is added if missing), with fds in SCM_RIGHTS."""
        if isinstance(data, (dict, list)):
            data = json.dumps(data).encode()
        elif isinstance(data, str):
            data = data.encode()
        if not data.endswith(b"\n"):
            data += b"\n"
        if fds:
            n = socket.send_fds(self.sock, [data], list(fds))
            if n < len(data):
                self.sock.sendall(data[n:])
        else:
            self.sock.sendall(data)

    def recv_line(self, timeout=None):
        """The next reply line (bytes, without the newline); None at EOF."""
        if timeout is not None:
            self.sock.settimeout(timeout)
        while b"\n" not in self.buf:
            try:
                chunk = self.sock.recv(65536)
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                return None
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return line

    def recv_json(self, timeout=None):
        line = self.recv_line(timeout)
        assert line is not None, "the daemon closed the connection instead of replying"
        try:
            return json.loads(line)
        except ValueError:
            pytest.fail("reply is not JSON: %r" % line[:300])

    def request(self, obj, fds=None):
        """Send one request (an id is added if missing) and return its reply."""
        obj = dict(obj)
        if "id" not in obj:
            obj["id"] = self.next_id
            self.next_id += 1
        self.send_line(obj, fds)
        reply = self.recv_json()
        assert reply.get("id") == obj["id"], "reply %r does not echo id %r" % (reply, obj["id"])
        return reply


def expect_ok(reply):
    assert reply.get("ok") is True, "request refused: %r" % (reply,)
    return reply.get("result")


def expect_error(reply, code):
    assert reply.get("ok") is False, "expected error %s, got success: %r" % (code, reply)
    err = reply.get("error") or {}
    assert err.get("code") == code, "expected error code %s, got %r" % (code, reply)
    assert isinstance(err.get("message"), str) and err["message"], \
        "error without a message: %r" % (reply,)
    return err


# ---------------------------------------------------------------- the daemon

class Daemon:
    """One bimfs process on DISK and MOUNTPOINT under base; restartable."""

    def __init__(self, base, disk=None, args=()):
        self.base = Path(base)
        self.base.mkdir(parents=True, exist_ok=True)
        self.disk = Path(disk) if disk else self.base / "disk"
        self.mnt = self.base / "mnt"
        self.sock = self.base / "ctl.sock"
        self.log_path = self.base / "bimfs.log"
        self.args = list(args)
        self.proc = None
        self.port = None
        self.starts = 0
        self.log_offset = 0
        self.log_checked = False  # stop() already scanned the log for sanitizer reports

    # --- paths
    @property
    def images_dir(self):
        return self.disk / "backing-images"

    def image_dirs(self, name):
        """On-disk directories named <name>-<something> (any uuid)."""
        if not self.images_dir.is_dir():
            return []
        return sorted(p for p in self.images_dir.iterdir() if p.name.startswith(name + "-"))

    def image_dir(self, name, uuid):
        return self.images_dir / ("%s-%s" % (name, uuid))

    def log(self, tail=4000):
        try:
            return self.log_path.read_text(errors="replace")[-tail:]
        except FileNotFoundError:
            return "(no log)"

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    # --- life cycle
    def command(self, extra=()):
        return [BIMFS, "-f", str(self.disk), str(self.mnt), "--socket", str(self.sock),
                "--listen", "127.0.0.1:%d" % self.port] + self.args + list(extra)

    def start(self, extra=(), preexec_fn=None):
        assert not self.alive(), "daemon already running"
        self.disk.mkdir(parents=True, exist_ok=True)
        try:
            self.mnt.mkdir(parents=True, exist_ok=True)
        except OSError as e:  # a dead mount left by kill -9: bimfs detaches it
            if e.errno != errno.ENOTCONN:
                raise
        for attempt in range(3):
            self.port = free_port()
            with open(self.log_path, "ab") as log:
                self.log_offset = log.tell()
                log.write(b"==== start %d: %s\n" % (self.starts,
                                                    " ".join(self.command(extra)).encode()))
                log.flush()
                self.proc = subprocess.Popen(self.command(extra), stdin=subprocess.DEVNULL,
                                             stdout=log, stderr=log, start_new_session=True,
                                             preexec_fn=preexec_fn)
            self.starts += 1
            self.log_checked = False
            if self.wait_started(retry_port_race=attempt < 2):
                return self
        return self

    def wait_started(self, timeout=START_TIMEOUT, retry_port_race=False):
        """Wait until mounted and answering; False (to retry) only when the
        daemon lost a race for the port free_port() picked (tests run in
        parallel); any other early exit fails the test."""
        deadline = time.monotonic() + timeout
        while True:
            rc = self.proc.poll()
            if rc is not None:
                if retry_port_race and rc == 1 and self.lost_port_race():
                    return False
                pytest.fail("bimfs exited with status %d before it was ready; log:\n%s"
                            % (rc, self.log()))
            if fuse_mounted(self.mnt) and self.answers_version():
                return True
            if time.monotonic() > deadline:
                pytest.fail("bimfs not ready after %ds (mounted=%s, socket answers=%s); log:\n%s"
                            % (timeout, fuse_mounted(self.mnt), self.answers_version(), self.log()))
            time.sleep(0.05)

    def lost_port_race(self):
        with open(self.log_path, "rb") as f:
            f.seek(self.log_offset)
            text = f.read().decode(errors="replace")
        return ("127.0.0.1:%d" % self.port) in text and "in use" in text

    def answers_version(self):
        try:
            with Client(self.sock, timeout=5) as c:
                r = c.request({"op": "version"})
                return r.get("ok") is True
        except (OSError, AssertionError, ValueError):
            return False

    def check_log_clean(self):
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        for marker in SANITIZER_MARKERS:
            assert marker not in text, "sanitizer report in the daemon log:\n%s" % self.log(8000)

    def stop(self, sig=signal.SIGTERM):
        """Stop with SIGTERM (or SIGINT): exit status 0, unmounted, socket removed."""
        assert self.alive(), "bimfs is not running (status %r); log:\n%s" % (
            self.proc and self.proc.poll(), self.log())
        self.proc.send_signal(sig)
        try:
            rc = self.proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            pytest.fail("bimfs did not exit within %ds of %s; log:\n%s"
                        % (STOP_TIMEOUT, signal.Signals(sig).name, self.log()))
        self.log_checked = True
        self.check_log_clean()
        assert rc == 0, "bimfs exited with status %d after %s; log:\n%s" % (
            rc, signal.Signals(sig).name, self.log())
        assert not fuse_mounted(self.mnt), "mountpoint still mounted after bimfs exited"
        assert not os.path.lexists(self.sock), "control socket still there after bimfs exited"

    def kill9(self):
        """SIGKILL the daemon and lazily unmount what it left behind (the stale
        socket file stays, as after a real crash)."""
        assert self.alive(), "bimfs is not running; log:\n%s" % self.log()
        self.proc.kill()
        self.proc.wait()
        self.unmount()

    def restart(self, extra=()):
        if self.alive():
            self.stop()
        return self.start(extra)

    def unmount(self):
        if fuse_mounted(self.mnt):
            subprocess.run(["fusermount3", "-u", "-z", str(self.mnt)],
                           capture_output=True, timeout=30)

    def cleanup(self):
        """Whatever happened: no process, no mount."""
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.unmount()

    # --- talking to it
    def client(self, timeout=30):
        return Client(self.sock, timeout=timeout)

    def request(self, obj, fds=None):
        """One request on a fresh connection."""
        with self.client() as c:
            return c.request(obj, fds)

    def bimctl(self, *args, timeout=120, env=None, socket_path=None):
        """Run bimctl with BIMFS_SOCKET set; returns (rc, stdout, stderr)."""
        e = dict(os.environ)
        e["BIMFS_SOCKET"] = str(socket_path or self.sock)
        if env:
            e.update(env)
        try:
            p = subprocess.run([BIMCTL] + [str(a) for a in args], capture_output=True,
                               text=True, timeout=timeout, env=e, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            pytest.fail("bimctl %s did not return within %ds; daemon log:\n%s"
                        % (" ".join(map(str, args)), timeout, self.log()))
        return p.returncode, p.stdout, p.stderr

    def get(self, name):
        """The image object via `bimctl get NAME --json`, or None when not found."""
        rc, out, err = self.bimctl("get", name, "--json")
        if rc == 1 and self.get_raw(name) is None:
            return None
        assert rc == 0, "bimctl get %s --json: exit %d, stderr %r" % (name, rc, err)
        try:
            return json.loads(out)
        except ValueError:
            pytest.fail("bimctl get %s --json printed no JSON: %r" % (name, out[:500]))

    def get_raw(self, name):
        """The image object via the socket, or None when not_found."""
        r = self.request({"op": "get", "name": name})
        if r.get("ok") is False and (r.get("error") or {}).get("code") == "not_found":
            return None
        return expect_ok(r)

    def list(self):
        return expect_ok(self.request({"op": "list"}))

    def wait_state(self, name, states, timeout=READY_TIMEOUT):
        """Poll `bimctl get NAME --json` until the state is one of states; fail
        early when it ends failed (and failed was not asked for)."""
        if isinstance(states, str):
            states = (states,)
        deadline = time.monotonic() + timeout
        img = None
        while True:
            if not self.alive():
                pytest.fail("bimfs died (status %r) while waiting for %s to be %s; log:\n%s"
                            % (self.proc.poll(), name, "/".join(states), self.log()))
            img = self.get(name)
            state = img and img["status"]["state"]
            if state in states:
                return img
            if state == "failed":
                pytest.fail("%s ended failed (%r) while waiting for %s"
                            % (name, img["status"].get("errorMsg"), "/".join(states)))
            if time.monotonic() > deadline:
                pytest.fail("%s is %r after %ds, wanted %s; image %r"
                            % (name, state, timeout, "/".join(states), img))
            time.sleep(0.1)

    def wait_failed(self, name, timeout=60):
        """The image once it ended failed; fails the test if it ends ready."""
        deadline = time.monotonic() + timeout
        while True:
            img = self.get_raw(name)
            state = img and img["status"]["state"]
            assert state != "ready", "%s ended ready: %r" % (name, img)
            if state == "failed":
                return img
            assert time.monotonic() < deadline, "%s is %r after %ds, wanted failed" % (
                name, state, timeout)
            time.sleep(0.05)

    def expect_ready_bytes(self, name, data, timeout=120):
        """Wait until name is ready; its checksum and its bytes in the mount
        must be those of data. Returns the image."""
        img = self.wait_state(name, "ready", timeout=timeout)
        want = sha512_bytes(data)
        assert img["status"]["currentChecksum"] == want, \
            "%s is ready with another checksum: %r" % (name, img)
        assert sha512_file(self.mnt / name / "backing") == want, \
            "the mount shows other bytes than %s's" % name
        return img

    def cfg(self, name, uuid):
        """The image's backing.cfg as it is on disk, parsed."""
        return json.loads((self.image_dir(name, uuid) / "backing.cfg").read_text())

    # --- creating images through the socket
    def create(self, name, source, uuid=None, checksum=None, fds=None):
        req = {"op": "create", "name": name, "source": source}
        if uuid is not None:
            req["uuid"] = uuid
        if checksum is not None:
            req["checksum"] = checksum
        return self.request(req, fds)

    def upload_fd(self, name, fd, uuid=None, checksum=None):
        """create with source upload and fd in SCM_RIGHTS; returns the reply."""
        return self.create(name, {"type": "upload"}, uuid=uuid, checksum=checksum, fds=[fd])

    def upload_file(self, name, path, uuid=None, checksum=None):
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            return self.upload_fd(name, fd, uuid=uuid, checksum=checksum)
        finally:
            os.close(fd)

    def add_ready(self, name, path, uuid=None, checksum=None):
        """Upload path, wait until ready; returns the image."""
        expect_ok(self.upload_file(name, path, uuid=uuid, checksum=checksum))
        return self.wait_state(name, "ready")

    @contextlib.contextmanager
    def in_progress(self, name, uuid=None):
        """with d.in_progress(name): an upload of name from a pipe that stays
        open, so the image is starting or in progress inside the block; the
        pipe's writer is stopped at its end. Yields the PipeFeeder."""
        feeder = PipeFeeder(close=False)
        reply = self.upload_fd(name, feeder.r, uuid=uuid)
        feeder.close_read_end()
        expect_ok(reply)
        feeder.start()
        try:
            self.wait_state(name, ("starting", "in-progress"))
            yield feeder
        finally:
            feeder.stop()


class PipeFeeder:
    """Feeds a pipe from a thread; the read end goes to the daemon."""

    def __init__(self, data=b"", total=None, block=None, delay=0.0, close=True):
        self.r, self.w = os.pipe()
        self.data = data
        self.total = total
        self.block = block
        self.delay = delay
        self.close_at_end = close
        self.written = 0
        self.error = None
        self.stop_flag = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def start(self):
        self.thread.start()
        return self

    def _write_all(self, b):
        view = memoryview(b)
        while view and not self.stop_flag.is_set():
            n = os.write(self.w, view)
            view = view[n:]
            self.written += n

    def _run(self):
        try:
            if self.block is not None:
                while not self.stop_flag.is_set() and (self.total is None or
                                                       self.written < self.total):
                    n = len(self.block) if self.total is None else min(
                        len(self.block), self.total - self.written)
                    self._write_all(self.block[:n])
                    if self.delay:
                        time.sleep(self.delay)
            else:
                self._write_all(self.data)
            if not self.close_at_end:
                self.stop_flag.wait()
        except OSError as e:
            self.error = e
        finally:
            try:
                os.close(self.w)
            except OSError:
                pass

    def close_read_end(self):
        try:
            os.close(self.r)
        except OSError:
            pass

    def stop(self):
        self.stop_flag.set()
        self.thread.join(30)


# ---------------------------------------------------------------- fixtures

@pytest.fixture
def daemon_factory(tmp_path):
    """daemon_factory(args=(), disk=None, start=True, name="d") -> Daemon.
    Every daemon made is stopped (status 0 asserted) or killed at the end."""
    made = []

    def factory(args=(), disk=None, start=True, name=None):
        d = Daemon(tmp_path / (name or "d%d" % len(made)), disk=disk, args=args)
        made.append(d)
        if start:
            d.start()
        return d

    yield factory
    problems = []
    for d in made:
        try:
            if d.alive():
                d.stop()
            elif d.proc is not None and d.proc.returncode not in (0, -signal.SIGKILL):
                problems.append("bimfs exited with status %d during the test; log:\n%s"
                                % (d.proc.returncode, d.log()))
            elif not d.log_checked:
                d.check_log_clean()
        except BaseException as e:  # noqa: B902 - report after cleaning up everything
            problems.append(str(e))
        finally:
            d.cleanup()
    if problems:
        pytest.fail("\n".join(problems), pytrace=False)


@pytest.fixture
def daemon(daemon_factory):
    """A running daemon on an empty disk."""
    return daemon_factory(name="d")


@pytest.fixture
def fast_daemon(daemon_factory):
    """A running daemon that checks ready files for changes every second."""
    return daemon_factory(args=["--check-interval", "1"], name="d")


@pytest.fixture
def peer_pair(daemon_factory):
    """peer_pair(path, name="img", uuid="u1", source_args=(), receiver_args=())
    -> (a, b): a source daemon "a" holding path as a ready image name/uuid,
    and a receiver "b" that has nothing yet."""
    def make(path, name="img", uuid="u1", source_args=(), receiver_args=()):
        a = daemon_factory(name="a", args=source_args)
        b = daemon_factory(name="b", args=receiver_args)
        a.add_ready(name, path, uuid=uuid)
        return a, b
    return make


@pytest.fixture
def fakes():
    """fakes(data, **kw) -> FakePeer (fakepeer.py) serving data; every one made
    is stopped at the end."""
    made = []

    def make(data, **kw):
        p = FakePeer(data, **kw)
        made.append(p)
        return p
    yield make
    for p in made:
        p.stop()


@pytest.fixture
def small_image(tmp_path):
    """A 3 MiB raw image (random data, a hole, zeros); returns (path, sha512)."""
    p = tmp_path / "small.raw"
    digest = make_file(p, [("data", MiB), ("hole", MiB), ("zero", 512 * 1024),
                           ("data", 512 * 1024)], seed=7)
    return p, digest


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory):
    """A test CA (ca.pem) and a server certificate for 127.0.0.1 signed by it (srv.pem,
    srv.key), EC P-256, made with openssl: for https servers on loopback."""
    d = tmp_path_factory.mktemp("tls")
    (d / "ext.cnf").write_text("basicConstraints=CA:FALSE\nsubjectAltName=IP:127.0.0.1\n"
                               "extendedKeyUsage=serverAuth\n")
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    run(["openssl", "req", "-x509"] + ec + ["-keyout", d / "ca.key", "-out", d / "ca.pem",
        "-days", "2", "-subj", "/CN=bimfs test CA",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign"])
    run(["openssl", "req"] + ec + ["-keyout", d / "srv.key", "-out", d / "srv.csr",
        "-subj", "/CN=127.0.0.1"])
    run(["openssl", "x509", "-req", "-in", d / "srv.csr", "-CA", d / "ca.pem",
         "-CAkey", d / "ca.key", "-CAcreateserial", "-out", d / "srv.pem", "-days", "2",
         "-extfile", d / "ext.cnf"])
    return d
