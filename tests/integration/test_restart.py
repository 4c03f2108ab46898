"""Start, stop and restart (SPEC §1 start-up rules, §2 rescan on start)."""

import errno
import os
import signal
import socket
import subprocess
import time

from conftest import BIMFS, Daemon, expect_ok, free_port, fuse_mounted, sha512_file


def test_sigterm_unmounts_and_removes_socket(daemon):
    daemon.stop(signal.SIGTERM)  # asserts status 0, no mount, no socket


def test_sigint_unmounts_and_removes_socket(daemon):
    daemon.stop(signal.SIGINT)


def test_sigint_works_when_started_with_sigint_ignored(daemon):
    """A shell starts background jobs with SIGINT ignored (`bimfs ... &` in a script);
    SPEC §1 still wants SIGINT to unmount and remove the socket."""
    daemon.stop()
    daemon.start(preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    daemon.stop(signal.SIGINT)  # asserts status 0, no mount, no socket


def test_sigterm_while_a_client_watches(daemon):
    c = daemon.client()
    expect_ok(c.request({"op": "watch"}))
    try:
        daemon.stop()
        assert c.recv_line(timeout=10) is None, "watch connection not closed at shutdown"
    finally:
        c.close()


def test_ready_image_is_ready_right_after_restart(daemon, small_image):
    src, digest = small_image
    img = daemon.add_ready("keep", src, uuid="k1")
    daemon.restart()
    got = daemon.get_raw("keep")
    assert got is not None, "image lost across restart"
    assert got["status"]["state"] == "ready", "image is %r right after restart, want ready" % (
        got["status"]["state"])
    for f in ("uuid", "size", "virtualSize", "realSize", "format", "source"):
        assert got[f] == img[f], "%s changed across restart: %r -> %r" % (f, img[f], got[f])
    assert got["status"]["currentChecksum"] == digest
    assert sha512_file(daemon.mnt / "keep" / "backing") == digest


def test_restart_adopts_matching_image_without_rehash(daemon, small_image):
    """SPEC §2: size and mtime match the cfg -> ready without re-hashing. We
    change one byte behind bimfs's back while it is down and put the mtime
    back: a daemon that re-hashed would see other bytes; one that trusts the
    cfg still reports the recorded checksum."""
    src, digest = small_image
    daemon.add_ready("trust", src, uuid="t1")
    daemon.stop()
    backing = daemon.image_dir("trust", "t1") / "backing"
    st = os.stat(backing)
    os.chmod(backing, 0o644)
    with open(backing, "r+b") as f:
        f.seek(10)
        b = f.read(1)
        f.seek(10)
        f.write(bytes([b[0] ^ 0xFF]))
    os.chmod(backing, st.st_mode)
    os.utime(backing, ns=(st.st_atime_ns, st.st_mtime_ns))
    daemon.start()
    got = daemon.get_raw("trust")
    assert got["status"]["state"] == "ready", "state %r right after restart" % got["status"]
    assert got["status"]["currentChecksum"] == digest, \
        "the checksum changed: the image was re-hashed although size and mtime matched"


def test_restart_shows_no_unknown_state(daemon_factory, small_image):
    src, _ = small_image
    d = daemon_factory(args=["--check-interval", "1"])
    d.add_ready("steady", src)
    d.stop()
    d.start()
    with d.client() as w:
        expect_ok(w.request({"op": "watch"}))
        w.sock.settimeout(3)
        events = []
        try:
            while True:
                line = w.recv_line(timeout=3)
                if line is None:
                    break
                events.append(line)
        except socket.timeout:
            pass
    bad = [e for e in events if b'"ready"' not in e]
    assert not bad, "after restart the ready image changed state: %r" % bad
    assert d.get("steady")["status"]["state"] == "ready"


def test_several_restarts_keep_images(daemon, small_image):
    src, digest = small_image
    for i in range(3):
        daemon.add_ready("gen%d" % i, src)
        daemon.restart()
    images = daemon.list()
    assert sorted(images) == ["gen0", "gen1", "gen2"]
    assert all(i["status"]["state"] == "ready" for i in images.values()), images


def test_failed_image_keeps_its_record_across_restart(daemon, tmp_path):
    src = tmp_path / "bad.raw"
    src.write_bytes(os.urandom(4096))
    wrong = "0" * 128
    expect_ok(daemon.upload_file("broken", src, checksum=wrong))
    before = daemon.wait_state("broken", "failed")
    daemon.restart()
    after = daemon.get_raw("broken")
    assert after is not None, "a failed image lost its record across restart"
    assert after["status"]["state"] == "failed"
    assert after["status"]["errorMsg"] == before["status"]["errorMsg"]


def test_deleted_image_stays_deleted_after_restart(daemon, small_image):
    src, _ = small_image
    daemon.add_ready("dropped", src)
    expect_ok(daemon.request({"op": "delete", "name": "dropped"}))
    daemon.restart()
    assert daemon.get_raw("dropped") is None


def test_stale_socket_file_is_replaced(daemon_factory):
    d = daemon_factory(start=False)
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(str(d.sock))
    s.close()
    assert os.path.exists(d.sock)
    d.start()
    assert d.answers_version()


def test_restart_after_kill9_replaces_stale_socket(daemon, small_image):
    src, digest = small_image
    daemon.add_ready("survivor", src)
    daemon.kill9()
    assert os.path.lexists(daemon.sock), "kill -9 should leave the socket file"
    daemon.start()
    assert daemon.get_raw("survivor")["status"]["state"] == "ready"
    assert sha512_file(daemon.mnt / "survivor" / "backing") == digest


def run_refused(cmd, timeout=20):
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                       stdin=subprocess.DEVNULL)
    return p.returncode, p.stdout, p.stderr


