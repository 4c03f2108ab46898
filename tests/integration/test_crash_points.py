"""Crash points (SPEC §2, §4; docs/reliability.md): kill -9 of the daemon at
seeded random instants of a create, an upload, a download (from a local HTTP
server), a sync from a peer daemon, a PUT and a delete; restart on the same
disk and check that

- nothing stays pending, starting, in-progress or unknown (a bounded wait on
  the states, then every image is ready or failed);
- every ready image has exactly the bytes it was given (SHA-512 through the
  mount and in the record) and a cfg that says so (state, uuid, size,
  currentChecksum);
- a failed image says why and keeps no data in flight;
- no backing.tmp, backing.cfg.tmp, staging directory or unidentified
  directory is left in DISK/backing-images;
- the same name and uuid can be created again (and end ready).

A cut delete leaves the image ready (as it was) or gone, never failed.

BIMFS_CHAOS_SEED (default fixed, so that CI runs the same plan) picks the
operations and the instants (printed on failure; a replay lands on the same
instants, timing noise aside); BIMFS_CHAOS_KILLS
(default 12) is the number of kills; BIMFS_CHAOS_REPORT, a path, gets the
counts as JSON (bench/chaos runs 200 kills this way). All problems of a run
are collected and reported together, so a long run gives complete counts.
"""

import http.client
import json
import os
import random
import subprocess
import threading
import time

import pytest

from conftest import BIMCTL, MiB, PipeFeeder, SANITIZED, expect_ok, make_random_file, sha512_file
from faultserver import FaultServer
from httphelp import HOST, add_image, sync

SEED = int(os.environ.get("BIMFS_CHAOS_SEED") or 20261203)  # bench/chaos draws fresh ones
KILLS = int(os.environ.get("BIMFS_CHAOS_KILLS") or 12)
REPORT = os.environ.get("BIMFS_CHAOS_REPORT")
SETTLE_S = 90 if SANITIZED else 60  # bound on the states settling after a restart

TRANSIENT = ("pending", "starting", "in-progress", "unknown")
OPS = ("create", "upload", "download", "sync", "put", "delete")
# name, uuid and size (bytes of random data) of the image each operation makes
IMAGES = {"create": ("cr", "u-cr", MiB), "upload": ("up", "u-up", 24 * MiB),
          "download": ("dl", "u-dl", 8 * MiB), "sync": ("sy", "u-sy", 16 * MiB),
          "put": ("put", "u-put", 16 * MiB), "delete": ("del", "u-del", 8 * MiB)}
DOWNLOAD_RATE = 16 * MiB  # bytes/s: the download lasts about 0.5 s


