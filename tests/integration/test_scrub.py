"""The background scrub (SPEC §9 "Scrub", docs/scrub.md): the SHA-512 of ready
images is computed again from their bytes at --scrub-rate, images verified by
pieces first; a match makes them `verified: sha512` with a `lastScrub` kept
in the cfg, a mismatch fails them with "checksum mismatch: expected <x>, got
<y> (scrub)" and removes their data. --scrub-interval 0 turns it off; a
restart neither repeats nor skips a scrub. Small images and a high rate keep
the tests fast; they wait on states, never on time."""

import hashlib
import os
import re
import subprocess

import pytest

from conftest import BIMFS, MiB, expect_ok, make_file, sha512_file, wait_until, xattr
from httphelp import add_image, metrics, sync

FAST = ["--scrub-rate", "1000"]
RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")


@pytest.fixture
def image(tmp_path):
    """9 MiB: data, a hole, data (three pieces)."""
    p = tmp_path / "img.raw"
    make_file(p, [("data", 4 * MiB), ("hole", 3 * MiB), ("data", 2 * MiB)], seed=21)
    return p


def scrubbed(d, name):
    """The image once the scrub has matched it (verified sha512, a lastScrub)."""
    def done():
        img = d.get(name)
        assert img is not None, "%s vanished" % name
        st = img["status"]
        assert st["state"] != "failed", "%s failed while waiting for its scrub: %r" % (
            name, st["errorMsg"])
        done = st["state"] == "ready" and st["verified"] == "sha512" and st["lastScrub"]
        return img if done else None
    return wait_until(done, 60, "the scrub of %s" % name, interval=0.1)


def synced(peer_pair, image, receiver_args, name="img", uuid="u1"):
    """A source daemon with the image and a receiver that synced it by pieces."""
    a, b = peer_pair(image, name, uuid, source_args=["--scrub-interval", "0"],
                     receiver_args=receiver_args)
    expect_ok(sync(b, name, uuid, [a]))
    return a, b


def flip_byte_keeping_mtime(path, offset):
    """Change one byte of path behind the daemon's back, mtime restored, so
    that neither the monitor nor a restart's rescan can tell."""
    st = os.stat(path)
    with open(path, "r+b") as f:
        f.seek(offset)
        b = f.read(1)
        f.seek(offset)
        f.write(bytes([b[0] ^ 0xFF]))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def test_peer_synced_image_is_scrubbed_to_sha512(peer_pair, image):
    _, b = synced(peer_pair, image, FAST)
    img = scrubbed(b, "img")
    st = img["status"]
    assert RFC3339.match(st["lastScrub"]), "lastScrub %r is not RFC 3339 UTC" % st["lastScrub"]
    assert st["currentChecksum"] == sha512_file(image)
    assert xattr(b.mnt / "img", "user.bim.verified") == "sha512"
    assert xattr(b.mnt / "img", "user.bim.scrubbed") == st["lastScrub"]
    cfg = b.cfg("img", "u1")
    assert cfg["verified"] == "sha512" and cfg["lastScrub"] == st["lastScrub"], \
        "the scrub is not kept in the cfg: %r" % cfg
    m = metrics(b.port)
    assert m["bimfs_scrubs_total"] == 1, m
    assert m["bimfs_scrub_mismatches_total"] == 0, m
    assert m["bimfs_scrub_bytes_total"] >= os.path.getsize(image), m
    assert m["bimfs_scrub_last_timestamp_seconds"] > 0, m


@pytest.mark.parametrize("expect", ["none", "sha512", "sha256"])
def test_byte_flipped_behind_the_daemon_fails_the_scrub(daemon_factory, image, expect):
    data = image.read_bytes()
    checksum = {"none": None, "sha512": hashlib.sha512(data).hexdigest(),
                "sha256": "sha256:" + hashlib.sha256(data).hexdigest()}[expect]
    d = daemon_factory(name="d", args=FAST + ["--scrub-interval", "1"])
    img = d.add_ready("img", image, uuid="u1", checksum=checksum)
    scrubbed(d, "img")
    backing = d.image_dir("img", "u1") / "backing"
    flip_byte_keeping_mtime(backing, 5)
    changed = backing.read_bytes()
    if expect == "sha256":
        want = "checksum mismatch: expected %s, got %s (scrub)" % (
            checksum, hashlib.sha256(changed).hexdigest())
    else:
        want = "checksum mismatch: expected %s, got %s (scrub)" % (
            img["status"]["currentChecksum"], hashlib.sha512(changed).hexdigest())
    failed = d.wait_state("img", "failed")
    assert failed["status"]["errorMsg"] == want, failed
    assert xattr(d.mnt / "img", "user.bim.error") == want
    left = os.listdir(d.image_dir("img", "u1"))
    assert "backing" not in left, "the data that failed is still there: %r" % left
    cfg = d.cfg("img", "u1")
    assert cfg["state"] == "failed" and cfg["errorMsg"] == want, cfg
    assert RFC3339.match(cfg.get("lastScrub", "")), "the last match is not kept: %r" % cfg
    m = metrics(d.port)
    assert m["bimfs_scrub_mismatches_total"] == 1, m
    assert m['bimfs_failures_total{reason="checksum"}'] == 1, m


