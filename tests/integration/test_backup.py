"""Backups of images to a backup target (SPEC §10): the real daemon, a vfs
target in a directory of the test (or s3server.py on loopback), and what
bimfs wrote read back with independent code (lhbackup.py: json, hashlib,
gzip, lz4.frame) in the layout of Longhorn's backupstore.
"""

import json
import os
import shutil
import socket
import stat
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest

import lhbackup
from conftest import BIMCTL, Client, MiB, expect_error, expect_ok, make_file
from s3server import S3Server

SECRET = "bimfs/Backup+Secret/0123456789abcdefghij"
LAYOUT = [("data", 3 * MiB), ("hole", 4 * MiB), ("zero", 2 * MiB), ("data", MiB + 512)]


def backup(daemon, name, target, **kw):
    req = {"op": "backup", "name": name, "target": target}
    req.update(kw)
    return daemon.request(req)


def status(daemon, name):
    return expect_ok(daemon.request({"op": "backup-status", "name": name}))


def wait_backup(daemon, name, timeout=120):
    """Poll backup-status until the backup is complete or in error."""
    deadline = time.monotonic() + timeout
    while True:
        st = status(daemon, name)
        if st["state"] != "in_progress":
            return st
        assert time.monotonic() < deadline, "backup of %s still in progress: %r" % (name, st)
        time.sleep(0.1)


def backups(daemon, target):
    return expect_ok(daemon.request({"op": "backups", "target": target}))


def expected_offsets(path, size):
    """The 2 MiB blocks of the file that hold a byte other than zero."""
    out = []
    with open(path, "rb") as f:
        for off in range(0, size, lhbackup.BLOCK_SIZE):
            if f.read(lhbackup.BLOCK_SIZE).strip(b"\0"):
                out.append(off)
    return out


@pytest.fixture
def target(tmp_path):
    root = tmp_path / "target"
    root.mkdir()
    return root


@pytest.fixture
def image(daemon, tmp_path):
    """A ready raw image with data, a hole, written zeros and a short last block."""
    path = tmp_path / "parrot.raw"
    digest = make_file(path, LAYOUT, seed=5)
    daemon.add_ready("parrot", path)
    return path, digest


def test_a_raw_image_with_holes_is_read_back_by_independent_code(daemon, image, target,
                                                                 tmp_path):
    path, digest = image
    url = "vfs://%s" % target
    rc, out, err = daemon.bimctl("backup", "parrot", "--to", url, "--label", "team=storage",
                                 "--wait")
    assert rc == 0, "bimctl backup --wait: exit %d: %s" % (rc, err)
    assert out == "parrot backup complete 100%% %s?backingImage=parrot\n" % url, out
    store = lhbackup.VfsStore(target)
    cfg = lhbackup.read_cfg(store, "parrot")
    lhbackup.check_cfg_types(cfg, complete=True)
    assert lhbackup.cfg_keys(store, "parrot") == lhbackup.FIELD_ORDER + ["Blocks"], \
        "the cfg's fields are not in the order Go writes them"
    size = os.path.getsize(path)
    assert (cfg["Name"], cfg["Size"], cfg["Checksum"]) == ("parrot", str(size), digest)
    assert cfg["Labels"] == {"team": "storage"} and cfg["CompressionMethod"] == "lz4"
    offsets = [b["Offset"] for b in cfg["Blocks"]]
    assert offsets == expected_offsets(path, size), \
        "the stored blocks are not the blocks holding data (holes and zeros left out)"
    restored = tmp_path / "restored.raw"
    assert lhbackup.reassemble(store, "parrot", restored) == digest, "reassembled bytes differ"
    assert restored.read_bytes() == path.read_bytes()
    assert not [p for p in store.files() if p.endswith(".lck")], "the lock file was left"
    assert all(p.endswith(".blk") or p.endswith("/backing-image.cfg") for p in store.files()), \
        "stray files on the target: %s" % store.files()


def test_directories_made_on_a_vfs_target_are_private_as_longhorn_makes_them(daemon, image,
                                                                            target):
    expect_ok(backup(daemon, "parrot", "vfs://%s" % target))
    assert wait_backup(daemon, "parrot")["state"] == "complete"
    made = [target / "backupstore"]
    for d, dirs, _ in os.walk(target / "backupstore"):
        made += [Path(d) / n for n in dirs]
    modes = {str(p.relative_to(target)): oct(stat.S_IMODE(p.stat().st_mode)) for p in made}
    assert set(modes.values()) == {"0o700"}, \
        "directories not made 0700 (Longhorn's fsops MkdirAll(..., 0700)): %s" % modes