def assert_refused(rc, err, what):
    assert rc == 1, "%s: exit %d, want 1; stderr %r" % (what, rc, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1, "%s: want one line on stderr, got %r" % (what, err)


def test_second_daemon_on_same_socket_refuses(daemon, tmp_path):
    mnt2 = tmp_path / "mnt2"
    disk2 = tmp_path / "disk2"
    mnt2.mkdir()
    disk2.mkdir()
    rc, out, err = run_refused([BIMFS, "-f", str(disk2), str(mnt2), "--socket", str(daemon.sock),
                                "--listen", "127.0.0.1:%d" % free_port()])
    assert_refused(rc, err, "second daemon on a live socket")
    assert not fuse_mounted(mnt2), "the refused daemon left a mount"
    assert daemon.answers_version(), "the first daemon stopped answering"


def test_missing_disk_refuses(tmp_path):
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    rc, out, err = run_refused([BIMFS, "-f", str(tmp_path / "nodisk"), str(mnt), "--socket",
                                str(tmp_path / "s.sock"), "--listen",
                                "127.0.0.1:%d" % free_port()])
    assert_refused(rc, err, "missing DISK")
    assert "nodisk" in err, "the error does not name the missing disk: %r" % err
    assert not fuse_mounted(mnt)
    assert not os.path.exists(tmp_path / "s.sock"), "a refused daemon left its socket"


def test_taken_port_refuses(tmp_path):
    mnt = tmp_path / "mnt"
    disk = tmp_path / "disk"
    mnt.mkdir()
    disk.mkdir()
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        port = s.getsockname()[1]
        rc, out, err = run_refused([BIMFS, "-f", str(disk), str(mnt), "--socket",
                                    str(tmp_path / "s.sock"), "--listen", "127.0.0.1:%d" % port])
    assert_refused(rc, err, "port taken")
    assert not fuse_mounted(mnt)
    assert not os.path.exists(tmp_path / "s.sock"), "a refused daemon left its socket"


def test_disk_that_is_a_file_refuses(tmp_path):
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    (tmp_path / "file").write_text("x")
    rc, out, err = run_refused([BIMFS, "-f", str(tmp_path / "file"), str(mnt), "--socket",
                                str(tmp_path / "s.sock"), "--listen",
                                "127.0.0.1:%d" % free_port()])
    assert_refused(rc, err, "DISK is a regular file")


def test_background_mode_daemonizes_and_stops_on_sigterm(tmp_path):
    """Without -f, bimfs returns once it serves; SIGTERM to it unmounts."""
    d = Daemon(tmp_path / "bg")
    d.disk.mkdir(parents=True)
    d.mnt.mkdir()
    d.port = free_port()
    cmd = [BIMFS, str(d.disk), str(d.mnt), "--socket", str(d.sock), "--listen",
           "127.0.0.1:%d" % d.port]
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
        assert p.returncode == 0, "bimfs (background) exited %d: %r" % (p.returncode, p.stderr)
        deadline = time.monotonic() + 10
        while not (fuse_mounted(d.mnt) and d.answers_version()):
            assert time.monotonic() < deadline, "background bimfs never served"
            time.sleep(0.05)
        pid = find_pid_of_mount(d)
        assert pid, "cannot find the background daemon"
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 20
        while fuse_mounted(d.mnt) or os.path.lexists(d.sock):
            assert time.monotonic() < deadline, "background bimfs did not stop on SIGTERM"
            time.sleep(0.05)
    finally:
        pid = find_pid_of_mount(d)
        if pid:
            os.kill(pid, signal.SIGKILL)
        d.unmount()


def find_pid_of_mount(d):
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open("/proc/%s/cmdline" % pid, "rb") as f:
                args = f.read().split(b"\0")
        except OSError:
            continue
        if str(d.sock).encode() in args and os.path.basename(args[0]) == b"bimfs":
            return int(pid)
    return None



def test_restart_after_kill9_detaches_the_dead_mount(daemon, small_image):
    """kill -9 leaves a FUSE mount nobody answers (ENOTCONN); the next bimfs on
    the same mountpoint detaches it and starts (a restarted pod, a unit)."""
    src, digest = small_image
    daemon.add_ready("img", src)
    daemon.proc.kill()
    daemon.proc.wait()
    try:
        os.stat(daemon.mnt)
        dead = False
    except OSError as e:
        dead = e.errno == errno.ENOTCONN
    assert dead, "kill -9 left no dead mount to test with"
    daemon.start()
    assert sha512_file(daemon.mnt / "img" / "backing") == digest
