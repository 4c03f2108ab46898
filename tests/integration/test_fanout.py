"""Fan-out (SPEC §9 "Serving while receiving"): receivers started together,
each syncing `--from origin,<the others>`, take pieces from each other as
they arrive, so the origin sends each piece about once; a receiver killed
mid-way does not stop the others and resumes after a restart; a peer serving
a corrupt piece is dropped; an origin still downloading the image is followed
to ready, or to its failure.

The origin's link is slowed (a fake peer with one shared link rate, or a real
daemon downloading from a slowed server) so that the receivers' links are
much faster than the origin's, as on a real cluster."""

import hashlib
import re

import pytest

from conftest import MiB, expect_ok, make_random_file, wait_until
from faultserver import FaultServer
from httphelp import metrics, peer, sync, wait_final

SIZE = 64 * MiB
LINK = 16 * MiB  # the origin's link: one copy takes 4 s


@pytest.fixture
def image(tmp_path):
    p = tmp_path / "img.raw"
    make_random_file(p, SIZE, seed=21)
    return p.read_bytes()


def start_fanout(receivers, origin_addr, uuid="u1", checksum=None, bimctl=False):
    """Each receiver syncs from the origin first, then from all the others
    (one command per disk: docs/peer-sync.md "Fanning an image out")."""
    for r in receivers:
        sources = [origin_addr] + [peer(o) for o in receivers if o is not r]
        if bimctl:
            rc, out, err = r.bimctl("sync", "img", "--uuid", uuid, "--from", ",".join(sources))
            assert rc == 0, "bimctl sync: %d %s %s" % (rc, out, err)
        else:
            expect_ok(sync(r, "img", uuid, sources, checksum=checksum))
        assert r.get("img")["source"] == "sync:" + ",".join(sources), r.get("img")


def expect_ready(d, data, timeout=120):
    d.expect_ready_bytes("img", data, timeout=timeout)


def received(d, addr):
    return metrics(d.port).get(
        'bimfs_image_received_bytes_total{name="img",uuid="u1",source="%s"}' % addr, 0)


def test_four_receivers_end_ready_with_the_origin_sending_about_once(daemon_factory, fakes,
                                                                   image):
    origin = fakes(image, link_rate=LINK)
    receivers = [daemon_factory(name="r%d" % i) for i in range(4)]
    start_fanout(receivers, origin.addr, bimctl=True)
    for r in receivers:
        expect_ready(r, image)
    sent = origin.bytes_served
    print("origin sent %.2f copies" % (sent / SIZE))
    assert sent < 2.5 * SIZE, "the origin sent %.2f copies of the image" % (sent / SIZE)
    # what the receivers say they got from the origin is what it sent
    got = sum(received(r, origin.addr) for r in receivers)
    assert got == pytest.approx(sent, rel=0.01), (got, sent)
    from_peers = sum(received(r, peer(o)) for r in receivers for o in receivers if o is not r)
    assert from_peers > 0, "no receiver took a piece from another"


def test_a_receiver_killed_mid_fanout_stops_no_one_and_resumes(daemon_factory, fakes, image):
    origin = fakes(image, link_rate=LINK)
    receivers = [daemon_factory(name="r%d" % i) for i in range(4)]
    start_fanout(receivers, origin.addr)
    victim = receivers[1]
    wait_until(lambda: victim.get("img")["status"]["progress"] >= 20, 60,
               "the victim to hold a fifth of the image")
    victim.kill9()
    for r in receivers:
        if r is not victim:
            expect_ready(r, image)
    victim.start()
    expect_ready(victim, image)
    assert "resuming" in victim.log(20000), "the restarted sync did not resume"


def test_pieces_only_a_dead_peer_held_are_asked_of_the_origin(daemon_factory, fakes, image):
    """A peer that said it holds every piece, then died: what it held counts
    for nothing while it does not answer, so the origin is asked for it (it
    was asked for no piece another source held)."""
    origin = fakes(image, link_rate=LINK)
    other = fakes(image, rate=MiB)  # slow: most pieces are still to come when it dies
    b = daemon_factory(name="b")
    expect_ok(sync(b, "img", "u1", [origin.addr, other.addr]))
    wait_until(lambda: other.asked("/backing"), 30, "a piece to be asked of the other peer")
    other.die()
    expect_ready(b, image, timeout=60)
    assert origin.asked("/backing"), "nothing was asked of the origin"


