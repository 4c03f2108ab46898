"""The mounted tree (SPEC §5): layout, xattrs, read-only, open files survive delete."""

import errno
import os
import stat
import subprocess
from pathlib import Path

import pytest

from conftest import XATTRS, expect_ok, make_file, run, sha512_file, xattr


@pytest.fixture
def ready(daemon, small_image):
    """A daemon with one ready raw image `img` (uuid u-1); returns (daemon, image, src)."""
    src, _ = small_image
    img = daemon.add_ready("img", src, uuid="u-1")
    return daemon, img, src


def test_root_lists_every_image(ready, tmp_path):
    d, _, src = ready
    d.add_ready("second", src)
    assert sorted(os.listdir(d.mnt)) == ["img", "second"]


def test_ready_image_dir_holds_backing_and_raw(ready):
    d, img, _ = ready
    assert stat.S_ISDIR(os.stat(d.mnt / "img").st_mode)
    assert sorted(os.listdir(d.mnt / "img")) == ["backing", "raw"]
    for f in ("backing", "raw"):
        st = os.stat(d.mnt / "img" / f)
        assert stat.S_ISREG(st.st_mode), "%s is not a regular file" % f
    assert os.path.getsize(d.mnt / "img" / "backing") == img["size"]
    assert os.path.getsize(d.mnt / "img" / "raw") == img["virtualSize"]


def test_raw_of_raw_image_is_the_same_bytes(ready):
    d, img, src = ready
    digest = img["status"]["currentChecksum"]
    assert sha512_file(d.mnt / "img" / "raw") == digest
    assert sha512_file(d.mnt / "img" / "backing") == digest


def test_unknown_name_is_enoent(daemon):
    with pytest.raises(FileNotFoundError):
        os.stat(daemon.mnt / "nothing")
    with pytest.raises(FileNotFoundError):
        os.stat(daemon.mnt / "nothing" / "backing")


def test_image_in_progress_is_listed_without_files(daemon):
    with daemon.in_progress("busy"):
        assert "busy" in os.listdir(daemon.mnt), "an image in progress is not in the tree"
        assert os.listdir(daemon.mnt / "busy") == [], \
            "an image in progress shows files: %r" % os.listdir(daemon.mnt / "busy")
        assert xattr(daemon.mnt / "busy", "user.bim.state") in ("starting", "in-progress")
        with pytest.raises(FileNotFoundError):
            os.stat(daemon.mnt / "busy" / "backing")


def test_failed_image_is_listed_with_its_error_and_no_files(daemon, tmp_path):
    src = tmp_path / "odd.raw"
    make_file(src, [("data", 1000)])
    expect_ok(daemon.upload_file("odd", src))
    img = daemon.wait_state("odd", "failed")
    assert os.listdir(daemon.mnt / "odd") == []
    assert xattr(daemon.mnt / "odd", "user.bim.state") == "failed"
    assert xattr(daemon.mnt / "odd", "user.bim.error") == img["status"]["errorMsg"] != ""


@pytest.mark.parametrize("node", ["", "backing", "raw"])
def test_xattrs_list_all_names(ready, node):
    d, _, _ = ready
    names = set(os.listxattr(d.mnt / "img" / node))
    missing = set(XATTRS) - names
    assert not missing, "xattrs missing on img/%s: %r" % (node, sorted(missing))


@pytest.mark.parametrize("node", ["", "backing", "raw"])
def test_xattr_values_match_the_image(ready, node):
    d, img, _ = ready
    p = d.mnt / "img" / node
    st = img["status"]
    want = {
        "user.bim.state": "ready",
        "user.bim.uuid": "u-1",
        "user.bim.size": str(img["size"]),
        "user.bim.virtual_size": str(img["virtualSize"]),
        "user.bim.real_size": str(img["realSize"]),
        "user.bim.format": "raw",
        "user.bim.expected_checksum": "",
        "user.bim.checksum": st["currentChecksum"],
        "user.bim.progress": "100",
        "user.bim.error": "",
        "user.bim.source": "upload",
        "user.bim.sending_reference": "0",
        "user.bim.sender": "",
        "user.bim.verified": "sha512",
        "user.bim.scrubbed": "",
    }
    got = {k: xattr(p, k) for k in want}
    assert got == want


def test_xattr_values_have_no_trailing_newline(ready):
    d, _, _ = ready
    for name in XATTRS:
        v = os.getxattr(d.mnt / "img", name)
        assert not v.endswith(b"\n") and b"\0" not in v, "%s = %r" % (name, v)


def test_unknown_xattr_is_enodata(ready):
    d, _, _ = ready
    with pytest.raises(OSError) as e:
        os.getxattr(d.mnt / "img", "user.bim.nonsense")
    assert e.value.errno == errno.ENODATA


def test_root_xattrs_disk_uuid_and_version(daemon_factory):
    d = daemon_factory(args=["--disk-uuid", "disk-1234"])
    assert xattr(d.mnt, "user.bim.disk_uuid") == "disk-1234"
    version = expect_ok(d.request({"op": "version"}))["version"]
    assert xattr(d.mnt, "user.bim.version") == version
    assert {"user.bim.disk_uuid", "user.bim.version"} <= set(os.listxattr(d.mnt))


