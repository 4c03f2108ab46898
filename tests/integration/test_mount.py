"""bimfs started the way mount(8) and supervisors start it (issue 13).

- `mount -t fuse.bimfs DISK MNT -o socket=...,listen=...` and an fstab line go
  through Debian's mount.fuse3, which runs `bimfs DISK MNT -o OPTS` and takes
  its exit status as the mount's: bimfs must be serving when that command
  returns, and a failed start must be a non-zero status with the reason.
- mount(8) runs helpers with no PATH (so /bin/sh's default one): each mount
  test runs in a private mount namespace (unshare -m) where a directory holding
  a `bimfs` symlink to $BIMFS is bind-mounted over /usr/local/sbin. Nothing
  outside the namespace changes.
- Under systemd (Type=notify), READY=1 reaches $NOTIFY_SOCKET only once the
  mount answers and the socket and HTTP server serve; STOPPING=1 on SIGTERM.
"""

import os
import socket
import subprocess
import time
import urllib.request

import pytest

from conftest import (BIMCTL, BIMFS, START_TIMEOUT, STOP_TIMEOUT, Client, free_port,
                      fuse_mounted, make_random_file, wait_until, xattr)

MiB = 1024 * 1024


def unshare_works():
    try:
        p = subprocess.run(["unshare", "--mount", "--propagation", "private", "true"],
                           capture_output=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return p.returncode == 0


needs_namespace = pytest.mark.skipif(
    not unshare_works() or not os.path.exists("/sbin/mount.fuse3"),
    reason="needs unshare --mount (root) and Debian's mount.fuse3 (fuse3)")


def healthz(port, timeout=5):
    with urllib.request.urlopen("http://127.0.0.1:%d/healthz" % port, timeout=timeout) as r:
        return r.read().decode()


def answers_version(sock):
    try:
        with Client(sock, timeout=5) as c:
            return c.request({"op": "version"}).get("ok") is True
    except (OSError, AssertionError, ValueError):
        return False


class Setup:
    """Paths of one mount scenario, and the shell prologue that makes `bimfs`
    findable by mount.fuse3 inside the namespace."""

    def __init__(self, tmp_path):
        self.tmp = tmp_path
        self.disk = tmp_path / "disk"
        self.mnt = tmp_path / "mnt"
        self.sock = tmp_path / "ctl.sock"
        self.sbin = tmp_path / "sbin"
        self.port = free_port()
        for p in (self.disk, self.mnt, self.sbin):
            p.mkdir()
        (self.sbin / "bimfs").symlink_to(BIMFS)

    def env(self, **extra):
        e = dict(os.environ, DISK=str(self.disk), MNT=str(self.mnt), SOCK=str(self.sock),
                 PORT=str(self.port), SBIN=str(self.sbin), BIMCTL=BIMCTL)
        e.update({k: str(v) for k, v in extra.items()})
        return e

    def run(self, script, **extra):
        """Run a bash script in a private mount namespace; (rc, stdout, stderr).
        Whatever it mounted disappears with the namespace; a daemon it left
        running loses its mount (and then exits)."""
        prologue = 'mount --bind "$SBIN" /usr/local/sbin\n'
        cleanup = ('cleanup() { if findmnt -n "$MNT" >/dev/null; then '
                   'fusermount3 -u -z "$MNT" || true; fi; }\ntrap cleanup EXIT\n')
        p = subprocess.run(["unshare", "--mount", "--propagation", "private", "/bin/bash",
                            "-euo", "pipefail", "-c", prologue + cleanup + script],
                           capture_output=True, text=True, timeout=180, env=self.env(**extra),
                           stdin=subprocess.DEVNULL)
        return p.returncode, p.stdout, p.stderr


# Once mount(8) returns, the daemon answers at once: no waiting here. Then an
# image uploaded through bimctl is read back through the mount, and umount
# stops the daemon (its socket goes away).
SERVE_AND_UNMOUNT = r'''
findmnt -n -o FSTYPE "$MNT" | grep -qx 'fuse.bimfs' || { echo "not a fuse.bimfs mount" >&2; exit 10; }
getfattr --only-values -n user.bim.version "$MNT" >/dev/null || { echo "mount does not answer" >&2; exit 11; }
"$BIMCTL" -s "$SOCK" version >/dev/null || { echo "control socket does not answer" >&2; exit 12; }
curl -sf "http://127.0.0.1:$PORT/healthz" | grep -qx ok || { echo "HTTP does not answer" >&2; exit 13; }
"$BIMCTL" -s "$SOCK" create img --file "$IMAGE" --wait >&2
sha512sum "$MNT/img/raw" | cut -d' ' -f1
umount "$MNT"
for i in $(seq 300); do [ -e "$SOCK" ] || break; sleep 0.1; done
[ ! -e "$SOCK" ] || { echo "socket still there 30 s after umount" >&2; exit 14; }
'''


@pytest.fixture
def setup(tmp_path):
    return Setup(tmp_path)


@pytest.fixture
def image(tmp_path):
    p = tmp_path / "image.raw"
    return p, make_random_file(p, 2 * MiB, seed=13)


@needs_namespace
def test_mount_t_fuse_bimfs_serves_an_image_and_umount_stops_it(setup, image):
    path, digest = image
    rc, out, err = setup.run(
        'mount -t fuse.bimfs "$DISK" "$MNT" -o "socket=$SOCK,listen=127.0.0.1:$PORT"\n'
        + SERVE_AND_UNMOUNT, IMAGE=path)
    assert rc == 0, "mount -t fuse.bimfs scenario failed (exit %d):\n%s" % (rc, err)
    assert out.strip() == digest, "the image read through the mount differs: %r" % out
    assert not setup.sock.exists(), "control socket left behind after umount"


@needs_namespace
def test_fstab_line_mounts_through_mount_fuse3(setup, image):
    path, digest = image
    fstab = setup.tmp / "fstab"
    # noauto, nofail and x-* are mount(8)'s; it does not pass them on
    fstab.write_text("%s %s fuse.bimfs socket=%s,listen=127.0.0.1:%d,send_limit=2,"
                     "noauto,nofail,x-systemd.requires=network-online.target 0 0\n"
                     % (setup.disk, setup.mnt, setup.sock, setup.port))
    rc, out, err = setup.run('mount -T "$FSTAB" "$MNT"\n' + SERVE_AND_UNMOUNT,
                             IMAGE=path, FSTAB=fstab)
    assert rc == 0, "fstab scenario failed (exit %d):\n%s" % (rc, err)
    assert out.strip() == digest, "the image read through the mount differs: %r" % out


@needs_namespace
@pytest.mark.parametrize("option, message", [
    ("send-limit=0", "--send-limit: expected a number from 1 to 1000, got '0'"),
    ("max_size=lots", "--max-size: expected a number of bytes"),
    ("verify=crc32", '--verify: "crc32" is not pieces or sha512'),
    ("socket", "-o socket needs a value"),
    ("frobnicate=1", "unknown option(s): `-o frobnicate=1'"),
])
def test_bad_mount_option_fails_the_mount_with_a_clear_message(setup, option, message):
    rc, out, err = setup.run(
        'rc=0; mount -t fuse.bimfs "$DISK" "$MNT" -o "socket=$SOCK,listen=127.0.0.1:$PORT,$OPT"'
        ' || rc=$?\n'
        'if findmnt -n "$MNT" >/dev/null; then echo MOUNTED; fi\n'
        'exit $rc\n', OPT=option)
    assert rc != 0, "mount with -o %s succeeded; stdout %r stderr %r" % (option, out, err)
    assert message in err, "mount -o %s: expected %r in stderr, got %r" % (option, message, err)
    assert "MOUNTED" not in out, "mount -o %s failed but left a mount behind" % option
    assert not setup.sock.exists(), "a failed start left its control socket behind"


@needs_namespace
def test_taken_port_fails_the_mount(setup):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        rc, out, err = setup.run(
            'mount -t fuse.bimfs "$DISK" "$MNT" -o "socket=$SOCK,listen=127.0.0.1:$TAKEN"\n',
            TAKEN=port)
    assert rc != 0, "mount succeeded on a taken port; stderr %r" % err
    assert "127.0.0.1:%d" % port in err and "in use" in err, "unclear message: %r" % err


def test_background_start_returns_once_serving(setup):
    """Without -f the command returns (stdout and stderr closed, so
    capture_output returns) only when mount, socket and HTTP all answer."""
    p = subprocess.run([BIMFS, str(setup.disk), str(setup.mnt), "-o",
                        "socket=%s,listen=127.0.0.1:%d" % (setup.sock, setup.port)],
                       capture_output=True, text=True, timeout=START_TIMEOUT,
                       stdin=subprocess.DEVNULL)
    try:
        assert p.returncode == 0, "bimfs exited %d: %s" % (p.returncode, p.stderr)
        assert fuse_mounted(setup.mnt), "bimfs returned before the mount was up"
        assert xattr(setup.mnt, "user.bim.version"), "the mount does not answer"
        assert answers_version(setup.sock), "bimfs returned before the control socket answered"
        assert healthz(setup.port) == "ok", "bimfs returned before /healthz answered"
    finally:
        if fuse_mounted(setup.mnt):
            subprocess.run(["fusermount3", "-u", str(setup.mnt)], capture_output=True, timeout=30)
    wait_until(lambda: not setup.sock.exists(), STOP_TIMEOUT,
               "the background daemon to remove its socket after the unmount")


# ---------------------------------------------------------------- sd_notify

@pytest.fixture(params=["path", "abstract"])
def notify_socket(request, tmp_path, monkeypatch):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    if request.param == "path":
        addr = str(tmp_path / "notify.sock")
        s.bind(addr)
        env = addr
    else:
        name = "bimfs-test-notify-%d-%d" % (os.getpid(), time.monotonic_ns())
        s.bind("\0" + name)
        env = "@" + name
    monkeypatch.setenv("NOTIFY_SOCKET", env)
    yield s
    s.close()


def recv_message(s, timeout):
    s.settimeout(timeout)
    data = s.recv(4096).decode()
    return dict(line.split("=", 1) for line in data.split("\n") if line)


def test_ready_only_when_serving_and_stopping_on_sigterm(daemon_factory, notify_socket):
    d = daemon_factory(start=False, name="d")
    d.disk.mkdir(parents=True)
    d.mnt.mkdir(parents=True)
    d.port = free_port()
    with open(d.log_path, "ab") as log:
        d.proc = subprocess.Popen(d.command(), stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                  start_new_session=True)
    try:
        msg = recv_message(notify_socket, START_TIMEOUT)
    except socket.timeout:
        pytest.fail("no READY=1 within %ds; log:\n%s" % (START_TIMEOUT, d.log()))
    # checked the moment READY=1 arrives, without waiting
    assert msg.get("READY") == "1", "first notification is not READY=1: %r" % msg
    assert msg.get("MAINPID") == str(d.proc.pid), "MAINPID is not the daemon's: %r" % msg
    assert "serving disk" in d.log(), "READY=1 before the daemon said it serves; log:\n" + d.log()
    assert fuse_mounted(d.mnt), "READY=1 before the mount"
    assert xattr(d.mnt, "user.bim.version"), "READY=1 but the mount does not answer"
    assert d.answers_version(), "READY=1 before the control socket answered"
    assert healthz(d.port) == "ok", "READY=1 before /healthz answered"

    d.stop()  # SIGTERM; asserts exit 0, unmounted, socket removed
    try:
        msg = recv_message(notify_socket, 1)
    except socket.timeout:
        pytest.fail("no STOPPING=1 after SIGTERM")
    assert msg.get("STOPPING") == "1", "the notification after SIGTERM is not STOPPING=1: %r" % msg
