"""The control socket (SPEC §6) and bimctl (SPEC §7)."""

import json
import os
import re
import select
import socket
import stat
import subprocess
import time

import pytest

from conftest import (BIMCTL, IMAGE_FIELDS, STATES, STATUS_FIELDS, PipeFeeder, expect_error,
                      expect_ok)


def check_image_object(img, name):
    assert isinstance(img, dict), "image is not an object: %r" % (img,)
    missing = [f for f in IMAGE_FIELDS if f not in img]
    assert not missing, "image object lacks %r: %r" % (missing, img)
    missing = [f for f in STATUS_FIELDS if f not in img["status"]]
    assert not missing, "image status lacks %r: %r" % (missing, img["status"])
    assert img["name"] == name
    for f in ("size", "virtualSize", "realSize"):
        assert isinstance(img[f], int), "%s is not a number: %r" % (f, img[f])
    st = img["status"]
    assert st["state"] in STATES, "unknown state %r" % st["state"]
    assert isinstance(st["progress"], int) and 0 <= st["progress"] <= 100
    assert isinstance(st["sendingReference"], int)
    for f in ("currentChecksum", "errorMsg", "senderManagerAddress"):
        assert isinstance(st[f], str), "%s is not a string: %r" % (f, st[f])


def read_lines_until(proc, stop, timeout=20):
    """Lines the process prints (read unbuffered from its stdout pipe) until
    stop(line) is true or the timeout; returns them."""
    lines, buf = [], b""
    fd = proc.stdout.fileno()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r, _, _ = select.select([fd], [], [], 0.2)
        if not r:
            continue
        chunk = os.read(fd, 65536)
        if not chunk:
            break
        buf += chunk
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            lines.append(line.decode(errors="replace"))
            if stop(lines[-1]):
                return lines
    return lines


# ---------------------------------------------------------------- raw socket

def test_version_over_socket(daemon):
    with daemon.client() as c:
        r = c.request({"id": 7, "op": "version"})
    res = expect_ok(r)
    assert isinstance(res.get("version"), str) and res["version"], "no version string: %r" % r
    assert res.get("api") == 1, "api is %r, want 1" % res.get("api")


def test_reply_echoes_string_id(daemon):
    with daemon.client() as c:
        c.send_line({"id": "abc", "op": "version"})
        r = c.recv_json()
    assert r.get("id") == "abc" and r.get("ok") is True, r


def test_request_without_id_gets_a_reply(daemon):
    with daemon.client() as c:
        c.send_line({"op": "version"})
        r = c.recv_json()
    assert r.get("ok") is True, r
    assert r.get("id") is None, "reply invents an id: %r" % r


def test_many_requests_on_one_connection(daemon):
    with daemon.client() as c:
        for i in range(50):
            expect_ok(c.request({"id": i, "op": "list"}))


def test_pipelined_requests_are_answered_in_order(daemon):
    with daemon.client() as c:
        c.send_line(b"".join(b'{"id": %d, "op": "version"}\n' % i for i in range(20)))
        ids = [c.recv_json()["id"] for _ in range(20)]
    assert ids == list(range(20))


def test_socket_mode_is_0600(daemon):
    mode = stat.S_IMODE(os.stat(daemon.sock).st_mode)
    assert stat.S_ISSOCK(os.stat(daemon.sock).st_mode)
    assert mode == 0o600, "control socket mode is %o, want 600" % mode


def test_list_empty_disk_is_empty_map(daemon):
    assert daemon.list() == {}


def test_list_and_get_return_longhorn_image_objects(daemon, small_image):
    src, digest = small_image
    daemon.add_ready("alpha", src, uuid="a1")
    daemon.add_ready("beta", src, uuid="b2")
    images = daemon.list()
    assert sorted(images) == ["alpha", "beta"], "list keys %r" % sorted(images)
    for name, img in images.items():
        check_image_object(img, name)
    got = expect_ok(daemon.request({"op": "get", "name": "alpha"}))
    check_image_object(got, "alpha")
    assert got["uuid"] == "a1"
    assert got["status"]["currentChecksum"] == digest
    assert got["status"]["state"] == "ready"
    assert got["status"]["errorMsg"] == ""