def test_scrub_interval_0_never_scrubs(daemon_factory, image):
    a = daemon_factory(name="a", args=["--scrub-interval", "0"])
    off = daemon_factory(name="off", args=["--scrub-interval", "0"])
    on = daemon_factory(name="on", args=FAST)
    add_image(a, "img", image, "u1")
    expect_ok(sync(off, "img", "u1", [a]))
    expect_ok(sync(on, "img", "u1", [a]))
    off.wait_state("img", "ready")
    scrubbed(on, "img")  # by now a scrub that was on would have picked it up too
    st = off.get("img")["status"]
    assert st["verified"] == "pieces" and st["lastScrub"] == "", st
    m = metrics(off.port)
    assert m["bimfs_scrub_bytes_total"] == 0 and m["bimfs_scrubs_total"] == 0, m
    assert "lastScrub" not in off.cfg("img", "u1")


def test_restart_does_not_repeat_a_scrub(peer_pair, image, tmp_path):
    a, b = synced(peer_pair, image, FAST)
    first = scrubbed(b, "img")["status"]["lastScrub"]
    b.restart()
    # another pieces-verified image: once it is scrubbed, the scrub has
    # looked at everything since the restart
    other = tmp_path / "other.raw"
    make_file(other, [("data", MiB)], seed=22)
    add_image(a, "other", other, "u2")
    expect_ok(sync(b, "other", "u2", [a]))
    scrubbed(b, "other")
    st = b.get("img")["status"]
    assert st["lastScrub"] == first and st["verified"] == "sha512", st
    assert metrics(b.port)["bimfs_scrubs_total"] == 1, "a scrub was repeated after the restart"


def test_delete_stops_a_scrub_in_progress(peer_pair, tmp_path):
    big = tmp_path / "big.raw"
    make_file(big, [("data", 24 * MiB)], seed=23)
    _, b = synced(peer_pair, big, ["--scrub-rate", "1"])  # 24 s of reading
    b.wait_state("img", "ready")
    wait_until(lambda: metrics(b.port)["bimfs_scrub_bytes_total"] > 0, 30, "the scrub to start")
    expect_ok(b.request({"op": "delete", "name": "img"}))
    assert not b.image_dir("img", "u1").exists(), "the image directory is still there"
    m = metrics(b.port)
    assert m["bimfs_scrubs_total"] == 0, "the scrub finished an image being deleted: %r" % m
    assert m["bimfs_scrub_bytes_total"] < 24 * MiB, m


def test_shutdown_stops_a_scrub_in_progress(peer_pair, tmp_path):
    big = tmp_path / "big.raw"
    make_file(big, [("data", 64 * MiB)], seed=24)
    _, b = synced(peer_pair, big, ["--scrub-rate", "1"])  # a minute of reading
    b.wait_state("img", "ready")
    wait_until(lambda: metrics(b.port)["bimfs_scrub_bytes_total"] > 0, 30, "the scrub to start")
    b.stop()  # asserts exit 0 within its timeout, which is shorter than the scrub
    b.start()
    st = b.wait_state("img", "ready")["status"]
    assert st["verified"] == "pieces" and st["lastScrub"] == "", st


def test_scrub_options_are_accepted(daemon_factory, image):
    d = daemon_factory(name="d", args=["--scrub-rate", "250", "--scrub-interval", "3600"])
    assert d.add_ready("img", image)["status"]["verified"] == "sha512"


@pytest.mark.parametrize("option, value", [
    ("--scrub-rate", "0"), ("--scrub-rate", "-5"), ("--scrub-rate", "fast"),
    ("--scrub-rate", "100001"), ("--scrub-rate", ""),
    ("--scrub-interval", "-1"), ("--scrub-interval", "weekly"),
    ("--scrub-interval", "315360001"),
])
def test_bad_scrub_options_are_refused(daemon_factory, tmp_path, option, value):
    d = daemon_factory(start=False, name="d")
    d.disk.mkdir(parents=True)
    d.mnt.mkdir(parents=True)
    p = subprocess.run([BIMFS, "-f", str(d.disk), str(d.mnt), option, value,
                        "--socket", str(tmp_path / "s")],
                       capture_output=True, text=True, timeout=30)
    assert p.returncode == 2, "%s %r: exit %d, want 2 (usage, bimfs(8))" % (
        option, value, p.returncode)
    lines = p.stderr.splitlines()
    assert len(lines) == 1 and option in lines[0], "%s %r: stderr %r" % (option, value, p.stderr)
