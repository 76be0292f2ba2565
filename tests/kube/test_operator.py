"""The operator (`joyn-scim operator`, kopf) running against the real control plane."""

from __future__ import annotations

import base64
import json
import re
import secrets

import httpx
import pytest

from .conftest import Kube, OperatorProcess, eventually, module_namespace, module_operator

DOMAIN = "scim.test"


@pytest.fixture(scope="module")
def ns(kube, tenant_crd):
    yield from module_namespace(kube, "op")


@pytest.fixture(scope="module")
def operator(cluster, ns, tmp_path_factory, request):
    # The node runs each tenant's server from the image built here; the IngressClass "nginx"
    # does not exist in this cluster (the ingress end to end is in test_tenant_e2e.py).
    yield from module_operator(cluster, ns, tmp_path_factory, request, DOMAIN=DOMAIN,
                               SERVER_IMAGE=cluster.images.app, INGRESS_CLASS="nginx",
                               RESYNC_SECONDS="3")


def tenants_url(ns: str) -> str:
    return f"/apis/scim.sevenlakes.com/v1alpha1/namespaces/{ns}/joynscimtenants"


def create_tenant(kube: Kube, ns: str, name: str | None = None, **spec) -> str:
    name = name or f"t{secrets.token_hex(3)}"
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
    # The deadline is gone from status too, and once the server runs (this cluster has no
    # IngressClass "nginx", so that is where it rests) the status stays as it is: resyncs
    # find nothing to write.
    assert "previousValidUntil" not in status_of(kube, ns, name)["token"]
    eventually(lambda: conditions_of(kube, ns, name)["Ready"]["reason"] == "IngressClassNotFound",
               timeout=60, what="the tenant at rest")
    version = kube.get(f"{tenants_url(ns)}/{name}").json()["metadata"]["resourceVersion"]
    seen = reconciles(operator, name)
    eventually(lambda: reconciles(operator, name) >= seen + 2, what="two more reconciles")
    assert kube.get(f"{tenants_url(ns)}/{name}").json()["metadata"]["resourceVersion"] == version


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


def test_a_selector_key_added_by_hand_is_removed(kube, ns, operator):
    """A Service selector is replaced whole on apply: a key added to it (which makes the
    Service select no pod) is the operator's to remove, though it sets no such key."""
    name = create_tenant(kube, ns)
    service = eventually(lambda: child(kube, ns, SERVICES, f"{name}-scim"), what="the Service")
    eventually(lambda: status_of(kube, ns, name).get("observedGeneration"), what="a status")
    wanted = service["spec"]["selector"]
    r = kube.http.patch(f"{SERVICES.format(ns=ns)}/{name}-scim",
                        json={"spec": {"selector": {"tier": "canary"}}},
                        headers={"Content-Type": "application/merge-patch+json"})
    assert r.status_code == 200, r.text
    assert r.json()["spec"]["selector"] == {**wanted, "tier": "canary"}
    eventually(lambda: child(kube, ns, SERVICES, f"{name}-scim")["spec"]["selector"] == wanted,
               what="the selector restored")
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


# -- where people push it -----------------------------------------------------------------------

YAML_WOULD_RETYPE = ["y", "n", "yes", "off", "1e3", "0440", "~", "null", "2026-12-02"]


@pytest.mark.parametrize("name", ["y", "n"])
def test_names_and_values_a_yaml_parser_would_retype_reconcile(kube, ns, operator, name):
    values = {f"example.com/v{i}": v for i, v in enumerate(YAML_WOULD_RETYPE)}
    create_tenant(kube, ns, name, server={"podAnnotations": values},
                  ingress={"annotations": values})
    deployment = eventually(lambda: child(kube, ns, DEPLOYMENTS, f"{name}-scim"),
                            what="the Deployment")
    assert deployment["spec"]["template"]["metadata"]["annotations"] == values
    ingress = eventually(lambda: child(kube, ns, INGRESSES, f"{name}-scim"), what="the Ingress")
    assert values.items() <= ingress["metadata"]["annotations"].items()
    assert eventually(lambda: status_of(kube, ns, name).get("url"), what="a status")


