"""Running tests/tools/bk_target_tool (one operation of a backup target per
run) from the target tests (test_s3_target.py, test_vfs_target.py)."""

import os
import subprocess

TOOL = os.environ.get("BK_TARGET_TOOL", "")


def tool(url, *args, env=None, data=None, timeout=60):
    return subprocess.run([TOOL, url] + [str(a) for a in args], input=data,
                          capture_output=True, env=env, timeout=timeout)


def ok(r):
    assert r.returncode == 0, "the target failed: %s" % r.stderr.decode()
    return r.stdout


def failed(r):
    assert r.returncode == 1, "exit %d, stdout %r, stderr %r" % (r.returncode, r.stdout,
                                                                 r.stderr)
    return r.stderr.decode()
