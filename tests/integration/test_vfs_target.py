"""The vfs backup target (backup/vfs.c, bk_vfs_ops) and the dispatch on the
URL's scheme (backup/target.c), through bk_target_tool: one operation of the
target per run, on a directory of the test. Like test_s3_target.py for s3.
"""

import os
import time

import pytest

from targettool import TOOL, failed, ok, tool

pytestmark = pytest.mark.skipif(not TOOL, reason="BK_TARGET_TOOL not set (run through meson)")

BLOCK = "backupstore/backing-images/blocks/ab/cd/abcd0123.blk"


@pytest.fixture
def root(tmp_path):
    d = tmp_path / "target"
    d.mkdir()
    return d


def url(root):
    return "vfs://" + str(root)


def test_write_read_exists_mtime_round_trip(root):
    data = os.urandom(2 * 1024 * 1024 + 12345)
    ok(tool(url(root), "write", BLOCK, data=data))
    assert (root / BLOCK).read_bytes() == data, "the file is not the bytes written"
    assert ok(tool(url(root), "read", BLOCK)) == data, "read gave other bytes"
    assert ok(tool(url(root), "exists", BLOCK)) == b"1\n"
    assert ok(tool(url(root), "exists", BLOCK + ".not")) == b"0\n"
    assert ok(tool(url(root), "exists", "backupstore/backing-images")) == b"0\n", \
        "a directory is not a file"
    mtime = int(ok(tool(url(root), "mtime", BLOCK)))
    assert mtime == int(os.stat(root / BLOCK).st_mtime), "mtime is not the file's"
    ok(tool(url(root), "write", "backupstore/empty", data=b""))
    assert ok(tool(url(root), "read", "backupstore/empty")) == b""


def test_write_replaces_and_leaves_no_tmp_file(root):
    ok(tool(url(root), "write", BLOCK, data=b"first"))
    ok(tool(url(root), "write", BLOCK, data=b"second"))
    assert (root / BLOCK).read_bytes() == b"second"
    assert os.listdir(root / os.path.dirname(BLOCK)) == ["abcd0123.blk"], \
        "a tmp file was left beside the block"


def test_a_query_is_not_part_of_the_target(root):
    ok(tool(url(root) + "?backingImage=parrot", "write", "backupstore/x", data=b"x"))
    assert (root / "backupstore/x").read_bytes() == b"x"


def test_many_writers_on_one_target(root):
    ok(tool(url(root), "write-many", "backupstore/blocks", 25, 4))
    names = ok(tool(url(root), "list", "backupstore/blocks")).decode().split("\n")[:-1]
    assert sorted(names) == ["obj-%04d" % i for i in range(25)], names
    assert (root / "backupstore/blocks/obj-0007").read_bytes() == b"object 7"


def test_list_gives_direct_children_files_and_directories(root):
    ok(tool(url(root), "write", "backupstore/d/a", data=b"a"))
    ok(tool(url(root), "write", "backupstore/d/sub/deeper/x", data=b"x"))
    ok(tool(url(root), "write", "backupstore/dX", data=b"not a child"))
    names = ok(tool(url(root), "list", "backupstore/d")).decode().split("\n")[:-1]
    assert sorted(names) == ["a", "sub"], names
    names = ok(tool(url(root), "list", "backupstore/d/")).decode().split("\n")[:-1]
    assert sorted(names) == ["a", "sub"], "a trailing / changes the listing: %s" % names


def test_list_of_a_missing_directory_is_empty(root):
    assert ok(tool(url(root), "list", "backupstore/nothing/here")) == b""


def test_read_of_a_missing_file_is_enoent_naming_it(root):
    err = failed(tool(url(root), "read", "backupstore/missing.cfg"))
    assert "error -2:" in err and "backupstore/missing.cfg" in err, err


def test_read_larger_than_asked_is_refused(root):
    ok(tool(url(root), "write", "backupstore/big", data=b"x" * 1000))
    err = failed(tool(url(root), "read", "backupstore/big", 999))
    assert "error -27:" in err, "not EFBIG: " + err
    assert ok(tool(url(root), "read", "backupstore/big", 1000)) == b"x" * 1000


def test_remove_takes_the_file_and_everything_under_it_then_empty_parents(root):
    ok(tool(url(root), "write", "backupstore/vol/a/b/one", data=b"1"))
    ok(tool(url(root), "write", "backupstore/vol/a/b/c/two", data=b"2"))
    ok(tool(url(root), "write", "backupstore/keep", data=b"k"))
    ok(tool(url(root), "remove", "backupstore/vol/a/b"))
    assert not (root / "backupstore/vol").exists(), "empty parents were left"
    assert (root / "backupstore").is_dir(), "the backupstore base was pruned"
    assert (root / "backupstore/keep").read_bytes() == b"k"
    ok(tool(url(root), "remove", "backupstore/never/was"))  # missing is fine
    ok(tool(url(root), "write", "backupstore/one", data=b"1"))
    ok(tool(url(root), "remove", "backupstore/one"))
    assert not (root / "backupstore/one").exists()


def test_now_is_the_local_clock(root):
    before = int(time.time())
    now = int(ok(tool(url(root), "now")))
    assert before <= now <= int(time.time()), "now %d is not the local clock" % now


def test_paths_escaping_the_root_are_refused(root):
    for bad in ["../outside", "backupstore/../../x", "/etc/passwd", "a//b"]:
        err = failed(tool(url(root), "write", bad, data=b"x"))
        assert "error -22:" in err and "bad path" in err, "%s: %s" % (bad, err)
    assert not (root.parent / "outside").exists()


def test_bad_vfs_urls_are_clear(root):
    err = failed(tool("vfs://host/path", "list", ""))
    assert "error -22:" in err and "absolute" in err, err
    err = failed(tool("vfs://" + str(root / "missing"), "list", ""))
    assert "error -2:" in err and "missing" in err, err
    (root / "file").write_bytes(b"")
    err = failed(tool("vfs://" + str(root / "file"), "list", ""))
    assert "not a directory" in err, err


def test_unknown_schemes_are_invalid_argument(root):
    for bad in ["ftp://x/y", "azblob://c/p", "/plain/path", "vfs:/x", ""]:
        err = failed(tool(bad, "list", ""))
        assert "error -22:" in err, "%r: %s" % (bad, err)
    err = failed(tool("cifs://server/share", "list", ""))
    assert "'cifs://'" in err and "vfs://" in err, "the cause is not named: " + err


def test_nfs_that_cannot_mount_is_a_clear_error(root):
    # 192.0.2.1 is TEST-NET-1: never a server. Whether mount.nfs4 is missing, we are not
    # root, or the server does not answer, the error names the target and says why.
    err = failed(tool("nfs://192.0.2.1:/export?nfsOptions=timeo=1,retrans=0", "list", "",
                      timeout=300))
    assert "error -22:" in err and "nfs://192.0.2.1:/export" in err and "mount" in err, err
    err = failed(tool("nfs://no-export-here", "list", ""))
    assert "nfs://server:/export" in err, err