def test_an_image_of_zeros_stores_no_block(daemon, target, tmp_path):
    path = tmp_path / "zeros.raw"
    digest = make_file(path, [("zero", 3 * MiB), ("hole", 2 * MiB)])
    daemon.add_ready("zeros", path)
    expect_ok(backup(daemon, "zeros", "vfs://%s" % target))
    assert wait_backup(daemon, "zeros")["state"] == "complete"
    store = lhbackup.VfsStore(target)
    cfg = lhbackup.read_cfg(store, "zeros")
    lhbackup.check_cfg_types(cfg, complete=True)
    assert cfg["BlockCount"] == "0" and "Blocks" not in cfg, "Blocks is omitempty: %r" % cfg
    assert store.blocks() == [], "an all-zero block was stored"
    assert lhbackup.reassemble(store, "zeros", tmp_path / "r.raw") == digest


def test_bimctl_backup_wait_draws_a_progress_bar_on_a_terminal(daemon, image, target):
    master, slave = os.openpty()
    env = dict(os.environ, BIMFS_SOCKET=str(daemon.sock))
    try:
        p = subprocess.run([BIMCTL, "backup", "parrot", "--to", "vfs://%s" % target, "--wait"],
                           stdout=subprocess.PIPE, stderr=slave, stdin=subprocess.DEVNULL,
                           env=env, timeout=120)
        os.close(slave)
        slave = -1
        tty = b""
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the writer is gone and everything was read
                break
            if not chunk:
                break
            tty += chunk
    finally:
        if slave >= 0:
            os.close(slave)
        os.close(master)
    assert p.returncode == 0, tty
    assert b"parrot backup in_progress" in tty and b"[" in tty and b"%" in tty, \
        "no progress bar on the terminal: %r" % tty
    assert tty.endswith(b"\r\x1b[K"), "the bar was not cleared at the end: %r" % tty[-40:]
    assert p.stdout.decode().startswith("parrot backup complete 100% "), p.stdout


def test_lz4_blocks_are_frames_as_longhorn_writes_them(daemon, image, target):
    expect_ok(backup(daemon, "parrot", "vfs://%s" % target))
    assert wait_backup(daemon, "parrot")["state"] == "complete"
    store = lhbackup.VfsStore(target)
    cfg = lhbackup.read_cfg(store, "parrot")
    for b in cfg["Blocks"]:
        blob = store.read(lhbackup.block_path(b["BlockChecksum"]))
        assert blob[:4] == lhbackup.LZ4_MAGIC, "not the LZ4 frame format"
        assert blob[4] == 0x64, "FLG %02x: not independent blocks with a content checksum, " \
            "without content size" % blob[4]
        if int(cfg["Size"]) - b["Offset"] >= lhbackup.BLOCK_SIZE:
            assert blob[5] == 0x70, "BD %02x: a full block is not in 4 MB frame blocks" % blob[5]


@pytest.mark.parametrize("method", ["gzip", "none"])
def test_gzip_and_none_compression(daemon, image, target, tmp_path, method):
    path, digest = image
    r = expect_ok(backup(daemon, "parrot", "vfs://%s" % target, compression=method))
    assert r == {"url": "vfs://%s?backingImage=parrot" % target, "state": "in_progress",
                 "progress": 0, "error": ""}, r
    assert wait_backup(daemon, "parrot")["state"] == "complete"
    store = lhbackup.VfsStore(target)
    cfg = lhbackup.read_cfg(store, "parrot")
    assert cfg["CompressionMethod"] == method
    first = store.read(lhbackup.block_path(cfg["Blocks"][0]["BlockChecksum"]))
    if method == "gzip":
        assert first[:10] == lhbackup.GZIP_HEADER, "gzip header %r is not Go's" % first[:10]
    else:
        assert first == path.read_bytes()[:lhbackup.BLOCK_SIZE], "none: not the raw bytes"
    assert lhbackup.reassemble(store, "parrot", tmp_path / "r.raw") == digest


def test_a_second_backup_of_the_same_data_stores_no_new_block(daemon, image, target):
    path, _ = image
    url = "vfs://%s" % target
    expect_ok(backup(daemon, "parrot", url))
    assert wait_backup(daemon, "parrot")["state"] == "complete"
    store = lhbackup.VfsStore(target)
    before = {p: os.stat(target / p).st_mtime_ns for p in store.blocks()}
    assert before, "no block stored"
    daemon.add_ready("parrot2", path)
    expect_ok(backup(daemon, "parrot2", url))
    assert wait_backup(daemon, "parrot2")["state"] == "complete"
    after = {p: os.stat(target / p).st_mtime_ns for p in store.blocks()}
    assert after == before, "the second backup wrote blocks again or added some"
    assert lhbackup.read_cfg(store, "parrot2")["Blocks"] == \
        lhbackup.read_cfg(store, "parrot")["Blocks"]
    listed = backups(daemon, url)
    assert sorted(listed) == ["parrot", "parrot2"], listed


