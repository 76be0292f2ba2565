"""The chart as an artifact a platform team takes away, and the GitOps examples beside it,
without a cluster: the CRD inside the chart is crds/ byte for byte (a copy, not a link),
kubeVersion is the oldest Kubernetes that accepts the CRD, `make chart` packages a chart that
renders exactly as the folder does, the Argo CD Applications order the chart before the
tenants, and the health check (examples/argocd/health.lua), run by the pinned gopher-lua as
Argo CD runs it, judges tenants recorded on the test cluster (tests/argocd_health/, written by
tests/kube/test_argocd_health.py) and classifies every reason the operator writes.

helm (hack/tools) and the health check runner (hack/lua) are built by `make kube-bins`; the
tests needing them skip without them, and fail under CI."""

from __future__ import annotations

import copy
import json
import os
import re
import subprocess
import tarfile
from pathlib import Path

import pytest
import yaml
from conftest import built, kube_version

ROOT = Path(__file__).resolve().parents[1]
CHART = ROOT / "charts" / "joyn-scim"
CRD = ROOT / "crds" / "joynscimtenants.scim.sevenlakes.com.yaml"
EXAMPLES = ROOT / "examples" / "argocd"
RECORDED = Path(__file__).parent / "argocd_health"
OPERATOR = ROOT / "operator" / "joyn_operator"
HEALTH_KEY = "resource.customizations.health.scim.sevenlakes.com_JoynScimTenant"
APP_HEALTH_KEY = "resource.customizations.health.argoproj.io_Application"
WAVE = "argocd.argoproj.io/sync-wave"
SYNC_OPTIONS = "argocd.argoproj.io/sync-options"

# CEL functions newer than CRD validation rules themselves, and the first Kubernetes minor
# whose API server accepts them in a new rule: k8s.io/apiserver pkg/cel/environment/base.go
# introduces each library at a version, and a new rule may use it one release later (the
# compatibility version is the previous release, so a rollback keeps the rule valid).
CEL_SINCE = {
    r"\bquantity\(|\bisQuantity\(": 29,  # library.Quantity, 1.28
    r"\bsets\.(contains|equivalent|intersects)\(": 30,  # ext.Sets, 1.29
    r"\b(ip|isIP|cidr|isCIDR)\(": 31,  # library.IP, library.CIDR, 1.30
    r"\bformat\.[a-z]+\(": 32,  # library.Format, 1.31
    r"\b(transformList|transformMap|transformMapEntry)\(": 33,  # two-variable comprehensions, 1.32
    r"\b(semver|isSemver)\(": 34,  # library.SemverLib v1, 1.33
    r"\.(sortBy|first|last)\(|\blists\.range\(": 35,  # ext.Lists v3, 1.34
}
CEL_RULES_GA = 25  # x-kubernetes-validations on by default (beta) since 1.25

# Reasons of a condition that is True (or of Paused, which the check reads apart): no Ready=False.
SETTLED_REASONS = {"Ready", "Stable", "AsExpected", "NoRotation", "PreviousTokenValid",
                   "Reconciling", "Paused", "IngressDisabled", "IngressReady"}


@pytest.fixture(scope="module")
def helm(tmp_path_factory):
    bins = built("tools", "TOOLS_BINS_DIR", "helm is")
    home = tmp_path_factory.mktemp("helm")
    env = {**os.environ, "HELM_CACHE_HOME": str(home / "c"), "HELM_CONFIG_HOME": str(home / "f"),
           "HELM_DATA_HOME": str(home / "d")}

    def run(*args: str, check: bool = True) -> subprocess.CompletedProcess:
        r = subprocess.run([str(bins / "helm"), *args], capture_output=True, text=True, env=env,
                           timeout=120)
        assert not check or r.returncode == 0, r.stderr
        return r
    return run


@pytest.fixture(scope="module")
def argocd_health():
    bins = built("lua", "LUA_BINS_DIR", "the Argo CD health check runner (hack/lua) is")

    def judge(*objs: dict) -> list[dict]:
        r = subprocess.run([str(bins / "argocd-health"), str(EXAMPLES / "health.lua")],
                           input=json.dumps(list(objs)), capture_output=True, text=True,
                           timeout=30)
        assert r.returncode == 0, r.stderr
        return [json.loads(line) for line in r.stdout.splitlines()]
    return judge


