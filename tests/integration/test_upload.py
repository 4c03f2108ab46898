"""Uploads (SPEC §6 create with source upload, §7 bimctl create --file)."""

import json
import os
import time

from conftest import (MiB, Client, PipeFeeder, expect_error, expect_ok, go_time, make_file,
                      make_random_file, sha512_bytes, sha512_file, xattr)

SPARSE_LAYOUT = [("data", MiB), ("hole", 32 * MiB), ("data", MiB), ("zero", 4 * MiB),
                 ("data", MiB), ("hole", 3 * MiB)]
WRITTEN_BYTES = 7 * MiB  # data and zero runs; the 35 MiB of holes must stay holes


def test_upload_of_sparse_file_is_ready_with_the_same_bytes(daemon, tmp_path):
    src = tmp_path / "sparse.raw"
    digest = make_file(src, SPARSE_LAYOUT)
    img = daemon.add_ready("sparse", src)
    assert img["status"]["currentChecksum"] == digest, "currentChecksum is not the SHA-512"
    assert img["size"] == os.path.getsize(src), "size is not the source's size"
    assert img["virtualSize"] == img["size"], "virtualSize of a raw image must equal size"
    assert img["format"] == "raw"
    backing = daemon.mnt / "sparse" / "backing"
    assert os.path.getsize(backing) == os.path.getsize(src)
    assert sha512_file(backing) == digest, "bytes read through the mount differ from the source"
    with open(src, "rb") as a, open(backing, "rb") as b:
        assert a.read() == b.read(), "backing content differs from the source"


def test_upload_keeps_holes_on_disk(daemon, tmp_path):
    src = tmp_path / "sparse.raw"
    make_file(src, SPARSE_LAYOUT)
    img = daemon.add_ready("sparse", src)
    stored = daemon.image_dir("sparse", img["uuid"]) / "backing"
    st = os.stat(stored)
    allocated = st.st_blocks * 512
    assert allocated <= WRITTEN_BYTES + MiB, (
        "backing of a %d-byte image with %d written bytes allocates %d bytes: holes were not "
        "kept" % (st.st_size, WRITTEN_BYTES, allocated))
    assert img["realSize"] == allocated, "realSize %d is not the allocated size %d" % (
        img["realSize"], allocated)


def test_upload_source_and_progress_of_ready_image(daemon, small_image):
    src, _ = small_image
    img = daemon.add_ready("small", src)
    assert img["source"] == "upload"
    assert img["status"]["progress"] == 100
    assert xattr(daemon.mnt / "small", "user.bim.progress") == "100"
    assert xattr(daemon.mnt / "small", "user.bim.source") == "upload"


def test_upload_progress_tracks_bytes_and_reaches_100(daemon, tmp_path):
    src = tmp_path / "big.raw"
    make_random_file(src, 64 * MiB)
    progress = []
    with daemon.client() as w:
        expect_ok(w.request({"op": "watch"}))
        expect_ok(daemon.upload_file("big", src))
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            ev = w.recv_json(timeout=60)
            if ev.get("event") != "update" or ev["image"]["name"] != "big":
                continue
            st = ev["image"]["status"]
            progress.append(st["progress"])
            if st["state"] in ("ready", "failed"):
                break
    assert progress, "watch saw no update of the upload"
    assert st["state"] == "ready", "upload ended %r" % st
    assert all(0 <= p <= 100 for p in progress), "progress out of 0..100: %r" % progress
    assert progress == sorted(progress), "progress went backwards: %r" % progress
    assert progress[-1] == 100, "progress of the ready image is %r" % progress[-1]


def test_upload_from_pipe_is_ready(daemon):
    block = os.urandom(MiB)
    data = block * 5 + block[:512 * 3]
    feeder = PipeFeeder(data=data)
    reply = daemon.upload_fd("piped", feeder.r)
    feeder.close_read_end()
    expect_ok(reply)
    feeder.start()
    img = daemon.wait_state("piped", "ready")
    feeder.stop()
    assert feeder.error is None, "writing the pipe failed: %r" % feeder.error
    assert img["size"] == len(data)
    assert img["status"]["currentChecksum"] == sha512_bytes(data)
    with open(daemon.mnt / "piped" / "backing", "rb") as f:
        assert f.read() == data, "bytes of a piped upload differ through the mount"


