"""The Argo CD health check of examples/argocd/ (health.lua), run by the pinned gopher-lua as
Argo CD's controller runs it (hack/lua), against real tenants of the test cluster: Healthy once
Ready, Progressing while its volume cannot bind, Degraded when its image cannot be pulled or
its token Secret is missing, Suspended while paused. The example tenants pass the CRD.

JOYN_RECORD_DIR=<folder> also writes each object judged there: tests/argocd_health/ holds such
recordings, which tests/test_chart_artifact.py judges without a cluster."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import yaml

from .conftest import CHART, ROOT, built, eventually, module_namespace, module_operator
from .test_tenant_e2e import TENANTS, create_tenant, tenant, wait_ready

EXAMPLES = ROOT / "examples" / "argocd"


@pytest.fixture(scope="module")
def lua_bins() -> Path:
    return built("lua", "LUA_BINS_DIR", "the Argo CD health check runner is")


@pytest.fixture(scope="module")
def ns(kube):
    yield from module_namespace(kube, "argocd")


@pytest.fixture(scope="module")
def operator(cluster, ns, tenant_crd, tmp_path_factory, request):
    yield from module_operator(cluster, ns, tmp_path_factory, request, DOMAIN=cluster.domain,
                               SERVER_IMAGE=cluster.images.app, INGRESS_CLASS="traefik",
                               RESYNC_SECONDS="10", ACTIVITY_SECONDS="2")


def health(lua_bins: Path, obj: dict, record: str | None = None) -> dict:
    r = subprocess.run([str(lua_bins / "argocd-health"), str(EXAMPLES / "health.lua")],
                       input=json.dumps(obj), capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    result = json.loads(r.stdout)
    assert "error" not in result, result["error"]
    if record and os.environ.get("JOYN_RECORD_DIR"):
        kept = {**obj, "metadata": {k: v for k, v in obj["metadata"].items()
                                    if k != "managedFields"}}
        (Path(os.environ["JOYN_RECORD_DIR"]) / f"{record}.json").write_text(
            json.dumps(kept, indent=1, sort_keys=True) + "\n")
    return result


def judged(kube, lua_bins, ns, name, status: str, reasons: set[str] | None = None,
           record: str | None = None) -> dict:
    """The tenant's health once the check says `status`, for one of `reasons` if given (the
    message begins with the condition's reason)."""
    def check():
        obj = tenant(kube, ns, name)
        result = health(lua_bins, obj)
        return result["status"] == status and (
            reasons is None or result["message"].split(":")[0] in reasons) and (obj, result)
    obj, result = eventually(check, timeout=180,
                             what=f"tenant {name} {status} {reasons or ''} for Argo CD")
    health(lua_bins, obj, record)
    return result


def test_a_ready_tenant_is_healthy_and_paused_it_is_suspended(kube, cluster, ns, operator,
                                                             lua_bins):
    name = create_tenant(kube, cluster, ns)
    wait_ready(kube, ns, name)
    result = judged(kube, lua_bins, ns, name, "Healthy", record="ready")
    assert result["message"] == f"Serving {tenant(kube, ns, name)['status']['url']}"

    r = kube.request("PATCH", f"{TENANTS.format(ns=ns)}/{name}",
                     json={"metadata": {"annotations": {"scim.sevenlakes.com/paused": "true"}}},
                     headers={"Content-Type": "application/merge-patch+json"})
    assert r.status_code == 200, r.text
    result = judged(kube, lua_bins, ns, name, "Suspended", record="paused")
    assert "paused" in result["message"]

    r = kube.request("PATCH", f"{TENANTS.format(ns=ns)}/{name}",
                     json={"metadata": {"annotations": {"scim.sevenlakes.com/paused": None}}},
                     headers={"Content-Type": "application/merge-patch+json"})
    assert r.status_code == 200, r.text
    judged(kube, lua_bins, ns, name, "Healthy")


def test_a_tenant_whose_volume_cannot_bind_is_progressing(kube, cluster, ns, operator,
                                                         lua_bins):
    # No provisioner serves this class: the claim stays Pending, as while a real one works.
    name = create_tenant(kube, cluster, ns, storage={"storageClassName": "no-such-class"})
    judged(kube, lua_bins, ns, name, "Progressing", {"VolumePending"}, record="volume-pending")
    ready = {c["type"]: c for c in tenant(kube, ns, name)["status"]["conditions"]}["Ready"]
    assert ready["status"] == "False" and ready["reason"] == "VolumePending"


@pytest.mark.parametrize("case, spec, reasons", [
    # a registry on a closed loopback port: the pull fails for real, and nothing leaves
    ("image-missing", {"server": {"image": "127.0.0.1:9/joyn-scim:missing"}},
     {"ErrImagePull", "ImagePullBackOff"}),
    # Ready says TokenMissing; the pod that cannot mount the Secret follows
    ("token-missing", {"token": {"existingSecretRef": {"name": "nowhere"}}},
     {"TokenMissing", "CreateContainerConfigError"}),
], ids=["image-missing", "token-missing"])
def test_a_failing_tenant_is_degraded_naming_the_reason(kube, cluster, ns, operator, lua_bins,
                                                        case, spec, reasons):
    name = create_tenant(kube, cluster, ns, **spec)
    judged(kube, lua_bins, ns, name, "Degraded", reasons, record=case)


def test_the_example_tenants_pass_the_crd(kube, ns, tenant_crd):
    tenants = [d for f in sorted((EXAMPLES / "tenants").glob("*.yaml"))
               for d in yaml.safe_load_all(f.read_text()) if d and d["kind"] == "JoynScimTenant"]
    assert tenants
    for obj in tenants:
        obj = {**obj, "metadata": {**obj["metadata"], "namespace": ns}}
        r = kube.http.post(TENANTS.format(ns=ns), json=obj,
                           params={"dryRun": "All", "fieldValidation": "Strict"})
        assert r.status_code == 201, r.text


def test_install_notes_name_the_placeholder_image_and_what_monitoring_rendered(helm, ns):
    """What `helm install` prints (never shown under Argo CD, hence the health check)."""
    def notes(*values: str) -> str:
        r = helm.run("install", "notes", str(CHART), "-n", ns, "--dry-run=server",
                     "--set", "crds.enabled=false", *values)
        return r.stdout.split("NOTES:")[1]

    placeholder = notes()
    assert "ghcr.io/sevenlakes/joyn-scim, which no\nregistry serves" in placeholder
    # The test cluster serves no monitoring.coreos.com/v1: auto renders nothing, and says so.
    assert "Monitoring: nothing rendered.\n  auto follows" in placeholder
    # (Monitors set true cannot be dry-run here: the server maps no monitoring.coreos.com.)
    own = notes("--set", "image.repository=registry.example/joyn-scim",
                "--set", "metrics.serviceMonitor.enabled=false",
                "--set", "metrics.prometheusRule.enabled=false")
    assert "WARNING" not in own
    assert "Monitoring: nothing rendered.\n" in own and "auto follows" not in own
