"""The children's manifests (joyn_operator.desired and its templates), from resolved tenants:
their shape for representative specs, and that no string a tenant or the operator's settings
carry can change their structure."""

import base64
import re
from functools import cache
from importlib import resources

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from joyn_operator.config import OperatorConfig
from joyn_operator.desired import children, generated_secret, tojson, token_secret
from joyn_operator.tenant import resolve

CFG = OperatorConfig(server_image="registry.example/joyn-scim:1.2.3", domain="scim.example.com",
                     ingress_class="nginx", ingress_namespace="ingress-nginx")


def body(**spec) -> dict:
    return {"metadata": {"name": "acme", "namespace": "customers", "uid": "uid-1"},
            "spec": {"displayName": "Acme", **spec}}


def kinds(t) -> dict:
    return {c["kind"]: c for c in children(t)}


def owner_uids(obj):
    return [o["uid"] for o in obj["metadata"].get("ownerReferences", [])]


def test_children_in_apply_order_with_standard_labels():
    t = resolve(body(), CFG)
    assert [c["kind"] for c in children(t)] == [
        "PersistentVolumeClaim", "Deployment", "Service", "Ingress", "NetworkPolicy"]
    for child in children(t):
        assert child["metadata"]["labels"] == t.labels
        assert child["metadata"]["namespace"] == "customers"
    assert t.labels["app.kubernetes.io/managed-by"] == "joyn-scim-operator"


def test_each_call_returns_manifests_of_its_own():
    first = children(resolve(body(), CFG))
    first[0]["metadata"]["labels"]["changed"] = "by the caller"
    assert "changed" not in children(resolve(body(), CFG))[0]["metadata"]["labels"]
    other = children(resolve(body(server={"image": "other:1"}), CFG))
    assert other[1]["spec"]["template"]["spec"]["containers"][0]["image"] == "other:1"


