"""Restore (SPEC §10): create with source {"type": "restore", "url":
"<target>?backingImage=<name>"} makes an image from a backup in a Longhorn
backupstore. The backups here are written by lhbackup_write.py, code that
shares nothing with bimfs, exactly by the layout of
../shared/notes/backupstore.md; the daemon is real, the targets a directory
(vfs://) and an S3 endpoint on loopback (s3server.py, every signature checked).
"""

import json
import os
import re

import pytest

from conftest import (MiB, expect_error, expect_ok, make_file, run, sha256_file, sha512_file,
                      wait_until, xattr)
import lhbackup_write as lh

SECRET = "bimfs/Restore+Key/0123456789abcdefghij"


def restore(daemon, name, url, uuid=None, checksum=None):
    return daemon.create(name, {"type": "restore", "url": url}, uuid=uuid, checksum=checksum)


def wait_final(daemon, name, timeout=120):
    """The image once ready or failed (no early failure)."""
    def final():
        img = daemon.get(name)
        return img if img and img["status"]["state"] in ("ready", "failed") else None
    return wait_until(final, timeout, "%s to be ready or failed" % name, interval=0.1)


@pytest.fixture
def sparse_image(tmp_path):
    """A 13 MiB + 512 B raw image: data, a 4 MiB hole (two absent blocks), data
    that starts inside a block, zeros written, and a short last block."""
    p = tmp_path / "image.raw"
    digest = make_file(p, [("data", 3 * MiB), ("hole", 5 * MiB), ("data", MiB + 4096),
                           ("zero", 2 * MiB), ("hole", MiB), ("data", MiB - 4096 + 512)],
                       seed=11)
    return p, digest


def check_restored(daemon, name, image, digest, blocks):
    img = daemon.wait_state(name, "ready")
    assert img["status"]["currentChecksum"] == digest, "the restored image has another SHA-512"
    assert img["size"] == os.path.getsize(image)
    backing = daemon.mnt / name / "backing"
    assert sha512_file(backing) == digest, "the bytes read through the mount differ"
    on_disk = daemon.image_dir(name, img["uuid"]) / "backing"
    # holes stay holes: every 2 MiB block the backup does not store is a hole on disk
    size = os.path.getsize(on_disk)
    fd = os.open(on_disk, os.O_RDONLY)
    try:
        for off in range(0, size, lh.BLOCK_SIZE):
            if off in blocks:
                continue
            try:
                data = os.lseek(fd, off, os.SEEK_DATA)
            except OSError:
                data = size
            assert data >= min(off + lh.BLOCK_SIZE, size), \
                "the block at %d, absent from the backup, holds data on disk" % off
    finally:
        os.close(fd)
    stored = sum(min(lh.BLOCK_SIZE, size - off) for off in blocks)
    assert os.stat(on_disk).st_blocks * 512 <= stored + 64 * 1024, \
        "the restored file takes more space than the blocks the backup holds"
    return img


@pytest.mark.parametrize("compression", ["lz4", "gzip", "none"])
def test_restore_a_longhorn_backup_with_holes(daemon, tmp_path, sparse_image, compression):
    image, digest = sparse_image
    target = tmp_path / "target"
    info = lh.write_backup(str(target), "parrot", str(image), compression=compression)
    assert len(info["blocks"]) < (os.path.getsize(image) + lh.BLOCK_SIZE - 1) // lh.BLOCK_SIZE, \
        "the fixture should leave blocks out of the backup"
    url = lh.backup_url("vfs://%s" % target, "parrot")
    img = expect_ok(restore(daemon, "copy", url, uuid="r1"))
    assert img["source"] == "restore:" + url
    img = check_restored(daemon, "copy", image, digest, info["blocks"])
    assert img["expectedChecksum"] == digest, "the backup's checksum is the expectation"
    assert img["status"]["verified"] == "sha512", \
        "a restore hashes the image itself (SPEC §9): %r" % img["status"].get("verified")
    assert xattr(daemon.mnt / "copy", "user.bim.source") == "restore:" + url
    assert img["format"] == "raw"


