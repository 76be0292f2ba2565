"""The real node (hack/kube/node.py) and what it brings: containerd + runc + CNI from Debian,
the kubelet from the pinned module, pod IPs reachable from the host, PVCs that bind through
the default StorageClass, and a stop that leaves nothing behind on the machine. Services and
NetworkPolicies: test_network.py."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import httpx
import pytest
from cluster import Cluster
from controlplane import NODE_NAME

from .conftest import eventually, machine_state, nothing_left_behind


@pytest.fixture(scope="module")
def ns(kube) -> str:
    return kube.namespace("node")


def pod_manifest(name: str, image: str, command: list[str] | None = None, **spec) -> dict:
    container = {"name": "c", "image": image, "imagePullPolicy": "Never"}
    if command:
        container["command"] = command
    return {"metadata": {"name": name}, "spec": {
        "automountServiceAccountToken": False, "containers": [container], **spec}}


def phase(kube, ns: str, name: str) -> str | None:
    r = kube.get(f"/api/v1/namespaces/{ns}/pods/{name}")
    return r.json()["status"].get("phase") if r.status_code == 200 else None


def test_the_node_registers_and_is_ready(kube):
    node = kube.get(f"/api/v1/nodes/{NODE_NAME}").json()
    ready = {c["type"]: c["status"] for c in node["status"]["conditions"]}["Ready"]
    info = node["status"]["nodeInfo"]
    assert ready == "True"
    assert info["containerRuntimeVersion"].startswith("containerd://1.")
    assert info["kubeletVersion"] == kube.get("/version").json()["gitVersion"]
    assert not node["spec"].get("taints")  # the not-ready taint was lifted


def test_a_pod_runs_and_its_ip_is_reachable_from_the_host(kube, cluster, ns):
    manifest = pod_manifest("web", cluster.images.app)
    manifest["spec"]["containers"][0].update(args=["serve"], env=[
        {"name": "JOYN_SCIM_DATA_DIR", "value": "/tmp"},
        {"name": "JOYN_SCIM_TOKEN_FILES", "value": "/tmp/none"}])
    assert kube.create(f"/api/v1/namespaces/{ns}/pods", manifest).status_code == 201
    pod = eventually(lambda: (p := kube.get(f"/api/v1/namespaces/{ns}/pods/web").json())
                     ["status"].get("podIP") and p, what="the pod's IP")
    assert pod["status"]["podIP"].startswith(cluster.node.subnet.rsplit(".", 1)[0] + ".")
    eventually(lambda: _status(f"http://{pod['status']['podIP']}:8080/healthz") == 200,
               what="the pod's server to answer on its pod IP")


def _status(url: str) -> int:
    try:
        return httpx.get(url, timeout=2).status_code
    except httpx.HTTPError:
        return 0


def test_a_claim_binds_through_the_default_class_and_its_data_outlives_the_pod(
        kube, cluster, ns):
    claim = {"metadata": {"name": "data"}, "spec": {
        "accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "16Mi"}}}}
    assert kube.create(f"/api/v1/namespaces/{ns}/persistentvolumeclaims", claim).status_code == 201
    volume = {"volumes": [{"name": "d", "persistentVolumeClaim": {"claimName": "data"}}],
              "restartPolicy": "Never"}

    def run(name: str, script: str) -> None:
        m = pod_manifest(name, cluster.images.base, ["sh", "-c", script], **volume)
        m["spec"]["containers"][0]["volumeMounts"] = [{"name": "d", "mountPath": "/data"}]
        assert kube.create(f"/api/v1/namespaces/{ns}/pods", m).status_code == 201
        eventually(lambda: phase(kube, ns, name) in ("Succeeded", "Failed"), timeout=120,
                   what=f"pod {name} to finish")
        assert phase(kube, ns, name) == "Succeeded", cluster.storage.logs()

    run("writer", "echo kept > /data/file")
    pvc = kube.get(f"/api/v1/namespaces/{ns}/persistentvolumeclaims/data").json()
    assert pvc["status"]["phase"] == "Bound"
    assert pvc["spec"]["storageClassName"] == "local-path"  # the default class was filled in
    pv = kube.get(f"/api/v1/persistentvolumes/{pvc['spec']['volumeName']}").json()
    folder = Path(pv["spec"]["hostPath"]["path"])
    assert folder.is_relative_to(cluster.storage.volumes)  # on the node, in the harness
    assert kube.delete(f"/api/v1/namespaces/{ns}/pods/writer").status_code == 200
    run("reader", "test \"$(cat /data/file)\" = kept")
    # The API server reaches the kubelet for logs (its client certificate, the node's address).
    logs = cluster.cp.kubectl("-n", ns, "logs", "reader")
    assert logs == ""


def test_stopping_a_cluster_leaves_nothing_behind(tmp_path_factory, cluster):
    """A second cluster, with a pod and a bound volume running, stopped: the machine is as it
    was (the session's cluster keeps running beside it, untouched)."""
    tmp_path = tmp_path_factory.mktemp("c")  # a short path: it holds unix sockets
    before = machine_state(cluster)
    other = Cluster(tmp_path / "other").start()
    try:
        ns = "leftovers"
        other.cp.kubectl("create", "namespace", ns)
        claim = {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {
            "name": "d", "namespace": ns}, "spec": {"accessModes": ["ReadWriteOnce"],
                                                   "resources": {"requests": {"storage": "1Mi"}}}}
        pod = pod_manifest("sleeper", other.images.base, ["sleep", "600"])
        pod["spec"]["volumes"] = [{"name": "d", "persistentVolumeClaim": {"claimName": "d"}}]
        pod["spec"]["containers"][0]["volumeMounts"] = [{"name": "d", "mountPath": "/d"}]
        pod.update({"apiVersion": "v1", "kind": "Pod"})
        pod["metadata"]["namespace"] = ns
        other.cp.kubectl("apply", "-f", "-", input=json.dumps(
            {"apiVersion": "v1", "kind": "List", "items": [claim, pod]}))
        eventually(lambda: (other.cp.get_json(f"/api/v1/namespaces/{ns}/pods/sleeper") or {})
                   .get("status", {}).get("phase") == "Running", timeout=120,
                   what="the pod to run")
        during = machine_state(cluster)
        assert other.node.link in during["links"]  # its link to the host
        assert other.node.netns in during["netns"]  # the node's own network namespace
        # ... holding kube-proxy's rules and the NetworkPolicy queue, which go with it.
        assert other.node.run("nft", "list", "table", "ip", "kube-proxy").returncode == 0
        assert other.node.policies_enforced() or other.node.policies_error
    finally:
        other.stop()
    nothing_left_behind(cluster, before)
    assert not (tmp_path / "other").exists()
    leftovers = subprocess.run(["pgrep", "-af", str(tmp_path)], capture_output=True,
                               text=True).stdout
    assert leftovers == ""
    # The session's cluster is untouched.
    assert cluster.node.ready()