def test_an_object_with_a_childs_name_is_never_adopted(kube, ns, operator):
    name = f"t{secrets.token_hex(3)}"
    theirs = {"apiVersion": "v1", "kind": "Service",
              "metadata": {"name": f"{name}-scim", "labels": {"team": "platform"}},
              "spec": {"selector": {"app": "theirs"}, "ports": [{"port": 80}]}}
    assert kube.create(SERVICES.format(ns=ns), theirs).status_code == 201
    create_tenant(kube, ns, name)
    degraded = eventually(lambda: (c := conditions_of(kube, ns, name).get("Degraded")) and
                          c["reason"] == "NameConflict" and c, what="Degraded=NameConflict")
    assert f"Service {name}-scim" in degraded["message"]
    assert conditions_of(kube, ns, name)["Ready"]["reason"] == "NameConflict"
    service = child(kube, ns, SERVICES, f"{name}-scim")
    assert "ownerReferences" not in service["metadata"]
    assert service["spec"]["selector"] == {"app": "theirs"}
    assert service["metadata"]["labels"] == {"team": "platform"}
    # The rest of the tenant is made; deleting it leaves their Service alone.
    eventually(lambda: child(kube, ns, DEPLOYMENTS, f"{name}-scim"), what="the Deployment")
    kube.delete(f"{tenants_url(ns)}/{name}")
    eventually(lambda: child(kube, ns, DEPLOYMENTS, f"{name}-scim") is None, timeout=60,
               what="the tenant's own children to go")
    assert child(kube, ns, SERVICES, f"{name}-scim")["spec"]["selector"] == {"app": "theirs"}


def test_a_secret_with_the_token_name_is_never_used_or_overwritten(kube, ns, operator):
    name = f"t{secrets.token_hex(3)}"
    theirs = base64.b64encode(b"their-own-value").decode()
    r = kube.create(SECRETS.format(ns=ns), {"apiVersion": "v1", "kind": "Secret",
                                            "metadata": {"name": f"{name}-scim-token"},
                                            "data": {"token": theirs}})
    assert r.status_code == 201
    create_tenant(kube, ns, name)
    eventually(lambda: (conditions_of(kube, ns, name).get("Degraded") or {}).get("reason")
               == "NameConflict", what="Degraded=NameConflict")
    assert child(kube, ns, SECRETS, f"{name}-scim-token")["data"] == {"token": theirs}
    assert child(kube, ns, DEPLOYMENTS, f"{name}-scim") is None  # no server on their token


def test_warnings_mean_a_person_changed_something(kube, ns, operator):
    names = [create_tenant(kube, ns) for _ in range(4)]

    def bound():
        return all((child(kube, ns, PVCS, f"{n}-scim-data") or {}).get("status", {}).get(
            "phase") == "Bound" for n in names)

    # The scheduler and the volume binder annotate each claim, the Deployment controller its
    # Deployment, while the operator reconciles every 3 s: none of that is a person's change.
    eventually(bound, timeout=120, what="every claim to be bound")
    seen = {n: reconciles(operator, n) for n in names}
    eventually(lambda: all(reconciles(operator, n) >= seen[n] + 2 for n in names),
               what="two more reconciles of each")
    # A spec change made while paused is applied on resume: the operator's own change.
    paused = names[0]
    annotate(kube, ns, paused, {"scim.sevenlakes.com/paused": "true"})
    eventually(lambda: conditions_of(kube, ns, paused)["Paused"]["status"] == "True",
               what="Paused=True")
    r = kube.http.patch(f"{tenants_url(ns)}/{paused}",
                        json={"spec": {"server": {"logLevel": "debug"}}},
                        headers={"Content-Type": "application/merge-patch+json"})
    assert r.status_code == 200, r.text
    annotate(kube, ns, paused, {"scim.sevenlakes.com/paused": None})

    def debug_level():
        d = child(kube, ns, DEPLOYMENTS, f"{paused}-scim")
        env = {e["name"]: e.get("value") for e in
               d["spec"]["template"]["spec"]["containers"][0]["env"]}
        return env["JOYN_SCIM_LOG_LEVEL"] == "debug"

    eventually(debug_level, what="the change applied on resume")
    for n in names:
        assert "DriftCorrected" not in events_of(kube, ns, n), n
    # A person's edit of a field the operator sets is still reported.
    r = kube.http.patch(f"{DEPLOYMENTS.format(ns=ns)}/{names[1]}-scim",
                        json={"spec": {"replicas": 3}},
                        headers={"Content-Type": "application/merge-patch+json"})
    assert r.status_code == 200, r.text
    eventually(lambda: "DriftCorrected" in events_of(kube, ns, names[1]),
               what="DriftCorrected for the hand edit")
    assert child(kube, ns, DEPLOYMENTS, f"{names[1]}-scim")["spec"]["replicas"] == 1


