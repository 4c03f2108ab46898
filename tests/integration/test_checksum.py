"""Expected checksums (SPEC §3)."""

import os

import pytest

from conftest import expect_error, expect_ok, sha256_file, sha512_file, xattr


@pytest.fixture
def src(small_image):
    return small_image[0]


def forms(path):
    return sha512_file(path), sha256_file(path)


def test_expected_sha512_plain_is_ready(daemon, src):
    s512, _ = forms(src)
    img = daemon.add_ready("plain", src, checksum=s512)
    assert img["status"]["currentChecksum"] == s512
    assert img["expectedChecksum"] == s512, "expectedChecksum %r" % img["expectedChecksum"]
    assert xattr(daemon.mnt / "plain", "user.bim.expected_checksum") == s512


def test_expected_sha512_prefixed_is_ready(daemon, src):
    s512, _ = forms(src)
    img = daemon.add_ready("prefixed", src, checksum="sha512:" + s512)
    assert img["status"]["currentChecksum"] == s512
    assert s512 in img["expectedChecksum"]


def test_expected_sha512_uppercase_is_accepted(daemon, src):
    s512, _ = forms(src)
    img = daemon.add_ready("upper", src, checksum=s512.upper())
    assert img["status"]["currentChecksum"] == s512, "currentChecksum must be lowercase"


def test_expected_sha256_is_ready_and_current_is_sha512(daemon, src):
    s512, s256 = forms(src)
    img = daemon.add_ready("s256", src, checksum="sha256:" + s256)
    assert img["status"]["currentChecksum"] == s512, \
        "currentChecksum must stay the SHA-512, got %r" % img["status"]["currentChecksum"]
    assert s256 in img["expectedChecksum"]


def assert_no_data_left(daemon, name):
    for d in daemon.image_dirs(name):
        left = sorted(set(os.listdir(d)) & {"backing", "backing.tmp"})
        assert not left, "a failed image left %r in %s" % (left, d)


def test_wrong_sha512_fails_with_mismatch_message(daemon, src):
    s512, _ = forms(src)
    wrong = "0123456789abcdef" * 8
    expect_ok(daemon.upload_file("wrong", src, checksum=wrong))
    img = daemon.wait_state("wrong", "failed")
    want = "checksum mismatch: expected %s, got %s" % (wrong, s512)
    assert img["status"]["errorMsg"] == want, "errorMsg %r, want %r" % (
        img["status"]["errorMsg"], want)
    assert xattr(daemon.mnt / "wrong", "user.bim.error") == want
    assert_no_data_left(daemon, "wrong")
    assert os.listdir(daemon.mnt / "wrong") == []


def test_wrong_sha256_fails_with_mismatch_message(daemon, src):
    s512, s256 = forms(src)
    wrong = "f" * 64
    expect_ok(daemon.upload_file("wrong256", src, checksum="sha256:" + wrong))
    img = daemon.wait_state("wrong256", "failed")
    msg = img["status"]["errorMsg"]
    assert msg.startswith("checksum mismatch: expected ") and wrong in msg, msg
    assert msg.endswith(", got " + s256) or msg.endswith(", got sha256:" + s256), \
        "the mismatch message should give the SHA-256 that was computed: %r" % msg
    assert_no_data_left(daemon, "wrong256")


def test_bimctl_wait_on_mismatch_exits_1_with_message(daemon, src):
    wrong = "a" * 128
    rc, out, err = daemon.bimctl("create", "ctlwrong", "--file", src, "--checksum", wrong,
                                 "--wait")
    assert rc == 1, "create --wait of a mismatching image: exit %d, want 1" % rc
    assert err.startswith("bimctl: ctlwrong: ") and "checksum mismatch" in err, err


MALFORMED = [
    "abc",
    "0" * 127,
    "0" * 129,
    "g" * 128,
    "sha512:" + "0" * 64,
    "sha512:" + "0" * 127,
    "sha256:" + "0" * 128,
    "sha256:" + "0" * 63,
    "sha256:",
    "sha512:",
    "md5:" + "0" * 32,
    "sha1:" + "0" * 40,
    "SHA256:" + "0" * 64 + "x",
    " " + "0" * 128,
    "0" * 128 + "\n",
    "sha256:" + "z" * 64,
]


@pytest.mark.parametrize("checksum", MALFORMED, ids=repr)
def test_malformed_checksum_is_invalid_argument_and_creates_nothing(daemon, src, checksum):
    expect_error(daemon.upload_file("badsum", src, checksum=checksum), "invalid_argument")
    assert daemon.get_raw("badsum") is None, "an image was created with checksum %r" % checksum
    assert daemon.image_dirs("badsum") == [], "a directory was created"
    assert not (daemon.mnt / "badsum").exists()


def test_malformed_checksum_via_bimctl_exits_1(daemon, src):
    rc, out, err = daemon.bimctl("create", "badctl", "--file", src, "--checksum", "xyz")
    assert rc in (1, 2), "exit %d" % rc
    assert err.startswith("bimctl: "), err
    assert daemon.get_raw("badctl") is None
