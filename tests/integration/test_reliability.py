"""Reliability (SPEC §1 --max-size, §2 crash-safe create and single-link
backing, §3 empty images; docs/store.md): a crash at any instant of a create
never blocks the same name and uuid, a backing that is a link is never
adopted or served, no source can fill the disk past --max-size, an empty
image fails, and the space check counts only bytes known to need space."""

import json
import os
import random
import socket
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from conftest import MiB, expect_ok, go_time, make_file, make_random_file, sha512_file
from faultserver import FaultServer
from httphelp import add_image, get, request, sync

# ---------------------------------------------------------------- helpers


def create_file(daemon, name, path, uuid):
    """`bimctl create NAME --file PATH --uuid U --wait`: (rc, stderr)."""
    rc, _, err = daemon.bimctl("create", name, "--file", path, "--uuid", uuid, "--wait")
    return rc, err


def mount_tmpfs(path, size):
    path.mkdir()
    p = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=%s" % size, "tmpfs", str(path)],
                       capture_output=True, text=True)
    if p.returncode != 0:
        pytest.skip("cannot mount a tmpfs: %s" % p.stderr.strip())


def umount(path):
    subprocess.run(["umount", "-l", str(path)], capture_output=True)


@pytest.fixture
def small(tmp_path):
    p = tmp_path / "small.raw"
    return p, make_random_file(p, MiB, seed=5)


@pytest.fixture
def keeper(daemon_factory, tmp_path):
    """A daemon with --max-size 64M holding a ready image "keep"; (daemon, sha512)."""
    d = daemon_factory(args=["--max-size", "64M", "--stall-timeout", "2",
                             "--download-retries", "2"], name="d")
    p = tmp_path / "keep.raw"
    digest = make_random_file(p, MiB, seed=11)
    add_image(d, "keep", p, "k1")
    return d, digest


def assert_still_ready(daemon, name, digest):
    img = daemon.get_raw(name)
    assert img and img["status"]["state"] == "ready", "%s is no longer ready: %r" % (name, img)
    assert sha512_file(daemon.mnt / name / "backing") == digest, "the bytes of %s changed" % name


# ---------------------------------------------------------------- crash-safe create

LEFTOVERS = {  # what a cut create or delete left: directory, name, uuid, files
    "empty directory": ("img-u1", "img", "u1", {}),
    "only backing.cfg.tmp": ("img-u2", "img", "u2", {"backing.cfg.tmp": b'{"uuid":"u2","sta'}),
    "backing.tmp without cfg": ("img-u3", "img", "u3", {"backing.tmp": b"x" * 4096}),
    "staging directory": (".img-u4.tmp", "img", "u4",
                          {"backing.cfg": b'{"uuid":"u4","state":"in-progress"}'}),
    # a delete renames the image aside first; cut there, the whole image is left
    "deleting directory": (".img-u5.deleting", "img", "u5",
                           {"backing": b"z" * 4096, "backing.tmp": b"t" * 512,
                            "backing.cfg": b'{"uuid":"u5","state":"ready","size":4096}'}),
}


@pytest.mark.parametrize("state", sorted(LEFTOVERS))
def test_leftover_of_a_cut_create_does_not_block_the_same_create(daemon_factory, small, state):
    dname, name, uuid, files = LEFTOVERS[state]
    d = daemon_factory(start=False, name="d")
    bi = d.images_dir
    (bi / dname).mkdir(parents=True)
    for f, content in files.items():
        (bi / dname / f).write_bytes(content)
    d.start()
    assert d.get_raw(name) is None, "a leftover (%s) shows as an image" % state
    assert not (bi / dname).exists(), "the leftover (%s) is still on disk after the scan" % state
    rc, err = create_file(d, name, small[0], uuid)
    assert rc == 0, "create %s --uuid %s after a cut create (%s): %s" % (name, uuid, state, err)
    img = d.wait_state(name, "ready")
    assert img["uuid"] == uuid and img["status"]["currentChecksum"] == small[1]


def test_directory_with_data_but_no_cfg_is_still_left_alone(daemon_factory):
    d = daemon_factory(start=False, name="d")
    data = d.images_dir / "data-u5"
    data.mkdir(parents=True)
    (data / "backing").write_bytes(b"x" * 512)
    (data / "backing.tmp").write_bytes(b"y" * 512)
    d.start()
    d.stop()
    assert (data / "backing").read_bytes() == b"x" * 512, "bimfs removed a backing without cfg"
    assert (data / "backing.tmp").exists(), "bimfs removed files next to a backing without cfg"


