"""The operator (`joyn-scim operator`, kopf) running against the real control plane."""

from __future__ import annotations

import base64
import json
import re
import secrets

import httpx
import pytest

from .conftest import Kube, OperatorProcess, eventually

DOMAIN = "scim.test"


@pytest.fixture(scope="module")
def ns(kube, tenant_crd) -> str:
    return kube.namespace("op")


@pytest.fixture(scope="module")
def operator(cluster, ns, tmp_path_factory, request):
    # The node runs each tenant's server from the image built here; the IngressClass "nginx"
    # does not exist in this cluster (the ingress end to end is in test_tenant_e2e.py).
    op = OperatorProcess(cluster.cp, ns, tmp_path_factory.mktemp("operator"), DOMAIN=DOMAIN,
                         SERVER_IMAGE=cluster.images.app, INGRESS_CLASS="nginx",
                         RESYNC_SECONDS="3").start()
    yield op
    op.stop()
    if request.session.testsfailed:
        print(f"--- operator log ---\n{op.log.read_text()[-6000:]}")


def tenants_url(ns: str) -> str:
    return f"/apis/scim.sevenlakes.com/v1alpha1/namespaces/{ns}/joynscimtenants"


def create_tenant(kube: Kube, ns: str, **spec) -> str:
    name = f"t{secrets.token_hex(3)}"
    r = kube.create(tenants_url(ns), {
        "apiVersion": "scim.sevenlakes.com/v1alpha1", "kind": "JoynScimTenant",
        "metadata": {"name": name}, "spec": {"displayName": "Acme", **spec}})
    assert r.status_code == 201, r.text
    return name


def child(kube: Kube, ns: str, kind_path: str, name: str) -> dict | None:
    r = kube.get(f"{kind_path.format(ns=ns)}/{name}")
    return r.json() if r.status_code == 200 else None


SECRETS = "/api/v1/namespaces/{ns}/secrets"
DEPLOYMENTS = "/apis/apps/v1/namespaces/{ns}/deployments"
SERVICES = "/api/v1/namespaces/{ns}/services"
INGRESSES = "/apis/networking.k8s.io/v1/namespaces/{ns}/ingresses"
PVCS = "/api/v1/namespaces/{ns}/persistentvolumeclaims"
NETPOLS = "/apis/networking.k8s.io/v1/namespaces/{ns}/networkpolicies"


def token_of(kube, ns, name) -> str:
    secret = eventually(lambda: child(kube, ns, SECRETS, f"{name}-scim-token"),
                        what="the token Secret")
    return base64.b64decode(secret["data"]["token"]).decode()


def status_of(kube, ns, name) -> dict:
    return kube.get(f"{tenants_url(ns)}/{name}").json().get("status") or {}


def test_create_tenant_makes_children_and_status(kube, ns, operator):
    name = create_tenant(kube, ns)
    status = eventually(lambda: status_of(kube, ns, name).get("url") and status_of(kube, ns, name),
                        what="status.url")
    assert status["url"] == f"https://{name}.{DOMAIN}/scim/v2"
    assert status["tokenSecretRef"] == {"name": f"{name}-scim-token", "key": "token"}
    tenant_uid = kube.get(f"{tenants_url(ns)}/{name}").json()["metadata"]["uid"]
    for kind_path, child_name, owned in ((DEPLOYMENTS, f"{name}-scim", True),
                                         (SERVICES, f"{name}-scim", True),
                                         (INGRESSES, f"{name}-scim", True),
                                         (NETPOLS, f"{name}-scim", True),
                                         (PVCS, f"{name}-scim-data", False),
                                         (SECRETS, f"{name}-scim-token", False)):
        obj = eventually(lambda p=kind_path, n=child_name: child(kube, ns, p, n),
                         what=child_name)
        refs = [o["uid"] for o in obj["metadata"].get("ownerReferences", [])]
        assert refs == ([tenant_uid] if owned else []), child_name  # Retain: PVC, Secret kept
        assert obj["metadata"]["labels"]["app.kubernetes.io/instance"] == name
    token = token_of(kube, ns, name)
    assert len(token) == 43
    conds = {c["type"]: c for c in status["conditions"]}
    assert conds["Ready"]["status"] == "False"  # no kubelet, no volume provisioner here
    assert conds["Ready"]["reason"] in ("VolumePending", "PodPending", "Deploying")
    assert token not in str(status)
    ingress = child(kube, ns, INGRESSES, f"{name}-scim")
    assert ingress["spec"]["rules"][0]["host"] == f"{name}.{DOMAIN}"
    assert ingress["spec"]["ingressClassName"] == "nginx"


