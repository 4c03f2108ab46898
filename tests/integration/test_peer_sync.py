"""Peer sync (SPEC §6 `sync`, §7 `bimctl sync`, docs/peer-sync.md): two and
three daemons on 127.0.0.1, each with its own disk and mount."""

import signal
import time

import pytest

from conftest import (MiB, expect_error, expect_ok, make_file, make_random_file, run,
                      sha512_file, wait_until)
from httphelp import (SPARSE_LAYOUT, HeldGet, add_image, allocated, backing_path, metrics, peer,
                      sync, token_file, wait_final)


def expect_synced(receiver, name, uuid, digest, sources):
    """The image on receiver is ready with digest, from sources."""
    img = receiver.wait_state(name, "ready", timeout=120)
    st = img["status"]
    assert st["currentChecksum"] == digest, "synced checksum %s, want %s" % (
        st["currentChecksum"], digest)
    assert img["uuid"] == uuid
    assert img["source"] == "sync:" + ",".join(peer(s) for s in sources), img["source"]
    assert img["expectedChecksum"] == digest, "the source's checksum was not the expectation"
    assert st["senderManagerAddress"] == "", "sender still shown once ready: %r" % (st,)
    assert sha512_file(receiver.mnt / name / "backing") == digest, "the mount shows other bytes"
    return img


@pytest.fixture
def pair(daemon_factory, tmp_path):
    """Daemons a and b; a holds a ready 1 MiB image "img" (uuid u1). Returns (a, b)."""
    a, b = daemon_factory(name="a"), daemon_factory(name="b")
    p = tmp_path / "img.raw"
    make_random_file(p, MiB)
    add_image(a, "img", p, "u1")
    return a, b


def test_bimctl_sync_raw_image(daemon_factory, tmp_path):
    a, b = daemon_factory(name="a"), daemon_factory(name="b")
    p = tmp_path / "img.raw"
    digest = make_random_file(p, 5 * MiB + 512, seed=1)
    add_image(a, "img", p, "u1")
    rc, out, err = b.bimctl("sync", "img", "--uuid", "u1", "--from", peer(a), "--wait")
    assert rc == 0, "bimctl sync --wait: exit %d, stderr %r" % (rc, err)
    img = expect_synced(b, "img", "u1", digest, [a])
    assert img["format"] == "raw" and img["size"] == 5 * MiB + 512


def test_sync_qcow2_image(daemon_factory, tmp_path):
    a, b = daemon_factory(name="a"), daemon_factory(name="b")
    raw_path, q = tmp_path / "g.raw", tmp_path / "g.qcow2"
    make_file(raw_path, [("data", 3 * MiB), ("hole", 13 * MiB)], seed=2)
    run(["qemu-img", "convert", "-f", "raw", "-O", "qcow2", str(raw_path), str(q)])
    digest = sha512_file(q)
    add_image(a, "qc", q, "q1")
    expect_ok(sync(b, "qc", "q1", [a]))
    img = expect_synced(b, "qc", "q1", digest, [a])
    assert img["format"] == "qcow2" and img["virtualSize"] == 16 * MiB, img
    assert sha512_file(b.mnt / "qc" / "raw") == sha512_file(raw_path), "raw view differs"


def test_sync_keeps_a_sparse_image_sparse(daemon_factory, tmp_path):
    a, b = daemon_factory(name="a"), daemon_factory(name="b")
    p = tmp_path / "sparse.raw"
    digest = make_file(p, SPARSE_LAYOUT, seed=3)
    add_image(a, "sp", p, "s1")
    expect_ok(sync(b, "sp", "s1", [a], size=64 * MiB))
    expect_synced(b, "sp", "s1", digest, [a])
    sent, got = allocated(backing_path(a, "sp", "s1")), allocated(backing_path(b, "sp", "s1"))
    assert abs(got - sent) <= MiB, "allocated: receiver %d bytes, sender %d" % (got, sent)


def test_sync_of_existing_image_returns_it_and_other_uuid_is_refused(pair):
    a, b = pair
    expect_ok(sync(b, "img", "u1", [a]))
    b.wait_state("img", "ready")
    again = expect_ok(sync(b, "img", "u1", [a]))
    assert again["status"]["state"] == "ready", "the same sync again: %r" % (again,)
    expect_error(sync(b, "img", "u2", [a]), "already_exists")


def test_sync_of_another_uuid_fails_naming_the_source(pair):
    a, b = pair
    expect_ok(sync(b, "img", "other", [a]))
    img, _ = wait_final(b, "img", 30)
    assert img["status"]["state"] == "failed", img
    msg = img["status"]["errorMsg"]
    assert peer(a) in msg and "uuid u1" in msg, "error does not say why: %r" % msg
    assert b.image_dirs("img") and not (b.image_dir("img", "other") / "backing").exists()


def test_sync_of_wrong_size_fails_and_a_malformed_checksum_is_refused(pair):
    a, b = pair
    expect_ok(sync(b, "img", "u1", [a], size=2 * MiB))
    img, _ = wait_final(b, "img", 30)
    assert img["status"]["state"] == "failed" and "bytes" in img["status"]["errorMsg"], img
    expect_error(sync(b, "im3", "u1", [a], checksum="nope"), "invalid_argument")


def test_sync_with_another_expected_checksum_says_checksum_mismatch(pair):
    """SPEC §3's words, both checksums in full, the source after them."""
    a, b = pair
    have = a.get_raw("img")["status"]["currentChecksum"]
    wrong = "0" * 128
    expect_ok(sync(b, "img", "u1", [a], checksum=wrong))
    img, _ = wait_final(b, "img", 30)
    want = "checksum mismatch: expected %s, got %s" % (wrong, have)
    assert img["status"]["state"] == "failed", img
    assert img["status"]["errorMsg"] == want, \
        "error %r, want %r" % (img["status"]["errorMsg"], want)


