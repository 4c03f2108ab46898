"""Adopting a disk written by Longhorn's own backing-image-manager (SPEC §2).

The disks are built by hand the way Longhorn writes them: a
DISK/backing-images/<name>-<uuid>/ directory with `backing` and a compact
JSON `backing.cfg` whose `name` is Longhorn's container path, and
DISK/longhorn-disk.cfg with the disk's identity."""

import json
import os

import pytest

from conftest import go_time, make_file, run, sha512_file, xattr, MiB

DISK_UUID = "8c5b7ab2-27cf-4c3f-9fb4-4cf6a3b0b1de"
# 2026-05-01 12:34:56.1234 UTC, and variants whose nanoseconds print differently
MTIME_NS = 1777638896_123400000


def write_longhorn_image(disk, name, uuid, src_layout=None, data=None, mtime_ns=MTIME_NS,
                         cfg_mtime_ns=None, expected="", current=None, seed=1):
    """Build DISK/backing-images/<name>-<uuid>/{backing,backing.cfg} like Longhorn.
    Returns (dir, sha512)."""
    d = disk / "backing-images" / ("%s-%s" % (name, uuid))
    d.mkdir(parents=True)
    backing = d / "backing"
    if data is not None:
        backing.write_bytes(data)
        digest = sha512_file(backing)
    else:
        digest = make_file(backing, src_layout or [("data", MiB)], seed=seed)
    os.utime(backing, ns=(mtime_ns, mtime_ns))
    size = os.path.getsize(backing)
    cfg = {
        "name": "/data/backing-images/%s-%s/backing" % (name, uuid),
        "uuid": uuid,
        "size": size,
        "virtualSize": size,
        "expectedChecksum": expected,
        "currentChecksum": digest if current is None else current,
        "modificationTime": go_time(mtime_ns if cfg_mtime_ns is None else cfg_mtime_ns),
    }
    (d / "backing.cfg").write_text(json.dumps(cfg, separators=(",", ":")))
    return d, digest


def write_disk_cfg(disk, disk_uuid=DISK_UUID):
    (disk / "longhorn-disk.cfg").write_text(
        json.dumps({"diskName": "disk-1", "diskUUID": disk_uuid}, separators=(",", ":")))


@pytest.fixture
def disk(tmp_path):
    d = tmp_path / "lhdisk"
    (d / "backing-images").mkdir(parents=True)
    write_disk_cfg(d)
    return d


def test_go_time_format_of_helper():
    """The helper itself prints Go's format (guards the other tests)."""
    assert go_time(MTIME_NS) == "2026-05-01 12:34:56.1234 +0000 UTC"
    assert go_time(1777638896_000000000) == "2026-05-01 12:34:56 +0000 UTC"
    assert go_time(1777638896_000000001) == "2026-05-01 12:34:56.000000001 +0000 UTC"


@pytest.mark.parametrize("mtime_ns", [MTIME_NS, 1777638896_000000000, 1777638896_000000001,
                                      1777638896_999999999, 1777638896_500000000])
def test_longhorn_image_is_adopted_ready(daemon_factory, disk, mtime_ns):
    _, digest = write_longhorn_image(disk, "ubuntu-22.04", "3f9a1c2e", mtime_ns=mtime_ns,
                                     expected="")
    d = daemon_factory(disk=disk)
    img = d.get_raw("ubuntu-22.04")
    assert img is not None, "Longhorn image not adopted; list %r; log:\n%s" % (d.list(), d.log())
    assert img["uuid"] == "3f9a1c2e"
    assert img["status"]["state"] == "ready", "adopted image is %r right after start" % (
        img["status"],)
    assert img["status"]["currentChecksum"] == digest, "checksum is not the cfg's"
    assert img["size"] == MiB and img["format"] == "raw"
    assert sha512_file(d.mnt / "ubuntu-22.04" / "backing") == digest


def test_longhorn_image_trusts_cfg_checksum_when_mtime_matches(daemon_factory, disk):
    """Size and mtime match: ready with the cfg's currentChecksum, no re-hash
    (a deliberately different checksum in the cfg proves nothing re-read it)."""
    recorded = "ab" * 64
    write_longhorn_image(disk, "trusted", "aaaa0001", current=recorded)
    d = daemon_factory(disk=disk)
    img = d.get_raw("trusted")
    assert img["status"]["state"] == "ready"
    assert img["status"]["currentChecksum"] == recorded, \
        "bimfs re-hashed an image whose size and mtime match its cfg"


def test_disk_uuid_comes_from_longhorn_disk_cfg(daemon_factory, disk):
    d = daemon_factory(disk=disk)
    assert xattr(d.mnt, "user.bim.disk_uuid") == DISK_UUID