def test_token_survives_updates_and_host_change_moves_url(kube, ns, operator):
    name = create_tenant(kube, ns)
    token = token_of(kube, ns, name)
    r = kube.http.patch(f"{tenants_url(ns)}/{name}",
                        json={"spec": {"displayName": "Acme Renamed",
                                       "ingress": {"host": "sso.acme.example"}}},
                        headers={"Content-Type": "application/merge-patch+json"})
    assert r.status_code == 200, r.text
    eventually(lambda: status_of(kube, ns, name).get("url") ==
               "https://sso.acme.example/scim/v2", what="the new URL in status")
    ingress = child(kube, ns, INGRESSES, f"{name}-scim")
    assert ingress["spec"]["rules"][0]["host"] == "sso.acme.example"
    assert token_of(kube, ns, name) == token


def test_deleted_child_comes_back(kube, ns, operator):
    name = create_tenant(kube, ns)
    svc = eventually(lambda: child(kube, ns, SERVICES, f"{name}-scim"), what="the Service")
    assert kube.delete(f"{SERVICES.format(ns=ns)}/{name}-scim").status_code == 200

    def recreated():
        now = child(kube, ns, SERVICES, f"{name}-scim")
        return now and now["metadata"]["uid"] != svc["metadata"]["uid"]

    eventually(recreated, what="the Service to be recreated")


def events_of(kube, ns, name) -> list[str]:
    items = kube.get(f"/api/v1/namespaces/{ns}/events",
                     params={"fieldSelector": f"involvedObject.name={name}"}).json()["items"]
    return [e["reason"] for e in items]


def annotate(kube, ns, name, annotations: dict) -> None:
    r = kube.http.patch(f"{tenants_url(ns)}/{name}",
                        json={"metadata": {"annotations": annotations}},
                        headers={"Content-Type": "application/merge-patch+json"})
    assert r.status_code == 200, r.text


def reconciles(operator, name) -> int:
    """How many reconciles of this tenant the operator has logged (its JSON debug lines)."""
    if not operator.log.exists():
        return 0
    count = 0
    for line in operator.log.read_text().splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        count += entry.get("msg") == "reconciled" and \
            entry.get("tenant") == f"{operator.namespace}/{name}"
    return count


def test_token_unchanged_after_operator_restart(kube, ns, operator):
    name = create_tenant(kube, ns)
    token = token_of(kube, ns, name)
    operator.stop()
    operator.start()
    seen = reconciles(operator, name)
    eventually(lambda: reconciles(operator, name) > seen, what="a reconcile after the restart")
    assert token_of(kube, ns, name) == token


def test_rotation_keeps_previous_until_deadline_then_drops_it(kube, ns, operator):
    name = create_tenant(kube, ns, token={"previousTokenValidFor": "6s"})
    first = token_of(kube, ns, name)
    annotate(kube, ns, name, {"scim.sevenlakes.com/rotate-token": "2026-11-26T09:00"})

    def rotated():
        s = child(kube, ns, SECRETS, f"{name}-scim-token")
        data = {k: base64.b64decode(v).decode() for k, v in s["data"].items()}
        return data if data.get("previous-token") else None

    data = eventually(rotated, what="the rotation")
    assert data["previous-token"] == first and data["token"] != first
    status = eventually(lambda: (s := status_of(kube, ns, name)).get("token", {}).get(
        "previousValidUntil") and s, what="previousValidUntil in status")
    conds = {c["type"]: c for c in status["conditions"]}
    assert conds["TokenRotationPending"]["status"] == "True"
    assert first not in str(status) and data["token"] not in str(status)
    assert "TokenRotated" in events_of(kube, ns, name)

    def expired():
        s = child(kube, ns, SECRETS, f"{name}-scim-token")
        return "previous-token" not in s["data"]

    eventually(expired, timeout=60, what="the previous token to be dropped at its deadline")
    assert token_of(kube, ns, name) == data["token"]
    eventually(lambda: "PreviousTokenExpired" in events_of(kube, ns, name),
               what="the PreviousTokenExpired event")
    eventually(lambda: {c["type"]: c["status"] for c in status_of(kube, ns, name)[
        "conditions"]}["TokenRotationPending"] == "False", what="TokenRotationPending=False")


