"""deploy/kubernetes (a kustomize base) builds, matches the Kubernetes schemas
and follows the rules schemas do not check (issue 13). Offline except for
`npm install kubernetes-models` (skipped only if the npm registry cannot be
reached).

Build: `kubectl kustomize` when kubectl is installed, else build_base() below
(resources concatenated; namespace and labels applied as kustomize does for
this base). Lint (lint_objects): Bidirectional propagation needs a privileged
container; every hostPath has a type; every probe has a timeout; readiness is
/healthz; liveness looks at the mount; a preStop unmounts; a grace period, the
token from a Secret, a hostPort, requests and limits.
"""

import copy
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
BASE = ROOT / "deploy" / "kubernetes"
VALIDATE_JS = Path(__file__).resolve().parent / "k8s_validate.js"


def build_base():
    """What `kubectl kustomize` makes of this base (namespace, labels with
    selectors, image names), for machines without kubectl."""
    k = yaml.safe_load((BASE / "kustomization.yaml").read_text())
    labels = {}
    for entry in k.get("labels", []):
        labels.update(entry["pairs"])
    images = {i["name"]: "%s:%s" % (i["newName"], i["newTag"]) for i in k.get("images", [])}
    out = []
    for res in k["resources"]:
        for doc in yaml.safe_load_all((BASE / res).read_text()):
            doc["metadata"].setdefault("labels", {}).update(labels)
            if doc["kind"] != "Namespace":
                doc["metadata"]["namespace"] = k["namespace"]
            spec = doc.get("spec", {})
            if doc["kind"] == "DaemonSet":
                spec["selector"]["matchLabels"].update(labels)
                spec["template"]["metadata"]["labels"].update(labels)
                for c in spec["template"]["spec"]["containers"]:
                    c["image"] = images.get(c["image"], c["image"])
            if doc["kind"] == "Service":
                spec["selector"].update(labels)
            out.append(doc)
    return out


@pytest.fixture(scope="module")
def objects():
    if shutil.which("kubectl"):
        p = subprocess.run(["kubectl", "kustomize", str(BASE)], capture_output=True, text=True,
                           timeout=120)
        assert p.returncode == 0, "kubectl kustomize failed: %s" % p.stderr
        return [d for d in yaml.safe_load_all(p.stdout) if d]
    return build_base()


def by_kind(objs, kind):
    return [o for o in objs if o["kind"] == kind]


def lint_objects(objs):
    """Problems the schemas do not catch; [] when none."""
    problems = []
    for ds in by_kind(objs, "DaemonSet"):
        pod = ds["spec"]["template"]["spec"]
        name = ds["metadata"]["name"]
        vols = {v["name"]: v for v in pod.get("volumes", [])}
        for v in vols.values():
            if "hostPath" in v and not v["hostPath"].get("type"):
                problems.append("%s: hostPath volume %s has no type" % (name, v["name"]))
        if not pod.get("terminationGracePeriodSeconds"):
            problems.append("%s: no terminationGracePeriodSeconds" % name)
        if not any("secret" in v for v in vols.values()):
            problems.append("%s: the token is not from a Secret" % name)
        for c in pod["containers"]:
            cname = "%s/%s" % (name, c["name"])
            privileged = (c.get("securityContext") or {}).get("privileged") is True
            for m in c.get("volumeMounts", []):
                if m.get("mountPropagation") == "Bidirectional" and not privileged:
                    problems.append("%s: Bidirectional mount %s needs privileged" %
                                    (cname, m["name"]))
            for kind in ("readinessProbe", "livenessProbe"):
                probe = c.get(kind)
                if not probe:
                    problems.append("%s: no %s" % (cname, kind))
                elif not probe.get("timeoutSeconds"):
                    problems.append("%s: %s has no timeoutSeconds" % (cname, kind))
            ready = (c.get("readinessProbe") or {}).get("httpGet", {})
            if ready.get("path") != "/healthz":
                problems.append("%s: readiness is not GET /healthz" % cname)
            live = " ".join((c.get("livenessProbe") or {}).get("exec", {}).get("command", []))
            mounts = [m["mountPath"] for m in c.get("volumeMounts", [])
                      if m.get("mountPropagation") == "Bidirectional"]
            if not any(mp in live for mp in mounts):
                problems.append("%s: liveness does not check the mount" % cname)
            stop = " ".join(((c.get("lifecycle") or {}).get("preStop") or {})
                            .get("exec", {}).get("command", []))
            if not re.search(r"fusermount3? -u -z", stop):
                problems.append("%s: preStop does not unmount lazily" % cname)
            if not any(p.get("hostPort") for p in c.get("ports", [])):
                problems.append("%s: no hostPort for peers" % cname)
            res = c.get("resources") or {}
            if not res.get("requests") or not res.get("limits"):
                problems.append("%s: requests and limits missing" % cname)
    return problems