def test_get_missing_is_not_found(daemon):
    err = expect_error(daemon.request({"op": "get", "name": "ubuntu"}), "not_found")
    assert "ubuntu" in err["message"], "message does not name the image: %r" % err


def test_delete_removes_record_tree_and_directory(daemon, small_image):
    src, _ = small_image
    daemon.add_ready("gone", src, uuid="g1")
    assert daemon.image_dir("gone", "g1").is_dir()
    assert expect_ok(daemon.request({"op": "delete", "name": "gone"})) == {}
    assert "gone" not in daemon.list()
    assert not daemon.image_dir("gone", "g1").exists(), "delete left the directory"
    assert not (daemon.mnt / "gone").exists(), "delete left the image in the tree"


def test_delete_missing_is_not_found(daemon):
    expect_error(daemon.request({"op": "delete", "name": "nothing"}), "not_found")


def test_watch_streams_update_and_delete_events(daemon, small_image):
    src, _ = small_image
    with daemon.client() as w:
        expect_ok(w.request({"op": "watch"}))
        daemon.add_ready("watched", src)
        states = []
        while "ready" not in states:
            ev = w.recv_json(timeout=30)
            assert ev.get("event") in ("update", "delete"), "bad event line %r" % ev
            check_image_object(ev["image"], ev["image"]["name"])
            if ev["image"]["name"] == "watched":
                assert ev["event"] == "update", "delete event before delete: %r" % ev
                states.append(ev["image"]["status"]["state"])
        expect_ok(daemon.request({"op": "delete", "name": "watched"}))
        ev = w.recv_json(timeout=30)
        while ev["event"] == "update":
            ev = w.recv_json(timeout=30)
        assert ev["event"] == "delete" and ev["image"]["name"] == "watched", ev


def test_watch_name_sees_only_that_image(daemon, small_image):
    src, _ = small_image
    daemon.add_ready("one", src)
    daemon.add_ready("two", src)
    with daemon.client() as w:
        expect_ok(w.request({"op": "watch", "name": "two"}))
        daemon.add_ready("other", src)
        expect_ok(daemon.request({"op": "delete", "name": "one"}))
        expect_ok(daemon.request({"op": "delete", "name": "two"}))
        seen = []
        while True:
            ev = w.recv_json(timeout=30)
            seen.append((ev.get("event"), ev["image"]["name"]))
            if ev.get("event") == "delete" and ev["image"]["name"] == "two":
                break
    others = [e for e in seen if e[1] != "two"]
    assert not others, "watch two also saw %r" % others


def test_closing_a_watch_leaves_daemon_serving(daemon, small_image):
    src, _ = small_image
    for _ in range(5):
        c = daemon.client()
        expect_ok(c.request({"op": "watch"}))
        c.close()
    daemon.add_ready("afterwatch", src)
    assert daemon.answers_version()


def test_create_upload_without_fd_is_invalid(daemon):
    expect_error(daemon.request({"op": "create", "name": "nofd", "source": {"type": "upload"}}),
                 "invalid_argument")
    assert daemon.get_raw("nofd") is None


def test_unix_socket_accepts_another_client_while_one_is_idle(daemon):
    idle = daemon.client()
    try:
        idle.send_line(b'{"op": "vers')  # half a line, never finished
        assert daemon.answers_version(), "a half-sent request blocks other clients"
    finally:
        idle.close()


# ---------------------------------------------------------------- bimctl

def test_bimctl_version(daemon):
    version = expect_ok(daemon.request({"op": "version"}))["version"]
    rc, out, err = daemon.bimctl("version")
    assert rc == 0, "bimctl version: exit %d, %r" % (rc, err)
    assert version in out, "bimctl version prints %r, daemon version is %r" % (out, version)


