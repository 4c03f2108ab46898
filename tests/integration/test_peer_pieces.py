"""Peer sync by pieces (SPEC §9 "Verification", docs/peer-sync.md): every piece
a receiver writes is checked against the reference's digests, whichever
source sent it; lying and broken sources (a fake peer on loopback,
fakepeer.py) end ready from the honest ones or failed naming the cause,
never ready with wrong bytes; a receiver killed mid-sync resumes from the
pieces it holds."""

import hashlib
import os
import re

import pytest

from conftest import MiB, expect_ok, make_file, sha512_file, wait_until
from fakepeer import PIECE, piece_digests
from httphelp import metrics, peer, pieces_of, sync, wait_final


def expect_failed(d, name, pattern, timeout=90):
    img, _ = wait_final(d, name, timeout)
    assert img["status"]["state"] == "failed", "wanted failed: %r" % (img,)
    msg = img["status"]["errorMsg"]
    assert re.search(pattern, msg), "error %r does not match %r" % (msg, pattern)
    left = os.listdir(d.image_dir(name, img["uuid"]))
    assert "backing" not in left and "backing.tmp" not in left, "data kept: %r" % (left,)
    return msg


@pytest.fixture
def image(tmp_path):
    """32 MiB: 8 pieces of data, a hole of 3 pieces, data in the last one."""
    p = tmp_path / "img.raw"
    make_file(p, [("data", 8 * PIECE), ("hole", 3 * PIECE), ("data", MiB)], seed=11)
    return p


def test_synced_image_has_the_senders_digests_and_costs_only_its_data(peer_pair, image):
    a, b = peer_pair(image)
    data = image.read_bytes()
    expect_ok(sync(b, "img", "u1", [a]))
    b.expect_ready_bytes("img", data)
    got, sent = pieces_of(b, "img"), pieces_of(a, "img")
    assert got["pieces"] == sent["pieces"] == piece_digests(data), "digests differ"
    assert got["have"] == [[0, len(got["pieces"]) - 1]], got["have"]
    served = metrics(a.port)['bimfs_image_sent_bytes_total{name="img",uuid="u1"}']
    data_pieces = 9 * PIECE  # 8 whole ones and the last, holes not sent
    assert served <= data_pieces, "sent %d bytes for %d of data pieces" % (served, data_pieces)


def test_a_piece_that_fails_its_digest_fails_a_sync_from_that_source_alone(daemon_factory,
                                                                          fakes, image):
    b = daemon_factory(name="b")
    f = fakes(image.read_bytes(), lie="bad-piece", piece=2)
    expect_ok(sync(b, "img", "u1", [f.addr]))
    expect_failed(b, "img", r"no source can finish the image: %s: sent piece 2 with SHA-256 "
                            r"[0-9a-f]{16}\.\.\., not the reference's digest" % re.escape(f.addr))


@pytest.mark.parametrize("lie", ["bad-piece", "wrong-bytes", "die-mid-piece"])
def test_a_source_sending_bad_pieces_is_dropped_and_the_honest_one_finishes(peer_pair,
                                                                           fakes, image, lie):
    a, b = peer_pair(image)
    data = image.read_bytes()
    f = fakes(data, lie=lie, piece=1)
    expect_ok(sync(b, "img", "u1", [f.addr, peer(a)]))  # the liar is the reference
    b.expect_ready_bytes("img", data)


@pytest.mark.parametrize("first", [True, False], ids=["as-reference", "after-reference"])
@pytest.mark.parametrize("lie", ["pieces-piece-size", "pieces-short", "pieces-size",
                                 "pieces-junk", "pieces-huge", "no-pieces"])
def test_a_source_whose_digests_are_unusable_is_not_used(peer_pair, fakes, image, lie,
                                                         first):
    """As the reference it is passed over for the next source; after an
    honest reference it is dropped (if asked at all)."""
    a, b = peer_pair(image)
    data = image.read_bytes()
    f = fakes(data, lie=lie, piece=3)
    sources = [f.addr, peer(a)] if first else [peer(a), f.addr]
    expect_ok(sync(b, "img", "u1", sources))
    b.expect_ready_bytes("img", data)
    assert not f.asked("/backing"), "pieces were taken from a source with unusable digests"


def test_a_source_disagreeing_with_the_reference_is_dropped(peer_pair, fakes, image):
    a, b = peer_pair(image)
    data = image.read_bytes()
    f = fakes(data, lie="pieces-wrong-digest", piece=0)
    expect_ok(sync(b, "img", "u1", [peer(a), f.addr]))
    b.expect_ready_bytes("img", data)
    assert not f.asked("/backing"), "pieces were taken from a source that disagrees"