def test_deployment_runs_the_server_hardened():
    t = resolve(body(server={"logLevel": "debug", "nodeSelector": {"pool": "a"},
                             "podAnnotations": {"x": "y"}}), CFG)
    spec = kinds(t)["Deployment"]["spec"]
    assert spec["replicas"] == 1 and spec["strategy"] == {"type": "Recreate"}
    assert spec["selector"]["matchLabels"] == t.selector
    pod = spec["template"]["spec"]
    c = pod["containers"][0]
    assert c["image"] == "registry.example/joyn-scim:1.2.3" and c["args"] == ["serve"]
    env = {e["name"]: e["value"] for e in c["env"]}
    assert env["JOYN_SCIM_PORT"] == "8080" and c["ports"][0]["containerPort"] == 8080
    assert env["JOYN_SCIM_BASE_PATH"] == "/scim/v2"
    assert env["JOYN_SCIM_PUBLIC_URL"] == "https://acme.scim.example.com/scim/v2"
    assert env["JOYN_SCIM_TOKEN_FILES"].split(",") == [
        "/var/run/joyn-scim/token/token", "/var/run/joyn-scim/token/previous-token"]
    assert env["JOYN_SCIM_LOG_LEVEL"] == "debug"
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert c["resources"]["requests"] == {"cpu": "50m", "memory": "64Mi"}
    sc = c["securityContext"]
    assert sc["readOnlyRootFilesystem"] and not sc["allowPrivilegeEscalation"]
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["automountServiceAccountToken"] is False
    assert pod["nodeSelector"] == {"pool": "a"} and "tolerations" not in pod
    assert spec["template"]["metadata"]["annotations"] == {"x": "y"}
    assert owner_uids(kinds(t)["Deployment"]) == ["uid-1"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["data"]["persistentVolumeClaim"]["claimName"] == "acme-scim-data"
    # every key, so that a Secret without previous-token still mounts (no `items`); 0440
    assert volumes["token"]["secret"] == {"secretName": "acme-scim-token", "optional": False,
                                          "defaultMode": 0o440}
    assert "JOYN_SCIM_PUBLIC_URL" not in {
        e["name"] for e in kinds(resolve(body(), OperatorConfig()))["Deployment"]["spec"][
            "template"]["spec"]["containers"][0]["env"]}


def test_bring_your_own_token_mounts_that_secret_only():
    t = resolve(body(token={"existingSecretRef": {"name": "vault-token", "key": "t"}}), CFG)
    vol = {v["name"]: v for v in kinds(t)["Deployment"]["spec"]["template"]["spec"]["volumes"]}
    assert vol["token"]["secret"] == {"secretName": "vault-token",
                                      "items": [{"key": "t", "path": "token"}]}


def test_ingress_with_issuer_host_path_annotations_and_labels():
    cfg = OperatorConfig(domain="scim.example.com", ingress_class="nginx",
                         ingress_annotations={"a": "default"})
    t = resolve(body(ingress={"labels": {"team": "x"}, "tls": {"issuerRef": {"name": "le"}}}),
                cfg)
    ing = kinds(t)["Ingress"]
    assert ing["metadata"]["annotations"] == {"a": "default",
                                              "cert-manager.io/cluster-issuer": "le"}
    assert ing["metadata"]["labels"] == {"team": "x", **t.labels}
    assert ing["spec"]["ingressClassName"] == "nginx"
    rule = ing["spec"]["rules"][0]
    assert rule["host"] == "acme.scim.example.com"
    assert rule["http"]["paths"] == [{"path": "/scim/v2", "pathType": "Prefix", "backend": {
        "service": {"name": "acme-scim", "port": {"name": "http"}}}}]
    assert ing["spec"]["tls"] == [{"hosts": ["acme.scim.example.com"], "secretName": "acme-tls"}]


def test_ingress_optional_parts_and_its_absence():
    ing = kinds(resolve(body(), OperatorConfig(domain="test.local", url_scheme="http")))["Ingress"]
    assert "tls" not in ing["spec"] and "ingressClassName" not in ing["spec"]
    assert "annotations" not in ing["metadata"]
    assert "Ingress" not in kinds(resolve(body(ingress={"enabled": False}), CFG))
    assert "Ingress" not in kinds(resolve(body(), OperatorConfig()))


@pytest.mark.parametrize("policy,owned", [("Retain", False), ("Delete", True)])
def test_deletion_policy_decides_ownership_of_volume_and_secret(policy, owned):
    t = resolve(body(storage={"deletionPolicy": policy}), CFG)
    assert bool(owner_uids(kinds(t)["PersistentVolumeClaim"])) is owned
    assert bool(owner_uids(token_secret(t, {"token": "cur"}, {}))) is owned
    assert owner_uids(kinds(t)["Service"]) == ["uid-1"]  # the rest is always owned


def test_token_secret_holds_current_previous_and_url():
    t = resolve(body(), CFG)
    s = token_secret(t, {"token": "cur", "previous-token": "old"},
                     {"scim.sevenlakes.com/issued-at": "t"})
    decoded = {k: base64.b64decode(v).decode() for k, v in s["data"].items()}
    assert decoded == {"token": "cur", "previous-token": "old",
                       "url": "https://acme.scim.example.com/scim/v2"}
    assert s["metadata"]["annotations"] == {"scim.sevenlakes.com/issued-at": "t"}
    assert s["type"] == "Opaque" and "stringData" not in s
    assert "previous-token" not in token_secret(t, {"token": "cur"}, {})["data"]


def test_pvc_size_and_class():
    pvc = kinds(resolve(body(storage={"size": "5Gi", "storageClassName": "fast"}), CFG))[
        "PersistentVolumeClaim"]
    assert pvc["spec"] == {"accessModes": ["ReadWriteOnce"], "storageClassName": "fast",
                           "resources": {"requests": {"storage": "5Gi"}}}


def test_network_policy_admits_only_the_resolved_namespaces():
    cfg = OperatorConfig(ingress_namespace="ingress-nginx", monitoring_namespace="monitoring")
    np = kinds(resolve(body(), cfg))["NetworkPolicy"]
    assert np["spec"]["podSelector"] == {"matchLabels": resolve(body(), cfg).selector}
    assert np["spec"]["ingress"] == [{"from": [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}}},
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}],
        "ports": [{"port": 8080, "protocol": "TCP"}]}]
    assert "NetworkPolicy" not in kinds(resolve(body(networkPolicy={"enabled": False}), cfg))