def test_a_deleted_token_secret_is_loud_until_acknowledged(kube, ns, operator):
    name = create_tenant(kube, ns)
    first = token_of(kube, ns, name)
    eventually(lambda: status_of(kube, ns, name).get("token"), what="a token in status")
    kube.delete(f"{SECRETS.format(ns=ns)}/{name}-scim-token")
    conds = eventually(lambda: (c := conditions_of(kube, ns, name))["Degraded"]["reason"]
                       == "TokenReplaced" and c, what="Degraded=TokenReplaced")
    assert conds["Ready"]["reason"] == "TokenReplaced"
    assert "acknowledge-token-replaced" in conds["Degraded"]["message"]
    assert status_of(kube, ns, name)["token"]["replacedAt"]
    second = token_of(kube, ns, name)
    assert second != first and second not in str(status_of(kube, ns, name))
    assert "TokenReplaced" in events_of(kube, ns, name)
    annotate(kube, ns, name, {"scim.sevenlakes.com/acknowledge-token-replaced": "handed-over"})
    eventually(lambda: conditions_of(kube, ns, name)["Degraded"]["reason"] != "TokenReplaced",
               what="the replacement acknowledged")
    assert "replacedAt" not in status_of(kube, ns, name)["token"]
    assert token_of(kube, ns, name) == second


# -- the event stream's Secrets and references -------------------------------------------------

def test_an_event_secret_name_taken_by_somebody_else_is_never_used(kube, ns, operator):
    name = f"t{secrets.token_hex(3)}"
    theirs = base64.b64encode(b"-----BEGIN PRIVATE KEY-----\ntheirs").decode()
    r = kube.create(SECRETS.format(ns=ns), {"apiVersion": "v1", "kind": "Secret",
                                            "metadata": {"name": f"{name}-scim-events-signing-key"},
                                            "data": {"signing-key.pem": theirs}})
    assert r.status_code == 201, r.text
    create_tenant(kube, ns, name, events={"enabled": True})
    degraded = eventually(lambda: (c := conditions_of(kube, ns, name).get("Degraded")) and
                          c["reason"] == "NameConflict" and c, what="Degraded=NameConflict")
    assert f"Secret {name}-scim-events-signing-key" in degraded["message"]
    assert child(kube, ns, SECRETS, f"{name}-scim-events-signing-key")["data"] == {
        "signing-key.pem": theirs}
    assert child(kube, ns, DEPLOYMENTS, f"{name}-scim") is None  # no server on their key


def test_a_missing_push_authorization_secret_degrades_until_it_appears(kube, ns, operator):
    name = create_tenant(kube, ns, events={"enabled": True, "push": {
        "url": "https://fsm.example/in", "authorizationSecretRef": {"name": "fsm-push"}}})
    conds = eventually(lambda: (c := conditions_of(kube, ns, name)).get("Degraded", {}).get(
        "reason") == "EventsPushAuthorizationMissing" and c,
        what="Degraded=EventsPushAuthorizationMissing")
    assert "Secret fsm-push" in conds["Degraded"]["message"]
    assert conds["Ready"]["reason"] != "EventsPushAuthorizationMissing"  # Entra is not at stake
    assert status_of(kube, ns, name)["events"]["delivery"] == "push"
    # The server runs anyway, the Secret mounted optional.
    assert eventually(lambda: child(kube, ns, DEPLOYMENTS, f"{name}-scim"), what="Deployment")
    value = base64.b64encode(b"Bearer for-the-receiver").decode()
    r = kube.create(SECRETS.format(ns=ns), {"apiVersion": "v1", "kind": "Secret",
                                            "metadata": {"name": "fsm-push"},
                                            "data": {"authorization": value}})
    assert r.status_code == 201, r.text
    eventually(lambda: conditions_of(kube, ns, name)["Degraded"]["reason"]
               != "EventsPushAuthorizationMissing", what="the Secret to be seen")
    assert "for-the-receiver" not in str(status_of(kube, ns, name))


def test_a_deleted_receiver_token_secret_is_made_again_with_a_warning(kube, ns, operator):
    name = create_tenant(kube, ns, events={"enabled": True})
    path = f"{SECRETS.format(ns=ns)}/{name}-scim-events-token"
    first = eventually(lambda: child(kube, ns, SECRETS, f"{name}-scim-events-token"),
                       what="the receiver token's Secret")
    eventually(lambda: status_of(kube, ns, name).get("events", {}).get("receiverToken"),
               what="the receiver token in status")
    key = child(kube, ns, SECRETS, f"{name}-scim-events-signing-key")
    assert kube.delete(path).status_code == 200
    again = eventually(lambda: (s := child(kube, ns, SECRETS, f"{name}-scim-events-token"))
                       and s["metadata"]["uid"] != first["metadata"]["uid"] and s,
                       what="a new receiver token")
    assert again["data"]["token"] != first["data"]["token"]
    eventually(lambda: "EventsTokenReplaced" in events_of(kube, ns, name),
               what="the EventsTokenReplaced Warning")
    # The other Secret is left as it was.
    assert child(kube, ns, SECRETS, f"{name}-scim-events-signing-key")["data"] == key["data"]
