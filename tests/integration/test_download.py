"""create with source download (SPEC §4, §6; docs/download.md): http(s) images
that always end ready or failed, resumed with Range + If-Range, verified while
they stream.

Every test serves its image from faultserver.py on loopback, with the fault
it is about chosen in the URL's query string, and checks the end state, the
error text, the bytes (through the mount), the SHA-512, and that a failure
leaves no backing.tmp.
"""

import os
import re
import subprocess
import time

import pytest

from conftest import (MiB, expect_error, expect_ok, make_file, sha512_bytes, wait_until,
                      xattr)
from faultserver import FaultServer

FAST = ["--stall-timeout", "2", "--download-retries", "2"]


# ---------------------------------------------------------------- fixtures and helpers

@pytest.fixture
def server():
    srv = FaultServer().start()
    yield srv
    srv.stop()


@pytest.fixture
def fast(daemon_factory):
    """A daemon whose downloads stall after 2 s and give up after 2 retries."""
    return daemon_factory(args=FAST, name="d")


@pytest.fixture(scope="module")
def image_bytes(tmp_path_factory):
    """5 MiB of raw image: data, a hole, written zeros, data (a multiple of 512)."""
    p = tmp_path_factory.mktemp("img") / "img.raw"
    make_file(p, [("data", 2 * MiB), ("hole", MiB), ("zero", MiB), ("data", MiB)], seed=3)
    return p.read_bytes()


def create(daemon, name, url, checksum=None):
    return expect_ok(daemon.create(name, {"type": "download", "url": url}, checksum=checksum))


def wait_end(daemon, name, timeout=60):
    return daemon.wait_state(name, ("ready", "failed"), timeout=timeout)


def assert_ready_with(daemon, name, data):
    img = daemon.wait_state(name, "ready")
    want = sha512_bytes(data)
    assert img["status"]["currentChecksum"] == want, "checksum %s, want %s" % (
        img["status"]["currentChecksum"], want)
    assert img["size"] == len(data), "size %d, want %d" % (img["size"], len(data))
    got = (daemon.mnt / name / "backing").read_bytes()
    assert got == data, "the bytes read through the mount differ from the served ones"
    assert not (daemon.image_dir(name, img["uuid"]) / "backing.tmp").exists(), \
        "backing.tmp left next to a ready image"
    return img


def assert_failed(daemon, name, *fragments, timeout=60):
    img = wait_end(daemon, name, timeout)
    err = img["status"]["errorMsg"]
    assert img["status"]["state"] == "failed", "%s ended %s, expected failed" % (
        name, img["status"]["state"])
    for f in fragments:
        assert re.search(f, err), "error %r does not match %r" % (err, f)
    d = daemon.image_dir(name, img["uuid"])
    assert not (d / "backing.tmp").exists(), "a failed download left backing.tmp"
    assert not (d / "backing").exists(), "a failed download left backing"
    return img


def ranges(srv, path):
    return [(r["range"], r["if_range"], r["status"]) for r in srv.requests_for(path)]


# ---------------------------------------------------------------- the happy path

def test_download_is_ready_with_the_served_bytes_sparse_and_hashed(daemon, server, image_bytes):
    server.add("/img.raw", image_bytes)
    url = server.url("/img.raw")
    img = create(daemon, "dl", url)
    assert img["source"] == "download:" + url
    img = assert_ready_with(daemon, "dl", image_bytes)
    assert img["format"] == "raw"
    assert img["status"]["progress"] == 100
    assert img["realSize"] <= len(image_bytes) - 2 * MiB, \
        "the hole and the zero MiB were stored as data (realSize %d)" % img["realSize"]
    assert xattr(daemon.mnt / "dl", "user.bim.source") == "download:" + url
    reqs = server.requests_for("/img.raw")
    assert len(reqs) == 1, "one GET expected, the server saw %r" % ranges(server, "/img.raw")
    assert reqs[0]["referer"] is None, "a Referer was sent: %r" % reqs[0]["referer"]


