"""Floods on the control socket (SPEC §6; docs/protocol.md, sync/watch.c):
many clients at once are all answered, and watchers that never read cost
bounded memory (one queue of at most SYNC_WATCH_QUEUE_MAX events each, the
socket buffer, a blocked connection thread) while the daemon keeps serving.
Idle HTTP connections and /healthz latency are in test_http_hostile.py."""

import os
import threading
import time

import pytest

from conftest import MiB, SANITIZED, Client, expect_error, expect_ok, make_random_file

CLIENTS = 16
ROUNDS = 10 if SANITIZED else 25
WATCHERS = 6
CYCLES = 150 if SANITIZED else 400  # create + delete of a small image, per event thread
EVENT_THREADS = 4
RSS_BOUND = 64 * MiB  # growth allowed while the watchers do not read (generous)
PLATEAU_SLACK = 4 * MiB  # growth allowed in the second phase, once the queues are full


def rss(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS for pid %d" % pid)


def run_threads(targets):
    """Run the callables at once; re-raise the first failure of any."""
    errors = []
    start = threading.Barrier(len(targets))

    def wrap(fn):
        def run():
            try:
                start.wait(30)
                fn()
            except BaseException as e:  # noqa: B902 - reported below
                errors.append(e)
        return run
    threads = [threading.Thread(target=wrap(fn), daemon=True) for fn in targets]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
        assert not t.is_alive(), "a client thread did not finish within 300 s"
    if errors:
        raise errors[0]


@pytest.fixture
def small_file(tmp_path):
    p = tmp_path / "s.raw"
    make_random_file(p, 64 * 1024, seed=3)
    return p


def test_sixteen_parallel_clients_are_all_answered(daemon, small_file):
    daemon.add_ready("base", small_file, uuid="b0")

    def client(i):
        def run():
            with Client(daemon.sock, timeout=60) as c:
                for r in range(ROUNDS):
                    imgs = expect_ok(c.request({"op": "list"}))
                    assert "base" in imgs, "list lost an image: %r" % sorted(imgs)
                    img = expect_ok(c.request({"op": "get", "name": "base"}))
                    assert img["status"]["state"] == "ready", img
                    expect_error(c.request({"op": "get", "name": "nope-%d" % i}), "not_found")
                    fd = os.open(small_file, os.O_RDONLY | os.O_CLOEXEC)
                    try:
                        img = expect_ok(c.request(
                            {"op": "create", "name": "c%d-%d" % (i, r), "uuid": "u%d" % i,
                             "source": {"type": "upload"}}, fds=[fd]))
                    finally:
                        os.close(fd)
                    assert img["name"] == "c%d-%d" % (i, r), img
                    again = expect_ok(c.request(
                        {"op": "create", "name": "c%d-%d" % (i, r), "uuid": "u%d" % i,
                         "source": {"type": "clone", "from": "base"}}))
                    assert again["uuid"] == "u%d" % i, "create of an existing name+uuid: %r" % (
                        again,)
                    expect_ok(c.request({"op": "version"}))
        return run
    t0 = time.monotonic()
    run_threads([client(i) for i in range(CLIENTS)])
    took = time.monotonic() - t0
    for i in range(CLIENTS):
        for r in range(ROUNDS):
            img = daemon.wait_state("c%d-%d" % (i, r), "ready")
            assert img["size"] == 64 * 1024
    assert len(daemon.list()) == CLIENTS * ROUNDS + 1
    print("%d clients x %d rounds (6 requests each) answered in %.2f s"
          % (CLIENTS, ROUNDS, took))


def test_watchers_that_never_read_cost_bounded_memory(daemon, small_file):
    """Each phase deletes more images than a queue holds (SYNC_WATCH_QUEUE_MAX,
    1024): after the first the queues are full, so the second must not grow
    the daemon. Under ASan freed memory sits in its quarantine, so RSS says
    nothing there and only the behaviour is checked."""
    pid = daemon.proc.pid
    watchers = []
    for _ in range(WATCHERS):
        c = Client(daemon.sock, timeout=30)
        expect_ok(c.request({"op": "watch"}))
        watchers.append(c)  # never read again
    reader = Client(daemon.sock, timeout=30)
    expect_ok(reader.request({"op": "watch", "name": "probe"}))
    base = rss(pid)
    peak = [base]
    stop = threading.Event()

    def sample():
        while not stop.wait(0.05):
            peak[0] = max(peak[0], rss(pid))
    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()

    def churn(phase, k):
        def run():
            with Client(daemon.sock, timeout=60) as c:
                for n in range(CYCLES):
                    name = "e%d-%d-%d" % (phase, k, n)
                    fd = os.open(small_file, os.O_RDONLY | os.O_CLOEXEC)
                    try:
                        expect_ok(c.request({"op": "create", "name": name, "uuid": "x",
                                             "source": {"type": "upload"}}, fds=[fd]))
                    finally:
                        os.close(fd)
                    expect_ok(c.request({"op": "delete", "name": name}))
        return run
    t0 = time.monotonic()
    peaks = []
    try:
        for phase in range(2):
            run_threads([churn(phase, k) for k in range(EVENT_THREADS)])
            peaks.append(peak[0])
        took = time.monotonic() - t0
        # the daemon still serves, and a watcher that reads still gets its events
        assert daemon.answers_version()
        daemon.add_ready("probe", small_file, uuid="p1")
        while True:
            ev = reader.recv_json(timeout=30)
            if ev["image"]["status"]["state"] == "ready":
                break
    finally:
        stop.set()
        sampler.join(10)
    print("%d watchers not reading, 2 x %d create+delete in %.1f s: VmRSS %.1f MiB, peak after "
          "phase 1 %.1f MiB, after phase 2 %.1f MiB (+%.1f MiB)"
          % (WATCHERS, EVENT_THREADS * CYCLES, took, base / MiB, peaks[0] / MiB, peaks[1] / MiB,
             (peaks[1] - base) / MiB))
    if not SANITIZED:
        assert peaks[1] - base < RSS_BOUND, \
            "the daemon grew by %.1f MiB with %d watchers not reading" % (
                (peaks[1] - base) / MiB, WATCHERS)
        assert peaks[1] - peaks[0] < PLATEAU_SLACK, \
            "the daemon kept growing with full queues: %.1f MiB after phase 1, %.1f after 2" % (
                peaks[0] / MiB, peaks[1] / MiB)
    reader.close()
    # SIGTERM with the watchers' connection threads blocked in send: exit 0, unmounted
    daemon.stop()
    for c in watchers:
        c.close()