def test_pause_stops_changes_and_resume_restores(kube, ns, operator):
    name = create_tenant(kube, ns)
    svc = eventually(lambda: child(kube, ns, SERVICES, f"{name}-scim"), what="the Service")
    annotate(kube, ns, name, {"scim.sevenlakes.com/paused": "true"})
    eventually(lambda: {c["type"]: c["status"] for c in status_of(kube, ns, name).get(
        "conditions", [])}.get("Paused") == "True", what="Paused=True")
    assert "Paused" in events_of(kube, ns, name)
    kube.delete(f"{SERVICES.format(ns=ns)}/{svc['metadata']['name']}")
    seen = reconciles(operator, name)
    eventually(lambda: reconciles(operator, name) >= seen + 2,
               what="two reconciles while paused")
    assert child(kube, ns, SERVICES, f"{name}-scim") is None  # not restored while paused
    annotate(kube, ns, name, {"scim.sevenlakes.com/paused": None})
    eventually(lambda: child(kube, ns, SERVICES, f"{name}-scim"), what="the Service back")
    eventually(lambda: "Resumed" in events_of(kube, ns, name), what="the Resumed event")


@pytest.mark.parametrize("policy,kept", [("Delete", False), ("Retain", True)])
def test_deleting_a_tenant_honours_the_deletion_policy(kube, ns, operator, policy, kept):
    name = create_tenant(kube, ns, storage={"deletionPolicy": policy})
    eventually(lambda: child(kube, ns, DEPLOYMENTS, f"{name}-scim"), what="the Deployment")
    token_of(kube, ns, name)
    eventually(lambda: child(kube, ns, PVCS, f"{name}-scim-data"), what="the PVC")
    assert kube.delete(f"{tenants_url(ns)}/{name}").status_code == 200
    for kind_path, child_name in ((DEPLOYMENTS, f"{name}-scim"), (SERVICES, f"{name}-scim"),
                                  (INGRESSES, f"{name}-scim")):
        eventually(lambda p=kind_path, n=child_name: child(kube, ns, p, n) is None,
                   what=f"{child_name} to be garbage-collected")
    for kind_path, child_name in ((PVCS, f"{name}-scim-data"), (SECRETS, f"{name}-scim-token")):
        if kept:
            assert child(kube, ns, kind_path, child_name) is not None
        else:
            eventually(lambda p=kind_path, n=child_name: (c := child(kube, ns, p, n)) is None
                       or c["metadata"].get("deletionTimestamp"),
                       what=f"{child_name} to be deleted")


def secret_data(kube, ns, name) -> dict[str, str]:
    s = child(kube, ns, SECRETS, f"{name}-scim-token")
    return {k: base64.b64decode(v).decode() for k, v in s["data"].items()}


def conditions_of(kube, ns, name) -> dict:
    return {c["type"]: c for c in status_of(kube, ns, name).get("conditions", [])}


def test_namespace_with_tenants_is_deleted_without_hanging(kube, tenant_crd, control_plane,
                                                          tmp_path):
    other = f"gone-{secrets.token_hex(4)}"
    kube.create("/api/v1/namespaces", {"metadata": {"name": other}})
    op = OperatorProcess(control_plane, other, tmp_path).start()
    try:
        name = create_tenant(kube, other)
        eventually(lambda: child(kube, other, DEPLOYMENTS, f"{name}-scim"), what="children")
    finally:
        op.stop()  # even with the operator gone, nothing blocks the deletion
    assert kube.delete(f"/api/v1/namespaces/{other}").status_code == 200
    eventually(lambda: kube.get(f"/api/v1/namespaces/{other}").status_code == 404, timeout=90,
               what="the namespace to be deleted")


