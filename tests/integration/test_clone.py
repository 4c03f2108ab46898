"""Clone of a ready image on the same disk (SPEC §6 create with source clone)."""

import os

from conftest import expect_ok, make_file, run, sha512_file, xattr, MiB


def clone(daemon, name, src, **kw):
    return daemon.create(name, {"type": "clone", "from": src}, **kw)


def test_clone_is_ready_with_same_checksum_and_bytes(daemon, small_image):
    path, digest = small_image
    orig = daemon.add_ready("orig", path)
    expect_ok(clone(daemon, "copy", "orig", uuid="c1"))
    img = daemon.wait_state("copy", "ready")
    assert img["status"]["currentChecksum"] == digest
    assert img["size"] == orig["size"] and img["format"] == orig["format"]
    assert img["uuid"] == "c1"
    assert sha512_file(daemon.mnt / "copy" / "backing") == digest
    stored = daemon.image_dir("copy", "c1") / "backing"
    assert stored.is_file(), "the clone has no backing of its own on disk"
    assert sha512_file(stored) == digest


def test_clone_source_is_clone_name(daemon, small_image):
    path, _ = small_image
    daemon.add_ready("orig", path)
    expect_ok(clone(daemon, "copy", "orig"))
    img = daemon.wait_state("copy", "ready")
    assert img["source"] == "clone:orig", "source %r" % img["source"]
    assert xattr(daemon.mnt / "copy", "user.bim.source") == "clone:orig"


def test_clone_survives_deleting_the_original(daemon, small_image):
    path, digest = small_image
    daemon.add_ready("orig", path)
    expect_ok(clone(daemon, "copy", "orig"))
    daemon.wait_state("copy", "ready")
    expect_ok(daemon.request({"op": "delete", "name": "orig"}))
    assert sha512_file(daemon.mnt / "copy" / "backing") == digest
    daemon.restart()
    assert daemon.get_raw("copy")["status"]["state"] == "ready"


def test_clone_of_qcow2_keeps_format(daemon, tmp_path):
    raw = tmp_path / "g.raw"
    digest = make_file(raw, [("data", MiB), ("hole", MiB)])
    q = tmp_path / "g.qcow2"
    run(["qemu-img", "convert", "-f", "raw", "-O", "qcow2", str(raw), str(q)])
    daemon.add_ready("qorig", q)
    expect_ok(clone(daemon, "qcopy", "qorig"))
    img = daemon.wait_state("qcopy", "ready")
    assert img["format"] == "qcow2" and img["virtualSize"] == 2 * MiB
    assert sha512_file(daemon.mnt / "qcopy" / "raw") == digest


def test_clone_with_expected_checksum(daemon, small_image):
    path, digest = small_image
    daemon.add_ready("orig", path)
    expect_ok(clone(daemon, "copy", "orig", checksum=digest))
    assert daemon.wait_state("copy", "ready")["status"]["currentChecksum"] == digest


def test_clone_of_missing_image_is_refused(daemon):
    r = clone(daemon, "copy", "nosuch")
    assert r.get("ok") is False, "clone of a missing image accepted: %r" % r
    assert r["error"]["code"] in ("not_found", "invalid_argument"), r
    assert daemon.get_raw("copy") is None, "a record was created for a refused clone"
    assert daemon.image_dirs("copy") == []


def test_clone_of_image_in_progress_is_refused(daemon):
    with daemon.in_progress("busy"):
        r = clone(daemon, "copy", "busy")
        assert r.get("ok") is False, "clone of an image in progress accepted: %r" % r
        assert r["error"]["code"] in ("unavailable", "busy", "invalid_argument"), r
        assert daemon.get_raw("copy") is None


def test_clone_of_failed_image_is_refused(daemon, tmp_path):
    p = tmp_path / "odd.raw"
    p.write_bytes(os.urandom(1000))
    expect_ok(daemon.upload_file("broken", p))
    daemon.wait_state("broken", "failed")
    r = clone(daemon, "copy", "broken")
    assert r.get("ok") is False, "clone of a failed image accepted: %r" % r
    assert daemon.get_raw("copy") is None


def test_bimctl_create_clone_wait(daemon, small_image):
    path, digest = small_image
    daemon.add_ready("orig", path)
    rc, out, err = daemon.bimctl("create", "viaclone", "--clone", "orig", "--wait")
    assert rc == 0, "bimctl create --clone --wait: exit %d, %r" % (rc, err)
    assert daemon.get("viaclone")["status"]["currentChecksum"] == digest


def test_bimctl_clone_of_missing_exits_1(daemon):
    rc, out, err = daemon.bimctl("create", "viaclone", "--clone", "nosuch")
    assert rc == 1, "exit %d" % rc
    assert err.startswith("bimctl: "), err