def test_getfattr_dump_shows_every_xattr(ready):
    d, img, _ = ready
    out = run(["getfattr", "-d", str(d.mnt / "img")]).stdout
    for name in XATTRS:
        assert any(line == name or line.startswith(name + "=") for line in out.splitlines()), \
            "getfattr -d does not show %s:\n%s" % (name, out)
    assert 'user.bim.state="ready"' in out
    assert 'user.bim.checksum="%s"' % img["status"]["currentChecksum"] in out


def erofs_ops(mnt):
    img = mnt / "img"
    backing = img / "backing"
    return {
        "open-write": lambda: os.open(backing, os.O_WRONLY),
        "open-rdwr": lambda: os.open(backing, os.O_RDWR),
        "open-trunc": lambda: os.open(backing, os.O_RDONLY | os.O_TRUNC),
        "create-in-image": lambda: os.open(img / "new", os.O_CREAT | os.O_WRONLY, 0o644),
        "create-in-root": lambda: os.open(mnt / "new", os.O_CREAT | os.O_WRONLY, 0o644),
        "unlink": lambda: os.unlink(backing),
        "rmdir": lambda: os.rmdir(img),
        "rename-file": lambda: os.rename(backing, img / "moved"),
        "rename-dir": lambda: os.rename(img, mnt / "moved"),
        "chmod": lambda: os.chmod(backing, 0o666),
        "chmod-root": lambda: os.chmod(mnt, 0o777),
        "chown": lambda: os.chown(backing, 1, 1),
        "utime": lambda: os.utime(backing, (0, 0)),
        "setxattr": lambda: os.setxattr(backing, "user.bim.state", b"ready"),
        "setxattr-new": lambda: os.setxattr(img, "user.other", b"x"),
        "setxattr-root": lambda: os.setxattr(mnt, "user.bim.disk_uuid", b"x"),
        "removexattr": lambda: os.removexattr(img, "user.bim.state"),
        "mkdir": lambda: os.mkdir(mnt / "newdir"),
        "mkdir-in-image": lambda: os.mkdir(img / "newdir"),
        "truncate": lambda: os.truncate(backing, 0),
        "symlink": lambda: os.symlink("img", mnt / "link"),
        "link": lambda: os.link(backing, img / "hard"),
        "mknod": lambda: os.mknod(mnt / "fifo", 0o600 | stat.S_IFIFO),
    }


OPS = sorted(erofs_ops(Path("/")))


@pytest.mark.parametrize("op", OPS)
def test_writes_are_erofs(ready, op):
    d, img, _ = ready
    fn = erofs_ops(d.mnt)[op]
    with pytest.raises(OSError) as e:
        fd = fn()
        if isinstance(fd, int):
            os.close(fd)
    assert e.value.errno == errno.EROFS, "%s gave %s, want EROFS" % (
        op, errno.errorcode.get(e.value.errno, e.value.errno))
    assert sha512_file(d.mnt / "img" / "backing") == img["status"]["currentChecksum"]


def test_open_file_stays_readable_after_delete(ready):
    d, img, src = ready
    data = src.read_bytes()
    fb = open(d.mnt / "img" / "backing", "rb")
    fr = open(d.mnt / "img" / "raw", "rb")
    try:
        head = fb.read(4096)
        rc, _, err = d.bimctl("delete", "img")
        assert rc == 0, "delete: exit %d, %r" % (rc, err)
        assert not (d.mnt / "img").exists(), "deleted image still in the tree"
        assert not d.image_dir("img", "u-1").exists(), "deleted image still on disk"
        rest = fb.read()
        assert head + rest == data, "an open backing read different bytes after delete"
        assert fr.read() == data, "an open raw read different bytes after delete"
    finally:
        fb.close()
        fr.close()


def test_new_image_appears_in_a_listed_root(daemon, small_image):
    src, _ = small_image
    assert os.listdir(daemon.mnt) == []
    daemon.add_ready("later", src)
    assert os.listdir(daemon.mnt) == ["later"], "root listing not refreshed after create"
    assert sorted(os.listdir(daemon.mnt / "later")) == ["backing", "raw"]


def test_deleted_image_disappears_from_the_tree(ready):
    d, _, _ = ready
    os.listdir(d.mnt / "img")
    rc, _, err = d.bimctl("delete", "img")
    assert rc == 0, err
    assert os.listdir(d.mnt) == []
    with pytest.raises(FileNotFoundError):
        os.stat(d.mnt / "img" / "backing")


def test_reading_whole_tree_with_cp(ready, tmp_path):
    """A plain user tool (cp) copies the backing out of the mount."""
    d, img, _ = ready
    out = tmp_path / "copy"
    subprocess.run(["cp", str(d.mnt / "img" / "backing"), str(out)], check=True, timeout=60)
    assert sha512_file(out) == img["status"]["currentChecksum"]

