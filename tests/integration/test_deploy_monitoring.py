"""deploy/monitoring (issue 13, docs/operations.md "Monitoring"): the
Prometheus alert rules and the Grafana dashboard are valid YAML / JSON and
name only metrics, and labels of those metrics, that a running bimfs really
exports on /metrics (a daemon with a ready and a failed image, so that the
per-image series exist)."""

import json
import re
from pathlib import Path

import pytest

from conftest import make_random_file
from httphelp import get

yaml = pytest.importorskip("yaml")  # python3-yaml (tools/deps.sh)

ROOT = Path(__file__).resolve().parents[2]
MON = ROOT / "deploy" / "monitoring"
PROMETHEUS_OWN = {"up"}  # series Prometheus makes itself
SELECTOR = re.compile(r"\b([a-z_][a-z0-9_]*)\s*\{([^}]*)\}")
METRIC = re.compile(r"\b(bimfs_[a-z0-9_]+)\b")
GROUPING = re.compile(r"\b(?:by|on|without)\s*\(([^)]*)\)")
SERIES = re.compile(r"^([a-z_][a-z0-9_]*)(?:\{(.*)\})? ")


def exported(port):
    """{metric: set of label names} from a live /metrics."""
    r = get(port, "/metrics")
    assert r.status == 200, r
    out = {}
    for line in r.body.decode().splitlines():
        m = re.match(r"# TYPE (\S+) ", line)
        if m:
            out.setdefault(m.group(1), set())
            continue
        m = SERIES.match(line)
        if m and not line.startswith("#"):
            labels = {kv.split("=", 1)[0] for kv in (m.group(2) or "").split(",") if kv}
            out.setdefault(m.group(1), set()).update(labels)
    return out


def expressions():
    """(where, PromQL) of every rule and every dashboard target."""
    rules = yaml.safe_load((MON / "alerts.yaml").read_text())
    out = []
    for group in rules["groups"]:
        for rule in group["rules"]:
            assert rule.get("alert") and rule.get("expr"), "a rule without alert or expr: %r" % rule
            assert rule.get("annotations", {}).get("summary"), "%s has no summary" % rule["alert"]
            out.append(("alert %s" % rule["alert"], rule["expr"]))
    dash = json.loads((MON / "grafana-dashboard.json").read_text())
    assert dash["panels"], "the dashboard has no panel"
    for p in dash["panels"]:
        assert p.get("targets"), "panel %r has no query" % p.get("title")
        for t in p["targets"]:
            out.append(("panel %r" % p["title"], t["expr"]))
    return out


@pytest.fixture
def live(daemon, tmp_path):
    src = tmp_path / "ok.raw"
    make_random_file(src, 1 << 20, seed=5)
    daemon.add_ready("okimg", src, uuid="o1")
    empty = tmp_path / "empty.raw"
    empty.write_bytes(b"")
    assert daemon.upload_file("badimg", empty, uuid="b1").get("ok") is True
    daemon.wait_state("badimg", "failed")
    return exported(daemon.port)


def test_rules_and_dashboard_name_only_exported_metrics_and_labels(live):
    problems = []
    used = set()
    for where, expr in expressions():
        names = set(METRIC.findall(expr))
        used |= names
        for name in names:
            if name not in live:
                problems.append("%s: %s is not exported" % (where, name))
        for name, sel in SELECTOR.findall(expr):
            if name in PROMETHEUS_OWN or name not in live:
                continue
            for matcher in filter(None, (s.strip() for s in sel.split(","))):
                label = re.split(r"[=!~]", matcher, 1)[0].strip()
                if label not in live[name]:
                    problems.append("%s: %s has no label %r" % (where, name, label))
        for group in GROUPING.findall(expr):
            for label in filter(None, (s.strip() for s in group.split(","))):
                if label != "instance" and not any(label in live[n] for n in names if n in live):
                    problems.append("%s: no metric of %r has the label %r" % (where, expr, label))
    assert not problems, "\n".join(problems)
    # the rules cover what issue 13 asks: failed images, stalled transfers, disk space
    assert {"bimfs_image_state", "bimfs_image_rate_bytes_per_second",
            "bimfs_disk_available_bytes"} <= used, sorted(used)


def test_a_misspelled_metric_would_be_caught(live):
    """The check above can fail: a name bimfs does not export is not in the set."""
    assert "bimfs_image_stat" not in live and "bimfs_image_state" in live
    assert "state" in live["bimfs_image_state"] and "colour" not in live["bimfs_image_state"]


def test_disk_space_metrics_are_plausible(live, daemon):
    r = get(daemon.port, "/metrics").body.decode()
    avail = float(re.search(r"^bimfs_disk_available_bytes (\S+)$", r, re.M).group(1))
    size = float(re.search(r"^bimfs_disk_size_bytes (\S+)$", r, re.M).group(1))
    assert 0 < avail <= size, (avail, size)