def test_disk_uuid_option_overrides_longhorn_disk_cfg(daemon_factory, disk):
    d = daemon_factory(disk=disk, args=["--disk-uuid", "override-1"])
    assert xattr(d.mnt, "user.bim.disk_uuid") == "override-1"


def test_cfg_name_is_not_trusted(daemon_factory, disk):
    """Longhorn writes its container path in `name`; bimfs must serve the file
    in the directory, not whatever `name` points at."""
    idir, digest = write_longhorn_image(disk, "pathy", "bbbb0002")
    cfg = json.loads((idir / "backing.cfg").read_text())
    cfg["name"] = "/etc/passwd"
    (idir / "backing.cfg").write_text(json.dumps(cfg, separators=(",", ":")))
    d = daemon_factory(disk=disk)
    assert sha512_file(d.mnt / "pathy" / "backing") == digest


def test_unknown_cfg_fields_are_not_fatal(daemon_factory, disk):
    idir, digest = write_longhorn_image(disk, "extra", "cccc0003")
    cfg = json.loads((idir / "backing.cfg").read_text())
    cfg["someFutureField"] = {"nested": [1, 2]}
    (idir / "backing.cfg").write_text(json.dumps(cfg, separators=(",", ":")))
    d = daemon_factory(disk=disk)
    assert d.get_raw("extra")["status"]["state"] == "ready"


def test_cfg_with_other_mtime_is_rehashed_to_ready(daemon_factory, disk):
    _, digest = write_longhorn_image(disk, "rehash", "dddd0004", cfg_mtime_ns=MTIME_NS - 10**9)
    d = daemon_factory(disk=disk)
    img = d.wait_state("rehash", "ready")
    assert img["status"]["currentChecksum"] == digest


def test_cfg_with_other_mtime_and_no_checksum_gets_the_real_one(daemon_factory, disk):
    _, digest = write_longhorn_image(disk, "nosum", "dddd0005", cfg_mtime_ns=MTIME_NS + 5,
                                     current="")
    d = daemon_factory(disk=disk)
    img = d.wait_state("nosum", "ready")
    assert img["status"]["currentChecksum"] == digest, "re-hash did not compute the SHA-512"


@pytest.mark.parametrize("current", ["ab" * 64, "0" * 128], ids=["stale", "zero"])
def test_rehash_corrects_a_stale_current_checksum_when_the_expected_one_matches(
        daemon_factory, disk, current):
    """Longhorn's cfg has the right expectedChecksum but a stale currentChecksum,
    and the mtime differs: the re-hash matches the expectation, so the image is
    ready and the new hash replaces currentChecksum in the cfg (SPEC §2, §3)."""
    idir, digest = write_longhorn_image(disk, "stale", "dddd0008", cfg_mtime_ns=MTIME_NS - 10**9,
                                        current=current)
    cfg = json.loads((idir / "backing.cfg").read_text())
    cfg["expectedChecksum"] = digest
    (idir / "backing.cfg").write_text(json.dumps(cfg, separators=(",", ":")))
    d = daemon_factory(disk=disk)
    img = d.wait_state("stale", ("ready", "failed"))
    assert img["status"]["state"] == "ready", \
        "a stale currentChecksum failed an image that matches its expectation: %r" % img
    assert img["status"]["currentChecksum"] == digest, "currentChecksum is not the new hash"
    saved = json.loads((idir / "backing.cfg").read_text())
    assert saved["currentChecksum"] == digest, "the cfg keeps the stale currentChecksum: %r" % saved
    assert saved["expectedChecksum"] == digest, "the cfg lost its expectedChecksum: %r" % saved


def test_rehash_with_a_wrong_expected_checksum_fails_and_removes_the_data(daemon_factory, disk):
    """The bytes match currentChecksum but not expectedChecksum: failed with
    SPEC §3's words, and the data is removed."""
    wrong = "cd" * 64
    idir, digest = write_longhorn_image(disk, "wrongexp", "dddd0009",
                                        cfg_mtime_ns=MTIME_NS - 10**9, expected=wrong)
    d = daemon_factory(disk=disk)
    img = d.wait_state("wrongexp", "failed")
    want = "checksum mismatch: expected %s, got %s" % (wrong, digest)
    assert img["status"]["errorMsg"] == want, "error %r, want %r" % (img["status"]["errorMsg"], want)
    assert not (idir / "backing").exists(), "the data that failed its checksum was kept"
    assert json.loads((idir / "backing.cfg").read_text())["errorMsg"] == want, \
        "the cfg does not record the failure"