def test_bimctl_create_url_wait_returns_when_ready(daemon, server, image_bytes):
    server.add("/img.raw", image_bytes)
    rc, out, err = daemon.bimctl("create", "dl", "--url", server.url("/img.raw"), "--wait")
    assert rc == 0, "bimctl create --url --wait: exit %d, stderr %r" % (rc, err)
    assert_ready_with(daemon, "dl", image_bytes)


def test_sha256_expected_checksum_is_verified_while_streaming(daemon, server, image_bytes):
    import hashlib
    server.add("/img.raw", image_bytes)
    sum256 = hashlib.sha256(image_bytes).hexdigest()
    img = create(daemon, "dl", server.url("/img.raw"), checksum="sha256:" + sum256)
    assert img["expectedChecksum"] == "sha256:" + sum256
    img = assert_ready_with(daemon, "dl", image_bytes)
    assert img["status"]["currentChecksum"] == sha512_bytes(image_bytes), \
        "currentChecksum must stay the SHA-512"


@pytest.mark.parametrize("algo", ["sha512", "sha256"])
def test_wrong_expected_checksum_fails_and_removes_the_data(daemon, server, image_bytes, algo):
    server.add("/img.raw", image_bytes)
    wrong = ("ab" * 64) if algo == "sha512" else "sha256:" + "cd" * 32
    create(daemon, "dl", server.url("/img.raw"), checksum=wrong)
    assert_failed(daemon, "dl", r"^checksum mismatch: expected %s, got [0-9a-f]+$" % wrong)


def test_redirect_chain_is_followed(daemon, server, image_bytes):
    server.add("/img.raw", image_bytes)
    create(daemon, "dl", server.url("/start", redirect=4, to="/img.raw"))
    assert_ready_with(daemon, "dl", image_bytes)
    assert len(server.requests_for("/start")) == 5


def test_more_than_ten_redirects_fail(daemon, server, image_bytes):
    server.add("/img.raw", image_bytes)
    create(daemon, "dl", server.url("/start", redirect=11, to="/img.raw"))
    assert_failed(daemon, "dl", "redirect", r"at most 10")
    assert len(server.requests_for("/start")) == 11, "redirects followed: %d" % len(
        server.requests_for("/start"))


@pytest.mark.parametrize("target", ["file:///etc/passwd", "ftp://127.0.0.1/x.img"])
def test_redirect_to_another_scheme_fails_at_once(daemon, server, target):
    create(daemon, "dl", server.url("/img.raw", redirect_to=target))
    img = assert_failed(daemon, "dl", r"only http and https", timeout=20)
    assert "root:" not in img["status"]["errorMsg"]
    assert len(server.requests_for("/img.raw")) == 1, "a permanent error was retried"


# ---------------------------------------------------------------- permanent errors

def test_404_fails_at_once_naming_status_and_url(daemon, server):
    url = server.url("/missing.img")
    t0 = time.monotonic()
    create(daemon, "dl", url)
    assert_failed(daemon, "dl", r"HTTP 404", re.escape(url), timeout=20)
    assert time.monotonic() - t0 < 10, "a 404 was not failed at once"
    assert len(server.requests_for("/missing.img")) == 1, "a 404 was retried"


def test_content_length_past_max_size_is_refused_before_any_byte(daemon, server, image_bytes):
    """A Content-Length is an upper bound, not the space needed (zero blocks are
    not written): only --max-size refuses it up front (1 TiB by default)."""
    server.add("/img.raw", image_bytes)
    huge = 1 << 60
    create(daemon, "dl", server.url("/img.raw", length=huge))
    assert_failed(daemon, "dl", r"^image larger than --max-size \(%d bytes\)$" % (1 << 40),
                  timeout=20)
    assert len(server.requests_for("/img.raw")) == 1