def test_kill9_right_after_create_never_blocks_create(daemon, small):
    rng = random.Random(1010)
    for i in range(6):
        delay = rng.uniform(0, 0.010)
        e = dict(os.environ, BIMFS_SOCKET=str(daemon.sock))
        p = subprocess.Popen([os.environ["BIMCTL"], "create", "img", "--file", str(small[0]),
                              "--uuid", "u1"], env=e, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
        time.sleep(delay)  # where the crash lands, not synchronisation
        daemon.kill9()
        p.wait(30)
        daemon.start()
        if daemon.get_raw("img") is not None:
            rc, _, err = daemon.bimctl("delete", "img")
            assert rc == 0, "iteration %d (%.1f ms): delete after restart: %s" % (
                i, delay * 1000, err)
        rc, err = create_file(daemon, "img", small[0], "u1")
        assert rc == 0, "iteration %d (kill -9 %.1f ms after create): create again: %s" % (
            i, delay * 1000, err)
        assert daemon.get_raw("img")["status"]["currentChecksum"] == small[1]
        rc, _, err = daemon.bimctl("delete", "img")
        assert rc == 0, err
        assert daemon.image_dirs("img") == [], "delete left %r" % daemon.image_dirs("img")


# ---------------------------------------------------------------- single-link backing

def write_image_dir(disk, name, uuid, backing_maker, size, digest, mtime_ns):
    """An image directory whose cfg matches (size, mtime, checksum) what
    backing_maker(path) puts at backing: adopted ready unless refused."""
    d = disk / "backing-images" / ("%s-%s" % (name, uuid))
    d.mkdir(parents=True)
    backing_maker(d / "backing")
    cfg = {"name": str(d / "backing"), "uuid": uuid, "size": size, "virtualSize": size,
           "realSize": size, "expectedChecksum": "", "currentChecksum": digest,
           "modificationTime": go_time(mtime_ns), "state": "ready", "format": "raw"}
    (d / "backing.cfg").write_text(json.dumps(cfg, separators=(",", ":")))
    return d


@pytest.mark.parametrize("kind", ["symlink", "hardlink"])
def test_linked_backing_is_neither_adopted_nor_served(daemon_factory, tmp_path, kind):
    secret = tmp_path / "secret"
    secret.write_bytes(b"root only! " * 93 + b"\n" * 1)  # 1024 bytes
    os.chmod(secret, 0o600)
    st = os.stat(secret)
    digest = sha512_file(secret)
    d = daemon_factory(start=False, name="d")
    maker = (lambda p: os.symlink(secret, p)) if kind == "symlink" else (
        lambda p: os.link(secret, p))
    idir = write_image_dir(d.disk, "leak", "l1", maker, st.st_size, digest, st.st_mtime_ns)
    d.start()
    img = d.get_raw("leak")
    assert img is not None, "the image with a %s backing is not reported" % kind
    assert img["status"]["state"] == "failed", "a %s backing was adopted: %r" % (kind, img)
    want = "symbolic link" if kind == "symlink" else "2 links"
    assert want in img["status"]["errorMsg"], "error %r does not say %r" % (
        img["status"]["errorMsg"], want)
    r = get(d.port, "/v1/images/leak/backing")
    assert r.status != 200 and b"root only" not in (r.body or b""), \
        "a %s backing was served over HTTP: %r" % (kind, r)
    assert not os.path.exists(d.mnt / "leak" / "backing"), "the mount shows a %s backing" % kind
    rc, _, err = d.bimctl("delete", "leak")
    assert rc == 0, err
    assert not idir.exists()
    assert secret.read_bytes().startswith(b"root only"), "delete touched the link's target"


# ---------------------------------------------------------------- --max-size


class _Zeros(BaseHTTPRequestHandler):
    """GET: an endless body of zeros, no Content-Length (closes to end)."""
    protocol_version = "HTTP/1.0"

    def log_message(self, fmt, *args):
        pass

    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.end_headers()
        block = b"\0" * MiB
        try:
            while not self.server.stopping:
                self.wfile.write(block)
        except OSError:
            pass


@pytest.fixture
def zero_server():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Zeros)
    srv.stopping = False
    srv.daemon_threads = True
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield "http://127.0.0.1:%d/zeros.raw" % srv.server_address[1]
    srv.stopping = True
    srv.shutdown()
    srv.server_close()


def test_endless_download_fails_at_max_size(keeper, zero_server):
    d, digest = keeper
    expect_ok(d.create("endless", {"type": "download", "url": zero_server}))
    img = d.wait_failed("endless", timeout=60)
    assert "larger than --max-size (67108864 bytes)" in img["status"]["errorMsg"], img
    assert d.answers_version(), "the daemon does not answer after the failed download"
    assert not list(d.images_dir.rglob("backing.tmp")), "the failed download left its data"
    assert_still_ready(d, "keep", digest)


def test_upload_from_dev_zero_fails_at_max_size(keeper):
    d, digest = keeper
    rc, err = create_file(d, "zero", "/dev/zero", "z1")
    assert rc == 1, "bimctl create --file /dev/zero: exit %d (%s)" % (rc, err)
    img = d.wait_failed("zero")
    assert "larger than --max-size" in img["status"]["errorMsg"], img
    assert_still_ready(d, "keep", digest)


