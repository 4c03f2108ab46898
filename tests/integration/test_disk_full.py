"""Disk full on a real small filesystem (SPEC §3, §4; docs/download.md,
docs/peer-sync.md "Space"): DISK is a 48 MiB tmpfs holding a ready image and
a filler file that leaves less room than the next image needs. For every
source (download, upload, PUT, peer sync, clone) the image that does not fit

- ends failed (the time it took is printed: well under a second here; the
  wait is bounded only as a hang detector) with a space message: `no space left on
  the disk after N bytes` (download), `insufficient space: need X bytes,
  have Y bytes` (a sync whose extents are known), `No space left on device`
  (the others: the writer's ENOSPC as strerror gives it);
- leaves no backing.tmp or backing, and the space it took is given back
  (statvfs before and after);
- leaves the other image ready, with its bytes readable through the mount,
  and the daemon answering;

and after the filler is removed, the same create (delete, then the same
name, uuid and source) ends ready with the right bytes."""

import http.client
import os
import re
import subprocess
import time

import pytest

from conftest import MiB, expect_ok, make_random_file, sha512_file
from faultserver import FaultServer
from httphelp import HOST, add_image, sync

DISK_SIZE = "48m"
SLACK = 256 * 1024  # what the failed image may keep: its directory and cfg
SPACE = re.compile(r"no space left on the disk after \d+ bytes|insufficient space: need \d+ "
                   r"bytes, have \d+ bytes|No space left on device")
SOURCES = ["download", "upload", "put", "sync", "clone"]


def free_bytes(path):
    sv = os.statvfs(path)
    return sv.f_bavail * sv.f_frsize


def fill(disk, leave):
    """A filler file on disk so that about `leave` bytes stay free."""
    n = free_bytes(disk) - leave
    assert n > 0, "the disk has less than %d bytes free already" % leave
    block = os.urandom(MiB)
    with open(disk / "filler", "wb") as f:
        while n > 0:
            f.write(block[:min(n, MiB)])
            n -= MiB


@pytest.fixture
def small_disk(tmp_path):
    disk = tmp_path / "small"
    disk.mkdir()
    p = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=%s" % DISK_SIZE, "tmpfs", str(disk)],
                       capture_output=True, text=True)
    if p.returncode != 0:
        pytest.skip("cannot mount a tmpfs: %s" % p.stderr.strip())
    yield disk
    subprocess.run(["umount", "-l", str(disk)], capture_output=True)


class Attempt:
    """Starts the image "big" (uuid g1) from one source on daemon d."""

    def __init__(self, kind, d, src, server, path, digest):
        self.kind, self.d, self.src, self.server = kind, d, src, server
        self.path, self.digest = path, digest
        self.put_status = None

    def start(self):
        d = self.d
        if self.kind == "download":
            expect_ok(d.create("big", {"type": "download", "url": self.server.url("/big.raw")},
                               uuid="g1"))
        elif self.kind == "upload":
            expect_ok(d.upload_file("big", self.path, uuid="g1"))
        elif self.kind == "sync":
            expect_ok(sync(d, "big", "g1", [self.src]))
        elif self.kind == "clone":
            expect_ok(d.create("big", {"type": "clone", "from": "keep"}, uuid="g1"))
        else:
            body = self.path.read_bytes()
            conn = http.client.HTTPConnection(HOST, d.port, timeout=60)
            try:
                conn.request("PUT", "/v1/images/big?uuid=g1", body=body,
                             headers={"Content-Length": str(len(body))})
                r = conn.getresponse()
                r.read()
                self.put_status = r.status
            except (ConnectionError, http.client.HTTPException):
                self.put_status = 0  # the server closed while the body was still going
            finally:
                conn.close()


def wait_end(d, name, timeout):
    deadline = time.monotonic() + timeout
    while True:
        img = d.get_raw(name)
        state = img and img["status"]["state"]
        if state in ("ready", "failed"):
            return img
        assert time.monotonic() < deadline, "%s is %r after %ds" % (name, state, timeout)
        time.sleep(0.02)


@pytest.mark.parametrize("kind", SOURCES)
def test_image_that_does_not_fit_fails_fast_and_a_retry_after_freeing_space_works(
        daemon_factory, small_disk, tmp_path, kind):
    server = FaultServer().start()
    try:
        d = daemon_factory(disk=small_disk, name="d")
        keep = tmp_path / "keep.raw"
        keep_digest = make_random_file(keep, 8 * MiB, seed=21)
        add_image(d, "keep", keep, "k1")
        if kind == "clone":  # the copy of keep is the image that does not fit
            big, digest, leave = keep, keep_digest, 4 * MiB
        else:
            big = tmp_path / "big.raw"
            digest, leave = make_random_file(big, 20 * MiB, seed=22), 10 * MiB
        src = None
        if kind == "sync":
            src = daemon_factory(name="src")
            add_image(src, "big", big, "g1")
        server.add("/big.raw", big.read_bytes())
        attempt = Attempt(kind, d, src, server, big, digest)

        fill(small_disk, leave)
        before = free_bytes(small_disk)
        t0 = time.monotonic()
        attempt.start()
        img = wait_end(d, "big", 60)
        took = time.monotonic() - t0
        msg = img["status"]["errorMsg"]
        assert img["status"]["state"] == "failed", "%s of an image that does not fit: %r" % (
            kind, img)
        assert SPACE.search(msg), "%s: the error says nothing about space: %r" % (kind, msg)
        if kind == "put":
            assert attempt.put_status != 201 and attempt.put_status != 200, \
                "the PUT that did not fit answered %r" % attempt.put_status
        idir = d.image_dir("big", "g1")
        assert not (idir / "backing.tmp").exists() and not (idir / "backing").exists(), \
            "%s: the failed image kept data: %r" % (kind, sorted(os.listdir(idir)))
        after = free_bytes(small_disk)
        assert after >= before - SLACK, \
            "%s: %d bytes free before, %d after the failure: the space was not given back" % (
                kind, before, after)
        assert d.answers_version(), "the daemon does not answer after the disk filled"
        k = d.get_raw("keep")
        assert k["status"]["state"] == "ready", "the other image after the disk filled: %r" % k
        assert sha512_file(d.mnt / "keep" / "backing") == keep_digest, \
            "the other image's bytes changed"
        print("%s: failed in %.3f s with %r; %d bytes free before, %d after"
              % (kind, took, msg, before, after))

        # free space, then the same create again
        os.unlink(small_disk / "filler")
        expect_ok(d.request({"op": "delete", "name": "big"}))
        attempt.start()
        img = d.wait_state("big", "ready")
        assert img["status"]["currentChecksum"] == digest
        assert sha512_file(d.mnt / "big" / "backing") == digest, "the retry has other bytes"
        if kind == "put":
            assert attempt.put_status == 201, "the retried PUT answered %r" % attempt.put_status
    finally:
        server.stop()