def test_a_backup_again_of_the_same_image_takes_the_block_names_from_the_last(daemon, image,
                                                                              target, tmp_path):
    """What bench/backup times as the second backup: the cfg removed, every block present.
    The image is the same (uuid, size, SHA-512): the blocks are not read to be named."""
    path, digest = image
    url = "vfs://%s" % target
    store = lhbackup.VfsStore(target)
    expect_ok(backup(daemon, "parrot", url))
    assert wait_backup(daemon, "parrot")["state"] == "complete"
    first = lhbackup.read_cfg(store, "parrot")
    before = {p: os.stat(target / p).st_mtime_ns for p in store.blocks()}
    assert ", 0 named from the image's last backup" in end_line(daemon, "parrot")
    shutil.rmtree(target / os.path.dirname(lhbackup.cfg_path("parrot")))
    lock = lhbackup.write_lock(store, "lock-0123456789abcdef", 2)  # a deletion holds the lock
    expect_ok(backup(daemon, "parrot", url))
    st = wait_backup(daemon, "parrot")
    assert st["state"] == "error" and "lock-0123456789abcdef" in st["error"], \
        "a backup with nothing to write ignored a deletion's lock: %r" % st
    assert not store.exists(lhbackup.cfg_path("parrot")), "a cfg was written under the lock"
    os.unlink(target / lock)
    expect_ok(backup(daemon, "parrot", url))
    assert wait_backup(daemon, "parrot")["state"] == "complete"
    line = end_line(daemon, "parrot")
    data_blocks = len(expected_offsets(path, os.path.getsize(path))) + 1  # + the zero block
    assert ", %d named from the image's last backup" % data_blocks in line, line
    assert "(0 written, " in line, line
    after = {p: os.stat(target / p).st_mtime_ns for p in store.blocks()}
    assert after == before, "the backup again wrote blocks again or added some"
    assert lhbackup.read_cfg(store, "parrot")["Blocks"] == first["Blocks"]
    assert lhbackup.reassemble(store, "parrot", tmp_path / "r.raw") == digest


def test_another_image_of_the_same_name_is_named_from_its_own_bytes(daemon, image, target,
                                                                    tmp_path):
    """The names of the last backup are the image's only: an image of that name with other
    bytes (deleted and created again, same uuid) is read and hashed."""
    path, _ = image
    url = "vfs://%s" % target
    expect_ok(backup(daemon, "parrot", url))
    assert wait_backup(daemon, "parrot")["state"] == "complete"
    uuid = daemon.get("parrot")["uuid"]
    expect_ok(daemon.request({"op": "delete", "name": "parrot"}))
    other = tmp_path / "other.raw"
    digest = make_file(other, LAYOUT, seed=6)  # the same layout, other bytes
    daemon.add_ready("parrot", other, uuid=uuid)
    second = tmp_path / "second"
    second.mkdir()
    expect_ok(backup(daemon, "parrot", "vfs://%s" % second))
    assert wait_backup(daemon, "parrot")["state"] == "complete"
    assert ", 0 named from the image's last backup" in end_line(daemon, "parrot")
    assert lhbackup.reassemble(lhbackup.VfsStore(second), "parrot", tmp_path / "r.raw") == \
        digest, "the backup named the blocks of the image deleted before"


def test_a_complete_backup_of_the_name_is_already_exists(daemon, image, target):
    url = "vfs://%s" % target
    expect_ok(backup(daemon, "parrot", url))
    assert wait_backup(daemon, "parrot")["state"] == "complete"
    expect_error(backup(daemon, "parrot", url), "already_exists")
    rc, _, err = daemon.bimctl("backup", "parrot", "--to", url)
    assert rc == 1 and "already" in err, err


def test_backups_lists_what_the_target_holds(daemon, image, target):
    path, digest = image
    url = "vfs://%s" % target
    expect_ok(backup(daemon, "parrot", url, compression="gzip", labels={"a": "1", "b": "x=y"}))
    assert wait_backup(daemon, "parrot")["state"] == "complete"
    entry = backups(daemon, url)["parrot"]
    assert set(entry) == {"url", "size", "checksum", "created", "completed", "compression",
                          "labels"}, entry
    assert entry["url"] == url + "?backingImage=parrot"
    assert (entry["size"], entry["checksum"]) == (os.path.getsize(path), digest)
    assert entry["compression"] == "gzip" and entry["labels"] == {"a": "1", "b": "x=y"}
    assert lhbackup.is_rfc3339_utc(entry["completed"]), entry
    rc, out, err = daemon.bimctl("backups", url)
    assert rc == 0 and "parrot" in out and "gzip" in out, (rc, out, err)


