"""Smoke tests that prove the control plane is the real thing: CRD validation and pruning,
server-side apply conflicts, garbage collection, namespace deletion, RBAC, controllers, kubectl."""

from __future__ import annotations

import json
import secrets
import subprocess

import pytest

from .conftest import Kube, eventually, kube_version

GROUP = "smoke.joyn-scim.test"
CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": f"widgets.{GROUP}"},
    "spec": {
        "group": GROUP,
        "scope": "Namespaced",
        "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
        "versions": [{
            "name": "v1", "served": True, "storage": True,
            "subresources": {"status": {}},
            "schema": {"openAPIV3Schema": {
                "type": "object",
                "properties": {
                    "spec": {
                        "type": "object", "required": ["size"],
                        "properties": {
                            "size": {"type": "integer", "minimum": 1, "maximum": 10},
                            "colour": {"type": "string", "enum": ["red", "blue"]},
                        },
                    },
                    "status": {"type": "object",
                               "properties": {"ready": {"type": "boolean"}}},
                },
            }},
        }],
    },
}


@pytest.fixture
def ns(kube: Kube):
    return kube.namespace("smoke")


def test_version_is_the_pinned_release(kube):
    assert kube.get("/version").json()["gitVersion"] == kube_version()


@pytest.fixture(scope="module")
def widgets(kube):
    r = kube.apply(f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/widgets.{GROUP}",
                   CRD, manager="smoke")
    assert r.status_code in (200, 201), r.text

    def established():
        crd = kube.get(f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/"
                       f"widgets.{GROUP}").json()
        return any(c["type"] == "Established" and c["status"] == "True"
                   for c in (crd.get("status") or {}).get("conditions") or [])

    eventually(established, what="the CRD to be Established")
    return f"/apis/{GROUP}/v1"


def test_crd_validation_and_pruning(kube, widgets, ns):
    base = f"{widgets}/namespaces/{ns}/widgets"
    ok = kube.create(base, {"apiVersion": f"{GROUP}/v1", "kind": "Widget",
                            "metadata": {"name": "good"},
                            "spec": {"size": 3, "colour": "red", "bogus": "dropped"}})
    assert ok.status_code == 201, ok.text
    assert ok.json()["spec"] == {"size": 3, "colour": "red"}  # unknown field pruned
    bad = kube.create(base, {"apiVersion": f"{GROUP}/v1", "kind": "Widget",
                             "metadata": {"name": "bad"}, "spec": {"size": 0, "colour": "green"}})
    assert bad.status_code == 422
    message = bad.json()["message"]
    assert "spec.size" in message and "should be greater than or equal to 1" in message
    assert "spec.colour" in message and "Unsupported value" in message
    missing = kube.create(base, {"apiVersion": f"{GROUP}/v1", "kind": "Widget",
                                 "metadata": {"name": "empty"}, "spec": {}})
    assert missing.status_code == 422 and "spec.size: Required value" in missing.json()["message"]
    # The status subresource: a status write through the main resource is ignored.
    obj = kube.get(f"{base}/good").json()
    obj["status"] = {"ready": True}
    assert "status" not in kube.request("PUT", f"{base}/good", json=obj).json()
    r = kube.request("PUT", f"{base}/good/status", json=obj)
    assert r.status_code == 200 and r.json()["status"] == {"ready": True}


def test_server_side_apply_conflict(kube, ns):
    path = f"/api/v1/namespaces/{ns}/configmaps/shared"
    body = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "shared"},
            "data": {"owner": "first"}}
    assert kube.apply(path, body, manager="first").status_code == 201
    body["data"]["owner"] = "second"
    conflict = kube.apply(path, body, manager="second")
    assert conflict.status_code == 409
    assert "conflict" in conflict.json()["message"].lower()
    assert '"first"' in conflict.json()["message"]
    forced = kube.apply(path, body, manager="second", force=True)
    assert forced.status_code == 200
    managers = {m["manager"] for m in forced.json()["metadata"]["managedFields"]}
    assert "second" in managers


def test_resource_version_conflict(kube, ns):
    path = f"/api/v1/namespaces/{ns}/configmaps"
    cm = kube.create(path, {"metadata": {"name": "rv"}, "data": {"a": "1"}}).json()
    stale = json.loads(json.dumps(cm))
    cm["data"]["a"] = "2"
    assert kube.request("PUT", f"{path}/rv", json=cm).status_code == 200
    stale["data"]["a"] = "3"
    assert kube.request("PUT", f"{path}/rv", json=stale).status_code == 409


