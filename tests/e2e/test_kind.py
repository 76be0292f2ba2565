"""End to end on kind, for hosts with a Docker engine: build the image, run the SCIM server in a
kind cluster, and call it through a port-forward as Entra's Test Connection would.

Run with `make test-e2e`. Where no Docker engine answers (as on this project's build machines),
every test here is skipped with that reason.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import shutil
import socket
import subprocess
import time
from pathlib import Path

import httpx
import pytest

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]
CLUSTER = os.environ.get("KIND_CLUSTER", "joyn-scim-e2e")
IMAGE = "joyn-scim:e2e"


def run(*args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(args, check=True, capture_output=True, text=True, **kw)


def docker_engine() -> str | None:
    """None when a Docker engine answers, else why not."""
    if shutil.which("docker") is None:
        return "no docker command"
    r = subprocess.run(["docker", "info", "--format", "{{.ServerVersion}}"],
                       capture_output=True, text=True)
    if r.returncode != 0 or not r.stdout.strip():
        return "no Docker engine: `docker info` failed: " + (r.stderr.strip().splitlines()
                                                             or ["no answer"])[-1]
    return None


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    reason = docker_engine()
    if reason:
        pytest.skip(f"kind end-to-end tests need a Docker engine; {reason}")
    tools = Path(os.environ.get("TOOLS_BINS_DIR") or run(str(ROOT / "hack/tools/build.sh"))
                 .stdout.strip())
    kubectl_dir = Path(os.environ.get("KUBE_BINS_DIR") or run(str(ROOT / "hack/kube/build.sh"))
                       .stdout.strip())
    kind = str(tools / "kind")
    created = CLUSTER not in run(kind, "get", "clusters").stdout.split()
    if created:
        run(kind, "create", "cluster", "--name", CLUSTER, "--wait", "120s")
    kubeconfig = tmp_path_factory.mktemp("kind") / "kubeconfig"
    kubeconfig.write_text(run(kind, "get", "kubeconfig", "--name", CLUSTER).stdout)
    run("docker", "build", "-t", IMAGE, str(ROOT))
    run(kind, "load", "docker-image", IMAGE, "--name", CLUSTER)
    kubectl = [str(kubectl_dir / "kubectl"), f"--kubeconfig={kubeconfig}"]
    yield kubectl
    if created:
        run(kind, "delete", "cluster", "--name", CLUSTER)


def manifests(ns: str, token: str) -> list[dict]:
    labels = {"app.kubernetes.io/name": "joyn-scim"}
    return [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}},
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "scim-token", "namespace": ns},
         "data": {"token": base64.b64encode(token.encode()).decode()}},
        {"apiVersion": "apps/v1", "kind": "Deployment",
         "metadata": {"name": "scim", "namespace": ns},
         "spec": {"replicas": 1, "strategy": {"type": "Recreate"},
                  "selector": {"matchLabels": labels},
                  "template": {"metadata": {"labels": labels}, "spec": {
                      "securityContext": {"runAsNonRoot": True,
                                          "seccompProfile": {"type": "RuntimeDefault"}},
                      "containers": [{
                          "name": "scim", "image": IMAGE, "imagePullPolicy": "Never",
                          "args": ["serve", "--token-file", "/tokens/token"],
                          "ports": [{"containerPort": 8080}],
                          "readinessProbe": {"httpGet": {"path": "/readyz", "port": 8080}},
                          "securityContext": {"readOnlyRootFilesystem": True,
                                              "allowPrivilegeEscalation": False,
                                              "capabilities": {"drop": ["ALL"]}},
                          "volumeMounts": [{"name": "data", "mountPath": "/data"},
                                           {"name": "tokens", "mountPath": "/tokens",
                                            "readOnly": True}]}],
                      "volumes": [{"name": "data", "emptyDir": {}},
                                  {"name": "tokens", "secret": {"secretName": "scim-token"}}],
                  }}}},
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "scim", "namespace": ns},
         "spec": {"selector": labels, "ports": [{"port": 8080, "targetPort": 8080}]}},
    ]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_test_connection_through_the_cluster(cluster, tmp_path):
    kubectl = cluster
    ns = f"e2e-{secrets.token_hex(4)}"
    token = secrets.token_urlsafe(32)
    path = tmp_path / "manifests.json"
    path.write_text(json.dumps({"apiVersion": "v1", "kind": "List",
                                "items": manifests(ns, token)}))
    run(*kubectl, "apply", "-f", str(path))
    try:
        run(*kubectl, "-n", ns, "rollout", "status", "deployment/scim", "--timeout=180s")
        port = free_port()
        forward = subprocess.Popen([*kubectl, "-n", ns, "port-forward", "service/scim",
                                    f"{port}:8080"], stdout=subprocess.PIPE,
                                   stderr=subprocess.DEVNULL, text=True)
        try:
            forward.stdout.readline()  # "Forwarding from 127.0.0.1:<port> -> 8080"
            url = f"http://127.0.0.1:{port}/scim/v2/Users"
            params = {"filter": 'externalId eq "9edf3db5-0000-4000-8000-000000000000"'}
            deadline = time.monotonic() + 30
            while True:
                try:
                    r = httpx.get(url, params=params,
                                  headers={"Authorization": f"Bearer {token}"})
                    break
                except httpx.TransportError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.2)
            assert r.status_code == 200
            assert r.json()["totalResults"] == 0
            wrong = httpx.get(url, headers={"Authorization": "Bearer wrong"})
            assert wrong.status_code == 401
        finally:
            forward.terminate()
            forward.wait()
    finally:
        run(*kubectl, "delete", "namespace", ns, "--wait=false")