def test_backups_takes_a_cfg_whose_size_is_a_json_number(daemon, target):
    """Longhorn writes Size as a string (Go's json:",string"); a writer that puts a number
    there is read too, as the restore reads it."""
    url = "vfs://%s" % target
    store = lhbackup.VfsStore(target)
    store.write(lhbackup.cfg_path("numeric"),
                b'{"Name":"numeric","Size":4194304,"BlockCount":"0","Checksum":"","Labels":null,'
                b'"CompressionMethod":"lz4","CreatedTime":"2026-01-01T00:00:00Z",'
                b'"CompleteTime":"2026-01-01T00:01:00Z","Secret":"","SecretNamespace":"",'
                b'"ProcessingBlocks":{"Blocks":{}}}')
    listed = backups(daemon, url)
    assert "numeric" in listed, "a cfg with a numeric Size was left out: %r" % listed
    assert listed["numeric"]["size"] == 4194304, listed["numeric"]


def test_bimctl_backups_does_not_echo_a_target_url_s_credentials(daemon):
    secret = "Top/Secret+Key0123"
    for bad in ["s3://AKIDEXAMPLE:%s@bk@us-east-1/prefix/" % secret,
                "vfs://user:%s@/srv/backups" % secret]:
        rc, out, err = daemon.bimctl("backups", bad)
        assert rc == 1, (rc, out, err)
        assert "Top/Secret" not in err and "Top/Secret" not in out, \
            "bimctl echoed the URL's credentials: %r" % err
        assert err.startswith("bimctl: ") and "credentials" in err, err


def test_a_backup_cut_short_is_not_complete_and_is_done_again(daemon, image, target, tmp_path):
    path, digest = image
    url = "vfs://%s" % target
    store = lhbackup.VfsStore(target)
    # what a crash after the initial record leaves: that record and a backup lock
    store.write(lhbackup.cfg_path("parrot"),
                b'{"Name":"parrot","Size":"%d","BlockCount":"0","Checksum":"%s","Labels":null,'
                b'"CompressionMethod":"lz4","CreatedTime":"2026-01-01T00:00:00Z",'
                b'"CompleteTime":"","Secret":"","SecretNamespace":"","ProcessingBlocks":null}'
                % (os.path.getsize(path), digest.encode()))
    lhbackup.write_lock(store, "lock-00000000deadbeef", 1)
    assert backups(daemon, url)["parrot"]["completed"] == "", "an incomplete backup is complete"
    rc, out, _ = daemon.bimctl("backups", url)
    assert "(in progress)" in out, out
    expect_ok(backup(daemon, "parrot", url))
    assert wait_backup(daemon, "parrot")["state"] == "complete", \
        "another writer's backup lock (type 1) excluded a backup"
    assert backups(daemon, url)["parrot"]["completed"] != ""
    assert lhbackup.reassemble(store, "parrot", tmp_path / "r.raw") == digest


def test_a_deletion_lock_held_by_another_writer_is_honoured(daemon, image, target):
    url = "vfs://%s" % target
    store = lhbackup.VfsStore(target)
    lock = lhbackup.write_lock(store, "lock-0123456789abcdef", 2)
    expect_ok(backup(daemon, "parrot", url))
    st = wait_backup(daemon, "parrot")
    assert st["state"] == "error" and "lock-0123456789abcdef" in st["error"], st
    assert not store.exists(lhbackup.cfg_path("parrot")), "a cfg was written under the lock"
    assert [p for p in store.files() if p.endswith(".lck")] == [lock], \
        "the refused backup left its own lock file"
    old = time.time() - 200  # older than LOCK_DURATION (150 s): expired
    os.utime(target / lock, (old, old))
    expect_ok(backup(daemon, "parrot", url))
    assert wait_backup(daemon, "parrot")["state"] == "complete", "an expired lock was honoured"


def end_line(daemon, name):
    """The log line that ends the backup of name."""
    lines = [ln for ln in daemon.log(tail=10**6).splitlines()
             if "image=%s " % name in ln and "backup to" in ln and " complete:" in ln]
    assert lines, "no log line ends the backup of %s:\n%s" % (name, daemon.log())
    return lines[-1]


LOCAL_FS = {"ext2/ext3", "xfs", "btrfs", "f2fs", "tmpfs", "ramfs", "overlayfs"}


def fs_type(path):
    return subprocess.run(["stat", "-f", "-c", "%T", str(path)], capture_output=True,
                          text=True, check=True).stdout.strip()


def test_with_no_deletion_lock_a_local_target_s_lock_is_taken_without_the_wait(daemon, image,
                                                                                target):
    """A local file system lists a lock file as soon as it is written: when the lock
    directory holds no lock of another type, the 2 s wait protects against nothing."""
    if fs_type(target) not in LOCAL_FS:
        pytest.skip("the test's directory is on %s, not a local file system" % fs_type(target))
    url = "vfs://%s" % target
    store = lhbackup.VfsStore(target)
    other = lhbackup.write_lock(store, "lock-00000000feedf00d", 1)  # a backup: no conflict
    expect_ok(backup(daemon, "parrot", url))
    assert wait_backup(daemon, "parrot")["state"] == "complete"
    assert end_line(daemon, "parrot").endswith("the lock taken at once"), \
        end_line(daemon, "parrot")
    assert [p for p in store.files() if p.endswith(".lck")] == [other], \
        "the backup's own lock file was left, or another writer's removed"