def docs(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


# -- the chart ----------------------------------------------------------------------------------

def test_the_chart_holds_the_crd_as_a_file_identical_to_crds():
    shipped = CHART / "files" / "crd.yaml"
    assert not shipped.is_symlink(), "a link breaks once the chart leaves this repository"
    assert shipped.read_bytes() == CRD.read_bytes(), (
        "charts/joyn-scim/files/crd.yaml differs from crds/: "
        f"cp {CRD.relative_to(ROOT)} {shipped.relative_to(ROOT)}")


def test_kube_version_is_the_oldest_kubernetes_that_accepts_the_crd():
    rules = " ".join(re.findall(r"rule: (.*)", CRD.read_text()))
    needed = max([CEL_RULES_GA] + [minor for pattern, minor in CEL_SINCE.items()
                                   if re.search(pattern, rules)])
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["kubeVersion"] == f">=1.{needed}.0-0"


def test_the_chart_refuses_an_older_kubernetes_by_name(helm):
    floor = int(re.search(r">=1\.(\d+)", yaml.safe_load(
        (CHART / "Chart.yaml").read_text())["kubeVersion"]).group(1))
    r = helm("template", "t", str(CHART), "--kube-version", f"1.{floor - 1}.9", check=False)
    assert r.returncode != 0 and "kubeVersion" in r.stderr, r.stderr
    helm("template", "t", str(CHART), "--kube-version", f"1.{floor}.0")


def test_make_chart_packages_a_chart_that_renders_as_the_folder_does(helm, tmp_path):
    r = subprocess.run(["make", "-s", "chart", f"CHART_DIST={tmp_path}"], cwd=ROOT,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    version = yaml.safe_load((CHART / "Chart.yaml").read_text())["version"]
    archive = tmp_path / f"joyn-scim-{version}.tgz"
    with tarfile.open(archive) as tar:
        member = tar.getmember("joyn-scim/files/crd.yaml")
        assert member.isfile() and tar.extractfile(member).read() == CRD.read_bytes()

    assert "0 chart(s) failed" in helm("lint", "--strict", str(archive)).stdout
    for values in ([], ["--set", "metrics.serviceMonitor.enabled=true",
                        "--set", "metrics.prometheusRule.enabled=true",
                        "--set", "operator.watchNamespaces={team-a,team-b}"]):
        args = ["-n", "ops", "--kube-version", kube_version(), *values]
        assert helm("template", "t", str(archive), *args).stdout == \
            helm("template", "t", str(CHART), *args).stdout


def test_make_chart_refuses_a_crd_that_differs_from_crds(tmp_path):
    # The check itself, on a copy of the repository's two files: the tree stays untouched.
    for rel in ("Makefile", "crds", "charts/joyn-scim/files"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(["cp", "-r", str(ROOT / rel), str(tmp_path / rel)], check=True)
    (tmp_path / "charts/joyn-scim/files/crd.yaml").write_text("# stale\n")
    r = subprocess.run(["make", "-s", "chart", f"CHART_DIST={tmp_path / 'dist'}"], cwd=tmp_path,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode != 0 and "differs from crds/" in r.stderr, r.stderr
    assert not (tmp_path / "dist").exists()


# -- the Argo CD examples -----------------------------------------------------------------------

def applications() -> dict[str, dict]:
    return {d["metadata"]["name"]: d for f in sorted(EXAMPLES.rglob("*.yaml")) for d in docs(f)
            if d["kind"] == "Application"}


def wave(obj: dict) -> int:
    return int((obj["metadata"].get("annotations") or {}).get(WAVE, "0"))


def test_the_applications_sync_the_chart_before_the_tenants():
    apps = applications()
    [chart] = [a for a in apps.values() if a["spec"]["source"].get("chart") == "joyn-scim"]
    root = apps["joyn-scim-root"]
    assert (ROOT / root["spec"]["source"]["path"]) == EXAMPLES / "apps"
    children = {d["metadata"]["name"] for f in (EXAMPLES / "apps").glob("*.yaml")
                for d in docs(f)}
    assert chart["metadata"]["name"] in children
    [tenants] = [a for a in apps.values() if a["metadata"]["name"] in children
                 and a is not chart]
    assert wave(chart) < wave(tenants)
    assert chart["spec"]["source"]["targetRevision"] == \
        yaml.safe_load((CHART / "Chart.yaml").read_text())["version"]

    # The tenants' folder: each tenant waits for the CRD in any layout (after the chart's
    # objects when they share one Application; without a dry run while the CRD is missing).
    folder = ROOT / tenants["spec"]["source"]["path"]
    found = [d for f in sorted(folder.rglob("*.yaml")) for d in docs(f)
             if d["kind"] == "JoynScimTenant"]
    assert found
    for tenant in found:
        notes = tenant["metadata"]["annotations"]
        assert int(notes[WAVE]) > 0
        assert "SkipDryRunOnMissingResource=true" in notes[SYNC_OPTIONS].split(",")


def test_the_chart_application_values_pass_the_chart_schema_and_set_monitoring(helm, tmp_path):
    [chart] = [a for a in applications().values()
               if a["spec"]["source"].get("chart") == "joyn-scim"]
    values = chart["spec"]["source"]["helm"]["valuesObject"]
    # Explicit: `auto` would follow what Argo CD passes to helm template.
    assert values["metrics"]["serviceMonitor"]["enabled"] is True
    assert values["metrics"]["prometheusRule"]["enabled"] is True
    (tmp_path / "values.json").write_text(json.dumps(values))
    rendered = [d for d in yaml.safe_load_all(helm(
        "template", "joyn-scim", str(CHART), "-n", "joyn-scim-system", "-f",
        str(tmp_path / "values.json"), "--kube-version", kube_version()).stdout) if d]
    kinds = {d["kind"] for d in rendered}
    assert {"ServiceMonitor", "PodMonitor", "PrometheusRule"} <= kinds
    assert "Pod" not in kinds  # no test hook, which Argo CD would never run


def test_argocd_cm_carries_both_health_checks_verbatim():
    [cm] = docs(EXAMPLES / "argocd-cm.yaml")
    assert cm["metadata"]["name"] == "argocd-cm"
    for key, lua in ((HEALTH_KEY, "health.lua"), (APP_HEALTH_KEY, "application-health.lua")):
        assert cm["data"][key] == (EXAMPLES / lua).read_text(), \
            f"argocd-cm.yaml's {key} is not {lua}: paste the file in, indented"


def operator_reasons() -> set[str]:
    """Every reason the operator writes into a condition: the reference's own finder
    (tests/test_docs.py reads status.py's _cond calls, every (reason, message) pair the checks
    return, and the pods' reasons it passes on)."""
    from test_docs import condition_reasons
    return set(condition_reasons())


def lua_table(name: str) -> set[str]:
    text = (EXAMPLES / "health.lua").read_text()
    body = re.search(rf"local {name} = \{{(.*?)\}}", text, re.S).group(1)
    return set(re.findall(r"(\w+) = true", body))


def test_every_reason_the_operator_writes_is_waiting_or_failing_for_argo_cd():
    waiting, failing = lua_table("WAITING"), lua_table("FAILING")
    reasons = operator_reasons() - SETTLED_REASONS
    assert {"ImagePullBackOff", "TokenMissing", "HostConflict", "VolumePending"} <= reasons
    assert not waiting & failing
    assert reasons - waiting - failing == set(), "add them to WAITING or FAILING in health.lua"
    assert (waiting | failing) - reasons == set(), "no longer written by the operator"


# -- the health check on recorded tenants -------------------------------------------------------

def recorded(name: str) -> dict:
    return json.loads((RECORDED / f"{name}.json").read_text())


@pytest.mark.parametrize("name, status, reason", [
    ("ready", "Healthy", None),
    ("paused", "Suspended", None),
    ("volume-pending", "Progressing", "VolumePending"),
    ("image-missing", "Degraded", "ImagePullBackOff"),
    ("token-missing", "Degraded", "TokenMissing"),
])
def test_recorded_tenants_are_judged_as_argo_cd_would(argocd_health, name, status, reason):
    obj = recorded(name)
    [result] = argocd_health(obj)
    assert result["status"] == status, result
    if reason:
        assert result["message"].split(":")[0] in {reason, "ErrImagePull",
                                                   "CreateContainerConfigError"}, result


def test_a_spec_the_operator_has_not_seen_yet_is_progressing(argocd_health):
    ready = recorded("ready")
    newer = copy.deepcopy(ready)
    newer["metadata"]["generation"] = ready["status"]["observedGeneration"] + 1
    new = copy.deepcopy(ready)
    del new["status"]
    [stale, fresh, still] = argocd_health(newer, new, ready)
    assert stale["status"] == "Progressing" and "not yet reconciled" in stale["message"]
    assert fresh["status"] == "Progressing"
    assert still["status"] == "Healthy"


def test_degraded_wins_over_ready_and_an_unknown_reason_is_degraded(argocd_health):
    ready = recorded("ready")
    events = copy.deepcopy(ready)
    for c in events["status"]["conditions"]:
        if c["type"] == "Degraded":
            c.update(status="True", reason="EventsPushAuthorizationMissing",
                     message="Secret push has no key 'authorization'")
    unknown = copy.deepcopy(recorded("volume-pending"))
    for c in unknown["status"]["conditions"]:
        if c["type"] == "Ready":
            c["reason"] = "SomethingNew"
    [served, new] = argocd_health(events, unknown)
    assert served == {"status": "Degraded", "message":
                      "EventsPushAuthorizationMissing: Secret push has no key 'authorization'"}
    assert new["status"] == "Degraded" and "does not know" in new["message"]