def test_disk_full_midway_fails_and_frees_the_data(daemon_factory, server, tmp_path):
    disk = tmp_path / "small"
    disk.mkdir()
    p = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(disk)],
                       capture_output=True, text=True)
    if p.returncode != 0:
        pytest.skip("cannot mount a small tmpfs: %s" % p.stderr.strip())
    try:
        data = os.urandom(8 * MiB)
        server.add("/big.raw", data)
        d = daemon_factory(args=FAST, disk=disk, name="d")
        create(d, "dl", server.url("/big.raw", chunked=1))  # no length: no early refusal
        assert_failed(d, "dl", r"no space left on the disk")
        d.stop()
    finally:
        subprocess.run(["umount", "-l", str(disk)], capture_output=True)


# ---------------------------------------------------------------- retries and resume

def test_500_then_success_is_retried(daemon, server, image_bytes):
    server.add("/img.raw", image_bytes)
    create(daemon, "dl", server.url("/img.raw", fail=2, fail_status=503))
    assert_ready_with(daemon, "dl", image_bytes)
    assert [r[2] for r in ranges(server, "/img.raw")] == [503, 503, 200]


def test_429_is_retried(daemon, server, image_bytes):
    server.add("/img.raw", image_bytes)
    create(daemon, "dl", server.url("/img.raw", fail=1, fail_status=429, retry_after=1))
    assert_ready_with(daemon, "dl", image_bytes)


def test_dropped_connection_resumes_with_range_and_if_range(daemon, server, image_bytes):
    server.add("/img.raw", image_bytes)
    cut = 3 * MiB + 12345
    create(daemon, "dl", server.url("/img.raw", drop_after=cut))
    assert_ready_with(daemon, "dl", image_bytes)
    assert ranges(server, "/img.raw") == [(None, None, 200),
                                          ("bytes=%d-" % cut, '"v0"', 206)]
    assert server.bytes_sent("/img.raw") == len(image_bytes), "bytes were downloaded twice"


def test_if_range_falls_back_to_last_modified(daemon, server, image_bytes):
    server.add("/img.raw", image_bytes)
    cut = MiB
    create(daemon, "dl", server.url("/img.raw", drop_after=cut, etag=0))
    assert_ready_with(daemon, "dl", image_bytes)
    (r0, r1) = server.requests_for("/img.raw")
    assert r1["range"] == "bytes=%d-" % cut
    assert r1["if_range"] == server._last_modified(), "If-Range %r" % r1["if_range"]


def test_no_validator_means_no_resume_but_a_restart(daemon, server, image_bytes):
    server.add("/img.raw", image_bytes)
    create(daemon, "dl", server.url("/img.raw", drop_after=MiB, etag=0, lastmod=0))
    assert_ready_with(daemon, "dl", image_bytes)
    assert [r[0] for r in ranges(server, "/img.raw")] == [None, None], \
        "a Range without If-Range was sent: %r" % ranges(server, "/img.raw")


def test_range_ignored_restarts_from_zero(daemon, server, image_bytes):
    server.add("/img.raw", image_bytes)
    cut = 2 * MiB
    create(daemon, "dl", server.url("/img.raw", drop_after=cut, norange=1))
    assert_ready_with(daemon, "dl", image_bytes)
    assert ranges(server, "/img.raw") == [(None, None, 200), ("bytes=%d-" % cut, '"v0"', 200)]


def test_content_range_off_by_some_bytes_restarts_from_zero(daemon, server, image_bytes):
    server.add("/img.raw", image_bytes)
    cut = 2 * MiB
    create(daemon, "dl", server.url("/img.raw", drop_after=cut, range_shift=512))
    assert_ready_with(daemon, "dl", image_bytes)
    rs = ranges(server, "/img.raw")
    assert rs[1] == ("bytes=%d-" % cut, '"v0"', 206), rs
    assert rs[2][0] is None, "after a wrong Content-Range the download must start over: %r" % rs


def test_content_changed_between_attempts_is_downloaded_whole(daemon, server, image_bytes):
    v1 = image_bytes
    v2 = bytes(reversed(image_bytes))
    server.add_versions("/img.raw", [v1, v2])
    create(daemon, "dl", server.url("/img.raw", drop_after=3 * MiB))
    assert_ready_with(daemon, "dl", v2)
    rs = ranges(server, "/img.raw")
    assert rs == [(None, None, 200), ("bytes=%d-" % (3 * MiB), '"v0"', 200)], rs