def test_upload_of_a_file_over_max_size_fails_at_once(keeper, tmp_path):
    d, digest = keeper
    p = tmp_path / "big.raw"
    with open(p, "wb") as f:
        f.truncate(128 * MiB)  # sparse: the size alone is too large
    rc, err = create_file(d, "big", p, "b1")
    assert rc == 1, "an upload of 128 MiB with --max-size 64M: exit %d" % rc
    img = d.wait_failed("big")
    assert img["status"]["errorMsg"] == "image larger than --max-size (67108864 bytes)", img
    assert_still_ready(d, "keep", digest)


def test_put_with_content_length_over_max_size_is_refused(keeper):
    d, digest = keeper
    s = socket.create_connection(("127.0.0.1", d.port), timeout=10)
    try:
        # as curl does for a large body: the answer comes before any of it
        s.sendall(b"PUT /v1/images/huge?uuid=h1 HTTP/1.1\r\nHost: x\r\n"
                  b"Expect: 100-continue\r\nContent-Length: %d\r\n\r\n" % (65 * MiB))
        reply = s.recv(4096)
    finally:
        s.close()
    assert reply.startswith(b"HTTP/1.1 4"), "PUT of 65 MiB with --max-size 64M: %r" % reply[:200]
    assert b"larger than --max-size" in reply, "the refusal does not say why: %r" % reply[:400]
    img = d.wait_failed("huge")
    assert "larger than --max-size" in img["status"]["errorMsg"], img
    assert_still_ready(d, "keep", digest)


def test_max_size_is_validated(daemon_factory, tmp_path):
    d = daemon_factory(start=False, name="d")
    d.disk.mkdir(parents=True)
    d.mnt.mkdir(parents=True)
    for bad in ("0", "-1", "12Q", "", "99999999999T"):
        p = subprocess.run([os.environ["BIMFS"], "-f", str(d.disk), str(d.mnt),
                            "--max-size", bad, "--socket", str(tmp_path / "s")],
                           capture_output=True, text=True, timeout=30)
        assert p.returncode == 2 and "--max-size" in p.stderr, \
            "--max-size %r: exit %d, stderr %r" % (bad, p.returncode, p.stderr)


# ---------------------------------------------------------------- empty images

def test_empty_upload_fails(daemon, tmp_path):
    p = tmp_path / "empty.raw"
    p.write_bytes(b"")
    rc, err = create_file(daemon, "empty", p, "e1")
    assert rc == 1, "an empty upload: exit %d" % rc
    img = daemon.wait_failed("empty")
    assert img["status"]["errorMsg"] == "image is empty (0 bytes)", img


def test_empty_download_fails(daemon):
    srv = FaultServer().start()
    try:
        srv.add("/empty.raw", b"")
        expect_ok(daemon.create("empty", {"type": "download", "url": srv.url("/empty.raw")}))
        img = daemon.wait_failed("empty")
    finally:
        srv.stop()
    assert img["status"]["errorMsg"] == "image is empty (0 bytes)", img


def test_empty_put_fails(daemon):
    r = request(daemon.port, "PUT", "/v1/images/empty?uuid=e1", body=b"",
                headers={"Content-Length": "0"})
    assert r.status >= 400, "an empty PUT: %r" % (r,)
    img = daemon.wait_failed("empty")
    assert img["status"]["errorMsg"] == "image is empty (0 bytes)", img


# ---------------------------------------------------------------- space check

def test_sparse_download_larger_than_the_free_space_fits(daemon_factory, tmp_path):
    disk = tmp_path / "small"
    mount_tmpfs(disk, "16m")
    srv = FaultServer().start()
    try:
        data = bytearray(64 * MiB)  # 1 MiB of data in 64 MiB: fits on a 16 MiB disk
        data[:MiB] = os.urandom(MiB)
        srv.add("/sparse.raw", bytes(data))
        d = daemon_factory(disk=disk, name="d")
        expect_ok(d.create("sp", {"type": "download", "url": srv.url("/sparse.raw")}))
        img = d.wait_state("sp", "ready")
        assert img["size"] == 64 * MiB
        d.stop()
    finally:
        srv.stop()
        umount(disk)


def test_sync_whose_data_does_not_fit_is_refused_at_once(daemon_factory, tmp_path):
    disk = tmp_path / "small"
    mount_tmpfs(disk, "16m")
    try:
        a = daemon_factory(name="a")
        b = daemon_factory(disk=disk, name="b")
        p = tmp_path / "data.raw"
        make_file(p, [("data", 24 * MiB), ("hole", 40 * MiB)], seed=4)
        add_image(a, "big", p, "g1")
        expect_ok(sync(b, "big", "g1", [a]))
        img = b.wait_failed("big")
        msg = img["status"]["errorMsg"]
        assert msg.startswith("insufficient space: need %d bytes" % (24 * MiB)), msg
        b.stop()
    finally:
        umount(disk)