def test_a_deletion_lock_that_comes_after_ours_is_waited_for_then_given_way(daemon, image,
                                                                           target):
    """A deletion's lock in the directory takes the backup through the protocol's wait;
    one that comes after ours (not acquired, younger) then gives way to it."""
    url = "vfs://%s" % target
    store = lhbackup.VfsStore(target)
    lock = lhbackup.write_lock(store, "lock-0000000000000001", 2, acquired=False)
    later = time.time() + 100  # younger than any lock written now, and not expired
    os.utime(target / lock, (later, later))
    expect_ok(backup(daemon, "parrot", url))
    assert wait_backup(daemon, "parrot")["state"] == "complete", \
        "a deletion lock that comes after the backup's excluded it"
    assert end_line(daemon, "parrot").endswith("after the protocol's 2 s wait"), \
        "a deletion lock in the directory did not make the backup wait: %s" % \
        end_line(daemon, "parrot")
    assert [p for p in store.files() if p.endswith(".lck")] == [lock]


def tmp_files(root):
    return [os.path.join(d, f) for d, _, files in os.walk(root) for f in files
            if f.startswith(".tmp-")]


def test_blocks_are_in_place_once_complete_and_a_refused_backup_leaves_no_tmp_file(
        daemon, image, target, tmp_path):
    """On vfs the blocks are written to tmp files made durable and renamed in batches:
    once complete every block the cfg names is in place; a backup refused by a deletion
    lock (its early pass wrote meanwhile) leaves no tmp file behind."""
    path, digest = image
    url = "vfs://%s" % target
    store = lhbackup.VfsStore(target)
    lock = lhbackup.write_lock(store, "lock-0123456789abcdef", 2)
    expect_ok(backup(daemon, "parrot", url))
    assert wait_backup(daemon, "parrot")["state"] == "error"
    assert tmp_files(target) == [], "a refused backup left tmp files"
    os.unlink(target / lock)
    expect_ok(backup(daemon, "parrot", url))
    assert wait_backup(daemon, "parrot")["state"] == "complete"
    assert tmp_files(target) == [], "a complete backup left tmp files"
    names = {b["BlockChecksum"] for b in lhbackup.read_cfg(store, "parrot")["Blocks"]}
    assert all(store.exists(lhbackup.block_path(c)) for c in names), "a named block is missing"
    assert lhbackup.reassemble(store, "parrot", tmp_path / "r.raw") == digest


@pytest.mark.skipif(not os.path.isdir("/dev/shm"), reason="no /dev/shm")
def test_a_target_on_tmpfs_which_refuses_o_direct_is_read_back(daemon, image, tmp_path):
    """Blocks go around the page cache (O_DIRECT) where the file system takes it; tmpfs
    does not, and gets them through the page cache."""
    path, digest = image
    root = tempfile.mkdtemp(dir="/dev/shm", prefix="bimfs-test-target.")
    try:
        expect_ok(backup(daemon, "parrot", "vfs://%s" % root))
        assert wait_backup(daemon, "parrot")["state"] == "complete"
        assert tmp_files(root) == []
        assert lhbackup.reassemble(lhbackup.VfsStore(Path(root)), "parrot",
                                   tmp_path / "r.raw") == digest
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_bad_targets_and_arguments_are_invalid_argument(daemon, image, target):
    for bad in ["ftp://host/x", "vfs://host/x", "vfs://%s/missing" % target, "relative/path",
                "s3://bk@us-east-1/prefix/"]:  # s3: this daemon has no AWS credentials
        r = backup(daemon, "parrot", bad)
        expect_error(r, "invalid_argument")
        assert r["error"]["message"].startswith("parrot: "), r
        expect_error(daemon.request({"op": "backups", "target": bad}), "invalid_argument")
    expect_error(backup(daemon, "parrot", "vfs://%s" % target, compression="zstd"),
                 "invalid_argument")
    expect_error(backup(daemon, "parrot", "vfs://%s" % target, labels={"k": 1}),
                 "invalid_argument")
    expect_error(backup(daemon, "nosuch", "vfs://%s" % target), "not_found")
    expect_error(daemon.request({"op": "backup-status", "name": "nosuch"}), "not_found")
    expect_error(daemon.request({"op": "backup", "name": "parrot"}), "invalid_argument")
    assert lhbackup.VfsStore(target).files() == [], "a refused backup wrote to the target"