def test_legacy_method_and_content_size_frames_and_null_fields(daemon, tmp_path, sparse_image):
    """An empty CompressionMethod is gzip; ProcessingBlocks and Labels null."""
    image, digest = sparse_image
    target = tmp_path / "target"
    info = lh.write_backup(str(target), "legacy", str(image), compression="gzip",
                           method_field="", processing_blocks=None)
    expect_ok(restore(daemon, "legacy", lh.backup_url("vfs://%s" % target, "legacy")))
    check_restored(daemon, "legacy", image, digest, info["blocks"])
    info = lh.write_backup(str(target), "sized", str(image), compression="lz4",
                           lz4_content_size=True, labels={"k": "v"})
    expect_ok(restore(daemon, "sized", lh.backup_url("vfs://%s" % target, "sized")))
    check_restored(daemon, "sized", image, digest, info["blocks"])


def test_lz4_blocks_under_a_gzip_cfg_fall_back(daemon, tmp_path, sparse_image):
    """Longhorn's fallback: a block whose header is not gzip's is read as lz4."""
    image, digest = sparse_image
    target = tmp_path / "target"
    info = lh.write_backup(str(target), "mixed", str(image), compression="lz4",
                           method_field="gzip")
    expect_ok(restore(daemon, "mixed", lh.backup_url("vfs://%s" % target, "mixed")))
    check_restored(daemon, "mixed", image, digest, info["blocks"])


def test_every_block_stored_as_a_qcow2_backup_does(daemon, tmp_path):
    image = tmp_path / "full.raw"
    digest = make_file(image, [("data", MiB), ("zero", 4 * MiB), ("data", 512)], seed=3)
    target = tmp_path / "target"
    info = lh.write_backup(str(target), "full", str(image), compression="lz4", all_blocks=True)
    assert len(info["blocks"]) == 3
    expect_ok(restore(daemon, "full", lh.backup_url("vfs://%s" % target, "full")))
    img = daemon.wait_state("full", "ready")
    assert img["status"]["currentChecksum"] == digest
    on_disk = daemon.image_dir("full", img["uuid"]) / "backing"
    assert os.stat(on_disk).st_blocks * 512 < 2 * MiB, "zeros of stored blocks were written"