def test_changed_etag_on_a_206_restarts_from_zero(daemon, server, image_bytes):
    v1 = image_bytes
    v2 = bytes(reversed(image_bytes))
    server.add_versions("/img.raw", [v1, v2])
    create(daemon, "dl", server.url("/img.raw", drop_after=3 * MiB, bad_if_range=1))
    assert_ready_with(daemon, "dl", v2)
    rs = ranges(server, "/img.raw")
    assert rs[1] == ("bytes=%d-" % (3 * MiB), '"v0"', 206) and rs[2][0] is None, rs


def test_chunked_body_without_length(daemon, server, image_bytes):
    server.add("/img.raw", image_bytes)
    create(daemon, "dl", server.url("/img.raw", chunked=1, rate=2 * MiB))
    img = daemon.wait_state("dl", ("in-progress", "ready"))
    if img["status"]["state"] == "in-progress":
        assert img["status"]["bytesTotal"] == 0, "a total was invented: %r" % img["status"]
        assert img["status"]["progress"] < 100
    assert_ready_with(daemon, "dl", image_bytes)


def test_chunked_body_cut_resumes(daemon, server, image_bytes):
    server.add("/img.raw", image_bytes)
    create(daemon, "dl", server.url("/img.raw", chunked=1, drop_after=MiB + 7))
    assert_ready_with(daemon, "dl", image_bytes)
    assert ranges(server, "/img.raw")[1][:2] == ("bytes=%d-" % (MiB + 7), '"v0"')


def test_part_of_unknown_length_is_not_taken_for_the_end(daemon, server, image_bytes):
    server.add("/img.raw", image_bytes)
    cut = MiB
    create(daemon, "dl", server.url("/img.raw", chunked=1, drop_after=cut, range_star=1))
    assert_ready_with(daemon, "dl", image_bytes)
    rs = ranges(server, "/img.raw")
    # the rest came as "bytes N-M/*": bimfs asked again past it, got 416, and started over
    assert rs[1] == ("bytes=%d-" % cut, '"v0"', 206), rs
    assert rs[2] == ("bytes=%d-" % len(image_bytes), '"v0"', 416), rs
    assert rs[3][0] is None, rs


def test_stall_is_retried_and_resumed(daemon_factory, server, image_bytes):
    d = daemon_factory(args=["--stall-timeout", "2"], name="d")
    server.add("/img.raw", image_bytes)
    create(d, "dl", server.url("/img.raw", stall_at=MiB))
    assert_ready_with(d, "dl", image_bytes)
    rs = ranges(server, "/img.raw")
    assert rs[1][:2] == ("bytes=%d-" % MiB, '"v0"'), rs
    assert "stalled: no data for 2 s" in d.log(20000)


def test_stalling_source_fails_within_the_retry_budget(fast, server, image_bytes):
    server.add("/img.raw", image_bytes)
    t0 = time.monotonic()
    create(fast, "dl", server.url("/img.raw", stall_at=MiB, stall_times=100))
    assert_failed(fast, "dl", r"gave up after 3 attempts without new data", r"stalled",
                  re.escape(server.url("/img.raw")))
    assert time.monotonic() - t0 < 30


def test_source_resending_the_same_bytes_then_stalling_fails_in_time(daemon_factory, server,
                                                                    image_bytes):
    """No Range support: every attempt sends the same first MiB again, then stalls. Those
    bytes are not new, so the time-without-new-data limit (stall + 40 s) ends it, even with
    a retry count too large to."""
    d = daemon_factory(args=["--stall-timeout", "1", "--download-retries", "100"], name="d")
    server.add("/img.raw", image_bytes)
    t0 = time.monotonic()
    create(d, "dl", server.url("/img.raw", stall_at=MiB, stall_times=1000, norange=1))
    assert_failed(d, "dl", r"gave up after \d+ s without new data \(limit 41 s\)", r"stalled",
                  timeout=90)
    elapsed = time.monotonic() - t0
    assert 35 < elapsed < 60, "failed after %.0f s, want about 41 s" % elapsed
    assert len(ranges(server, "/img.raw")) > 3, "expected several attempts"