def test_network_policy_admits_the_operators_own_pods_and_no_others_of_its_namespace():
    labels = {"app.kubernetes.io/name": "joyn-scim", "app.kubernetes.io/component": "operator"}
    cfg = OperatorConfig(ingress_namespace="ingress-nginx", pod_namespace="joyn-system",
                         pod_labels=labels)
    [rule] = kinds(resolve(body(), cfg))["NetworkPolicy"]["spec"]["ingress"]
    assert rule["from"][-1] == {
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "joyn-system"}},
        "podSelector": {"matchLabels": labels}}
    assert rule["ports"] == [{"port": 8080, "protocol": "TCP"}]
    # An operator out of the cluster has no pods to admit.
    [rule] = kinds(resolve(body(), OperatorConfig()))["NetworkPolicy"]["spec"]["ingress"]
    assert all("podSelector" not in peer for peer in rule["from"])


# --- the event stream ----------------------------------------------------------------------

PEERS = [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "fsm"}},
          "podSelector": {"matchLabels": {"app": "fsm-sync"}}}]


def pod_of(t) -> tuple[dict, dict]:
    pod = kinds(t)["Deployment"]["spec"]["template"]["spec"]
    return pod, pod["containers"][0]


def test_a_tenant_without_a_stream_renders_exactly_as_one_that_never_had_the_field():
    plain = resolve(body(), CFG)
    off = resolve(body(events={"enabled": False, "push": {"url": "https://fsm.example"},
                               "receivers": PEERS, "audience": "x"}), CFG)
    assert children(off) == children(plain)
    pod, c = pod_of(plain)
    assert not any(e["name"].startswith("JOYN_SCIM_EVENTS_") for e in c["env"])
    assert [v["name"] for v in pod["volumes"]] == ["data", "token", "tmp"]
    assert len(kinds(plain)["NetworkPolicy"]["spec"]["ingress"]) == 1


def test_a_stream_runs_with_both_secrets_mounted_read_only():
    t = resolve(body(events={"enabled": True, "retention": {"maxAge": "48h",
                                                            "maxEvents": 500}}), CFG)
    pod, c = pod_of(t)
    env = {e["name"]: e["value"] for e in c["env"]}
    assert env["JOYN_SCIM_EVENTS_TOKEN_FILES"].split(",") == [
        "/var/run/joyn-scim/events-token/token",
        "/var/run/joyn-scim/events-token/previous-token"]
    assert env["JOYN_SCIM_EVENTS_SIGNING_KEY_FILES"].split(",") == [
        "/var/run/joyn-scim/events-signing-key/signing-key.pem",
        "/var/run/joyn-scim/events-signing-key/previous-signing-keys.pem"]
    assert (env["JOYN_SCIM_EVENTS_AUDIENCE"], env["JOYN_SCIM_EVENTS_RETENTION"],
            env["JOYN_SCIM_EVENTS_RETENTION_COUNT"]) == ("joyn-fsm", "48h", "500")
    assert "JOYN_SCIM_EVENTS_PUSH_URL" not in env
    # Entra's token settings are as they were: the stream adds, it changes nothing.
    assert env["JOYN_SCIM_TOKEN_FILES"].startswith("/var/run/joyn-scim/token/")
    mounts = {m["name"]: m for m in c["volumeMounts"]}
    assert mounts["events-token"] == {"name": "events-token", "readOnly": True,
                                      "mountPath": "/var/run/joyn-scim/events-token"}
    assert mounts["events-signing-key"] == {
        "name": "events-signing-key", "readOnly": True,
        "mountPath": "/var/run/joyn-scim/events-signing-key"}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["events-token"]["secret"] == {
        "secretName": "acme-scim-events-token", "optional": False, "defaultMode": 0o440}
    assert volumes["events-signing-key"]["secret"] == {
        "secretName": "acme-scim-events-signing-key", "optional": False, "defaultMode": 0o440}
    assert "events-push-authorization" not in volumes


