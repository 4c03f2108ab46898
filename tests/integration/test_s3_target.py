"""The s3 backup target (backup/s3/, bk_s3_ops) against a real S3 endpoint on
loopback (s3server.py: every request's SigV4 signature is recomputed with
botocore and a bad one is refused), through bk_target_tool: one operation of
the target per run, with the credentials, endpoint and CA in its environment
as the daemon would have them.
"""

import os
import time

import pytest

from s3server import S3Server
from targettool import TOOL, failed, ok, tool

SECRET = "bimfs/Secret+Key/0123456789abcdefghij"

pytestmark = pytest.mark.skipif(not TOOL, reason="BK_TARGET_TOOL not set (run through meson)")


def s3_env(srv, **extra):
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("AWS_") and k.lower() not in ("http_proxy", "https_proxy",
                                                             "all_proxy")}
    env.update(AWS_ACCESS_KEY_ID=srv.key_id, AWS_SECRET_ACCESS_KEY=srv.secret,
               AWS_ENDPOINTS=srv.endpoint)
    env.update(extra)
    return {k: v for k, v in env.items() if v is not None}


@pytest.fixture
def srv():
    s = S3Server(secret=SECRET).start()
    yield s
    s.stop()


URL = "s3://bk@us-east-1/longhorn/"


def test_write_read_exists_mtime_round_trip(srv):
    env = s3_env(srv)
    data = os.urandom(2 * 1024 * 1024 + 12345)  # a 2 MiB block and more: curl's 100-continue
    path = "backupstore/backing-images/blocks/ab/cd/a b+c=d.blk"
    ok(tool(URL, "write", path, env=env, data=data))
    assert srv.get("longhorn/" + path) == data, "the object is not the bytes written"
    assert ok(tool(URL, "read", path, env=env)) == data, "read gave other bytes"
    assert ok(tool(URL, "exists", path, env=env)) == b"1\n"
    assert ok(tool(URL, "exists", path + ".not", env=env)) == b"0\n"
    mtime = int(ok(tool(URL, "mtime", path, env=env)))
    assert abs(mtime - time.time()) < 60, "mtime %d is not the object's Last-Modified" % mtime
    ok(tool(URL, "write", "backupstore/empty", env=env, data=b""))
    assert ok(tool(URL, "read", "backupstore/empty", env=env)) == b""
    assert srv.rejected == [], "requests were refused: %s" % srv.rejected


def test_list_follows_continuation_tokens_past_max_keys(srv):
    srv.max_keys = 7
    env = s3_env(srv)
    ok(tool(URL, "write-many", "backupstore/blocks", 25, 4, env=env))  # 4 threads, one target
    ok(tool(URL, "write", "backupstore/blocks/sub/deeper/x", env=env, data=b"x"))
    ok(tool(URL, "write", "backupstore/blocksX", env=env, data=b"not a child"))
    names = ok(tool(URL, "list", "backupstore/blocks", env=env)).decode().split("\n")[:-1]
    want = ["obj-%04d" % i for i in range(25)] + ["sub"]
    assert sorted(names) == want, "listing: %s" % names
    pages = [q for m, p, q in srv.requests if m == "GET" and "list-type=2" in q and
             "prefix=longhorn%2Fbackupstore%2Fblocks%2F" in q]
    assert len(pages) == 4, "26 names in pages of 7 take 4 requests, not %d" % len(pages)
    assert sum("continuation-token=" in q for q in pages) == 3, pages
    assert srv.rejected == [], "a page's signature was refused: %s" % srv.rejected


def test_list_of_a_missing_directory_is_empty(srv):
    assert ok(tool(URL, "list", "backupstore/nothing/here", env=s3_env(srv))) == b""


def test_read_of_a_missing_object_is_enoent_naming_the_key(srv):
    err = failed(tool(URL, "read", "backupstore/missing.cfg", env=s3_env(srv)))
    assert "error -2:" in err, err
    assert "longhorn/backupstore/missing.cfg" in err and "404 NoSuchKey" in err, err
    err = failed(tool(URL, "mtime", "backupstore/missing.cfg", env=s3_env(srv)))
    assert "error -2:" in err and "404" in err, err


def test_read_larger_than_asked_is_refused(srv):
    env = s3_env(srv)
    ok(tool(URL, "write", "backupstore/big", env=env, data=b"x" * 5000))
    err = failed(tool(URL, "read", "backupstore/big", 4096, env=env))
    assert "error -27:" in err and "larger than 4096" in err, err


def test_remove_takes_the_object_and_everything_under_it(srv):
    env = s3_env(srv)
    for p in ("backupstore/img", "backupstore/img/a", "backupstore/img/b/c", "backupstore/imgX"):
        ok(tool(URL, "write", p, env=env, data=b"."))
    ok(tool(URL, "remove", "backupstore/img", env=env))
    assert srv.keys() == ["longhorn/backupstore/imgX"], "left: %s" % srv.keys()
    ok(tool(URL, "remove", "backupstore/img", env=env))  # missing is fine


def test_now_is_the_servers_clock(srv):
    now = int(ok(tool(URL, "now", env=s3_env(srv))))
    assert abs(now - time.time()) < 60, "now %d is far from the server's Date" % now