def test_bimctl_socket_option_overrides_environment(daemon, tmp_path):
    rc, out, err = daemon.bimctl("-s", daemon.sock, "version",
                                 socket_path=tmp_path / "nowhere.sock")
    assert rc == 0, "bimctl -s SOCKET with a wrong $BIMFS_SOCKET: exit %d, %r" % (rc, err)


def test_bimctl_list_names_images(daemon, small_image):
    src, _ = small_image
    daemon.add_ready("listed-one", src)
    daemon.add_ready("listed-two", src)
    rc, out, err = daemon.bimctl("list")
    assert rc == 0, err
    assert "listed-one" in out and "listed-two" in out, out
    assert "ready" in out, "bimctl list does not show the state: %r" % out


def test_bimctl_list_json_is_map_of_images(daemon, small_image):
    src, _ = small_image
    daemon.add_ready("jsonimg", src)
    rc, out, err = daemon.bimctl("list", "--json")
    assert rc == 0, err
    images = json.loads(out)
    assert list(images) == ["jsonimg"]
    check_image_object(images["jsonimg"], "jsonimg")


def test_bimctl_get_shows_state(daemon, small_image):
    src, _ = small_image
    img = daemon.add_ready("shown", src)
    rc, out, err = daemon.bimctl("get", "shown")
    assert rc == 0, err
    assert "ready" in out and img["status"]["currentChecksum"] in out, out


def test_bimctl_get_json_is_the_image_object(daemon, small_image):
    src, _ = small_image
    daemon.add_ready("jget", src)
    rc, out, err = daemon.bimctl("get", "jget", "--json")
    assert rc == 0, err
    check_image_object(json.loads(out), "jget")


def test_bimctl_get_missing_exits_1_with_name_and_message(daemon):
    rc, out, err = daemon.bimctl("get", "missing")
    assert rc == 1, "exit %d, want 1" % rc
    lines = err.strip().splitlines()
    assert len(lines) == 1, "want one error line on stderr, got %r" % err
    assert re.match(r"^bimctl: missing: \S", lines[0]), \
        "error %r is not 'bimctl: <name>: <message>'" % lines[0]
    assert "missing: missing:" not in lines[0], "name repeated in %r" % lines[0]
    assert out == "", "stdout not empty on error: %r" % out


def test_bimctl_delete(daemon, small_image):
    src, _ = small_image
    daemon.add_ready("todelete", src)
    rc, out, err = daemon.bimctl("delete", "todelete")
    assert rc == 0, err
    assert daemon.get_raw("todelete") is None
    rc, out, err = daemon.bimctl("delete", "todelete")
    assert rc == 1, "deleting a missing image: exit %d" % rc
    assert err.startswith("bimctl: todelete: "), err


@pytest.mark.parametrize("args", [
    [],
    ["frobnicate"],
    ["get"],
    ["delete"],
    ["create", "x1"],
    ["create", "x1", "--url", "http://h/x", "--file", "/etc/hostname"],
    ["create", "x1", "--file"],
    ["list", "--bogus"],
    ["get", "a1", "b1"],
    ["sync", "x1", "--from", "127.0.0.1:1"],
], ids=lambda a: " ".join(a) or "no-args")
def test_bimctl_usage_errors_exit_2(daemon, args):
    rc, out, err = daemon.bimctl(*args)
    assert rc == 2, "bimctl %s: exit %d, want 2 (usage); stderr %r" % (" ".join(args), rc, err)
    assert err.strip(), "usage error with nothing on stderr"


def test_bimctl_no_daemon_exits_3(tmp_path):
    env = dict(os.environ, BIMFS_SOCKET=str(tmp_path / "none.sock"))
    p = subprocess.run([BIMCTL, "version"], capture_output=True, text=True, env=env, timeout=30)
    assert p.returncode == 3, "no socket: exit %d, want 3" % p.returncode
    assert p.stderr.startswith("bimctl: "), p.stderr


