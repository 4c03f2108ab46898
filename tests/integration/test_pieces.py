"""GET /v1/images/{name}/pieces (SPEC §9): the piece digests a daemon offers
its peers, checked against hashlib's SHA-256 of each 4 MiB piece (holes as
zeros): for images written by every source, for an image adopted from a
disk Longhorn wrote (computed in the background, 503 + Retry-After
meanwhile), for an image in progress, and the errors."""

import hashlib
import os

from conftest import MiB, expect_ok, make_file, wait_until
from fakepeer import PIECE, FakePeer, piece_digests
from httphelp import add_image, get, sync, token_file
from test_longhorn_disk import write_longhorn_image


def digests_of(path):
    with open(path, "rb") as f:
        return piece_digests(f.read())


def pieces(d, name, token=None):
    return get(d.port, "/v1/images/%s/pieces" % name, token=token)


def expect_pieces(d, name, path):
    r = pieces(d, name)
    assert r.status == 200, r
    m = r.json()
    want = digests_of(path)
    assert m["pieceSize"] == PIECE and m["size"] == os.path.getsize(path), m
    assert m["pieces"] == want, "digests differ from hashlib's"
    assert m["have"] == ([[0, len(want) - 1]] if want else []), m["have"]
    assert m["checksum"] == d.get(name)["status"]["currentChecksum"]
    return m


def test_digests_of_an_upload_a_clone_and_a_sparse_image(daemon, tmp_path):
    p = tmp_path / "img.raw"
    make_file(p, [("data", 5 * MiB), ("hole", 2 * PIECE), ("zero", MiB), ("data", 512)], seed=3)
    add_image(daemon, "img", p, "u1")
    m = expect_pieces(daemon, "img", p)
    assert m["pieces"][2] == hashlib.sha256(bytes(PIECE)).hexdigest(), "a hole piece"
    expect_ok(daemon.create("cl", {"type": "clone", "from": "img"}, uuid="c1"))
    daemon.wait_state("cl", "ready")
    expect_pieces(daemon, "cl", p)


def test_unknown_image_is_404_and_one_not_ready_is_409(daemon, tmp_path):
    assert pieces(daemon, "nope").status == 404
    assert pieces(daemon, "..").status == 400
    expect_ok(daemon.create("bad", {"type": "download", "url": "http://127.0.0.1:1/x"}))
    daemon.wait_state("bad", "failed", timeout=120)
    r = pieces(daemon, "bad")
    assert r.status == 409, r


def test_the_token_is_required(daemon_factory, tmp_path):
    d = daemon_factory(args=["--token-file", token_file(tmp_path / "tok", "s3cret")], name="t")
    p = tmp_path / "img.raw"
    make_file(p, [("data", MiB)])
    add_image(d, "img", p, "u1")
    assert pieces(d, "img").status == 401
    assert pieces(d, "img", token="guess").status == 401
    assert pieces(d, "img", token="s3cret").status == 200


def test_an_adopted_image_gets_its_digests_in_the_background(daemon_factory, tmp_path):
    disk = tmp_path / "lh"
    (disk / "backing-images").mkdir(parents=True)
    d, _ = write_longhorn_image(disk, "lh", "u9", src_layout=[("data", 9 * MiB),
                                                               ("hole", 3 * PIECE),
                                                               ("data", MiB)], seed=9)
    assert not (d / "backing.pieces").exists()
    daemon = daemon_factory(disk=disk, name="a")
    assert daemon.get("lh")["status"]["state"] == "ready"
    seen = []

    def answered():
        r = pieces(daemon, "lh")
        seen.append(r.status)
        if r.status == 503:
            assert r.headers.get("retry-after", "").isdigit(), r.headers
        assert r.status in (200, 503), r
        return r.status == 200
    wait_until(answered, 60, "the digests of the adopted image")
    expect_pieces(daemon, "lh", d / "backing")
    assert (d / "backing.pieces").exists(), "the digests were not kept"
    assert daemon.get("lh")["status"]["state"] == "ready", "the image left ready meanwhile"


def test_a_sync_in_progress_answers_with_what_it_holds_and_knows(daemon_factory, tmp_path):
    data = os.urandom(6 * PIECE)
    slow = FakePeer(data, rate=2 * MiB)
    try:
        b = daemon_factory(name="b")
        expect_ok(sync(b, "img", "u1", [slow.addr]))
        wait_until(lambda: b.get("img")["status"]["state"] == "in-progress", 60,
                   "the sync to be in progress")
        r = pieces(b, "img")
        assert r.status == 200, r
        m = r.json()
        assert m["size"] == len(data) and m["checksum"] == "", m
        # a sync knows its reference's digests; it holds only verified pieces
        assert m["pieces"] == piece_digests(data), m["pieces"]
        assert all(b < 6 for a, b in m["have"]), m["have"]
        assert m["have"] != [[0, 5]], "all held while the source is slow: %r" % m["have"]
        b.request({"op": "delete", "name": "img"})
    finally:
        slow.stop()