def test_truncated_body_is_never_ready(fast, server, image_bytes):
    server.add("/img.raw", image_bytes)
    create(fast, "dl", server.url("/img.raw", length=len(image_bytes) + 4096))
    assert_failed(fast, "dl", r"gave up after 3 attempts")
    assert "(the body ended early)" in fast.log(20000)


def test_connection_dropped_always_at_the_same_byte_fails(fast, server, image_bytes):
    server.add("/img.raw", image_bytes)
    create(fast, "dl", server.url("/img.raw", drop_at=2 * MiB))
    assert_failed(fast, "dl", r"gave up after 3 attempts without new data")
    assert len(server.requests_for("/img.raw")) == 4


def test_failing_source_ends_failed_within_two_minutes_with_defaults(daemon, server):
    t0 = time.monotonic()
    create(daemon, "dl", server.url("/img.raw", status=503))
    assert_failed(daemon, "dl", r"gave up after 6 attempts without new data", r"HTTP 503",
                  timeout=120)
    assert time.monotonic() - t0 < 120


def test_proxy_from_the_environment_is_used(daemon_factory, server, image_bytes, monkeypatch):
    server.add("/img.raw", image_bytes)
    monkeypatch.setenv("http_proxy", "http://127.0.0.1:%d" % server.port)
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    d = daemon_factory(name="d")
    url = "http://images.example.invalid/img.raw"
    create(d, "dl", url)
    img = assert_ready_with(d, "dl", image_bytes)
    assert img["source"] == "download:" + url
    assert len(server.requests_for("/img.raw")) == 1, "the proxy was not asked"


# ---------------------------------------------------------------- credentials and TLS

def test_credentials_never_appear_in_source_errors_xattrs_cfg_or_log(daemon, server, image_bytes):
    server.add("/img.raw", image_bytes)
    url = server.url("/img.raw", userinfo="user:s3cr3tpw", auth=1)
    shown = server.url("/img.raw", auth=1)
    img = create(daemon, "dl", url)
    assert img["source"] == "download:" + shown
    assert_ready_with(daemon, "dl", image_bytes)
    bad = server.url("/img.raw", userinfo="user:wr0ngpw", auth=1)
    create(daemon, "dl2", bad)
    assert_failed(daemon, "dl2", r"HTTP 401")
    rc, out, err = daemon.bimctl("list", "--json")
    assert rc == 0
    texts = {"list --json": out, "log": daemon.log(10 ** 7)}
    for name in ("dl", "dl2"):
        for a in ("user.bim.source", "user.bim.error"):
            texts["%s %s" % (name, a)] = xattr(daemon.mnt / name, a)
    for cfg in daemon.images_dir.glob("*/backing.cfg"):
        texts[str(cfg)] = cfg.read_text()
    for where, text in texts.items():
        for secret in ("s3cr3tpw", "wr0ngpw", "user:"):
            assert secret not in text, "%r appears in %s: %r" % (secret, where, text[:2000])


@pytest.fixture
def tls_server(tls_files):
    srv = FaultServer(tls=(str(tls_files / "srv.pem"), str(tls_files / "srv.key"))).start()
    yield srv
    srv.stop()


def test_https_with_ca_file(daemon_factory, tls_server, tls_files, image_bytes):
    d = daemon_factory(args=["--ca-file", str(tls_files / "ca.pem")], name="d")
    tls_server.add("/img.raw", image_bytes)
    create(d, "dl", tls_server.url("/img.raw", drop_after=MiB))
    assert_ready_with(d, "dl", image_bytes)
    assert ranges(tls_server, "/img.raw")[1][:2] == ("bytes=%d-" % MiB, '"v0"')


def test_https_without_ca_file_fails_with_a_tls_error(daemon, tls_server, image_bytes):
    tls_server.add("/img.raw", image_bytes)
    create(daemon, "dl", tls_server.url("/img.raw"))
    assert_failed(daemon, "dl", r"certificate", r"--ca-file", timeout=20)