def test_wrong_secret_is_refused_with_s3s_code_and_no_secret_shown(srv):
    wrong = "Wrong/Secret+Key/abcdefghij0123456789"
    env = s3_env(srv, AWS_SECRET_ACCESS_KEY=wrong)
    r = tool(URL, "write", "backupstore/x", env=env, data=b"data")
    err = failed(r)
    assert "error -13:" in err and "HTTP 403 SignatureDoesNotMatch" in err, err
    assert "s3://bk@us-east-1/longhorn/" in err, "the target is not named: %s" % err
    for secret in (wrong, SECRET, "Wrong/Secret"):
        assert secret not in err and secret.encode() not in r.stdout, "the secret is shown"
    assert srv.keys() == [], "a refused PUT stored something"
    assert srv.rejected and srv.rejected[0][0] == "SignatureDoesNotMatch"


def test_unknown_key_id_and_wrong_region_are_refused(srv):
    err = failed(tool(URL, "list", "backupstore", env=s3_env(srv, AWS_ACCESS_KEY_ID="AKIDNOPE")))
    assert "HTTP 403 InvalidAccessKeyId" in err, err
    err = failed(tool("s3://bk@eu-west-1/longhorn/", "list", "backupstore", env=s3_env(srv)))
    assert "HTTP 403 AuthorizationHeaderMalformed" in err, err


def test_a_session_token_is_sent_signed(srv):
    ok(tool(URL, "exists", "backupstore/x", env=s3_env(srv, AWS_SESSION_TOKEN="tok/en+1")))
    assert srv.signed and srv.signed[-1].get("x-amz-security-token") == "tok/en+1", \
        "the token is not among the signed headers: %s" % srv.signed


def test_missing_bucket_is_named(srv):
    err = failed(tool("s3://nobucket@us-east-1/x/", "list", "backupstore", env=s3_env(srv)))
    assert "error -2:" in err and "404 NoSuchBucket" in err, err


def test_dead_endpoint_is_connection_refused(srv):
    env = s3_env(srv)
    srv.stop()  # nobody listens on its port any more
    err = failed(tool(URL, "now", env=env))
    assert "error -11:" in err and "Connection refused" in err, err
    assert "s3://bk@us-east-1/longhorn/" in err, err


def test_transient_errors_are_retried(srv):
    srv.fail_next = [503, 500]
    env = s3_env(srv)
    ok(tool(URL, "write", "backupstore/retried", env=env, data=b"abc"))
    assert srv.get("longhorn/backupstore/retried") == b"abc"
    puts = [r for r in srv.requests if r[0] == "PUT"]
    assert len(puts) == 3, "two 5xx answers then success are 3 PUTs, not %d" % len(puts)
    srv.fail_next = [503, 503, 503]
    err = failed(tool(URL, "read", "backupstore/retried", env=env))
    assert "HTTP 503 SlowDown" in err and "error -11:" in err, err


def test_missing_credentials_and_bad_urls_are_clear(srv):
    err = failed(tool(URL, "now", env=s3_env(srv, AWS_SECRET_ACCESS_KEY=None)))
    assert "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY" in err, err
    err = failed(tool("s3://bk/longhorn/", "now", env=s3_env(srv)))
    assert "AWS_REGION" in err, err
    assert ok(tool("s3://bk/longhorn/", "now", env=s3_env(srv, AWS_REGION="us-east-1")))
    # no path is the bucket's root, as Go's URL parser (Longhorn's) reads it
    assert ok(tool("s3://bk@us-east-1", "now", env=s3_env(srv)))
    err = failed(tool("s3://@us-east-1/p/", "now", env=s3_env(srv)))
    assert "no bucket" in err, err
    err = failed(tool("s3://b k@us-east-1/p/", "now", env=s3_env(srv)))
    assert "bad bucket name" in err, err
    err = failed(tool(URL, "now", env=s3_env(srv, AWS_ENDPOINTS="ftp://127.0.0.1:1")))
    assert "AWS_ENDPOINTS" in err, err


# ---------------------------------------------------------------- https


@pytest.fixture
def tls_srv(tls_files):
    s = S3Server(secret=SECRET, tls=(str(tls_files / "srv.pem"),
                                     str(tls_files / "srv.key"))).start()
    yield s
    s.stop()


def test_https_with_the_ca_in_aws_cert_as_pem_text(tls_srv, tls_files):
    env = s3_env(tls_srv, AWS_CERT=(tls_files / "ca.pem").read_text())
    assert tls_srv.endpoint.startswith("https://")
    ok(tool(URL, "write", "backupstore/t", env=env, data=b"over tls"))
    assert ok(tool(URL, "read", "backupstore/t", env=env)) == b"over tls"


def test_https_with_the_ca_in_aws_cert_as_a_path(tls_srv, tls_files):
    env = s3_env(tls_srv, AWS_CERT=str(tls_files / "ca.pem"))
    assert ok(tool(URL, "list", "backupstore", env=env)) == b""


def test_https_without_the_ca_is_refused_as_untrusted(tls_srv):
    err = failed(tool(URL, "now", env=s3_env(tls_srv)))
    assert "error -71:" in err and "certificate" in err.lower(), err
    assert tls_srv.requests == [], "a request went through an untrusted connection"