def test_push_goes_to_the_url_with_the_receivers_own_secret_mounted_optional():
    t = resolve(body(events={"enabled": True, "push": {
        "url": "https://fsm.example/in", "authorizationSecretRef": {"name": "fsm-auth",
                                                                    "key": "header"}}}), CFG)
    pod, c = pod_of(t)
    env = {e["name"]: e["value"] for e in c["env"]}
    assert env["JOYN_SCIM_EVENTS_PUSH_URL"] == "https://fsm.example/in"
    assert env["JOYN_SCIM_EVENTS_PUSH_AUTHORIZATION_FILE"] == \
        "/var/run/joyn-scim/events-push/authorization"
    volume = {v["name"]: v for v in pod["volumes"]}["events-push-authorization"]
    assert volume["secret"] == {"secretName": "fsm-auth", "optional": True, "defaultMode": 0o440,
                                "items": [{"key": "header", "path": "authorization"}]}
    assert {m["name"]: m for m in c["volumeMounts"]}["events-push-authorization"]["readOnly"]
    bare = resolve(body(events={"enabled": True, "push": {"url": "http://fsm"}}), CFG)
    pod, c = pod_of(bare)
    assert "JOYN_SCIM_EVENTS_PUSH_AUTHORIZATION_FILE" not in {e["name"] for e in c["env"]}
    assert "events-push-authorization" not in {v["name"] for v in pod["volumes"]}


def test_the_network_policy_admits_the_receivers_to_the_server_port_only():
    t = resolve(body(events={"enabled": True, "receivers": PEERS}), CFG)
    np = kinds(t)["NetworkPolicy"]["spec"]
    assert np["policyTypes"] == ["Ingress"]  # egress (a push) is not restricted
    first, receivers = np["ingress"]
    assert first == kinds(resolve(body(), CFG))["NetworkPolicy"]["spec"]["ingress"][0]
    assert receivers == {"from": PEERS, "ports": [{"port": 8080, "protocol": "TCP"}]}
    none = resolve(body(events={"enabled": True}), CFG)
    assert len(kinds(none)["NetworkPolicy"]["spec"]["ingress"]) == 1
    no_policy = resolve(body(events={"enabled": True, "receivers": PEERS},
                             networkPolicy={"enabled": False}), CFG)
    assert "NetworkPolicy" not in kinds(no_policy)


@pytest.mark.parametrize("policy,owned", [("Retain", False), ("Delete", True)])
def test_the_streams_secrets_are_the_operators_and_follow_the_deletion_policy(policy, owned):
    t = resolve(body(events={"enabled": True}, storage={"deletionPolicy": policy}), CFG)
    s = generated_secret(t, t.events.signing_key_secret, {"signing-key.pem": "PEM\n"},
                         {"scim.sevenlakes.com/issued-at": "t"})
    assert s["metadata"]["name"] == "acme-scim-events-signing-key"
    assert s["metadata"]["labels"] == t.labels and s["type"] == "Opaque"
    assert {k: base64.b64decode(v).decode() for k, v in s["data"].items()} == {
        "signing-key.pem": "PEM\n"}  # and no url: only the token Secret carries one
    assert bool(owner_uids(s)) is owned


# --- every value through tojson, and no value can change a manifest's structure -------------

TEMPLATES = resources.files("joyn_operator") / "templates"


