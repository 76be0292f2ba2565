"""The chart's monitoring (templates/monitoring.yaml) against the real parts: the Prometheus
Operator's own CRDs, installed on the test API server, accept the ServiceMonitor, PodMonitor
and PrometheusRule strictly, and Helm's `auto` mode finds them served there; promtool checks
every alert's PromQL and runs unit tests of the alerts on series named and labelled as the
operator's and the server's own metrics code exports them.

One imitation remains: the labels Prometheus adds to a scraped series (job, namespace, pod,
...) are written here as the Prometheus Operator documents them for these two monitors, since
no Prometheus runs in the test cluster.
"""

from __future__ import annotations

import json
import subprocess
import time

import pytest
import yaml
from joyn_operator import metrics as operator_metrics
from prometheus_client import REGISTRY, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from scim_server.metrics import EventMetrics, Metrics
from scim_server.storage import StreamState

from .conftest import CHART, kube_version
from .test_chart import docs, find

PLURALS = {"ServiceMonitor": "servicemonitors", "PodMonitor": "podmonitors",
           "PrometheusRule": "prometheusrules"}
RELEASE, NAMESPACE = "mon", "ops"  # the release the rules are rendered for


@pytest.fixture(scope="module")
def monitoring_crds(control_plane, kube, monitoring_bins):
    """The Prometheus Operator's CRDs served for this module's tests, and removed after."""
    files = sorted((monitoring_bins / "crds").glob("*.yaml"))
    names = [yaml.safe_load(f.read_text())["metadata"]["name"] for f in files]
    for f in files:
        control_plane.kubectl("apply", "--server-side", "-f", str(f))
    for name in names:
        control_plane.kubectl("wait", "--for=condition=Established", "--timeout=60s",
                              f"crd/{name}")
    yield names
    for name in names:
        control_plane.kubectl("delete", f"crd/{name}", "--wait=true")


def test_auto_mode_renders_what_the_cluster_serves_and_its_crds_accept_it(
        helm, kube, monitoring_crds):
    ns = kube.namespace("monitoring")
    # --validate: rendered against the cluster's real discovery, as `helm install` would.
    # Without the CRD (ours is served already, unowned by this release) and its test hook.
    objs = docs(helm.run("template", "m", str(CHART), "-n", ns, "--validate",
                         "--set", "crds.enabled=false", "--set", "tests.enabled=false").stdout)
    monitoring = [o for o in objs if o["kind"] in PLURALS]
    assert sorted(o["kind"] for o in monitoring) == sorted(PLURALS)
    for obj in monitoring:
        r = kube.http.post(f"/apis/monitoring.coreos.com/v1/namespaces/{ns}/"
                           f"{PLURALS[obj['kind']]}", json=obj,
                           params={"dryRun": "All", "fieldValidation": "Strict"})
        assert r.status_code == 201, f"{obj['kind']}: {r.text}"


# -- the alerts, through promtool ---------------------------------------------------------------

def rendered(helm) -> tuple[dict, dict, dict]:
    # --kube-version: this helm is built without the release's default (it says v1.20),
    # below the chart's kubeVersion.
    objs = docs(helm.run("template", RELEASE, str(CHART), "-n", NAMESPACE,
                         "--kube-version", kube_version(),
                         "--set", "metrics.serviceMonitor.enabled=true",
                         "--set", "metrics.prometheusRule.enabled=true").stdout)
    [rule] = find(objs, "PrometheusRule")
    [service] = find(objs, "Service")
    [pod_monitor] = find(objs, "PodMonitor")
    return rule, service, pod_monitor


def promtool(bins, *args: str, cwd) -> subprocess.CompletedProcess:
    return subprocess.run([str(bins / "promtool"), *args], capture_output=True, text=True,
                          cwd=cwd, timeout=120)


def test_every_alert_is_valid_promql(helm, monitoring_bins, tmp_path):
    rule, _, _ = rendered(helm)
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(rule["spec"]))
    r = promtool(monitoring_bins, "check", "rules", "rules.yaml", cwd=tmp_path)
    assert r.returncode == 0 and "SUCCESS" in r.stdout, r.stdout + r.stderr


def exported(text: str, name: str, **match: str) -> dict[str, str]:
    """The labels of the sample `name` in an exposition, whose labels include `match`."""
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and match.items() <= sample.labels.items():
                return dict(sample.labels)
    raise AssertionError(f"{name}{match} is not exported")


def series(labels: dict[str, str], name: str) -> str:
    return name + "{" + ",".join(f'{k}={json.dumps(v)}' for k, v in sorted(labels.items())) + "}"