def test_bimctl_create_file_wait_exits_0_when_ready(daemon, small_image):
    src, digest = small_image
    rc, out, err = daemon.bimctl("create", "viactl", "--file", src, "--wait")
    assert rc == 0, "bimctl create --file --wait: exit %d, stderr %r" % (rc, err)
    img = daemon.get("viactl")
    assert img["status"]["state"] == "ready", "--wait returned before ready: %r" % img
    assert img["status"]["currentChecksum"] == digest


def test_bimctl_create_file_with_uuid_and_checksum(daemon, small_image):
    src, digest = small_image
    rc, out, err = daemon.bimctl("create", "withsum", "--file", src, "--uuid", "abc-123",
                                 "--checksum", digest, "--wait")
    assert rc == 0, "exit %d, stderr %r" % (rc, err)
    img = daemon.get("withsum")
    assert img["uuid"] == "abc-123"
    assert (daemon.image_dir("withsum", "abc-123") / "backing").is_file(), \
        "no DISK/backing-images/withsum-abc-123/backing"


def test_bimctl_create_of_missing_file_fails(daemon, tmp_path):
    rc, out, err = daemon.bimctl("create", "nofile", "--file", tmp_path / "nope", "--wait")
    assert rc in (1, 2), "create --file of a missing file: exit %d" % rc
    assert err.startswith("bimctl: "), "error not on stderr as 'bimctl: ...': %r" % err
    assert daemon.get_raw("nofile") is None, "an image was created for a missing file"


def test_generated_uuid_is_8_lowercase_hex_and_names_the_directory(daemon, small_image):
    src, _ = small_image
    img = daemon.add_ready("genuuid", src)
    uuid = img["uuid"]
    assert len(uuid) == 8 and all(c in "0123456789abcdef" for c in uuid), \
        "generated uuid %r is not 8 lowercase hex digits" % uuid
    d = daemon.image_dir("genuuid", uuid)
    assert sorted(p.name for p in d.iterdir() if not p.name.startswith(".")) == \
        ["backing", "backing.cfg", "backing.pieces"], \
        "unexpected files in %s: %r" % (d, os.listdir(d))  # backing.pieces: SPEC §9


def test_backing_cfg_is_compact_json_with_longhorn_fields(daemon, small_image):
    src, digest = small_image
    img = daemon.add_ready("cfgcheck", src, uuid="u1")
    d = daemon.image_dir("cfgcheck", "u1")
    text = (d / "backing.cfg").read_text()
    cfg = json.loads(text)
    assert text.strip() == json.dumps(cfg, separators=(",", ":"), ensure_ascii=False), \
        "backing.cfg is not compact JSON: %r" % text[:200]
    assert cfg["name"] == str(d / "backing"), "cfg name %r is not the backing path" % cfg["name"]
    assert cfg["uuid"] == "u1"
    assert cfg["size"] == os.path.getsize(src)
    assert cfg["virtualSize"] == cfg["size"]
    assert cfg["currentChecksum"] == digest
    st = os.stat(d / "backing")
    assert cfg["realSize"] == st.st_blocks * 512 == img["realSize"]
    assert cfg["modificationTime"] == go_time(st.st_mtime_ns), \
        "modificationTime %r is not the backing's mtime as Go prints it (%r)" % (
            cfg["modificationTime"], go_time(st.st_mtime_ns))