# ---------------------------------------------------------------- progress, delete, restart

def test_progress_reports_bytes_total_and_rate(daemon, server, image_bytes):
    server.add("/img.raw", image_bytes)
    create(daemon, "dl", server.url("/img.raw", rate=MiB))

    def moving():
        img = daemon.get("dl")
        st = img["status"]
        return st["state"] == "in-progress" and st["bytesDone"] >= MiB and st["rate"] > 0 and img
    img = wait_until(moving, 20, "progress with a rate")
    st = img["status"]
    assert st["bytesTotal"] == len(image_bytes), st
    assert 0 < st["progress"] < 100, st
    assert_ready_with(daemon, "dl", image_bytes)


def test_delete_cancels_the_download_within_a_second(daemon, server, image_bytes):
    server.add("/img.raw", image_bytes)
    img = create(daemon, "dl", server.url("/img.raw", rate=512 * 1024))
    daemon.wait_state("dl", "in-progress")
    d = daemon.image_dir("dl", img["uuid"])
    with daemon.client() as c:
        t0 = time.monotonic()
        expect_ok(c.request({"op": "delete", "name": "dl"}))
        took = time.monotonic() - t0
    assert took < 1.0, "delete took %.2fs" % took
    assert not d.exists(), "the image directory survived the delete"
    sent = server.bytes_sent("/img.raw")
    time.sleep(1.0)
    assert server.bytes_sent("/img.raw") - sent <= 256 * 1024, "the transfer went on"


def _cut_midway(d, name):
    """Wait until a slow download has 3 of its 5 MiB."""
    wait_until(lambda: d.get(name)["status"]["bytesDone"] >= 3 * MiB, 20, "3 MiB downloaded")


@pytest.mark.parametrize("how", ["kill9", "sigterm"])
def test_daemon_restart_resumes_the_download(daemon_factory, server, image_bytes, how):
    d = daemon_factory(name="d")
    server.add("/img.raw", image_bytes)
    img = create(d, "dl", server.url("/img.raw", rate=MiB))
    _cut_midway(d, "dl")
    if how == "kill9":
        d.kill9()
    else:
        d.stop()
    tmp = d.image_dir("dl", img["uuid"]) / "backing.tmp"
    assert tmp.exists(), "the cut download left no backing.tmp to resume"
    have = tmp.stat().st_size
    assert have > 0
    d.start()
    assert_ready_with(d, "dl", image_bytes)
    rs = ranges(server, "/img.raw")
    assert rs[-1] == ("bytes=%d-" % have, '"v0"', 206), \
        "after a restart the download did not resume at byte %d: %r" % (have, rs)


def test_restart_of_a_download_with_credentials_fails_with_a_reason(daemon_factory, server,
                                                                    image_bytes):
    d = daemon_factory(name="d")
    server.add("/img.raw", image_bytes)
    url = server.url("/img.raw", userinfo="user:s3cr3tpw", auth=1, rate=MiB)
    create(d, "dl", url)
    _cut_midway(d, "dl")
    d.kill9()
    d.start()
    assert_failed(d, "dl", r"interrupted by a daemon restart", r"credentials")
    assert "s3cr3tpw" not in d.log(10 ** 7)


def test_restart_with_changed_content_downloads_the_new_version(daemon_factory, server,
                                                               image_bytes):
    d = daemon_factory(name="d")
    v2 = bytes(reversed(image_bytes))
    server.add_versions("/img.raw", [image_bytes, v2])
    create(d, "dl", server.url("/img.raw", rate=MiB))
    _cut_midway(d, "dl")
    d.kill9()
    d.start()
    assert_ready_with(d, "dl", v2)
    assert ranges(server, "/img.raw")[-1][2] == 200


def test_invalid_url_is_refused_before_anything_exists(daemon):
    expect_error(daemon.create("dl", {"type": "download", "url": "http:///x.img"}),
                 "invalid_argument")
    assert daemon.get_raw("dl") is None
