"""The `control_plane` fixture: a real etcd + kube-apiserver + kube-controller-manager on
127.0.0.1 for the whole session (hack/kube/controlplane.py), and a small API client."""

from __future__ import annotations

import os
import ssl
import sys
import time
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "hack" / "kube"))
from controlplane import ControlPlane, binaries_dir  # noqa: E402


class Kube:
    """Just enough of a Kubernetes API client to show what the API server really does."""

    def __init__(self, cp: ControlPlane, token: str | None = None) -> None:
        self.cp = cp
        self.http = httpx.Client(base_url=cp.server, timeout=30,
                                 verify=ssl.create_default_context(cafile=str(cp.ca_file)),
                                 headers={"Authorization": f"Bearer {token or cp.token}"})

    def request(self, method: str, path: str, **kw) -> httpx.Response:
        return self.http.request(method, path, **kw)

    def get(self, path: str, **kw) -> httpx.Response:
        return self.http.get(path, **kw)

    def create(self, path: str, body: dict) -> httpx.Response:
        return self.http.post(path, json=body)

    def delete(self, path: str, **kw) -> httpx.Response:
        return self.http.request("DELETE", path, **kw)

    def apply(self, path: str, body: dict, manager: str, force: bool = False) -> httpx.Response:
        """Server-side apply (JSON is YAML, so the apply content type takes it)."""
        params = {"fieldManager": manager}
        if force:
            params["force"] = "true"
        return self.http.patch(path, params=params, json=body,
                               headers={"Content-Type": "application/apply-patch+yaml"})


def eventually(condition, timeout: float = 60, what: str = ""):
    """Poll until `condition()` returns something truthy, and return it."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what or condition}")
        time.sleep(0.2)


@pytest.fixture(scope="session")
def control_plane(tmp_path_factory):
    bins = binaries_dir()
    if bins is None:
        message = "Kubernetes binaries are not built: run `make kube-bins` (hack/kube/build.sh)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    cp = ControlPlane(bins, tmp_path_factory.mktemp("kube")).start()
    yield cp
    cp.stop()


@pytest.fixture(scope="session")
def kube(control_plane) -> Kube:
    return Kube(control_plane)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    cp = item.funcargs.get("control_plane") if hasattr(item, "funcargs") else None
    if cp is None and hasattr(item, "funcargs") and "kube" in item.funcargs:
        cp = item.funcargs["kube"].cp
    if report.failed and cp is not None:
        report.sections.append(("control plane logs", cp.logs()))


CRD_PATH = ROOT / "crds" / "joynscimtenants.scim.sevenlakes.com.yaml"
TENANTS_API = "/apis/scim.sevenlakes.com/v1alpha1"


@pytest.fixture(scope="session")
def tenant_crd(kube) -> str:
    """The JoynScimTenant CRD from crds/, applied and Established; returns its API path."""
    import yaml

    crd = yaml.safe_load(CRD_PATH.read_text())
    url = f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{crd['metadata']['name']}"
    r = kube.apply(url, crd, manager="tests", force=True)
    assert r.status_code in (200, 201), r.text

    def established():
        c = kube.get(url).json()
        return any(x["type"] == "Established" and x["status"] == "True"
                   for x in (c.get("status") or {}).get("conditions") or [])

    eventually(established, what="the JoynScimTenant CRD to be Established")
    return TENANTS_API
