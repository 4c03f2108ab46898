"""The manual pages and the bash completion stay true (issue 13).

Every option and command that `bimfs --help` and `bimctl --help` print is in
man/bimfs.8 and man/bimctl.1; `bimfs --version` prints the version; the bash
completion offers bimctl's commands and the names of the images a running
daemon has.
"""

import re
import subprocess
from pathlib import Path

import pytest

from conftest import BIMCTL, BIMFS

ROOT = Path(__file__).resolve().parents[2]


def help_text(prog):
    p = subprocess.run([prog, "--help"], capture_output=True, text=True, timeout=30)
    assert p.returncode == 0, "%s --help exited %d" % (prog, p.returncode)
    return p.stdout


def man_text(page):
    """The page's text with roff escapes for dashes and fonts undone."""
    text = (ROOT / "man" / page).read_text()
    return re.sub(r"\\f[BIRP]", "", text).replace("\\-", "-")


def options_in(text):
    return sorted(set(re.findall(r"(?<![\w-])(--?[a-zA-Z][a-zA-Z-]*)", text)))


def mentions(text, word):
    return re.search(r"(?<![\w-])%s(?![\w-])" % re.escape(word), text) is not None


@pytest.mark.parametrize("prog, page", [(BIMFS, "bimfs.8"), (BIMCTL, "bimctl.1")])
def test_every_option_of_help_is_in_the_man_page(prog, page):
    man = man_text(page)
    opts = options_in(help_text(prog))
    assert len(opts) >= 5, "found too few options in %s --help: %r" % (prog, opts)
    missing = [o for o in opts if not mentions(man, o)]
    assert not missing, "man/%s lacks options that --help lists: %s" % (page, missing)


def test_every_bimctl_command_is_in_the_man_page():
    help_ = help_text(BIMCTL)
    commands = re.findall(r"^  ([a-z]+)\b", help_.split("Options:")[0], re.M)
    assert "list" in commands and "version" in commands, "no commands parsed: %r" % commands
    man = man_text("bimctl.1")
    missing = [c for c in commands if not re.search(r"^\.(B|BI|BR) %s\b" % c, man, re.M)]
    assert not missing, "man/bimctl.1 does not describe: %s" % missing


def test_version_option_prints_the_version():
    meson = (ROOT / "meson.build").read_text()
    version = re.search(r"version : '([^']+)'", meson).group(1)
    for arg in ("--version", "-V"):
        p = subprocess.run([BIMFS, arg], capture_output=True, text=True, timeout=30)
        assert p.returncode == 0 and p.stdout == "bimfs %s\n" % version, \
            "bimfs %s: exit %d, %r" % (arg, p.returncode, p.stdout)


def complete(words, env_socket):
    """Run the completion function for the words typed so far (the last is
    the word being completed); the candidates."""
    script = ('source "$1"; shift; COMP_WORDS=("$@"); COMP_CWORD=$(( $# - 1 )); _bimctl; '
              'printf "%s\\n" "${COMPREPLY[@]}"')
    bindir = str(Path(BIMCTL).resolve().parent)
    p = subprocess.run(["bash", "-c", script, "bash", str(ROOT / "completion" / "bimctl")]
                       + list(words), capture_output=True, text=True, timeout=60,
                       env={"PATH": bindir + ":/usr/bin:/bin", "BIMFS_SOCKET": str(env_socket)})
    assert p.returncode == 0, "completion failed: %s" % p.stderr
    return [w for w in p.stdout.split("\n") if w]


def test_completion_offers_commands_and_image_names(daemon, small_image):
    path, _ = small_image
    rc, _, err = daemon.bimctl("create", "alpha-img", "--file", path, "--wait")
    assert rc == 0, "create failed: %s" % err
    assert set(complete(["bimctl", ""], daemon.sock)) >= {"list", "get", "create", "sync",
                                                          "delete", "watch", "version"}
    assert complete(["bimctl", "get", "al"], daemon.sock) == ["alpha-img"], \
        "get NAME does not complete the image's name"
    assert complete(["bimctl", "-s", str(daemon.sock), "delete", ""], "/nonexistent") \
        == ["alpha-img"], "-s SOCKET is not used for image names"
    assert "--wait" in complete(["bimctl", "create", "x", "--"], daemon.sock)
