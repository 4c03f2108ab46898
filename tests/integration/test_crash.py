"""kill -9 in the middle of an upload, then restart on the same disk (SPEC §2):
the interrupted image is never ready (failed with a reason, or gone), no
backing.tmp is left, and the other images are still ready with their bytes."""

import os
import time

import pytest

from conftest import MiB, PipeFeeder, expect_ok, make_random_file, sha512_file

GiB = 1024 * MiB


@pytest.fixture
def keeper(daemon, tmp_path):
    p = tmp_path / "keeper.raw"
    digest = make_random_file(p, 8 * MiB, seed=99)
    daemon.add_ready("keeper", p, uuid="k1")
    return digest


def tmp_files(daemon):
    return sorted(str(p) for p in daemon.images_dir.rglob("backing.tmp"))


def check_after_restart(daemon, keeper_digest):
    deadline = time.monotonic() + 30
    while True:
        img = daemon.get_raw("big")
        state = img and img["status"]["state"]
        if state in (None, "failed"):
            break
        assert state != "ready", "an interrupted upload is ready after restart: %r" % img
        assert time.monotonic() < deadline, \
            "interrupted upload still %r 30s after restart (want failed or gone)" % state
        time.sleep(0.1)
    if img is not None:
        assert img["status"]["errorMsg"], "interrupted upload failed without a reason"
        assert not (daemon.mnt / "big" / "backing").exists()
    wait_no_tmp = time.monotonic() + 10
    while tmp_files(daemon):
        assert time.monotonic() < wait_no_tmp, "backing.tmp left after restart: %r" % (
            tmp_files(daemon))
        time.sleep(0.1)
    for d in daemon.image_dirs("big"):
        assert not (d / "backing").exists(), "an interrupted upload left a backing in %s" % d
    k = daemon.get_raw("keeper")
    assert k is not None and k["status"]["state"] == "ready", "keeper after restart: %r" % k
    assert k["status"]["currentChecksum"] == keeper_digest
    assert sha512_file(daemon.mnt / "keeper" / "backing") == keeper_digest, \
        "the other image's bytes changed"


def test_kill9_during_upload_from_pipe(daemon, keeper):
    feeder = PipeFeeder(block=os.urandom(4 * MiB), total=3 * GiB // 2)
    reply = daemon.upload_fd("big", feeder.r, uuid="b1")
    feeder.close_read_end()
    expect_ok(reply)
    feeder.start()
    tmp = daemon.image_dir("big", "b1") / "backing.tmp"
    deadline = time.monotonic() + 60
    while True:
        img = daemon.get_raw("big")
        state = img["status"]["state"]
        assert state in ("pending", "starting", "in-progress"), "upload is %r" % img["status"]
        if state == "in-progress" and feeder.written >= 64 * MiB and tmp.exists() and \
                tmp.stat().st_size > 0:
            break
        assert time.monotonic() < deadline, "upload never got going: %r, %d bytes fed" % (
            img["status"], feeder.written)
        time.sleep(0.05)
    daemon.kill9()
    feeder.stop()
    daemon.start()
    check_after_restart(daemon, keeper)


def test_kill9_during_upload_from_file(daemon, keeper, tmp_path):
    src = tmp_path / "big.raw"
    block = os.urandom(4 * MiB)
    with open(src, "wb") as f:
        for _ in range(3 * GiB // 2 // len(block)):
            f.write(block)
    expect_ok(daemon.upload_file("big", src, uuid="b1"))
    tmp = daemon.image_dir("big", "b1") / "backing.tmp"
    caught = False
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        img = daemon.get_raw("big")
        state = img["status"]["state"]
        if state == "in-progress" and tmp.exists() and tmp.stat().st_size > 0:
            caught = True
            break
        if state in ("ready", "failed"):
            break
        time.sleep(0.01)
    if not caught:
        pytest.skip("the 1.5 GiB upload was never seen in progress (state %r)" % state)
    daemon.kill9()
    os.unlink(src)
    daemon.start()
    check_after_restart(daemon, keeper)
