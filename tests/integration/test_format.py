"""Format detection (SPEC §3): from content, never the name; qcow2 decoded
in `raw`; rejected images end failed with a message naming the reason."""

import os
import time

import pytest

from conftest import MiB, expect_ok, make_file, run, sha512_file, xattr


def qemu_img(*args):
    return run(["qemu-img"] + [str(a) for a in args])


@pytest.fixture
def guest(tmp_path):
    """A 6 MiB raw guest disk with data, holes and zeros; returns (path, sha512)."""
    p = tmp_path / "guest.raw"
    digest = make_file(p, [("data", MiB), ("hole", 2 * MiB), ("zero", MiB), ("data", 64 * 1024),
                           ("hole", 2 * MiB - 64 * 1024)], seed=21)
    return p, digest


def upload_and_wait(daemon, name, path, state):
    expect_ok(daemon.upload_file(name, path))
    return daemon.wait_state(name, state)


def test_raw_with_size_not_multiple_of_512_fails(daemon, tmp_path):
    p = tmp_path / "odd.img"
    make_file(p, [("data", 4096 + 100)])
    img = upload_and_wait(daemon, "oddraw", p, "failed")
    msg = img["status"]["errorMsg"]
    assert "512" in msg, "the error does not name the 512-byte rule: %r" % msg
    assert not (daemon.mnt / "oddraw" / "backing").exists()


def test_qcow2_is_detected_with_virtual_size(daemon, guest, tmp_path):
    raw, digest = guest
    q = tmp_path / "guest.qcow2"
    qemu_img("convert", "-f", "raw", "-O", "qcow2", raw, q)
    img = upload_and_wait(daemon, "qq", q, "ready")
    assert img["format"] == "qcow2", "format %r" % img["format"]
    assert img["size"] == os.path.getsize(q)
    assert img["virtualSize"] == os.path.getsize(raw), "virtualSize %d" % img["virtualSize"]
    assert xattr(daemon.mnt / "qq", "user.bim.format") == "qcow2"
    assert xattr(daemon.mnt / "qq", "user.bim.virtual_size") == str(os.path.getsize(raw))


def test_qcow2_backing_is_the_stored_bytes_and_raw_the_guest_disk(daemon, guest, tmp_path):
    raw, digest = guest
    q = tmp_path / "guest.qcow2"
    qemu_img("convert", "-f", "raw", "-O", "qcow2", raw, q)
    upload_and_wait(daemon, "q2", q, "ready")
    assert os.path.getsize(daemon.mnt / "q2" / "backing") == os.path.getsize(q)
    assert sha512_file(daemon.mnt / "q2" / "backing") == sha512_file(q)
    assert os.path.getsize(daemon.mnt / "q2" / "raw") == os.path.getsize(raw)
    assert sha512_file(daemon.mnt / "q2" / "raw") == digest, "raw is not the decoded guest disk"


def test_compressed_qcow2_is_decoded(daemon, guest, tmp_path):
    raw, digest = guest
    q = tmp_path / "guest-c.qcow2"
    qemu_img("convert", "-c", "-f", "raw", "-O", "qcow2", raw, q)
    upload_and_wait(daemon, "qc", q, "ready")
    assert sha512_file(daemon.mnt / "qc" / "raw") == digest


def test_qcow2_with_small_clusters_is_decoded(daemon, guest, tmp_path):
    raw, digest = guest
    q = tmp_path / "guest-4k.qcow2"
    qemu_img("convert", "-f", "raw", "-O", "qcow2", "-o", "cluster_size=4096", raw, q)
    upload_and_wait(daemon, "qs", q, "ready")
    assert sha512_file(daemon.mnt / "qs" / "raw") == digest


def test_qcow2_raw_reads_at_offsets(daemon, guest, tmp_path):
    raw, _ = guest
    q = tmp_path / "guest.qcow2"
    qemu_img("convert", "-f", "raw", "-O", "qcow2", raw, q)
    upload_and_wait(daemon, "qo", q, "ready")
    data = raw.read_bytes()
    fd = os.open(daemon.mnt / "qo" / "raw", os.O_RDONLY)
    try:
        for off, n in ((0, 10), (65535, 3), (MiB - 100, 300), (3 * MiB + 7, 70000),
                       (len(data) - 5, 5)):
            assert os.pread(fd, n, off) == data[off:off + n], "raw pread(%d, %d) differs" % (
                n, off)
        assert os.pread(fd, 100, len(data)) == b""
    finally:
        os.close(fd)