def test_reads_at_offsets_and_past_end(daemon, tmp_path):
    src = tmp_path / "off.raw"
    make_random_file(src, 2 * MiB, seed=3)
    daemon.add_ready("offsets", src)
    data = src.read_bytes()
    fd = os.open(daemon.mnt / "offsets" / "backing", os.O_RDONLY)
    try:
        for off, n in ((0, 1), (511, 4097), (MiB - 3, 70000), (2 * MiB - 10, 100)):
            assert os.pread(fd, n, off) == data[off:off + n], "pread(%d, %d) differs" % (n, off)
        assert os.pread(fd, 4096, 2 * MiB) == b"", "read at EOF returned data"
        assert os.pread(fd, 4096, 3 * MiB) == b"", "read past EOF returned data"
    finally:
        os.close(fd)


def stalled_feeder():
    return PipeFeeder(close=False)


def trickling_feeder():
    return PipeFeeder(block=os.urandom(64 * 1024), delay=0.05)


def delete_during_upload(daemon, feeder):
    reply = daemon.upload_fd("slow", feeder.r, uuid="s1")
    feeder.close_read_end()
    expect_ok(reply)
    feeder.start()
    daemon.wait_state("slow", ("starting", "in-progress"))
    assert daemon.image_dir("slow", "s1").is_dir(), "no image directory while uploading"
    t0 = time.monotonic()
    rc, out, err = daemon.bimctl("delete", "slow")
    took = time.monotonic() - t0
    feeder.stop()
    assert rc == 0, "delete during upload: exit %d, stderr %r" % (rc, err)
    assert took < 2.0, "delete of an image being uploaded took %.2fs (want ~1s)" % took
    assert daemon.get_raw("slow") is None, "image still listed after delete"
    assert not daemon.image_dir("slow", "s1").exists(), \
        "directory left after delete: %r" % os.listdir(daemon.image_dir("slow", "s1"))
    assert not (daemon.mnt / "slow").exists(), "image still in the mount after delete"


def test_delete_cancels_upload_whose_client_stalls(daemon):
    delete_during_upload(daemon, stalled_feeder())


def test_delete_cancels_upload_that_trickles(daemon):
    delete_during_upload(daemon, trickling_feeder())


def test_create_same_name_same_uuid_returns_existing(daemon, small_image):
    src, digest = small_image
    first = daemon.add_ready("twice", src, uuid="same1")
    again = expect_ok(daemon.upload_file("twice", src, uuid="same1"))
    assert again["uuid"] == "same1" and again["status"]["state"] == "ready", \
        "create with the same uuid did not return the existing ready image: %r" % again
    assert again["status"]["currentChecksum"] == first["status"]["currentChecksum"]


def test_create_same_name_other_uuid_is_already_exists(daemon, small_image):
    src, _ = small_image
    daemon.add_ready("taken", src, uuid="one1")
    expect_error(daemon.upload_file("taken", src, uuid="two2"), "already_exists")
    assert daemon.get("taken")["uuid"] == "one1"


def test_two_uploads_at_once_are_both_ready(daemon, tmp_path):
    a, b = tmp_path / "a.raw", tmp_path / "b.raw"
    da = make_random_file(a, 8 * MiB, seed=11)
    db = make_random_file(b, 8 * MiB, seed=12)
    expect_ok(daemon.upload_file("conc-a", a))
    expect_ok(daemon.upload_file("conc-b", b))
    assert daemon.wait_state("conc-a", "ready")["status"]["currentChecksum"] == da
    assert daemon.wait_state("conc-b", "ready")["status"]["currentChecksum"] == db
    assert sha512_file(daemon.mnt / "conc-a" / "backing") == da
    assert sha512_file(daemon.mnt / "conc-b" / "backing") == db


def test_upload_through_a_held_connection_then_reuse_it(daemon, small_image):
    src, _ = small_image
    with Client(daemon.sock) as c:
        fd = os.open(src, os.O_RDONLY)
        try:
            expect_ok(c.request({"op": "create", "name": "held", "source": {"type": "upload"}},
                                fds=[fd]))
        finally:
            os.close(fd)
        r = expect_ok(c.request({"op": "version"}))
        assert r["api"] == 1
    daemon.wait_state("held", "ready")