@pytest.mark.parametrize("compression", ["lz4", "gzip", "none"])
def test_a_flipped_byte_in_a_block_fails_naming_the_block(daemon, tmp_path, sparse_image,
                                                          compression):
    image, _ = sparse_image
    target = tmp_path / "target"
    info = lh.write_backup(str(target), "parrot", str(image), compression=compression)
    off = sorted(info["blocks"])[1]
    victim = info["blocks"][off]
    path = lh.block_file(str(target), victim)
    data = bytearray(open(path, "rb").read())
    data[len(data) // 2] ^= 0x40
    open(path, "wb").write(bytes(data))
    expect_ok(restore(daemon, "bad", lh.backup_url("vfs://%s" % target, "parrot")))
    img = wait_final(daemon, "bad")
    assert img["status"]["state"] == "failed", "a corrupt block was accepted"
    assert victim in img["status"]["errorMsg"], \
        "the error does not name the block: %r" % img["status"]["errorMsg"]
    assert not (daemon.image_dir("bad", img["uuid"]) / "backing").exists()
    assert not (daemon.image_dir("bad", img["uuid"]) / "backing.tmp").exists()


def test_a_missing_block_fails_naming_it(daemon, tmp_path, sparse_image):
    image, _ = sparse_image
    target = tmp_path / "target"
    info = lh.write_backup(str(target), "parrot", str(image))
    victim = info["blocks"][max(info["blocks"])]
    os.unlink(lh.block_file(str(target), victim))
    expect_ok(restore(daemon, "gone", lh.backup_url("vfs://%s" % target, "parrot")))
    img = wait_final(daemon, "gone")
    assert img["status"]["state"] == "failed"
    msg = img["status"]["errorMsg"]
    assert victim in msg and "missing" in msg, "unexpected error %r" % msg


def test_a_wrong_expected_checksum_fails_with_the_spec_message(daemon, tmp_path, sparse_image):
    image, digest = sparse_image
    target = tmp_path / "target"
    lh.write_backup(str(target), "parrot", str(image))
    url = lh.backup_url("vfs://%s" % target, "parrot")
    wrong = "ab" * 64
    expect_ok(restore(daemon, "given", url, checksum=wrong))
    img = wait_final(daemon, "given")
    assert img["status"]["state"] == "failed"
    assert "checksum mismatch: expected %s, got %s" % (wrong, digest) in \
        img["status"]["errorMsg"], img["status"]["errorMsg"]


def test_a_backup_whose_checksum_is_not_its_data_fails(daemon, tmp_path, sparse_image):
    image, digest = sparse_image
    target = tmp_path / "target"
    lying = "cd" * 64
    lh.write_backup(str(target), "liar", str(image), checksum=lying)
    expect_ok(restore(daemon, "liar", lh.backup_url("vfs://%s" % target, "liar")))
    img = wait_final(daemon, "liar")
    assert img["status"]["state"] == "failed"
    assert "checksum mismatch: expected %s, got %s" % (lying, digest) in \
        img["status"]["errorMsg"], img["status"]["errorMsg"]
    assert not (daemon.image_dir("liar", img["uuid"]) / "backing").exists()


def test_an_incomplete_or_absent_backup_fails(daemon, tmp_path, sparse_image):
    image, _ = sparse_image
    target = tmp_path / "target"
    lh.write_backup(str(target), "half", str(image), completed="")
    expect_ok(restore(daemon, "half", lh.backup_url("vfs://%s" % target, "half")))
    img = wait_final(daemon, "half")
    assert img["status"]["state"] == "failed"
    assert "not complete" in img["status"]["errorMsg"], img["status"]["errorMsg"]
    expect_ok(restore(daemon, "none", lh.backup_url("vfs://%s" % target, "nosuch")))
    img = wait_final(daemon, "none")
    assert img["status"]["state"] == "failed"
    assert "nosuch" in img["status"]["errorMsg"], img["status"]["errorMsg"]


@pytest.mark.parametrize("url", [
    "vfs:///nonexistent-dir-for-bimfs?backingImage=parrot",
    "ftp://host/x?backingImage=parrot",
    "vfs:///tmp",                       # no backingImage
    "vfs:///tmp?backingImage=-bad",     # not a backing image name
    "vfs://host/tmp?backingImage=parrot",
    "",
])
def test_bad_backup_urls_are_invalid_argument(daemon, url):
    err = expect_error(restore(daemon, "refused", url), "invalid_argument")
    assert err["message"].startswith("refused: "), err
    print(err["message"])
    assert daemon.get_raw("refused") is None, "a refused create left an image"


@pytest.mark.parametrize("url", [
    "nfs://user:s3cr3tpw@server:/export?backingImage=parrot",  # mounted only when the job runs
    "s3://KEY:s3cr3tpw@bucket@us-east-1/p/?backingImage=parrot",
    "nfs://user:s3cr3tpw@server:/export",                       # and no backingImage either
])
def test_credentials_in_a_restore_url_are_refused_and_never_shown(daemon, url):
    err = expect_error(restore(daemon, "refused", url), "invalid_argument")
    assert "s3cr3tpw" not in json.dumps(err), err
    assert "credentials" in err["message"], err
    assert daemon.get_raw("refused") is None, "a refused create left an image"
    assert "s3cr3tpw" not in daemon.log(tail=10**7), "the secret reached the log"


def test_bimctl_create_restore_waits_until_ready(daemon, tmp_path, sparse_image):
    image, digest = sparse_image
    target = tmp_path / "target"
    lh.write_backup(str(target), "parrot", str(image), compression="gzip")
    url = lh.backup_url("vfs://%s" % target, "parrot")
    rc, out, err = daemon.bimctl("create", "cli", "--restore", url, "--uuid", "u1",
                                 "--checksum", "sha512:" + digest, "--wait")
    assert rc == 0, "bimctl create --restore --wait: exit %d, %s" % (rc, err)
    img = daemon.get("cli")
    assert img["status"]["state"] == "ready" and img["uuid"] == "u1"
    assert img["status"]["currentChecksum"] == digest
    rc, out, err = daemon.bimctl("create", "cli2", "--restore", url + "x", "--wait")
    assert rc == 1 and "cli2: " in err, "a missing backup: exit %d, %r" % (rc, err)


def test_kill_mid_restore_then_restart_resumes(daemon_factory, tmp_path):
    """kill -9 while blocks land; the next start keeps the blocks backing.tmp
    holds (their names match) and ends ready with the right bytes."""
    image, digest, url, info = big_backup(tmp_path)
    d = daemon_factory(name="d")
    restore_under_way(d, url, "k1", "it could be cut")
    d.kill9()
    d.start()
    img = check_restored(d, "big", image, digest, info["blocks"])
    assert img["uuid"] == "k1" and img["source"] == "restore:" + url
    kept = re.findall(r"\((\d+) bytes kept from backing.tmp\)", d.log(200000))
    assert kept and int(kept[-1]) > 0, "the restart did not keep the blocks already written"


def test_a_kept_backing_tmp_changed_while_down_is_not_trusted(daemon_factory, tmp_path):
    """What a restart keeps is checked block by block: bytes changed in
    backing.tmp while the daemon was down (a block of data, and a hole) are
    fetched again, and the image ends with the backup's bytes."""
    image, digest, url, info = big_backup(tmp_path)
    d = daemon_factory(name="d")
    tmp = restore_under_way(d, url, "c1", "it could be cut")
    d.kill9()
    hole = 97 * MiB  # inside the 8 MiB hole of big_backup's image
    assert hole // lh.BLOCK_SIZE * lh.BLOCK_SIZE not in info["blocks"]
    with open(tmp, "r+b") as f:
        f.seek(4096)
        b = f.read(1)
        f.seek(4096)
        f.write(bytes([b[0] ^ 0xFF]))
        f.seek(hole)
        f.write(b"not a hole")
    d.start()
    check_restored(d, "big", image, digest, info["blocks"])


def test_restore_from_an_s3_target(daemon_factory, tmp_path, sparse_image, monkeypatch):
    from s3server import S3Server
    image, digest = sparse_image
    local = tmp_path / "local"
    info = lh.write_backup(str(local), "parrot", str(image), compression="lz4")
    url = lh.backup_url("s3://bk@us-east-1/longhorn/", "parrot")
    for k in [k for k in os.environ if k.startswith("AWS_")]:
        monkeypatch.delenv(k)
    plain = daemon_factory(name="plain")  # no credentials in its environment
    err = expect_error(restore(plain, "nocreds", url), "invalid_argument")
    assert "AWS_ACCESS_KEY_ID" in err["message"], err
    srv = S3Server(secret=SECRET).start()
    try:
        for rel in lh.backup_files(str(local)):
            srv.put("longhorn/" + rel, open(os.path.join(str(local), rel), "rb").read())
        for k in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy"):
            monkeypatch.delenv(k, raising=False)
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", srv.key_id)
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", srv.secret)
        monkeypatch.setenv("AWS_ENDPOINTS", srv.endpoint)
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not/the/secret")
        wrong = daemon_factory(name="wrong")
        expect_ok(restore(wrong, "wrongkey", url))
        img = wait_final(wrong, "wrongkey")
        assert img["status"]["state"] == "failed"
        assert "SignatureDoesNotMatch" in img["status"]["errorMsg"], img["status"]["errorMsg"]
        srv.rejected.clear()
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", srv.secret)
        d = daemon_factory(name="d")
        expect_ok(restore(d, "s3copy", url))
        check_restored(d, "s3copy", image, digest, info["blocks"])
        assert srv.rejected == [], "requests were refused: %s" % srv.rejected
        assert SECRET not in d.log(10 ** 6), "the secret reached the log"
        # a dead endpoint: failed with the cause, not stuck
        srv.stop()
        expect_ok(restore(d, "dead", url))
        img = wait_final(d, "dead")
        assert img["status"]["state"] == "failed"
        assert "connect" in img["status"]["errorMsg"].lower(), img["status"]["errorMsg"]
    finally:
        srv.stop()


@pytest.mark.parametrize("compression", ["lz4", "gzip", "none"])
def test_round_trip_backup_on_one_daemon_restore_on_another(daemon_factory, tmp_path,
                                                            sparse_image, compression):
    image, digest = sparse_image
    target = tmp_path / "target"
    target.mkdir()
    a = daemon_factory(name="a")
    b = daemon_factory(name="b")
    a.add_ready("orig", image)
    status = expect_ok(a.request({"op": "backup", "name": "orig", "target": "vfs://%s" % target,
                                  "compression": compression}))

    def complete():
        s = expect_ok(a.request({"op": "backup-status", "name": "orig"}))
        assert s["state"] != "error", "the backup failed: %r" % s
        return s if s["state"] == "complete" else None
    wait_until(complete, 120, "the backup to complete")
    listed = expect_ok(b.request({"op": "backups", "target": "vfs://%s" % target}))
    assert listed["orig"]["url"] == status["url"]
    expect_ok(restore(b, "back", status["url"], uuid="rt"))
    with open(lh.cfg_path(str(target), "orig")) as f:
        cfg = json.load(f)
    blocks = {blk["Offset"]: blk["BlockChecksum"] for blk in cfg.get("Blocks") or []}
    img = check_restored(b, "back", image, digest, blocks)
    assert img["source"] == "restore:" + status["url"]


def big_backup(tmp_path, compression="none"):
    image = tmp_path / "big.raw"
    digest = make_file(image, [("data", 96 * MiB), ("hole", 8 * MiB), ("data", 24 * MiB)],
                       seed=5)
    target = tmp_path / "target"
    info = lh.write_backup(str(target), "big", str(image), compression=compression)
    return image, digest, lh.backup_url("vfs://%s" % target, "big"), info


def restore_under_way(d, url, uuid, cut_by):
    """Restore big from url as uuid and wait until its backing.tmp holds
    16 MiB: more than the fetchers can hold half-written, so some blocks are
    whole. Skips the test when the restore ended before `cut_by` could come.
    Returns the path of backing.tmp."""
    expect_ok(restore(d, "big", url, uuid=uuid))
    tmp = d.image_dir("big", uuid) / "backing.tmp"

    def some_blocks_written():
        img = d.get("big")
        if img["status"]["state"] in ("ready", "failed"):
            pytest.skip("the restore finished before %s (%s)" % (cut_by, img["status"]["state"]))
        return tmp.exists() and os.stat(tmp).st_blocks * 512 >= 16 * MiB
    wait_until(some_blocks_written, 60, "blocks in backing.tmp")
    return tmp


def test_delete_mid_restore_stops_it_and_removes_the_data(daemon, tmp_path):
    image, digest, url, info = big_backup(tmp_path)
    expect_ok(restore(daemon, "big", url, uuid="del1"))
    tmp = daemon.image_dir("big", "del1") / "backing.tmp"
    wait_until(lambda: tmp.exists() or daemon.get("big")["status"]["state"] == "ready", 60,
               "the restore to start writing")
    expect_ok(daemon.request({"op": "delete", "name": "big"}))
    assert daemon.get_raw("big") is None
    assert not daemon.image_dir("big", "del1").exists(), "the image's directory is still there"
    # the same name restores again from scratch
    expect_ok(restore(daemon, "big", url, uuid="del2"))
    check_restored(daemon, "big", image, digest, info["blocks"])


def test_shutdown_mid_restore_keeps_backing_tmp_and_resumes(daemon_factory, tmp_path):
    image, digest, url, info = big_backup(tmp_path)
    d = daemon_factory(name="d")
    tmp = restore_under_way(d, url, "s1", "the shutdown")
    d.stop()
    assert tmp.exists(), "a shutdown removed the restore's backing.tmp"
    d.start()
    img = check_restored(d, "big", image, digest, info["blocks"])
    assert img["uuid"] == "s1"


def test_a_backup_of_holes_only_restores_an_empty_disk(daemon, tmp_path):
    image = tmp_path / "holes.raw"
    digest = make_file(image, [("hole", 5 * MiB)])
    target = tmp_path / "target"
    info = lh.write_backup(str(target), "holes", str(image))
    assert "Blocks" not in info["cfg"], "Longhorn omits an empty Blocks list (omitempty)"
    expect_ok(restore(daemon, "holes", lh.backup_url("vfs://%s" % target, "holes")))
    check_restored(daemon, "holes", image, digest, {})


def test_a_sha256_expectation_is_checked(daemon, tmp_path, sparse_image):
    image, digest = sparse_image
    target = tmp_path / "target"
    lh.write_backup(str(target), "parrot", str(image))
    url = lh.backup_url("vfs://%s" % target, "parrot")
    good = "sha256:" + sha256_file(image)
    expect_ok(restore(daemon, "s256", url, checksum=good))
    img = daemon.wait_state("s256", "ready")
    assert img["status"]["currentChecksum"] == digest
    assert img["expectedChecksum"] == good
    expect_ok(restore(daemon, "s256bad", url, checksum="sha256:" + "0" * 64))
    img = wait_final(daemon, "s256bad")
    assert img["status"]["state"] == "failed"
    assert "checksum mismatch" in img["status"]["errorMsg"], img["status"]["errorMsg"]
    # the right SHA-256, but a backup whose SHA-512 is not its data: still refused
    lying = "cd" * 64
    lh.write_backup(str(target), "liar", str(image), checksum=lying)
    expect_ok(restore(daemon, "s256liar", lh.backup_url("vfs://%s" % target, "liar"),
                      checksum=good))
    img = wait_final(daemon, "s256liar")
    assert img["status"]["state"] == "failed"
    assert "checksum mismatch: expected %s, got %s" % (lying, digest) in \
        img["status"]["errorMsg"], img["status"]["errorMsg"]


def test_a_qcow2_backup_restores_as_qcow2(daemon, tmp_path):
    """Longhorn's manager stores every block of a qcow2; the restored file is
    the qcow2 itself, its guest disk readable as raw."""
    guest = tmp_path / "guest.raw"
    make_file(guest, [("data", 3 * MiB), ("hole", 6 * MiB), ("data", MiB)], seed=9)
    qcow = tmp_path / "image.qcow2"
    run(["qemu-img", "convert", "-f", "raw", "-O", "qcow2", str(guest), str(qcow)])
    target = tmp_path / "target"
    lh.write_backup(str(target), "qc", str(qcow), all_blocks=True)
    expect_ok(restore(daemon, "qc", lh.backup_url("vfs://%s" % target, "qc")))
    img = daemon.wait_state("qc", "ready")
    assert img["format"] == "qcow2"
    assert img["virtualSize"] == os.path.getsize(guest)
    assert sha512_file(daemon.mnt / "qc" / "backing") == sha512_file(qcow)
    assert sha512_file(daemon.mnt / "qc" / "raw") == sha512_file(guest)


def test_a_deletion_lock_on_the_store_is_honoured(daemon, tmp_path, sparse_image):
    """Longhorn's restore takes the backupstore's lock (type 1): a deletion that
    holds it (type 2, acquired, fresh) keeps the restore from starting; a
    backup's lock (type 1) does not; the restore leaves no lock file."""
    image, digest = sparse_image
    target = tmp_path / "target"
    info = lh.write_backup(str(target), "parrot", str(image))
    url = lh.backup_url("vfs://%s" % target, "parrot")
    deletion = lh.write_lock(str(target), 2)
    expect_ok(restore(daemon, "locked", url))
    img = wait_final(daemon, "locked")
    assert img["status"]["state"] == "failed", "the restore ignored a deletion's lock"
    assert "lock" in img["status"]["errorMsg"], img["status"]["errorMsg"]
    os.unlink(deletion)
    backup = lh.write_lock(str(target), 1, suffix="fedcba9876543210")
    expect_ok(restore(daemon, "beside", url))
    check_restored(daemon, "beside", image, digest, info["blocks"])
    assert os.listdir(lh.lock_dir(str(target))) == [os.path.basename(backup)], \
        "the restore left its lock file (or removed another's)"