def test_a_peer_serving_a_corrupt_piece_is_dropped(daemon_factory, fakes, image):
    origin = fakes(image, link_rate=LINK)
    liar = fakes(image, lie="bad-piece", piece=3)  # its digests are right, piece 3 is not
    b = daemon_factory(name="b")
    expect_ok(sync(b, "img", "u1", [origin.addr, liar.addr]))
    expect_ready(b, image)
    assert re.search(r"not syncing from %s any more: sent piece 3 with SHA-256"
                     % re.escape(liar.addr), b.log(20000)), b.log()
    assert origin.asked("/backing"), "the piece was not fetched again from the origin"


def download_origin(daemon_factory, srv, data, checksum=None):
    srv.add("/img.raw", data)
    a = daemon_factory(name="a")
    expect_ok(a.create("img", {"type": "download", "url": srv.url("/img.raw", rate=LINK)},
                       uuid="u1", checksum=checksum))
    wait_until(lambda: a.get("img")["status"]["state"] == "in-progress", 60,
               "the origin's download to be in progress")
    return a


def test_fanout_from_a_download_in_progress_ends_ready_everywhere(daemon_factory, image):
    srv = FaultServer().start()
    try:
        a = download_origin(daemon_factory, srv, image)
        receivers = [daemon_factory(name="r%d" % i) for i in range(4)]
        start_fanout(receivers, peer(a))
        for r in receivers:
            expect_ready(r, image)
        assert a.get("img")["status"]["state"] == "ready"
        sent = metrics(a.port)['bimfs_image_sent_bytes_total{name="img",uuid="u1"}']
        assert sent < 4 * SIZE, "the origin sent %.2f copies" % (sent / SIZE)
    finally:
        srv.stop()


def test_fanout_fails_everywhere_when_the_download_fails_its_checksum(daemon_factory, image):
    srv = FaultServer().start()
    wrong = hashlib.sha512(b"another image").hexdigest()
    try:
        a = download_origin(daemon_factory, srv, image, checksum=wrong)
        receivers = [daemon_factory(name="r%d" % i) for i in range(4)]
        start_fanout(receivers, peer(a))
        img, _ = wait_final(a, "img", 120)
        assert img["status"]["state"] == "failed", img
        for r in receivers:
            img, _ = wait_final(r, "img", 120)
            assert img["status"]["state"] == "failed", "a receiver of a failed origin: %r" % img
            msg = img["status"]["errorMsg"]
            # the origin's own error, SPEC §3's words as they are
            assert msg == a.get_raw("img")["status"]["errorMsg"], msg
            assert msg.startswith("checksum mismatch: expected %s, got " % wrong), msg
    finally:
        srv.stop()


def test_no_piece_waits_on_a_slow_source_while_another_holds_it(daemon_factory, fakes, tmp_path):
    """Two peers besides the origin hold every piece; the slow one takes a minute per
    piece: its GETs are given up for the other's. (The origin's link is slow too, so
    the peers' have is known before it could send everything.)"""
    p = tmp_path / "small.raw"
    make_random_file(p, 16 * MiB, seed=4)
    data = p.read_bytes()
    origin = fakes(data, link_rate=2 * MiB)
    slow = fakes(data, rate=64 * 1024)
    fast = fakes(data)
    b = daemon_factory(name="b")
    expect_ok(sync(b, "img", "u1", [origin.addr, slow.addr, fast.addr]))
    expect_ready(b, data)
    assert slow.asked("/backing"), "the slow peer was not asked at all"
    assert slow.bytes_served == 0, "a piece waited for the slow peer"