def test_credentials_in_a_target_url_are_refused_and_never_shown(daemon, image, target):
    secret = "Top/Secret+Key0123"  # AWS secrets hold '/' and '+'
    for bad in ["s3://AKIDEXAMPLE:%s@bk@us-east-1/prefix/" % secret,
                "s3://AKIDEXAMPLE:%s@us-east-1/prefix/" % secret,
                "vfs://user:%s@%s" % (secret, target),
                "nfs://user:%s@server:/export" % secret]:
        reqs = [{"op": "backup", "name": "parrot", "target": bad},
                {"op": "backups", "target": bad}]
        if not bad.startswith("nfs:"):  # a restore from nfs is checked when its job runs
            reqs.append({"op": "create", "name": "restored",
                         "source": {"type": "restore", "url": bad + "?backingImage=parrot"}})
        for req in reqs:
            r = daemon.request(req)
            expect_error(r, "invalid_argument")
            assert secret not in json.dumps(r) and "Top/Secret" not in json.dumps(r), \
                "the reply shows the URL's credentials: %r" % r
            assert "credentials" in r["error"]["message"], \
                "the refusal does not name its cause: %r" % r
    assert "Secret+Key" not in daemon.log(tail=10**6) and "Top/Secret" not in \
        daemon.log(tail=10**6), "a target URL's credentials reached the log"
    assert lhbackup.VfsStore(target).files() == [], "a refused backup wrote to the target"


def test_an_s3_target_without_a_bucket_says_so(daemon, image):
    r = backup(daemon, "parrot", "s3:///prefix/")
    expect_error(r, "invalid_argument")
    assert "no bucket" in r["error"]["message"], "the cause is not the missing bucket: %r" % r


def test_an_image_that_is_not_ready_is_busy(daemon, target):
    with daemon.in_progress("busy"):
        expect_error(backup(daemon, "busy", "vfs://%s" % target), "busy")


# ---------------------------------------------------------------- s3

URL = "s3://bk@us-east-1/longhorn/"


@pytest.fixture
def s3(monkeypatch):
    srv = S3Server(secret=SECRET).start()
    for k in list(os.environ):
        if k.startswith("AWS_") or k.lower() in ("http_proxy", "https_proxy", "all_proxy"):
            monkeypatch.delenv(k)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", srv.key_id)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", srv.secret)
    monkeypatch.setenv("AWS_ENDPOINTS", srv.endpoint)
    yield srv
    if srv.hold:
        srv.hold[1].set()
    srv.stop()


@pytest.fixture
def s3_daemon(s3, daemon_factory):
    return daemon_factory(name="s3d")  # started with the AWS_* environment


def test_a_backup_to_s3_is_read_back(s3, s3_daemon, tmp_path):
    path = tmp_path / "img.raw"
    digest = make_file(path, LAYOUT, seed=9)
    s3_daemon.add_ready("parrot", path)
    rc, out, err = s3_daemon.bimctl("backup", "parrot", "--to", URL, "--wait")
    assert rc == 0, err
    store = lhbackup.S3Store(s3, "longhorn")
    lhbackup.check_cfg_types(lhbackup.read_cfg(store, "parrot"), complete=True)
    assert lhbackup.reassemble(store, "parrot", tmp_path / "r.raw") == digest
    assert sorted(backups(s3_daemon, URL)) == ["parrot"]
    assert s3.rejected == [], "requests were refused: %s" % s3.rejected
    assert SECRET not in s3_daemon.log(tail=10**6), "the secret reached the log"
    assert SECRET not in out + err


def test_a_missing_bucket_or_a_dead_endpoint_is_invalid_argument(s3, s3_daemon, tmp_path,
                                                                 monkeypatch):
    path = tmp_path / "img.raw"
    make_file(path, LAYOUT, seed=3)
    s3_daemon.add_ready("parrot", path)
    r = backup(s3_daemon, "parrot", "s3://nobucket@us-east-1/longhorn/")
    expect_error(r, "invalid_argument")
    assert "NoSuchBucket" in r["error"]["message"], r
    expect_error(s3_daemon.request({"op": "backups", "target": "s3://nobucket@us-east-1/x/"}),
                 "invalid_argument")
    s3.stop()  # the endpoint is dead now
    r = backup(s3_daemon, "parrot", URL)
    expect_error(r, "invalid_argument")
    assert "refused" in r["error"]["message"].lower(), r
    assert SECRET not in str(r)


def hold_blocks(s3, daemon, tmp_path, name="parrot"):
    """Start a backup whose block writes wait: returns (event, digest) once one waits and
    the backup holds its lock and has written its initial record (block writes may start
    before the lock is taken: the blocks are content-addressed)."""
    path = tmp_path / (name + ".raw")
    digest = make_file(path, LAYOUT, seed=11)
    daemon.add_ready(name, path)
    s3.hold = (".blk", threading.Event())
    expect_ok(backup(daemon, name, URL))
    store = lhbackup.S3Store(s3, "longhorn")
    deadline = time.monotonic() + 60
    while s3.held == 0 or not store.exists(lhbackup.cfg_path(name)):
        assert time.monotonic() < deadline, \
            "no block write reached the server, or no initial record: %s" % store.files()
        time.sleep(0.05)
    return s3.hold[1], digest