def test_base_builds_a_daemonset_a_service_and_a_namespace(objects):
    kinds = sorted(o["kind"] for o in objects)
    assert kinds == ["DaemonSet", "Namespace", "Service"], "unexpected objects: %s" % kinds
    ds = by_kind(objects, "DaemonSet")[0]
    svc = by_kind(objects, "Service")[0]
    pod_labels = ds["spec"]["template"]["metadata"]["labels"]
    assert all(pod_labels.get(k) == v for k, v in svc["spec"]["selector"].items()), \
        "the metrics Service selects no pod of the DaemonSet"
    assert svc["metadata"]["annotations"].get("prometheus.io/scrape") == "true"


def test_python_build_matches_kubectl_kustomize(objects):
    if not shutil.which("kubectl"):
        pytest.skip("no kubectl: build_base() is the build")
    key = lambda o: (o["kind"], o["metadata"]["name"])
    assert sorted(build_base(), key=key) == sorted(objects, key=key), \
        "build_base() differs from kubectl kustomize: fix the fallback"


def test_image_tag_is_the_project_version(objects):
    version = re.search(r"version : '([^']+)'", (ROOT / "meson.build").read_text()).group(1)
    image = by_kind(objects, "DaemonSet")[0]["spec"]["template"]["spec"]["containers"][0]["image"]
    assert image.endswith(":" + version), "image %s is not tagged %s" % (image, version)


def test_lint_passes(objects):
    problems = lint_objects(objects)
    assert not problems, "deploy/kubernetes:\n" + "\n".join(problems)


def test_lint_catches_each_rule(objects):
    ds = by_kind(objects, "DaemonSet")[0]

    def broken(edit):
        d = copy.deepcopy(ds)
        edit(d["spec"]["template"]["spec"])
        return lint_objects([d])

    c0 = lambda pod: pod["containers"][0]
    assert broken(lambda p: c0(p)["securityContext"].pop("privileged"))
    assert broken(lambda p: p["volumes"][0]["hostPath"].pop("type"))
    assert broken(lambda p: c0(p)["livenessProbe"].pop("timeoutSeconds"))
    assert broken(lambda p: c0(p)["readinessProbe"].pop("timeoutSeconds"))
    assert broken(lambda p: c0(p).pop("lifecycle"))
    assert broken(lambda p: p.pop("terminationGracePeriodSeconds"))


@pytest.fixture(scope="module")
def node_models(tmp_path_factory):
    if not shutil.which("npm") or not shutil.which("node"):
        pytest.skip("npm or node missing")
    d = tmp_path_factory.mktemp("npm")
    p = subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--silent",
                        "--prefix", str(d), "kubernetes-models@4"],
                       capture_output=True, text=True, timeout=300)
    if p.returncode != 0:
        pytest.skip("npm install kubernetes-models failed (registry unreachable?): %s"
                    % p.stderr[-500:])
    return d / "node_modules"


def validate(objs, node_modules):
    p = subprocess.run(["node", str(VALIDATE_JS)], input=json.dumps(objs), capture_output=True,
                       text=True, timeout=120, env=dict(os.environ, NODE_PATH=str(node_modules)))
    return p.returncode, p.stdout + p.stderr


def test_objects_match_the_kubernetes_schemas(objects, node_models):
    rc, out = validate(objects, node_models)
    assert rc == 0, "schema validation failed:\n" + out


def test_schema_validation_can_fail(objects, node_models):
    bad = copy.deepcopy(objects)
    ds = by_kind(bad, "DaemonSet")[0]
    ds["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] = "http"
    rc, out = validate(bad, node_models)
    assert rc != 0 and "containerPort" in out, "a string containerPort passed: %s" % out
