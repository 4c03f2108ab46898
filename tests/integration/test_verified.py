"""How a ready image was verified (SPEC §9 "Verification", §5): `status.verified`
and `user.bim.verified` say `sha512` for an image whose SHA-512 this daemon
computed (download, upload, clone of such an image, a peer sync with
`--verify sha512`), `pieces` for a peer sync that checked every piece and
took the SHA-512 from its source, `adopted` for an image found on disk
whose cfg does not say; empty while not ready. The value, and the last
scrub (`status.lastScrub`, `user.bim.scrubbed`), are kept in the cfg, so a
restart does not change them."""

import json
import os

from conftest import MiB, expect_ok, go_time, make_file, xattr
from faultserver import FaultServer
from httphelp import sync

NO_SCRUB = ["--scrub-interval", "0"]  # the scrub would turn `pieces` into `sha512`


def verified(d, name):
    img = d.get(name)
    return img["status"]["verified"], xattr(d.mnt / name, "user.bim.verified")


def synced(peer_pair, src, receiver_args):
    """A receiver that synced src (as img, u1) from a source daemon; ready."""
    a, b = peer_pair(src, receiver_args=receiver_args)
    expect_ok(sync(b, "img", "u1", [a]))
    b.wait_state("img", "ready")
    return b


def test_download_is_verified_by_sha512(daemon, tmp_path):
    p = tmp_path / "img.raw"
    make_file(p, [("data", MiB), ("hole", MiB)], seed=4)
    srv = FaultServer().start()
    try:
        srv.add("/img.raw", p.read_bytes())
        expect_ok(daemon.create("dl", {"type": "download", "url": srv.url("/img.raw")}, uuid="u1"))
        daemon.wait_state("dl", "ready")
    finally:
        srv.stop()
    assert verified(daemon, "dl") == ("sha512", "sha512")
    assert daemon.cfg("dl", "u1")["verified"] == "sha512", "not kept in the cfg"


def test_upload_has_no_last_scrub_yet(daemon, small_image):
    src, _ = small_image
    img = daemon.add_ready("up", src)
    assert img["status"]["verified"] == "sha512", img
    assert img["status"]["lastScrub"] == "", img
    assert xattr(daemon.mnt / "up", "user.bim.scrubbed") == ""


def test_clone_is_verified_as_its_source(daemon, small_image):
    src, _ = small_image
    daemon.add_ready("orig", src)
    expect_ok(daemon.create("copy", {"type": "clone", "from": "orig"}))
    daemon.wait_state("copy", "ready")
    assert verified(daemon, "copy") == ("sha512", "sha512")


def test_peer_sync_by_pieces_is_verified_by_pieces(peer_pair, small_image):
    b = synced(peer_pair, small_image[0], NO_SCRUB)
    assert verified(b, "img") == ("pieces", "pieces")
    assert b.cfg("img", "u1")["verified"] == "pieces"


def test_peer_sync_with_verify_sha512_is_verified_by_sha512(peer_pair, small_image):
    b = synced(peer_pair, small_image[0], NO_SCRUB + ["--verify", "sha512"])
    assert verified(b, "img") == ("sha512", "sha512")


def test_longhorn_cfg_is_adopted(daemon_factory, tmp_path):
    disk = tmp_path / "lhdisk"
    d = disk / "backing-images" / "lh-abcd1234"
    d.mkdir(parents=True)
    digest = make_file(d / "backing", [("data", MiB)], seed=9)
    mtime_ns = 1777638896_123400000

    os.utime(d / "backing", ns=(mtime_ns, mtime_ns))
    (d / "backing.cfg").write_text(json.dumps({
        "name": "/data/backing-images/lh-abcd1234/backing", "uuid": "abcd1234", "size": MiB,
        "virtualSize": MiB, "expectedChecksum": "", "currentChecksum": digest,
        "modificationTime": go_time(mtime_ns)}, separators=(",", ":")))
    daemon = daemon_factory(disk=disk, name="d")
    img = daemon.wait_state("lh", "ready")
    assert img["status"]["verified"] == "adopted", img
    assert xattr(daemon.mnt / "lh", "user.bim.verified") == "adopted"
    assert img["status"]["lastScrub"] == ""
    cfg = daemon.cfg("lh", "abcd1234")
    assert "verified" not in cfg, "adoption wrote a verification it did not do: %r" % cfg
    daemon.restart()
    assert daemon.wait_state("lh", "ready")["status"]["verified"] == "adopted"


def test_not_ready_is_not_verified(daemon, small_image):
    src, _ = small_image
    daemon.add_ready("gone", src, uuid="u1")
    (daemon.image_dir("gone", "u1") / "backing").unlink()
    daemon.restart()
    img = daemon.wait_state("gone", "failed")
    assert img["status"]["verified"] == "", img
    assert xattr(daemon.mnt / "gone", "user.bim.verified") == ""


def test_restart_keeps_verified_and_last_scrub(peer_pair, small_image):
    b = synced(peer_pair, small_image[0], NO_SCRUB)
    b.stop()
    cfg_path = b.image_dir("img", "u1") / "backing.cfg"
    cfg = json.loads(cfg_path.read_text())
    cfg["lastScrub"] = "2026-05-01T12:34:56Z"  # as a scrub before the restart left it
    cfg_path.write_text(json.dumps(cfg, separators=(",", ":")))
    b.start()
    img = b.wait_state("img", "ready")
    assert img["status"]["verified"] == "pieces", img
    assert img["status"]["lastScrub"] == "2026-05-01T12:34:56Z", img
    assert xattr(b.mnt / "img", "user.bim.scrubbed") == "2026-05-01T12:34:56Z"