def test_a_running_backup_holds_its_lock_and_the_initial_record(s3, s3_daemon, tmp_path):
    release, _ = hold_blocks(s3, s3_daemon, tmp_path)
    store = lhbackup.S3Store(s3, "longhorn")
    lhbackup.check_cfg_types(lhbackup.read_cfg(store, "parrot"), complete=False)
    locks = [p for p in store.files() if p.startswith(lhbackup.lock_dir() + "/lock-")]
    assert len(locks) == 1 and locks[0].endswith(".lck"), store.files()
    name = locks[0].rsplit("/", 1)[1][:-4]
    assert store.read(locks[0]) == lhbackup.lock_text(name, 1, True), store.read(locks[0])
    expect_error(backup(s3_daemon, "parrot", URL), "busy")  # one backup per image at a time
    assert backups(s3_daemon, URL)["parrot"]["completed"] == ""
    release.set()
    assert wait_backup(s3_daemon, "parrot")["state"] == "complete"
    assert not [p for p in store.files() if p.endswith(".lck")], "the lock was not released"


def test_another_writer_backing_up_the_same_name_meanwhile_is_not_overwritten(s3, s3_daemon,
                                                                              tmp_path):
    """Backup locks (type 1) do not exclude each other: another daemon (or Longhorn) may
    back up the same name at once. The one whose initial record is no longer on the target
    does not write its final record over the other's."""
    release, _ = hold_blocks(s3, s3_daemon, tmp_path)
    store = lhbackup.S3Store(s3, "longhorn")
    theirs = (b'{"Name":"parrot","Size":"1048576","BlockCount":"0","Checksum":"%s",'
              b'"Labels":null,"CompressionMethod":"gzip","CreatedTime":"2026-01-01T00:00:00Z",'
              b'"CompleteTime":"","Secret":"","SecretNamespace":"","ProcessingBlocks":null}'
              % (b"ab" * 64))
    store.write(lhbackup.cfg_path("parrot"), theirs)  # the other writer's initial record
    release.set()
    st = wait_backup(s3_daemon, "parrot")
    assert st["state"] == "error" and "another writer" in st["error"], st
    assert store.read(lhbackup.cfg_path("parrot")) == theirs, \
        "the other writer's record was overwritten"
    assert not [p for p in store.files() if p.endswith(".lck")], "the lock was not released"


def test_kill9_mid_backup_is_never_listed_complete_and_a_retry_completes_it(s3, s3_daemon,
                                                                           tmp_path):
    release, digest = hold_blocks(s3, s3_daemon, tmp_path)
    s3_daemon.kill9()
    s3.hold = None
    release.set()
    s3_daemon.start()
    s3_daemon.wait_state("parrot", "ready")
    assert backups(s3_daemon, URL)["parrot"]["completed"] == "", \
        "a backup cut by kill -9 is listed complete"
    expect_ok(backup(s3_daemon, "parrot", URL))
    assert wait_backup(s3_daemon, "parrot")["state"] == "complete"
    store = lhbackup.S3Store(s3, "longhorn")
    lhbackup.check_cfg_types(lhbackup.read_cfg(store, "parrot"), complete=True)
    assert lhbackup.reassemble(store, "parrot", tmp_path / "r.raw") == digest


def test_stopping_the_daemon_ends_a_running_backup_and_releases_its_lock(s3, s3_daemon,
                                                                        tmp_path):
    release, _ = hold_blocks(s3, s3_daemon, tmp_path)

    def release_once_stopping():  # the held block write ends once the daemon is stopping
        deadline = time.monotonic() + 60
        while "info stopping" not in s3_daemon.log(tail=10**6) and time.monotonic() < deadline:
            time.sleep(0.05)
        release.set()

    t = threading.Thread(target=release_once_stopping)
    t.start()
    s3_daemon.stop()  # exit status 0, within the stop timeout
    t.join()
    store = lhbackup.S3Store(s3, "longhorn")
    assert lhbackup.read_cfg(store, "parrot")["CompleteTime"] == "", \
        "a backup stopped before its end was recorded complete"
    assert not [p for p in store.files() if p.endswith(".lck")], "the lock file was left"