def test_operator_metrics(kube, ns, operator):
    name = create_tenant(kube, ns)
    token = token_of(kube, ns, name)
    url = f"http://127.0.0.1:{operator.metrics_port}/metrics"

    def scraped():
        try:
            text = httpx.get(url).text
        except httpx.TransportError:
            return None
        return text if f'tenant="{name}"' in text else None

    text = eventually(scraped, what="the tenant's token age in the metrics")
    assert 'joyn_operator_reconciles_total{result="success"}' in text
    assert "joyn_operator_reconcile_duration_seconds_bucket" in text
    assert 'joyn_operator_tenants{ready="False"}' in text
    assert f'joyn_operator_token_age_seconds{{namespace="{ns}",tenant="{name}"}}' in text
    assert "joyn_operator_info" in text and token not in text


def test_child_edited_by_hand_is_restored_with_an_event(kube, ns, operator):
    name = create_tenant(kube, ns)
    eventually(lambda: child(kube, ns, SERVICES, f"{name}-scim"), what="the Service")
    eventually(lambda: status_of(kube, ns, name).get("observedGeneration"), what="a status")
    r = kube.http.patch(f"{SERVICES.format(ns=ns)}/{name}-scim",
                        json={"spec": {"ports": [{"name": "http", "port": 9999,
                                                  "targetPort": "http", "protocol": "TCP"}]}},
                        headers={"Content-Type": "application/merge-patch+json"})
    assert r.status_code == 200, r.text
    # A port list SSA cannot merge: the operator deletes and re-applies the Service, so for a
    # moment there is none.
    eventually(lambda: (s := child(kube, ns, SERVICES, f"{name}-scim")) is not None
               and s["spec"]["ports"][0]["port"] == 8080, what="the port to be restored")
    eventually(lambda: "DriftCorrected" in events_of(kube, ns, name),
               what="the DriftCorrected event")


def test_a_child_the_api_server_refuses_shows_as_degraded(kube, ns, operator):
    name = create_tenant(kube, ns, ingress={"annotations": {"not a valid key!": "x"}})
    conds = eventually(lambda: (c := conditions_of(kube, ns, name)).get("Degraded", {}).get(
        "reason") == "ApplyFailed" and c, what="Degraded=ApplyFailed")
    assert "annotations" in conds["Degraded"]["message"]
    # The rest of the tenant is still there.
    assert child(kube, ns, SERVICES, f"{name}-scim") is not None
    r = kube.http.patch(f"{tenants_url(ns)}/{name}",
                        json={"spec": {"ingress": {"annotations": None}}},
                        headers={"Content-Type": "application/merge-patch+json"})
    assert r.status_code == 200
    eventually(lambda: conditions_of(kube, ns, name)["Degraded"]["status"] == "False",
               what="Degraded=False once fixed")
    assert child(kube, ns, INGRESSES, f"{name}-scim") is not None


def test_the_resync_leaves_tenants_of_other_namespaces_alone(kube, ns, operator):
    """The operator runs with `-n <ns>`; its periodic resync must not reach past that."""
    other = kube.namespace("other")
    foreign = create_tenant(kube, other)
    create_tenant(kube, ns)

    def reconciles() -> float:
        text = httpx.get(f"http://127.0.0.1:{operator.metrics_port}/metrics").text
        return sum(float(v) for v in re.findall(
            r'^joyn_operator_reconciles_total\{result="\w+"\} (\S+)$', text, re.M))

    start = reconciles()
    # Every resync round (3 s here) reconciles each of the namespace's tenants again.
    eventually(lambda: reconciles() >= start + 20, timeout=60, what="several resync rounds")
    assert "status" not in kube.get(f"{tenants_url(other)}/{foreign}").json()
    assert child(kube, other, SECRETS, f"{foreign}-scim-token") is None