@pytest.fixture(scope="module")
def label_sets():
    """What Prometheus stores for the operator's and a tenant server's series: each metric's
    own labels, from the real metrics code's exposition, plus the target's labels."""
    operator_metrics.observe(("customers", "acme"), {
        "conditions": [{"type": "Ready", "status": "False"}],
        "token": {"issuedAt": "2026-01-01T00:00:00Z",
                  "previousValidUntil": "2026-01-02T00:00:00Z"}}, time.perf_counter(), ok=True)
    operator_metrics.observe(("customers", "acme"), {}, time.perf_counter(), ok=False)
    op_text = generate_latest(REGISTRY).decode()
    server = Metrics()
    server.observe("GET", "Users", 401, 0.001)
    server.observe("GET", "other", 401, 0.001)
    stream = EventMetrics(server.registry)  # a server with its event stream on
    stream.observe(StreamState(stream="s1", head=5, backlog=5, oldest_iat=int(time.time()),
                               gap_through=4))
    stream.push_failed("timeout", time.time())
    server_text = generate_latest(server.registry).decode()
    return op_text, server_text


def test_alerts_fire_on_what_they_promise_and_not_otherwise(helm, monitoring_bins, tmp_path,
                                                            label_sets):
    rule, service, pod_monitor = rendered(helm)
    op_text, server_text = label_sets
    rules = {r["alert"]: r for g in rule["spec"]["groups"] for r in g["rules"]}
    # The ServiceMonitor's target: job is the Service's name; with honorLabels the operator's
    # own `namespace` (a tenant's) wins over the target's.
    operator_target = {"job": service["metadata"]["name"], "namespace": NAMESPACE,
                       "service": service["metadata"]["name"], "endpoint": "metrics",
                       "pod": f"{RELEASE}-joyn-scim-7d9f-abcde", "container": "operator",
                       "instance": "10.0.0.5:8080"}

    def operator_series(name: str, **match: str) -> str:
        return series({**operator_target, **exported(op_text, name, **match)}, name)

    # The PodMonitor's target: a tenant server's pod; its relabeling adds `tenant`.
    pod_target = {"job": f"{NAMESPACE}/{pod_monitor['metadata']['name']}",
                  "namespace": "customers", "pod": "acme-scim-5f6d-xyz12",
                  "container": "scim-server", "endpoint": "http", "instance": "10.0.0.9:8080",
                  "tenant": "acme"}

    def server_series(name: str = "scim_requests_total", **match: str) -> str:
        return series({**exported(server_text, name, **match), **pod_target}, name)

    def alert(name: str, labels: dict[str, str], **annotations: str) -> dict:
        """One firing alert: the labels its expression keeps plus the rule's, and the rule's
        annotations with the templated ones as Prometheus expands them."""
        return {"exp_labels": {**labels, **rules[name]["labels"]},
                "exp_annotations": {**rules[name]["annotations"], **annotations}}

    def labels_of(s: str) -> dict[str, str]:
        return {k: json.loads(v) for k, v in (
            part.split("=", 1) for part in s[s.index("{") + 1:-1].split(",") if part)}

    up = series(operator_target, "up")
    ready = operator_series("joyn_operator_tenant_ready")
    expiry = operator_series("joyn_operator_previous_token_expiry_timestamp_seconds")
    errors = operator_series("joyn_operator_reconciles_total", result="error")
    successes = operator_series("joyn_operator_reconciles_total", result="success")
    users_401 = server_series(method="GET", resource="Users", status="401")
    other_401 = server_series(resource="other", status="401")
    tenant = {"namespace": "customers", "tenant": "acme"}
    not_ready_text = {
        "summary": "Tenant customers/acme is not Ready.",
        "description": "kubectl get jst acme -n customers -o wide shows the reason; Entra "
                       "cannot provision into it."}
    token_text = {"summary": "The previous token of tenant customers/acme stops working soon."}
    burst_text = {"summary": "Tenant customers/acme answers many requests with 401."}
    oldest = server_series("scim_events_oldest_unacked_age_seconds")
    failing = server_series("scim_events_push_failing_since_timestamp_seconds")
    resync = server_series("scim_events_resync_required")
    unacked_text = {
        "summary": "The event stream of tenant customers/acme has events unacknowledged for "
                   "over 30 minutes.",
        "description": "The Joyn FSM application is not receiving this customer's user "
                       "changes; kubectl get jst acme -n customers -o jsonpath={.status.events} "
                       "shows the backlog and the last delivery."}
    push_text = {"summary": "Pushing events of tenant customers/acme has failed for over 15 "
                            "minutes."}
    resync_text = {"summary": "The event receiver of tenant customers/acme must resync from a "
                              "snapshot."}

    tests = [
        # The operator: no `up`, or up == 0, for 5 minutes.
        {"input_series": [{"series": up, "values": "0x10"}], "alert_rule_test": [
            {"eval_time": "4m", "alertname": "JoynScimOperatorDown", "exp_alerts": []},
            {"eval_time": "6m", "alertname": "JoynScimOperatorDown",
             "exp_alerts": [alert("JoynScimOperatorDown", {})]}]},
        {"input_series": [{"series": up, "values": "1x10"}], "alert_rule_test": [
            {"eval_time": "8m", "alertname": "JoynScimOperatorDown", "exp_alerts": []}]},
        # Reconcile errors for 15 minutes, and none while reconciles succeed.
        {"input_series": [{"series": errors, "values": "0+1x40"},
                          {"series": successes, "values": "0+5x40"}], "alert_rule_test": [
            {"eval_time": "31m", "alertname": "JoynScimReconcileErrors",
             "exp_alerts": [alert("JoynScimReconcileErrors", {})]}]},
        {"input_series": [{"series": errors, "values": "0x40"},
                          {"series": successes, "values": "0+5x40"}], "alert_rule_test": [
            {"eval_time": "31m", "alertname": "JoynScimReconcileErrors", "exp_alerts": []}]},
        # A tenant (in its own namespace, not the operator's) not Ready for 15 minutes.
        {"input_series": [{"series": ready, "values": "0x20"}], "alert_rule_test": [
            {"eval_time": "14m", "alertname": "JoynScimTenantNotReady", "exp_alerts": []},
            {"eval_time": "16m", "alertname": "JoynScimTenantNotReady",
             "exp_alerts": [alert("JoynScimTenantNotReady", labels_of(ready),
                                  **not_ready_text)]}]},
        {"input_series": [{"series": ready, "values": "0x5 1x15"}], "alert_rule_test": [
            {"eval_time": "16m", "alertname": "JoynScimTenantNotReady", "exp_alerts": []}]},
        # The previous token stops working within a day (the series holds its deadline).
        {"input_series": [{"series": expiry, "values": "7200x10"}], "alert_rule_test": [
            {"eval_time": "5m", "alertname": "JoynScimPreviousTokenExpiring",
             "exp_alerts": [alert("JoynScimPreviousTokenExpiring", labels_of(expiry),
                                  **token_text)]}]},
        {"input_series": [{"series": expiry, "values": "200000x10"}], "alert_rule_test": [
            {"eval_time": "5m", "alertname": "JoynScimPreviousTokenExpiring",
             "exp_alerts": []}]},
        # Entra with a stale token: three 401s at once on Users, from a series born at 0.
        {"input_series": [{"series": users_401, "values": "0 0 0 3 3 3 3"}],
         "alert_rule_test": [
            {"eval_time": "2m", "alertname": "JoynScimUnauthorizedBurst", "exp_alerts": []},
            {"eval_time": "4m", "alertname": "JoynScimUnauthorizedBurst",
             "exp_alerts": [alert("JoynScimUnauthorizedBurst", tenant, **burst_text)]}]},
        # Two 401s, or a scanner's many on other paths: no alert.
        {"input_series": [{"series": users_401, "values": "0 0 2 2 2"},
                          {"series": other_401, "values": "0 50 100 150 200"}],
         "alert_rule_test": [
            {"eval_time": "4m", "alertname": "JoynScimUnauthorizedBurst", "exp_alerts": []}]},
        # An event waiting over 30 minutes (its age grows a minute a minute), for 5 minutes.
        {"input_series": [{"series": oldest, "values": "0+60x50"}], "alert_rule_test": [
            {"eval_time": "34m", "alertname": "JoynScimEventsNotAcknowledged", "exp_alerts": []},
            {"eval_time": "36m", "alertname": "JoynScimEventsNotAcknowledged",
             "exp_alerts": [alert("JoynScimEventsNotAcknowledged", tenant, **unacked_text)]}]},
        # A receiver that keeps up: events a few seconds old, however many.
        {"input_series": [{"series": oldest, "values": "0 5 2 0 3x46"}], "alert_rule_test": [
            {"eval_time": "50m", "alertname": "JoynScimEventsNotAcknowledged",
             "exp_alerts": []}]},
        # Push failing since 60 s into the test: 15 minutes later, not before.
        {"input_series": [{"series": failing, "values": "0 60x30"}], "alert_rule_test": [
            {"eval_time": "15m", "alertname": "JoynScimEventsPushFailing", "exp_alerts": []},
            {"eval_time": "17m", "alertname": "JoynScimEventsPushFailing",
             "exp_alerts": [alert("JoynScimEventsPushFailing", tenant, **push_text)]}]},
        # Push that works (0: not failing), or poll: no alert, ever.
        {"input_series": [{"series": failing, "values": "0x40"}], "alert_rule_test": [
            {"eval_time": "40m", "alertname": "JoynScimEventsPushFailing", "exp_alerts": []}]},
        # A resync required for 15 minutes; one the receiver does at once is no alert.
        {"input_series": [{"series": resync, "values": "1x20"}], "alert_rule_test": [
            {"eval_time": "14m", "alertname": "JoynScimEventsResyncRequired", "exp_alerts": []},
            {"eval_time": "16m", "alertname": "JoynScimEventsResyncRequired",
             "exp_alerts": [alert("JoynScimEventsResyncRequired", tenant, **resync_text)]}]},
        {"input_series": [{"series": resync, "values": "1 1 0x20"}], "alert_rule_test": [
            {"eval_time": "16m", "alertname": "JoynScimEventsResyncRequired",
             "exp_alerts": []}]},
    ]
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(rule["spec"]))
    (tmp_path / "tests.yaml").write_text(yaml.safe_dump({
        "rule_files": ["rules.yaml"], "evaluation_interval": "1m",
        "tests": [{"interval": "1m", **t} for t in tests]}))
    r = promtool(monitoring_bins, "test", "rules", "tests.yaml", cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