def test_every_template_expression_goes_through_tojson():
    names = [p.name for p in TEMPLATES.iterdir() if p.name.endswith(".yaml")]
    assert "deployment.yaml" in names
    for name in names:
        for expr in re.findall(r"{{(.*?)}}", (TEMPLATES / name).read_text(), re.S):
            assert re.search(r"\|\s*tojson\s*$", expr) or \
                re.fullmatch(r"\s*metadata\(.*\)\s*", expr), f"{name}: {{{{{expr}}}}}"


# Quotes, line breaks YAML knows (\n, NEL, LS), template syntax, YAML indicators, anchors and
# tags, document markers, what YAML 1.1 reads as other types, characters YAML cannot hold raw,
# a BOM and an astral character. (Not a lone surrogate: the API server's JSON cannot carry one,
# and a Secret's bytes are UTF-8; tojson's own test covers it.)
HOSTILE = ['"', "'", "\n", "\r\n", "\x85", "\u2028", "\t", "a: b", "- x", "{{ t.name }}",
           "{% if true %}", "{#", "#", "&a", "*a", "!!python/object:os.system", "|", ">", "%",
           "---", "...", "\\", "\\u0041", "\x00", "\x7f", "\ufeff", "\U0001F600",
           "null", "~", "yes", "0440", "1e3", "[", "]", "{", "}", ",", "?", "@", "`", " "]
USED = 1000  # markers user_set may hand out; 900.. go to the token Secret


def user_set(v) -> tuple[list[dict], list[OperatorConfig]]:
    """Tenants and operator settings in which every string a user sets is v(i), i distinct."""
    count = iter(range(USED))

    def s() -> str:
        return v(next(count))

    def meta() -> dict:
        return {"name": s(), "namespace": s(), "uid": s(), "annotations": {
            "scim.sevenlakes.com/rotate-token": s()}}

    server = {"image": s(), "logLevel": s(), "resources": {"requests": {s(): s()}},
              "nodeSelector": {s(): s()}, "podAnnotations": {s(): s()},
              "tolerations": [{"key": s(), "operator": s(), "value": s(), "effect": s()}],
              "affinity": {s(): {s(): [s()]}}}
    everything = {"metadata": meta(), "spec": {
        "displayName": s(), "server": server,
        "ingress": {"host": s(), "path": s(), "className": s(), "annotations": {s(): s()},
                    "labels": {s(): s()},
                    "tls": {"issuerRef": {"name": s(), "kind": s(), "group": s()}}},
        "storage": {"size": s(), "storageClassName": s(), "deletionPolicy": "Delete"},
        "networkPolicy": {"ingressNamespace": s()},
        "events": {"enabled": True, "audience": s(), "retention": {"maxAge": s()},
                   "push": {"url": s(), "authorizationSecretRef": {"name": s(), "key": s()}},
                   "receivers": [{"namespaceSelector": {"matchLabels": {s(): s()}},
                                  "podSelector": {"matchExpressions": [
                                      {"key": s(), "operator": s(), "values": [s()]}]}}]}}}
    byo = {"metadata": meta(), "spec": {
        "displayName": s(), "token": {"existingSecretRef": {"name": s(), "key": s()}},
        "ingress": {"tls": {"secretName": s()}}}}
    defaults = {"metadata": meta(), "spec": {"displayName": s()}}
    cfgs = [OperatorConfig(server_image=s(), domain=s(), ingress_class=s(),
                           ingress_annotations={s(): s()}, ingress_namespace=s(),
                           monitoring_namespace=s(),
                           tls_issuer={"name": s(), "kind": s(), "group": s()}),
            OperatorConfig(domain=s(), url_scheme="http")]
    return [everything, byo, defaults], cfgs