def test_owner_reference_garbage_collection(kube, ns):
    owner = kube.create(f"/api/v1/namespaces/{ns}/configmaps",
                        {"metadata": {"name": "owner"}}).json()
    child = kube.create(f"/api/v1/namespaces/{ns}/secrets", {"metadata": {
        "name": "child", "ownerReferences": [{
            "apiVersion": "v1", "kind": "ConfigMap", "name": "owner",
            "uid": owner["metadata"]["uid"]}]}})
    assert child.status_code == 201
    assert kube.delete(f"/api/v1/namespaces/{ns}/configmaps/owner").status_code == 200
    eventually(lambda: kube.get(f"/api/v1/namespaces/{ns}/secrets/child").status_code == 404,
               what="the garbage collector to delete the child")


def test_deleting_a_namespace_completes(kube):
    name = f"gone-{secrets.token_hex(4)}"
    kube.create("/api/v1/namespaces", {"metadata": {"name": name}})
    kube.create(f"/api/v1/namespaces/{name}/configmaps", {"metadata": {"name": "x"}})
    assert kube.delete(f"/api/v1/namespaces/{name}").status_code == 200
    eventually(lambda: kube.get(f"/api/v1/namespaces/{name}").status_code == 404,
               what="the namespace controller to finish deleting the namespace")


def test_deployment_and_replicaset_controllers(kube, ns):
    labels = {"app": "demo"}
    r = kube.create(f"/apis/apps/v1/namespaces/{ns}/deployments", {
        "metadata": {"name": "demo"},
        "spec": {"replicas": 2, "selector": {"matchLabels": labels}, "template": {
            "metadata": {"labels": labels},
            # a registry on a closed loopback port: the pull fails at once, nothing leaves
            "spec": {"containers": [{"name": "c", "image": "127.0.0.1:9/none:1"}]}}}})
    assert r.status_code == 201, r.text

    def pods():
        items = kube.get(f"/api/v1/namespaces/{ns}/pods",
                         params={"labelSelector": "app=demo"}).json()["items"]
        return items if len(items) == 2 else None

    found = eventually(pods, what="the ReplicaSet's pods")
    # Their image cannot be pulled: the pods exist, and are scheduled, but never run.
    assert all(p["status"].get("phase") == "Pending" for p in found)
    owner = found[0]["metadata"]["ownerReferences"][0]
    assert owner["kind"] == "ReplicaSet"


def test_rbac_denies_then_allows_a_service_account(kube, control_plane, ns):
    assert kube.create(f"/api/v1/namespaces/{ns}/serviceaccounts",
                       {"metadata": {"name": "robot"}}).status_code == 201
    tr = kube.create(f"/api/v1/namespaces/{ns}/serviceaccounts/robot/token",
                     {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                      "spec": {"expirationSeconds": 600}})
    assert tr.status_code == 201, tr.text
    robot = Kube(control_plane, token=tr.json()["status"]["token"])
    path = f"/api/v1/namespaces/{ns}/configmaps"
    denied = robot.get(path)
    assert denied.status_code == 403
    assert f"system:serviceaccount:{ns}:robot" in denied.json()["message"]
    kube.create(f"/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/roles", {
        "metadata": {"name": "read-configmaps"},
        "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list"]}]})
    kube.create(f"/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/rolebindings", {
        "metadata": {"name": "robot-reads"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                    "name": "read-configmaps"},
        "subjects": [{"kind": "ServiceAccount", "name": "robot", "namespace": ns}]})
    eventually(lambda: robot.get(path).status_code == 200, what="the RoleBinding to apply")
    assert robot.create(path, {"metadata": {"name": "nope"}}).status_code == 403


def test_kubectl_from_the_build_talks_to_it(control_plane, ns):
    kubectl = [str(control_plane.bins / "kubectl"), f"--kubeconfig={control_plane.kubeconfig}"]
    version = json.loads(subprocess.run([*kubectl, "version", "-o", "json"], check=True,
                                        capture_output=True, text=True).stdout)
    assert version["serverVersion"]["gitVersion"] == kube_version()
    assert version["clientVersion"]["gitVersion"] == kube_version()
    subprocess.run([*kubectl, "-n", ns, "create", "configmap", "from-kubectl",
                    "--from-literal=k=v"], check=True, capture_output=True)
    out = subprocess.run([*kubectl, "-n", ns, "get", "configmap", "from-kubectl", "-o",
                          "jsonpath={.data.k}"], check=True, capture_output=True, text=True)
    assert out.stdout == "v"