def run_bimctl_without_daemon(tmp_path, *args):
    """bimctl -s <a socket nobody listens on> ARGS; returns (rc, stderr, socket path)."""
    sock = str(tmp_path / "none.sock")
    p = subprocess.run([BIMCTL, "-s", sock] + list(args), capture_output=True, text=True,
                       timeout=30, stdin=subprocess.DEVNULL)
    return p.returncode, p.stderr, sock


@pytest.mark.parametrize("args", [
    ["get", "img1"],
    ["delete", "img1"],
    ["watch", "img1"],
    ["create", "img1", "--url", "http://127.0.0.1:1/x"],
    ["sync", "img1", "--uuid", "u1", "--from", "127.0.0.1:1"],
], ids=lambda a: a[0])
def test_bimctl_no_daemon_error_names_the_image(tmp_path, args):
    rc, err, sock = run_bimctl_without_daemon(tmp_path, *args)
    assert rc == 3, "bimctl %s without a daemon: exit %d, want 3" % (" ".join(args), rc)
    want = "bimctl: img1: cannot connect to %s: No such file or directory\n" % sock
    assert err == want, "bimctl %s: stderr %r, want %r" % (" ".join(args), err, want)


@pytest.mark.parametrize("args", [["list"], ["watch"], ["version"]], ids=lambda a: a[0])
def test_bimctl_no_daemon_error_without_a_name(tmp_path, args):
    rc, err, sock = run_bimctl_without_daemon(tmp_path, *args)
    assert rc == 3, "bimctl %s without a daemon: exit %d, want 3" % (args[0], rc)
    want = "bimctl: cannot connect to %s: No such file or directory\n" % sock
    assert err.endswith(want) and err.count("bimctl: ") == 1, \
        "bimctl %s: stderr %r, want %r" % (args[0], err, want)


def test_bimctl_create_unreadable_file_names_the_image(daemon, tmp_path):
    missing = tmp_path / "nonexistent"
    rc, out, err = daemon.bimctl("create", "img1", "--file", missing)
    assert rc == 1, "create --file of a missing file: exit %d, want 1" % rc
    want = "bimctl: img1: cannot open %s: No such file or directory\n" % missing
    assert err == want, "stderr %r, want %r" % (err, want)
    assert daemon.get_raw("img1") is None, "an image was created without its file"


def test_bimctl_create_file_that_is_a_directory_names_the_image(daemon, tmp_path):
    rc, out, err = daemon.bimctl("create", "img1", "--file", tmp_path)
    assert rc == 1, "create --file of a directory: exit %d, want 1" % rc
    want = "bimctl: img1: cannot open %s: Is a directory\n" % tmp_path
    assert err == want, "stderr %r, want %r" % (err, want)


@pytest.mark.parametrize("args", [["get"], ["delete"], ["create", "--url", "http://h/x"]],
                         ids=lambda a: a[0])
def test_bimctl_name_too_long_is_named_once(daemon, args):
    name = "a" * 70
    rc, out, err = daemon.bimctl(args[0], name, *args[1:])
    assert rc == 1, "bimctl %s with a 70-byte name: exit %d, want 1" % (args[0], rc)
    m = re.match(r"^bimctl: (a+): (.*)\n$", err)
    assert m and m.group(1) == name, \
        "error %r is not 'bimctl: <the whole name>: <message>'" % err
    assert "aaa" not in m.group(2) and "..." not in m.group(2), \
        "the name appears twice in %r" % err
    assert "invalid name" in m.group(2), "message %r does not say why" % m.group(2)