class Chaos:
    """The daemon under test, its sources, and the image contents."""

    def __init__(self, daemon, source, server, tmp_path):
        self.d = daemon
        self.src = source
        self.server = server
        self.files = {}
        self.digest = {}  # name -> sha512 of the bytes it must have when ready
        self.size = {}
        for i, (op, (name, _, size)) in enumerate(sorted(IMAGES.items())):
            p = tmp_path / ("%s.raw" % name)
            self.digest[name] = make_random_file(p, size, seed=100 + i)
            self.files[name] = p
            self.size[name] = size
        keep = tmp_path / "keep.raw"
        self.digest["keep"] = make_random_file(keep, 4 * MiB, seed=99)
        self.size["keep"] = 4 * MiB
        add_image(daemon, "keep", keep, "k1")
        server.add("/dl.raw", self.files["dl"].read_bytes())
        add_image(source, "sy", self.files["sy"], "u-sy")
        self.put_body = self.files["put"].read_bytes()

    # ------------------------------------------------------------ the operations
    def prepare(self, op):
        """The operation's image absent (or, for delete, ready)."""
        name, uuid, _ = IMAGES[op]
        if self.d.get_raw(name) is not None:
            expect_ok(self.d.request({"op": "delete", "name": name}))
        if op == "delete":
            add_image(self.d, name, self.files[name], uuid)

    def start(self, op):
        """Start the operation; returns a callable that waits for its client."""
        name, uuid, _ = IMAGES[op]
        env = dict(os.environ, BIMFS_SOCKET=str(self.d.sock))
        if op == "create":
            p = subprocess.Popen([BIMCTL, "create", name, "--file", str(self.files[name]),
                                  "--uuid", uuid], env=env, stdin=subprocess.DEVNULL,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            return lambda: p.wait(30)
        if op == "delete":
            p = subprocess.Popen([BIMCTL, "delete", name], env=env, stdin=subprocess.DEVNULL,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            return lambda: p.wait(30)
        if op == "upload":
            feeder = PipeFeeder(data=self.files[name].read_bytes())
            try:
                expect_ok(self.d.upload_fd(name, feeder.r, uuid=uuid))
            finally:
                feeder.close_read_end()
            feeder.start()
            return feeder.stop
        if op == "download":
            expect_ok(self.d.create(name, {"type": "download",
                                           "url": self.server.url("/dl.raw",
                                                                  rate=DOWNLOAD_RATE)},
                                    uuid=uuid))
            return lambda: None
        if op == "sync":
            expect_ok(sync(self.d, name, uuid, [self.src]))
            return lambda: None
        assert op == "put"
        port = self.d.port

        def put():
            conn = http.client.HTTPConnection(HOST, port, timeout=30)
            try:
                conn.request("PUT", "/v1/images/%s?uuid=%s" % (name, uuid), body=self.put_body,
                             headers={"Content-Length": str(len(self.put_body))})
                conn.getresponse().read()
            except (OSError, http.client.HTTPException):
                pass  # the daemon was killed under it
            finally:
                conn.close()
        t = threading.Thread(target=put, daemon=True)
        t.start()
        return lambda: t.join(30)

    def run_to_end(self, op):
        """Run the operation without a kill; seconds until it ended."""
        name, _, _ = IMAGES[op]
        self.prepare(op)
        t0 = time.monotonic()
        done = self.start(op)
        if op == "delete":
            done()
            assert self.d.get_raw(name) is None, "delete did not delete"
        else:
            if op in ("create", "put"):
                done()
            img = self.d.wait_state(name, "ready")
            assert img["status"]["currentChecksum"] == self.digest[name], img
        took = time.monotonic() - t0
        if op != "delete":
            done()
            expect_ok(self.d.request({"op": "delete", "name": name}))
        return took

    # ------------------------------------------------------------ the checks
    def settled(self):
        """The image list once nothing is transient and no data is in flight."""
        imgs = self.d.list()
        if any(i["status"]["state"] in TRANSIENT for i in imgs.values()):
            return None
        if list(self.d.images_dir.rglob("backing.tmp")):
            return None
        return imgs

    def wait_settled(self):
        deadline = time.monotonic() + SETTLE_S
        while True:
            if not self.d.alive():
                pytest.fail("bimfs died after the restart; log:\n%s" % self.d.log())
            imgs = self.settled()
            if imgs is not None:
                return imgs, None
            if time.monotonic() > deadline:
                return self.d.list(), "not settled after %ds: %s" % (
                    SETTLE_S, {n: i["status"]["state"] for n, i in self.d.list().items()})
            time.sleep(0.05)

    def check_ready(self, name, img):
        """Problems of a ready image (empty list: exactly right)."""
        out = []
        digest = self.digest.get(name)
        if digest is None:
            return ["an image nobody created is ready: %s" % name]
        if img["status"]["currentChecksum"] != digest:
            out.append("%s: ready with currentChecksum %s..., want %s..."
                       % (name, img["status"]["currentChecksum"][:16], digest[:16]))
        got = sha512_file(self.d.mnt / name / "backing")
        if got != digest:
            out.append("%s: ready but the mount shows other bytes (sha512 %s...)"
                       % (name, got[:16]))
        cfgp = self.d.image_dir(name, img["uuid"]) / "backing.cfg"
        try:
            cfg = json.loads(cfgp.read_text())
        except (OSError, ValueError) as e:
            return out + ["%s: ready but its cfg cannot be read: %r" % (name, e)]
        want = {"uuid": img["uuid"], "size": self.size[name], "currentChecksum": digest,
                "state": "ready"}
        for k, v in want.items():
            if cfg.get(k) != v:
                out.append("%s: cfg %s is %r, want %r" % (name, k, cfg.get(k), v))
        return out

    def check_disk(self, imgs):
        """Leftovers in DISK/backing-images: data in flight, cfg temporaries,
        staging directories, directories that are no image."""
        out = []
        known = {"%s-%s" % (n, i["uuid"]) for n, i in imgs.items()}
        for p in sorted(self.d.images_dir.iterdir()):
            if p.name not in known:
                out.append("leftover in backing-images: %s %r" % (
                    p.name, sorted(c.name for c in p.iterdir()) if p.is_dir() else "file"))
                continue
            for junk in ("backing.tmp", "backing.cfg.tmp"):
                if (p / junk).exists():
                    out.append("%s left in %s" % (junk, p.name))
        return out


@pytest.fixture
def chaos(daemon_factory, tmp_path):
    server = FaultServer().start()
    try:
        src = daemon_factory(name="src")
        d = daemon_factory(name="d")
        yield Chaos(d, src, server, tmp_path)
    finally:
        server.stop()


def test_kill9_at_random_instants_never_corrupts_blocks_or_sticks(chaos):
    rng = random.Random(SEED)
    durations = {op: max(chaos.run_to_end(op), 0.02) for op in OPS}
    plan = list(OPS) * (KILLS // len(OPS) + 1)
    rng.shuffle(plan)
    plan = plan[:KILLS]
    counts = {"kills": 0, "ready-correct": 0, "failed-clean": 0, "gone": 0, "stuck": 0,
              "wrong-bytes": 0, "leftovers": 0, "create-again-failed": 0}
    per_op = {op: {"ready": 0, "failed": 0, "gone": 0} for op in OPS}
    errors = {op: {} for op in OPS}  # the errorMsg of each failed outcome, counted
    problems = []
    t0 = time.monotonic()
    d = chaos.d
    for i, op in enumerate(plan):
        name, uuid, _ = IMAGES[op]
        frac = rng.uniform(0.0, 1.3)  # past 1: the kill may land after the end
        delay = frac * durations[op]
        where = "kill %d (%s at %.1f ms, %.0f%% of %.0f ms)" % (
            i, op, delay * 1000, frac * 100, durations[op] * 1000)
        chaos.prepare(op)
        done = chaos.start(op)
        time.sleep(delay)  # where the kill lands, not synchronisation
        d.kill9()
        counts["kills"] += 1
        done()
        d.start()
        imgs, stuck = chaos.wait_settled()
        if stuck:
            counts["stuck"] += 1
            problems.append("%s: %s" % (where, stuck))
        bad = False
        for n, img in sorted(imgs.items()):
            st = img["status"]
            if st["state"] == "ready":
                errs = chaos.check_ready(n, img)
                if errs:
                    bad = True
                    problems.extend("%s: %s" % (where, e) for e in errs)
            elif st["state"] == "failed" and not st["errorMsg"]:
                problems.append("%s: %s failed without a reason" % (where, n))
            if n == "keep" and st["state"] != "ready":
                bad = True
                problems.append("%s: the untouched image is %s (%s)"
                                % (where, st["state"], st["errorMsg"]))
        counts["wrong-bytes"] += bad
        leftovers = chaos.check_disk(imgs)
        if leftovers:
            counts["leftovers"] += 1
            problems.extend("%s: %s" % (where, e) for e in leftovers)
        img = imgs.get(name)
        state = img and img["status"]["state"]
        if state is None:
            counts["gone"] += 1
            per_op[op]["gone"] += 1
        elif state == "ready" and not bad:
            counts["ready-correct"] += 1
            per_op[op]["ready"] += 1
        elif state == "failed":
            if op == "delete":  # one rename: the image as it was, or gone
                problems.append("%s: a cut delete left %s failed: %s"
                                % (where, name, img["status"]["errorMsg"]))
            counts["failed-clean"] += 1
            per_op[op]["failed"] += 1
            msg = img["status"]["errorMsg"]
            errors[op][msg] = errors[op].get(msg, 0) + 1
        # the same name and uuid can be created again
        if img is not None:
            r = d.request({"op": "delete", "name": name})
            if r.get("ok") is not True:
                problems.append("%s: delete %s after the restart: %r" % (where, name, r))
        r = d.upload_file(name, chaos.files[name], uuid=uuid)
        again = None
        if r.get("ok") is True:
            again = d.wait_state(name, ("ready", "failed"))
        if again is None or again["status"]["state"] != "ready" or \
                again["status"]["currentChecksum"] != chaos.digest[name]:
            counts["create-again-failed"] += 1
            problems.append("%s: create %s --uuid %s again: %r" % (where, name, uuid, again or r))
        if d.get_raw(name) is not None:
            expect_ok(d.request({"op": "delete", "name": name}))
    took = time.monotonic() - t0
    summary = {"seed": SEED, "seconds": round(took, 1), "durations_ms": {
        op: round(v * 1000) for op, v in durations.items()}, "counts": counts, "per_op": per_op,
               "errors": errors}
    if REPORT:
        with open(REPORT, "w") as f:
            json.dump(summary, f, indent=1)
    assert not problems, "BIMFS_CHAOS_SEED=%d: %d problem(s) in %d kills:\n%s\n%s" % (
        SEED, len(problems), counts["kills"], "\n".join(problems[:50]), json.dumps(summary))
