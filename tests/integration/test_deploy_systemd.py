"""deploy/systemd/bimfs@.service is a unit systemd accepts (issue 13).

`systemd-analyze verify` loads the template as an instance (bimfs@disk1), with
ExecStart pointing at the built $BIMFS, and must print nothing: systemd only
warns (exit 0) about an unknown key or a bad value, so any output fails. A
copy with a typo proves the check can fail. The unit's ExecStart uses only
options that `bimfs --help` lists.
"""

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import BIMFS

UNIT_IN = Path(__file__).resolve().parents[2] / "deploy" / "systemd" / "bimfs@.service.in"
ANALYZE = shutil.which("systemd-analyze")


def analyze_runs():
    if not ANALYZE:
        return False
    p = subprocess.run([ANALYZE, "--version"], capture_output=True, timeout=30)
    return p.returncode == 0


pytestmark = pytest.mark.skipif(not analyze_runs(),
                                reason="systemd-analyze missing or cannot run here "
                                       "(tools/deps.sh installs systemd)")


def unit_text(bindir):
    return UNIT_IN.read_text().replace("@BINDIR@", str(bindir))


def verify(path):
    p = subprocess.run([ANALYZE, "verify", "--man=no", str(path)], capture_output=True,
                       text=True, timeout=120, env=dict(os.environ, SYSTEMD_LOG_COLOR="0"))
    return p.returncode, (p.stdout + p.stderr).strip()


def test_unit_verifies_without_a_warning(tmp_path):
    unit = tmp_path / "bimfs@disk1.service"
    unit.write_text(unit_text(Path(BIMFS).resolve().parent))
    rc, out = verify(unit)
    assert rc == 0 and out == "", "systemd-analyze verify: exit %d:\n%s" % (rc, out)


def test_verify_catches_a_typo(tmp_path):
    unit = tmp_path / "bimfs@disk1.service"
    unit.write_text(unit_text(Path(BIMFS).resolve().parent).replace("Type=notify", "Type=notfy"))
    rc, out = verify(unit)
    assert rc != 0 or out, "a unit with Type=notfy verified silently: the check proves nothing"


def test_unit_is_notify_and_restarts_on_failure():
    text = unit_text("/usr/bin")
    for line in ("Type=notify", "Restart=on-failure", "EnvironmentFile=/etc/bimfs/%i.conf",
                 "RuntimeDirectory=bimfs/%i", "DeviceAllow=/dev/fuse rw"):
        assert re.search("^" + re.escape(line) + "$", text, re.M), "unit lacks %r" % line
    # these would put the FUSE mount in a namespace of its own, invisible to the host
    for key in ("ProtectSystem", "PrivateTmp", "ProtectHome", "PrivateDevices",
                "ReadWritePaths", "MountFlags"):
        assert not re.search("^%s=" % key, text, re.M), "%s= hides the mount from the host" % key


def test_exec_start_uses_only_options_bimfs_knows():
    exec_start = re.search(r"^ExecStart=(.*)$", unit_text("/usr/bin"), re.M).group(1)
    help_text = subprocess.run([BIMFS, "--help"], capture_output=True, text=True,
                               timeout=30).stdout
    for opt in re.findall(r"(?<!\S)(-{1,2}[a-z][a-z-]*)", exec_start):
        assert re.search(r"(?<![\w-])%s(?![\w-])" % re.escape(opt), help_text), \
            "ExecStart uses %s, which bimfs --help does not list" % opt