@pytest.mark.parametrize("args, option", [
    (["watch", "-bad"], "-b"),
    (["get", "img1", "-xh"], "-x"),
    (["-bad", "list"], "-b"),
    (["list", "--bogus"], "--bogus"),
    (["list", "--json=yes"], "--json=yes"),
], ids=lambda a: " ".join(a) if isinstance(a, list) else a)
def test_bimctl_unknown_option_quotes_that_option(tmp_path, args, option):
    rc, err, _ = run_bimctl_without_daemon(tmp_path, *args)
    assert rc == 2, "bimctl %s: exit %d, want 2 (usage)" % (" ".join(args), rc)
    first = err.splitlines()[0] if err else ""
    assert first.endswith("unknown option '%s'" % option), \
        "bimctl %s: %r does not quote the option %r" % (" ".join(args), first, option)


def test_bimctl_stale_socket_exits_3(tmp_path):
    path = tmp_path / "stale.sock"
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(str(path))
    s.close()
    p = subprocess.run([BIMCTL, "-s", str(path), "list"], capture_output=True, text=True,
                       timeout=30)
    assert p.returncode == 3, "stale socket: exit %d, want 3" % p.returncode


def test_bimctl_invalid_name_is_refused(daemon):
    rc, out, err = daemon.bimctl("get", "../x")
    assert rc in (1, 2), "invalid name: exit %d" % rc
    assert err.startswith("bimctl: "), err


def test_bimctl_watch_prints_a_line_per_event_at_once(daemon, small_image):
    src, _ = small_image
    env = dict(os.environ, BIMFS_SOCKET=str(daemon.sock))
    p = subprocess.Popen([BIMCTL, "watch"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         env=env)
    try:
        time.sleep(0.5)
        assert p.poll() is None, "bimctl watch exited: %r" % (p.communicate(),)
        daemon.add_ready("streamed", src)
        lines = read_lines_until(p, lambda line: "streamed" in line and "ready" in line)
        assert any("streamed" in line and "ready" in line for line in lines), \
            "bimctl watch printed no line naming the ready image (while running): %r" % lines
        assert p.poll() is None, "bimctl watch did not keep running"
    finally:
        p.terminate()
        p.wait(10)


def test_bimctl_watch_name_filters(daemon, small_image):
    src, _ = small_image
    daemon.add_ready("wanted", src)
    env = dict(os.environ, BIMFS_SOCKET=str(daemon.sock))
    p = subprocess.Popen([BIMCTL, "watch", "wanted"], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, env=env)
    try:
        time.sleep(0.5)
        daemon.add_ready("unwanted", src)
        expect_ok(daemon.request({"op": "delete", "name": "wanted"}))
        lines = read_lines_until(
            p, lambda line: "wanted" in line.replace("unwanted", "") and "delete" in line)
        assert any("wanted" in line.replace("unwanted", "") for line in lines), \
            "bimctl watch wanted printed no line for the deletion: %r" % lines
        assert not any("unwanted" in line for line in lines), lines
    finally:
        p.terminate()
        p.wait(10)


def test_bimctl_create_wait_of_in_progress_upload_blocks_until_ready(daemon, tmp_path):
    """--wait on a create that returns the existing (in-progress) image waits for it."""
    block = os.urandom(1024 * 1024)
    feeder = PipeFeeder(close=False)
    reply = daemon.upload_fd("slowctl", feeder.r, uuid="w1")
    feeder.close_read_end()
    expect_ok(reply)
    feeder.start()
    src = tmp_path / "same.raw"
    src.write_bytes(block)
    env = dict(os.environ, BIMFS_SOCKET=str(daemon.sock))
    p = subprocess.Popen([BIMCTL, "create", "slowctl", "--file", str(src), "--uuid", "w1",
                          "--wait"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                         text=True)
    try:
        time.sleep(1)
        assert p.poll() is None, "--wait returned while the image is in progress: %r" % (
            p.communicate(),)
    finally:
        os.write(feeder.w, block)
        feeder.stop()
    out, err = p.communicate(timeout=60)
    assert p.returncode == 0, "--wait: exit %d, %r" % (p.returncode, err)
    assert daemon.get("slowctl")["status"]["state"] == "ready"

