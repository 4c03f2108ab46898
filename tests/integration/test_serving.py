"""Serving while receiving (SPEC §9): an image still in progress (a sync from a
slowed fake peer, a download from a slowed server) answers /pieces with the
pieces it holds and their digests, serves a Range inside them from
/backing with the right bytes (206, no ETag), answers 409 for any other
range, lists the extents of what it holds, and its `have` grows."""

import hashlib

from conftest import MiB, expect_ok, make_file, make_random_file, wait_until
from faultserver import FaultServer
from fakepeer import PIECE, FakePeer, piece_digests
from httphelp import get, metrics, pieces_of, sync


def held(p):
    return [i for a, b in p["have"] for i in range(a, b + 1)]


def wait_holding(d, name, at_least):
    """Wait until the image, still in progress, holds at_least pieces; returns
    its /pieces answer."""
    def check():
        img = d.get(name)
        assert img["status"]["state"] in ("pending", "starting", "in-progress"), \
            "the image left in-progress before holding %d pieces: %r" % (at_least, img)
        if img["status"]["state"] != "in-progress":
            return None  # 409 until then (SPEC §9)
        p = pieces_of(d, name)
        return p if len(held(p)) >= at_least else None
    return wait_until(check, 60, "%s to hold %d pieces" % (name, at_least), interval=0.05)


def piece_range(i, size):
    return i * PIECE, min((i + 1) * PIECE, size) - 1


def check_serves_what_it_holds(d, name, data):
    size = len(data)
    digests = piece_digests(data)
    p = wait_holding(d, name, 2)
    assert p["checksum"] == "", "an image in progress has no checksum yet: %r" % p["checksum"]
    assert p["size"] == size and len(p["pieces"]) == len(digests), p
    have = held(p)
    for i in have:
        assert p["pieces"][i] == digests[i], "piece %d is held with another digest" % i
        a, b = piece_range(i, size)
        r = get(d.port, "/v1/images/%s/backing" % name, headers={"Range": "bytes=%d-%d" % (a, b)})
        assert r.status == 206, "a held piece is not served: %r" % (r,)
        assert r.body == data[a:b + 1], "held piece %d served with other bytes" % i
        assert r.headers["content-range"] == "bytes %d-%d/%d" % (a, b, size), r.headers
        assert "etag" not in r.headers, "an image in progress sends an ETag: %r" % r.headers
    # inside one held piece too
    a, _ = piece_range(have[0], size)
    r = get(d.port, "/v1/images/%s/backing" % name,
            headers={"Range": "bytes=%d-%d" % (a + 100, a + 4195)})
    assert r.status == 206 and r.body == data[a + 100:a + 4196], r
    missing = [i for i in range(len(digests)) if i not in have]
    assert missing, "everything was held before the test looked"

    def held_now():
        """The pieces held now (all once ready): a piece missing when the test looked
        may have arrived since, and is then served."""
        r = get(d.port, "/v1/images/%s/pieces" % name)
        return held(r.json()) if r.status == 200 else list(range(len(digests)))
    a, b = piece_range(missing[-1], size)
    r = get(d.port, "/v1/images/%s/backing" % name, headers={"Range": "bytes=%d-%d" % (a, b)})
    assert r.status == 409 or (r.status == 206 and missing[-1] in held_now() and
                               r.body == data[a:b + 1]), "a piece not held is served: %r" % (r,)
    r = get(d.port, "/v1/images/%s/backing" % name)
    assert r.status == 409, "the whole of an image in progress is served: %r" % (r,)
    # from a held piece to one not held (a sync holds pieces in any order: the ones after
    # have[0] may all be held)
    lo, hi = sorted((have[0], missing[-1]))
    r = get(d.port, "/v1/images/%s/backing" % name,
            headers={"Range": "bytes=%d-%d" % (piece_range(lo, size)[0], piece_range(hi, size)[1])})
    assert r.status == 409 or (r.status == 206 and set(range(lo, hi + 1)) <= set(held_now())), \
        "a range past the held pieces is served: %r" % (r,)
    r = get(d.port, "/v1/images/%s/backing" % name,
            headers={"Range": "bytes=%d-%d" % (size, size + 10)})
    assert r.status == 409, "a range past the end of an image in progress is not 409 (SPEC " \
        "§9: any other range of an image that is not ready): %r" % (r,)
    ext = get(d.port, "/v1/images/%s/extents" % name)
    assert ext.status == 200, ext
    # the sync goes on meanwhile, and held pieces stay held: judge the extents by the pieces
    # held after they were read (a superset of those held when they were)
    after = get(d.port, "/v1/images/%s/pieces" % name)
    assert after.status == 200, after
    have_after = held(after.json())
    for off, length in ext.json():
        assert off // PIECE in have_after and (off + length - 1) // PIECE in have_after, \
            "extent %r lies outside the held pieces %r" % ((off, length), after.json()["have"])
    held_metric = metrics(d.port)['bimfs_image_pieces_held{name="%s",uuid="u1"}' % name]
    assert held_metric >= len(have), "pieces_held %r, /pieces held %d" % (held_metric, len(have))
    # have grows
    wait_holding(d, name, len(have) + 1)


def test_sync_in_progress_serves_its_verified_pieces(daemon_factory, tmp_path):
    path = tmp_path / "img.raw"
    make_random_file(path, 48 * MiB, seed=3)
    data = path.read_bytes()
    fake = FakePeer(data, rate=4 * MiB)  # per connection: about 6 s for the image
    try:
        b = daemon_factory(name="b")
        expect_ok(sync(b, "img", "u1", [fake.addr]))
        check_serves_what_it_holds(b, "img", data)
        img = b.wait_state("img", "ready", timeout=120)
        assert img["status"]["currentChecksum"] == hashlib.sha512(data).hexdigest()
        m = metrics(b.port)
        assert m['bimfs_image_pieces_held{name="img",uuid="u1"}'] == len(piece_digests(data)), m
        got = m['bimfs_image_received_bytes_total{name="img",uuid="u1",source="%s"}' % fake.addr]
        assert got >= len(data), "received %r bytes from the only source" % got
    finally:
        fake.stop()


def test_download_in_progress_serves_its_hashed_pieces(daemon_factory, tmp_path):
    path = tmp_path / "img.raw"
    make_file(path, [("data", 20 * MiB), ("hole", 8 * MiB), ("data", 20 * MiB)], seed=5)
    data = path.read_bytes()
    srv = FaultServer().start()
    try:
        srv.add("/img.raw", data)
        d = daemon_factory(name="d")
        expect_ok(d.create("img", {"type": "download", "url": srv.url("/img.raw", rate=8 * MiB)},
                           uuid="u1"))
        check_serves_what_it_holds(d, "img", data)
        d.wait_state("img", "ready", timeout=120)
    finally:
        srv.stop()