def manifests(bodies: list[dict], cfgs: list[OperatorConfig], v) -> list[dict]:
    out = []
    for cfg in cfgs:
        for b in bodies:
            t = resolve(b, cfg)
            secrets = [token_secret(t, {"token": v(900), "previous-token": v(901)},
                                    {v(902): v(903)})]
            if t.events:
                secrets.append(generated_secret(t, t.events.signing_key_secret,
                                                {"signing-key.pem": v(904)}, {v(905): v(906)}))
            for secret in secrets:
                secret["data"] = {k: base64.b64decode(x).decode()
                                  for k, x in secret["data"].items()}
            out += [*children(t), *secrets]
    return out


def substitute(obj, pairs: list[tuple[str, str]]):
    if isinstance(obj, dict):
        return {substitute(k, pairs): substitute(x, pairs) for k, x in obj.items()}
    if isinstance(obj, list):
        return [substitute(x, pairs) for x in obj]
    if isinstance(obj, str):
        for hostile, marker in pairs:
            obj = obj.replace(hostile, marker)
    return obj


def marker(i: int) -> str:
    return f"m{i:03d}m"


@cache
def plain_manifests() -> list[dict]:
    return manifests(*user_set(marker), marker)


def assert_structure_holds(hostile: str) -> None:
    used: list[int] = []

    def h(i: int) -> str:
        used.append(i)
        return f"<{i:03d}>{hostile}</{i:03d}>"

    got = manifests(*user_set(h), h)
    # Back from hostile to plain markers, the manifests must be the plain ones: every hostile
    # value landed whole where its marker did, and nothing around it changed.
    assert substitute(got, [(h(i), marker(i)) for i in sorted(set(used))]) == plain_manifests()


@pytest.mark.parametrize("hostile", [*HOSTILE, "".join(HOSTILE)], ids=repr)
def test_hostile_strings_cannot_change_a_manifests_structure(hostile):
    assert_structure_holds(hostile)


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=30))
def test_any_string_cannot_change_a_manifests_structure(hostile):
    assert_structure_holds(hostile)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12)


@settings(max_examples=300, deadline=None)
@given(json_values | st.sampled_from(HOSTILE))
def test_tojson_is_read_back_by_yaml_as_the_same_value(value):
    assert yaml.safe_load(f"key: {tojson(value)}\n") == {"key": value}
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    assert yaml.load(f"- {tojson(value)}\n", Loader=loader) == [value]


def test_a_lone_surrogate_becomes_the_replacement_character():
    text = "k: " + tojson({"a\ud800": "b\udfffc"})
    assert yaml.load(text, Loader=yaml.CSafeLoader) == {"k": {"a\ufffd": "b\ufffdc"}}


def test_the_pod_gets_the_operators_defaults_and_the_selector_still_matches_it():
    cfg = OperatorConfig(server_image="r/i:1", tenant_defaults={
        "server.imagePullSecrets": [{"name": "platform-registry"}],
        "server.priorityClassName": "tenants",
        "server.topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "zone",
                                              "whenUnsatisfiable": "ScheduleAnyway"}],
        "server.podLabels": {"team": "platform"}, "storage.storageClassName": "gp3"})
    got = kinds(resolve(body(server={"podLabels": {"app.kubernetes.io/instance": "evil"}}),
                        cfg))
    pod = got["Deployment"]["spec"]["template"]
    assert pod["spec"]["imagePullSecrets"] == [{"name": "platform-registry"}]
    assert pod["spec"]["priorityClassName"] == "tenants"
    assert pod["spec"]["topologySpreadConstraints"][0]["topologyKey"] == "zone"
    assert pod["metadata"]["labels"]["team"] == "platform"
    selector = got["Deployment"]["spec"]["selector"]["matchLabels"]
    assert selector.items() <= pod["metadata"]["labels"].items()
    assert got["Service"]["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
    assert got["PersistentVolumeClaim"]["spec"]["storageClassName"] == "gp3"


def test_a_tenant_without_defaults_has_no_pull_secrets_priority_or_spread():
    pod = kinds(resolve(body(), CFG))["Deployment"]["spec"]["template"]["spec"]
    assert not {"imagePullSecrets", "priorityClassName", "topologySpreadConstraints"} & set(pod)