def test_sender_killed_mid_transfer_other_source_finishes(daemon_factory, tmp_path):
    a, b, c = daemon_factory(name="a"), daemon_factory(name="b"), daemon_factory(name="c")
    p = tmp_path / "big.raw"
    size = 384 * MiB
    digest = make_random_file(p, size, seed=4)
    add_image(a, "big", p, "b1")
    add_image(b, "big", p, "b1")
    expect_ok(sync(c, "big", "b1", [a, b]))

    def started():
        img = c.get_raw("big")
        return img and 0 < img["status"]["bytesDone"] < size and img
    wait_until(started, 60, "the sync to move bytes")
    a.proc.send_signal(signal.SIGSTOP)  # frozen mid-transfer: its pieces stall
    img = c.get_raw("big")
    assert img["status"]["state"] == "in-progress" and img["status"]["bytesDone"] < size, \
        "the sync ended before the sender could be killed: %r" % (img,)
    a.kill9()
    expect_synced(c, "big", "b1", digest, [a, b])


def test_only_a_dead_source_fails_within_two_minutes(daemon_factory, tmp_path):
    """Default settings: SPEC §4's bound."""
    b = daemon_factory(name="b")
    t0 = time.monotonic()
    expect_ok(sync(b, "img", "u1", ["127.0.0.1:1"]))  # nothing listens there
    img, _ = wait_final(b, "img", 120)
    took = time.monotonic() - t0
    assert img["status"]["state"] == "failed", img
    msg = img["status"]["errorMsg"]
    assert "127.0.0.1:1" in msg and ("connect" in msg.lower() or "refused" in msg.lower()), \
        "the error does not name the dead source and why: %r" % msg
    assert took < 120, "failed only after %.0f s" % took
    assert b.image_dirs("img"), "the failed image's record should stay"


def test_receiver_waits_while_the_source_is_at_its_send_limit(daemon_factory, tmp_path):
    a = daemon_factory(args=["--send-limit", "1"], name="a")
    b = daemon_factory(name="b")
    p = tmp_path / "img.raw"
    digest = make_random_file(p, 32 * MiB, seed=5)
    add_image(a, "img", p, "u1")
    held = HeldGet(a.port, "img")
    try:
        wait_until(lambda: a.get_raw("img")["status"]["sendingReference"] == 1, 10,
                   "the held GET to count")
        expect_ok(sync(b, "img", "u1", [a]))
        wait_until(lambda: metrics(a.port)['bimfs_sends_total{result="refused"}'] >= 2, 20,
                   "the receiver to be refused (503) and to ask again")
        state = b.get_raw("img")["status"]["state"]
        assert state in ("starting", "in-progress"), "while refused the sync is %s" % state
    finally:
        held.close()
    expect_synced(b, "img", "u1", digest, [a])


def test_the_only_source_at_a_low_send_limit_is_asked_as_often_as_it_takes(daemon_factory,
                                                                          tmp_path):
    """A receiver asks its only source over 3 connections (docs/peer-sync.md); one whose
    --send-limit is 1 refuses the second and third (503), and from then on it is asked one
    piece at a time, not refused again and again with a second's pause after each refusal."""
    a = daemon_factory(args=["--send-limit", "1"], name="a")
    b = daemon_factory(name="b")
    p = tmp_path / "img.raw"
    digest = make_random_file(p, 64 * MiB, seed=15)
    add_image(a, "img", p, "u1")
    expect_ok(sync(b, "img", "u1", [a]))
    expect_synced(b, "img", "u1", digest, [a])
    refused = metrics(a.port).get('bimfs_sends_total{result="refused"}', 0)
    assert refused <= 2, "the only source was refused %d times" % refused


def test_token_end_to_end(daemon_factory, tmp_path):
    tok = token_file(tmp_path / "tok", "peer-secret")
    a = daemon_factory(args=["--token-file", tok], name="a")
    b = daemon_factory(args=["--token-file", tok], name="b")
    wrong = daemon_factory(args=["--token-file", token_file(tmp_path / "bad", "guess")],
                           name="w")
    none = daemon_factory(name="n")
    p = tmp_path / "img.raw"
    digest = make_random_file(p, 2 * MiB, seed=6)
    add_image(a, "img", p, "u1")
    expect_ok(sync(b, "img", "u1", [a]))
    expect_synced(b, "img", "u1", digest, [a])
    for d in (wrong, none):
        expect_ok(sync(d, "img", "u1", [a]))
        img, _ = wait_final(d, "img", 30)
        assert img["status"]["state"] == "failed" and "401" in img["status"]["errorMsg"], img


def test_three_daemons_chain_and_two_sources(daemon_factory, tmp_path):
    """b syncs from a; c syncs from a and b together (pieces spread over both)."""
    a, b, c = daemon_factory(name="a"), daemon_factory(name="b"), daemon_factory(name="c")
    p = tmp_path / "img.raw"
    digest = make_file(p, [("data", 40 * MiB), ("hole", 24 * MiB), ("data", 8 * MiB)], seed=7)
    add_image(a, "img", p, "u1")
    expect_ok(sync(b, "img", "u1", [a]))
    expect_synced(b, "img", "u1", digest, [a])
    expect_ok(sync(c, "img", "u1", [a, b]))
    expect_synced(c, "img", "u1", digest, [a, b])
    served = [metrics(d.port)['bimfs_image_sent_bytes_total{name="img",uuid="u1"}']
              for d in (a, b)]
    assert all(s > 0 for s in served), "one source served nothing: %r" % (served,)