def test_empty_qcow2_with_unaligned_file_size_is_ready(daemon, tmp_path):
    """The 512-byte rule is for raw images; qemu-img makes qcow2 files of any size."""
    q = tmp_path / "empty.qcow2"
    qemu_img("create", "-q", "-f", "qcow2", q, "2M")
    img = upload_and_wait(daemon, "qempty", q, "ready")
    assert img["format"] == "qcow2" and img["virtualSize"] == 2 * MiB
    assert (daemon.mnt / "qempty" / "raw").read_bytes() == bytes(2 * MiB)


def test_format_comes_from_content_not_name(daemon, guest, tmp_path):
    raw, digest = guest
    q = tmp_path / "looks-raw.img"
    qemu_img("convert", "-f", "raw", "-O", "qcow2", raw, q)
    img = upload_and_wait(daemon, "named.raw", q, "ready")
    assert img["format"] == "qcow2"
    r = tmp_path / "looks-qcow.qcow2"
    r.write_bytes(raw.read_bytes())
    img = upload_and_wait(daemon, "named.qcow2", r, "ready")
    assert img["format"] == "raw"


def test_qcow2_with_backing_file_fails(daemon, tmp_path):
    base = tmp_path / "base.qcow2"
    over = tmp_path / "over.qcow2"
    qemu_img("create", "-q", "-f", "qcow2", base, "1M")
    qemu_img("create", "-q", "-f", "qcow2", "-b", base, "-F", "qcow2", over)
    img = upload_and_wait(daemon, "overlay", over, "failed")
    assert "backing" in img["status"]["errorMsg"].lower(), \
        "the error does not name the backing file: %r" % img["status"]["errorMsg"]


def make_encrypted_qcow2(path, method):
    """qemu-img create an encrypted qcow2. For LUKS, qemu-img first times
    PBKDF2 on this thread's CPU clock and gives up ("Unable to get accurate
    CPU usage") when a busy machine schedules it out; that is retried."""
    args = ["qemu-img", "create", "-q", "-f", "qcow2", "--object", "secret,id=sec0,data=abc",
            "-o", "encrypt.format=%s,encrypt.key-secret=sec0" % method, str(path), "1M"]
    if method == "luks":
        args[-3] += ",encrypt.iter-time=100"
    for _ in range(10):
        p = run(args, check=False)
        if p.returncode == 0 or "accurate CPU usage" not in p.stderr:
            break
        time.sleep(0.2)
    assert p.returncode == 0, "qemu-img create (%s) failed: %s" % (method, p.stderr)


@pytest.mark.parametrize("method", ["luks", "aes"])
def test_encrypted_qcow2_fails(daemon, tmp_path, method):
    q = tmp_path / ("enc-%s.qcow2" % method)
    make_encrypted_qcow2(q, method)
    img = upload_and_wait(daemon, "enc-" + method, q, "failed")
    assert "encrypt" in img["status"]["errorMsg"].lower(), \
        "the error does not say the image is encrypted: %r" % img["status"]["errorMsg"]


def test_qcow2_with_external_data_file_fails(daemon, tmp_path):
    q = tmp_path / "ext.qcow2"
    qemu_img("create", "-q", "-f", "qcow2", "-o", "data_file=%s" % (tmp_path / "ext.data"), q,
             "1M")
    img = upload_and_wait(daemon, "extdata", q, "failed")
    msg = img["status"]["errorMsg"].lower()
    assert "data file" in msg or "data_file" in msg or "external" in msg, \
        "the error does not name the external data file: %r" % msg


def test_qcow2_magic_with_garbage_fails(daemon, tmp_path):
    p = tmp_path / "garbage.qcow2"
    p.write_bytes(b"QFI\xfb" + b"\xff" * (64 * 1024 - 4))
    img = upload_and_wait(daemon, "garbage", p, "failed")
    assert img["status"]["errorMsg"], "failed without a reason"