def test_cfg_with_other_size_is_rehashed(daemon_factory, disk):
    idir, digest = write_longhorn_image(disk, "resized", "dddd0006")
    cfg = json.loads((idir / "backing.cfg").read_text())
    cfg["size"] += 512
    (idir / "backing.cfg").write_text(json.dumps(cfg, separators=(",", ":")))
    d = daemon_factory(disk=disk)
    img = d.wait_state("resized", ("ready", "failed"))
    assert img["status"]["state"] == "ready" and img["size"] == MiB, \
        "an image whose size differs from its cfg was not re-hashed: %r" % img


def test_changed_bytes_with_other_mtime_fail_the_expected_checksum(daemon_factory, disk):
    """Bytes changed while no daemon ran (mtime moved): the re-hash does not
    match the expected checksum, so the image is failed, not ready."""
    idir, digest = write_longhorn_image(disk, "tampered", "eeee0007", expected="")
    cfg = json.loads((idir / "backing.cfg").read_text())
    cfg["expectedChecksum"] = digest
    (idir / "backing.cfg").write_text(json.dumps(cfg, separators=(",", ":")))
    with open(idir / "backing", "r+b") as f:
        f.write(b"\0\1\2\3")
    d = daemon_factory(disk=disk)
    img = d.wait_state("tampered", "failed")
    assert digest in img["status"]["errorMsg"], \
        "the error does not say which checksum was expected: %r" % img["status"]["errorMsg"]


def test_unidentifiable_directories_are_left_alone(daemon_factory, disk):
    bi = disk / "backing-images"
    write_longhorn_image(disk, "good", "12345678")
    odd = {
        "nocfg-aaaa1111": {"backing": b"x" * 512},
        "corrupt-bbbb2222": {"backing": b"x" * 512, "backing.cfg": b"{not json"},
        "empty-cfg-cccc3333": {"backing": b"x" * 512, "backing.cfg": b""},
        "cfg-array-dddd4444": {"backing": b"x" * 512, "backing.cfg": b"[1,2]"},
        "nodash": {"backing": b"x" * 512, "backing.cfg": json.dumps({"uuid": "nodash"}).encode()},
        "%bad%-eeee5555": {"backing": b"x" * 512,
                           "backing.cfg": json.dumps({"uuid": "eeee5555", "size": 512}).encode()},
        "mismatch-ffff6666": {"backing": b"x" * 512,
                              "backing.cfg": json.dumps({"uuid": "00007777", "size": 512}).encode()},
    }
    for dname, files in odd.items():
        (bi / dname).mkdir()
        for fname, content in files.items():
            (bi / dname / fname).write_bytes(content)
    (bi / "stray-file").write_bytes(b"hello")
    d = daemon_factory(disk=disk)
    names = sorted(d.list())
    assert names == ["good"], "listed %r; only `good` is identifiable" % names
    assert sorted(os.listdir(d.mnt)) == ["good"]
    d.stop()
    for dname, files in odd.items():
        for fname, content in files.items():
            p = bi / dname / fname
            assert p.exists(), "bimfs removed %s" % p
            assert p.read_bytes() == content, "bimfs changed %s" % p
    assert (bi / "stray-file").read_bytes() == b"hello"


def test_adopted_qcow2_reports_format_and_virtual_size(daemon_factory, disk, tmp_path):
    raw = tmp_path / "guest.raw"
    make_file(raw, [("data", MiB), ("hole", 3 * MiB)])
    qcow = tmp_path / "guest.qcow2"
    run(["qemu-img", "convert", "-f", "raw", "-O", "qcow2", str(raw), str(qcow)])
    _, digest = write_longhorn_image(disk, "lhqcow", "9999aaaa", data=qcow.read_bytes())
    d = daemon_factory(disk=disk)
    img = d.get_raw("lhqcow")
    assert img["status"]["state"] == "ready"
    assert img["format"] == "qcow2" and img["virtualSize"] == 4 * MiB, img
    assert sha512_file(d.mnt / "lhqcow" / "raw") == sha512_file(raw)


def test_adopted_image_can_be_deleted(daemon_factory, disk):
    idir, _ = write_longhorn_image(disk, "olddata", "0badf00d")
    d = daemon_factory(disk=disk)
    rc, out, err = d.bimctl("delete", "olddata")
    assert rc == 0, err
    assert not idir.exists(), "delete left the Longhorn directory"


def test_name_with_dashes_and_uuid_from_cfg(daemon_factory, disk):
    """<name>-<uuid> is split using the cfg's uuid, so names may contain dashes."""
    write_longhorn_image(disk, "my-image-v2", "7f7f7f7f")
    d = daemon_factory(disk=disk)
    img = d.get_raw("my-image-v2")
    assert img is not None, "listed %r" % sorted(d.list())
    assert img["uuid"] == "7f7f7f7f"