def test_a_reference_with_a_wrong_digest_wins_and_the_sync_fails_without_data(peer_pair,
                                                                              fakes, image):
    """SPEC §9: the reference's digests are the ones every piece is checked
    against; the honest source disagrees with them and is dropped too. The
    image fails naming both causes, and never holds the piece."""
    a, b = peer_pair(image)
    f = fakes(image.read_bytes(), lie="pieces-wrong-digest", piece=3)
    expect_ok(sync(b, "img", "u1", [f.addr, peer(a)]))
    expect_failed(b, "img", r"no source can finish the image: .*%s: sent piece 3 with SHA-256 "
                            r".*%s: its piece digests disagree with those of %s \(piece 3 first\)"
                  % (re.escape(f.addr), re.escape(peer(a)), re.escape(f.addr)))


def test_alone_a_source_with_wrong_digests_fails_the_sync_naming_it(daemon_factory, fakes,
                                                                    image):
    b = daemon_factory(name="b")
    data = image.read_bytes()
    cases = {
        "pieces-piece-size": r"piece digests of another shape: %d bytes in pieces of 1048576"
                             % len(data),
        "pieces-size": r"piece digests of another shape",
        "pieces-short": r"piece digests unusable",
        "pieces-junk": r"piece digests unusable",
        "pieces-huge": r"piece digests: its answer is larger than \d+ bytes",
        "no-pieces": r"piece digests: answered HTTP 404",
    }
    for i, (lie, why) in enumerate(sorted(cases.items())):
        name = "img%d" % i
        f = fakes(data, name=name, lie=lie)
        expect_ok(sync(b, name, "u1", [f.addr]))
        expect_failed(b, name, r"no source can provide the image: %s: %s"
                      % (re.escape(f.addr), why))


def test_with_verify_pieces_the_reference_sha512_is_taken_and_sha512_mode_checks_it(
        daemon_factory, fakes, image):
    """The trust model of docs/peer-sync.md: a reference whose digests and
    bytes agree but which announces another SHA-512 is believed with
    --verify pieces (the scrub catches it later) and refused with
    --verify sha512."""
    data = image.read_bytes()
    f = fakes(data, lie="wrong-sha512")
    claimed = f.announced_sha512()
    trusting = daemon_factory(name="p")
    expect_ok(sync(trusting, "img", "u1", [f.addr]))
    img = trusting.wait_state("img", "ready")
    assert img["status"]["currentChecksum"] == claimed, img
    assert sha512_file(trusting.mnt / "img" / "backing") == hashlib.sha512(data).hexdigest()

    checking = daemon_factory(name="s", args=["--verify", "sha512"])
    expect_ok(sync(checking, "img", "u1", [f.addr]))
    expect_failed(checking, "img", r"^checksum mismatch: expected %s, got %s"
                  % (claimed, hashlib.sha512(data).hexdigest()))


def test_verify_sha512_syncs_an_honest_image(peer_pair, image):
    a, b = peer_pair(image, receiver_args=["--verify", "sha512"])
    expect_ok(sync(b, "img", "u1", [a]))
    b.expect_ready_bytes("img", image.read_bytes())


def test_receiver_killed_mid_sync_resumes_from_the_pieces_it_holds(daemon_factory, fakes,
                                                                  tmp_path):
    p = tmp_path / "slow.raw"
    size = 24 * PIECE
    make_file(p, [("data", size)], seed=12)
    data = p.read_bytes()
    f = fakes(data, rate=6 * MiB)  # per connection: the receiver uses two
    b = daemon_factory(name="b")
    expect_ok(sync(b, "img", "u1", [f.addr]))

    def some_done():
        img = b.get_raw("img")
        return img and img["status"]["bytesDone"] >= 6 * PIECE and img
    img = wait_until(some_done, 60, "six pieces to be verified")
    b.kill9()
    done = img["status"]["bytesDone"]
    assert done < size, "the sync ended before the kill"
    before = f.bytes_served
    b.restart()
    b.expect_ready_bytes("img", data)
    again = f.bytes_served - before
    assert again <= size - done, \
        "after the restart %d bytes were fetched again, %d were verified before it" % (
            again, done)
    assert again > 0, "nothing was fetched after the restart"
    print("verified before the kill: %d of %d bytes; fetched after the restart: %d"
          % (done, size, again))