def test_a_source_answering_503_is_passed_over_at_once_for_another_holding_the_piece(
        daemon_factory, fakes, tmp_path):
    """One peer besides the origin is at its send limit for good (503, Retry-After: 60),
    another holds every piece too: the receiver takes them from the other at once
    (SPEC §9: never waiting on one source while another holds the piece), and asks the
    busy one again only after its Retry-After. The origin's link is slow, so the pieces
    come from the peers."""
    p = tmp_path / "small.raw"
    make_random_file(p, 16 * MiB, seed=5)
    data = p.read_bytes()
    origin = fakes(data, link_rate=2 * MiB)
    busy = fakes(data, lie="backing-busy")
    free = fakes(data)
    b = daemon_factory(name="b")
    expect_ok(sync(b, "img", "u1", [origin.addr, busy.addr, free.addr]))
    expect_ready(b, data, timeout=45)  # well before the busy peer's Retry-After
    asked = busy.asked("/backing")
    assert asked, "the busy peer was never asked, so this shows nothing"
    assert len(asked) <= 2, "the busy peer was asked again before its Retry-After: %r" % (asked,)
    assert received(b, busy.addr) == 0, "bytes counted from a peer that sent none"
    assert received(b, free.addr) > 0, "nothing came from the free peer"
    assert received(b, free.addr) + received(b, origin.addr) == len(data), (
        "bytes from the free peer and the origin are not the image once: %d + %d" % (
            received(b, free.addr), received(b, origin.addr)))


def test_a_share_its_owner_never_takes_is_taken_from_the_origin_after_ones_own(
        daemon_factory, fakes, tmp_path):
    """The other receiver of the list is alive (it answers /pieces) but never gets a piece:
    its share of the origin's pieces (every other piece, by rank) is not held by anyone.
    The receiver takes its own share, and later the other's from the origin too (docs/
    peer-sync.md: once its own share is done), so it ends ready with every byte from the
    origin, once."""
    p = tmp_path / "small.raw"
    make_random_file(p, 16 * MiB, seed=6)
    data = p.read_bytes()
    origin = fakes(data)
    idle = fakes(data, lie="holds-nothing")
    b = daemon_factory(name="b")
    expect_ok(sync(b, "img", "u1", [origin.addr, idle.addr]))
    expect_ready(b, data, timeout=120)
    assert idle.asked("/pieces"), "the idle receiver was never asked what it holds"
    assert not idle.asked("/backing"), "a piece was asked of a receiver that holds none"
    assert received(b, origin.addr) == len(data), (
        "the origin did not send the image once: %d bytes" % received(b, origin.addr))


def test_a_listed_daemon_without_the_image_is_not_waited_on(daemon_factory, fakes, tmp_path):
    """A source of the list is a live bimfs that was never asked to sync the image (404 to its
    /pieces). Its share of the origin's pieces goes to the receivers that are present at once
    (docs/peer-sync.md), not after their own share and SYNC_PEER_HELP_MS (30 s), which is what
    the bound here tells apart: a state wait, 20 s for a copy of 16 MiB on loopback."""
    p = tmp_path / "small.raw"
    make_random_file(p, 16 * MiB, seed=8)
    data = p.read_bytes()
    origin = fakes(data)
    c = daemon_factory(name="c")
    b = daemon_factory(name="b")
    expect_ok(sync(b, "img", "u1", [origin.addr, peer(c)]))
    expect_ready(b, data, timeout=20)
    assert received(b, origin.addr) == len(data), received(b, origin.addr)
    assert received(b, peer(c)) == 0


def test_receivers_that_list_themselves_share_the_origin_as_if_they_did_not(
        daemon_factory, fakes, image):
    """Every receiver is given the same list, itself included (SPEC §9: "N daemons that sync
    from one origin and from each other"): each leaves itself out, knows its rank by the name
    the others give it, and the origin sends the image about once (2 copies when the entry
    made every piece every receiver's own)."""
    origin = fakes(image, link_rate=LINK)
    receivers = [daemon_factory(name="s%d" % i) for i in range(3)]
    sources = [origin.addr] + [peer(r) for r in receivers]
    for r in receivers:
        expect_ok(sync(r, "img", "u1", sources))
        assert r.get("img")["source"] == "sync:" + ",".join(sources), r.get("img")
    for r in receivers:
        expect_ready(r, image)
    sent = origin.bytes_served
    print("origin sent %.2f copies" % (sent / SIZE))
    assert sent < 1.7 * SIZE, "the origin sent %.2f copies of the image" % (sent / SIZE)
    for r in receivers:
        assert received(r, peer(r)) == 0, "a receiver asked itself for pieces"