class SilentServer:
    """Accepts TCP connections and never answers (a stalled S3 endpoint)."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.held = []
        self.endpoint = "http://127.0.0.1:%d" % self.sock.getsockname()[1]
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.held.append(conn)

    def close(self):
        self.sock.close()
        for c in self.held:
            c.close()


def test_an_s3_endpoint_that_never_answers_is_refused_within_two_minutes(daemon_factory,
                                                                          tmp_path, monkeypatch):
    srv = SilentServer()
    try:
        for k in list(os.environ):
            if k.startswith("AWS_") or k.lower() in ("http_proxy", "https_proxy", "all_proxy"):
                monkeypatch.delenv(k)
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDSILENT")
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
        monkeypatch.setenv("AWS_ENDPOINTS", srv.endpoint)
        d = daemon_factory(name="silent")
        path = tmp_path / "img.raw"
        make_file(path, LAYOUT, seed=4)
        d.add_ready("parrot", path)
        # SPEC §4: a source that keeps stalling fails within 2 minutes; the backup's
        # check of the target answers within that bound, with the cause
        with Client(d.sock, timeout=120) as c:
            r = c.request({"op": "backup", "name": "parrot", "target": URL})
        expect_error(r, "invalid_argument")
        assert "slow" in r["error"]["message"].lower(), r
        assert srv.held, "the daemon never reached the endpoint"
    finally:
        srv.close()


def test_blocks_stored_before_the_lock_are_asked_for_again_under_it(s3, s3_daemon, tmp_path):
    """The early pass stores blocks while the lock protocol waits; a deletion's garbage
    collection may remove them before the lock is held, so the store pass asks again."""
    path = tmp_path / "img.raw"
    digest = make_file(path, LAYOUT, seed=13)
    s3_daemon.add_ready("parrot", path)
    wanted = len(set(expected_offsets(path, os.path.getsize(path))))
    s3.hold = (".lck", threading.Event())  # the lock's first write waits
    expect_ok(backup(s3_daemon, "parrot", URL))
    store = lhbackup.S3Store(s3, "longhorn")
    deadline = time.monotonic() + 60
    while s3.held == 0 or len(store.blocks()) < wanted:
        assert time.monotonic() < deadline, \
            "the blocks were not stored while the lock waited: %s" % store.files()
        time.sleep(0.05)
    for p in store.blocks():  # what a deletion's garbage collection may do meanwhile
        os.remove(s3._file("longhorn/" + p))
    s3.hold[1].set()
    st = wait_backup(s3_daemon, "parrot")
    assert st["state"] == "complete", st
    assert lhbackup.reassemble(store, "parrot", tmp_path / "r.raw") == digest, \
        "the final cfg names blocks the target does not hold"


def test_a_target_whose_block_writes_keep_failing_ends_error_without_trying_every_block(
        s3, s3_daemon, tmp_path):
    path = tmp_path / "img.raw"
    make_file(path, [("data", 64 * MiB)], seed=17)  # 32 blocks with data
    s3_daemon.add_ready("parrot", path)
    s3.fail_puts = (".blk", 503)
    expect_ok(backup(s3_daemon, "parrot", URL))
    st = wait_backup(s3_daemon, "parrot")
    assert st["state"] == "error" and "503" in st["error"], st
    puts = [r for r in s3.requests if r[0] == "PUT" and r[1].endswith(".blk")]
    # each failing write is tried 3 times; up to 8 workers hold one block each when the
    # first failure is known, and the pass under the lock stops at its first block
    assert len(puts) <= 3 * 9, \
        "%d block writes: the backup went on writing every block of a failing target" % len(puts)


def test_a_backup_another_writer_completes_meanwhile_is_not_overwritten(s3, s3_daemon, tmp_path):
    path = tmp_path / "img.raw"
    make_file(path, LAYOUT, seed=19)
    s3_daemon.add_ready("parrot", path)
    s3.hold = (".lck", threading.Event())  # the lock's first write waits
    expect_ok(backup(s3_daemon, "parrot", URL))
    deadline = time.monotonic() + 60
    while s3.held == 0:
        assert time.monotonic() < deadline, "the backup wrote no lock file"
        time.sleep(0.05)
    other = (b'{"Name":"parrot","Size":"1048576","BlockCount":"0","Checksum":"%s","Labels":null,'
             b'"CompressionMethod":"gzip","CreatedTime":"2026-01-01T00:00:00Z",'
             b'"CompleteTime":"2026-01-01T00:01:00Z","Secret":"","SecretNamespace":"",'
             b'"ProcessingBlocks":{"Blocks":{}}}' % (b"ab" * 64))
    s3.put("longhorn/" + lhbackup.cfg_path("parrot"), other)  # another writer completes
    s3.hold[1].set()
    st = wait_backup(s3_daemon, "parrot")
    assert st["state"] == "error" and "already exists" in st["error"], st
    assert s3.get("longhorn/" + lhbackup.cfg_path("parrot")) == other, \
        "a complete backup of another writer was overwritten"
    store = lhbackup.S3Store(s3, "longhorn")
    assert not [p for p in store.files() if p.endswith(".lck")], "the lock file was left"
