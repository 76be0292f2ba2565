"""Status aggregation (joyn_operator.status): child states -> conditions with real reasons."""

from datetime import UTC, datetime, timedelta

from joyn_operator.status import Observed, conditions, merge_patch, next_deadline

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
URL = "https://acme.scim.example.com/scim/v2"
AVAILABLE = {"metadata": {"name": "acme-scim", "generation": 2},
             "status": {"availableReplicas": 1, "observedGeneration": 2}}
BOUND = {"metadata": {"name": "acme-scim-data"}, "status": {"phase": "Bound"}}
ADMITTED = {"spec": {"ingressClassName": "nginx", "tls": [{"secretName": "t"}]},
            "status": {"loadBalancer": {"ingress": [{"ip": "10.0.0.1"}]}}}


def conds(o: Observed, **kw):
    kw.setdefault("paused", False)
    kw.setdefault("previous_valid_until", None)
    kw.setdefault("generation", 3)
    kw.setdefault("previous", None)
    return {c["type"]: c for c in conditions(o, now=NOW, **kw)}


def healthy(**over) -> Observed:
    base = {"url": URL, "token_present": True, "deployment": AVAILABLE, "pvc": BOUND,
            "ingress": ADMITTED, "ingress_class_exists": True}
    return Observed(**{**base, **over})


def test_all_good_is_ready():
    c = conds(healthy())
    assert c["Ready"]["status"] == "True" and c["Ready"]["message"] == f"Serving {URL}"
    assert c["Progressing"]["status"] == "False" and c["Degraded"]["status"] == "False"
    assert c["IngressReady"]["status"] == "True"
    assert all(x["observedGeneration"] == 3 for x in c.values())
    assert set(c) == {"Ready", "Progressing", "Degraded", "IngressReady",
                      "TokenRotationPending", "Paused"}


def pod_waiting(reason, message="m"):
    return {"status": {"phase": "Pending", "containerStatuses": [
        {"state": {"waiting": {"reason": reason, "message": message}}}]}}


def test_image_pull_and_crash_loop_name_the_cause():
    for reason in ("ImagePullBackOff", "CrashLoopBackOff"):
        c = conds(healthy(deployment={"metadata": {"generation": 1}, "status": {}},
                          pods=[pod_waiting(reason, f"back-off {reason}")]))
        assert (c["Ready"]["status"], c["Ready"]["reason"]) == ("False", reason)
        assert c["Degraded"]["status"] == "True" and c["Degraded"]["reason"] == reason
        assert reason in c["Ready"]["message"]


def test_volume_pending_and_unscheduled_pod():
    c = conds(healthy(deployment={"metadata": {"generation": 1}, "status": {}},
                      pvc={"metadata": {"name": "acme-scim-data"}, "status": {"phase": "Pending"}}))
    assert c["Ready"]["reason"] == "VolumePending" and "acme-scim-data" in c["Ready"]["message"]
    c = conds(healthy(deployment={"metadata": {"generation": 1}, "status": {}}, pods=[{
        "status": {"phase": "Pending", "conditions": [{
            "type": "PodScheduled", "status": "False",
            "message": "0/3 nodes are available"}]}}]))
    assert c["Ready"]["reason"] == "PodPending" and "0/3 nodes" in c["Ready"]["message"]


def test_ingress_causes():
    c = conds(healthy(ingress_class_exists=False))
    assert c["IngressReady"]["reason"] == "IngressClassNotFound" and "'nginx'" in \
        c["IngressReady"]["message"]
    assert c["Ready"]["reason"] == "IngressClassNotFound"
    missing = ("TLSSecretMissing", "TLS Secret 't' does not exist in the namespace")
    assert conds(healthy(tls_problem=missing))["Ready"]["reason"] == "TLSSecretMissing"
    assert conds(healthy(ingress={"spec": {}}))["Ready"]["reason"] == "IngressPending"
    assert conds(healthy(url=None))["IngressReady"]["reason"] == "HostUnknown"
    off = conds(healthy(ingress_wanted=False, ingress=None))
    assert off["IngressReady"]["status"] == "True" and URL in off["IngressReady"]["message"]
    assert off["Ready"]["status"] == "True"


def test_a_certificate_problem_is_shown_before_the_ingress_is_admitted():
    # cert-manager still issuing says more than "waiting for the ingress controller".
    pending = ("CertificatePending", "Certificate acme-tls: DoesNotExist: Issuing certificate")
    c = conds(healthy(ingress={"spec": {}}, tls_problem=pending))
    assert (c["Ready"]["status"], c["Ready"]["reason"]) == ("False", "CertificatePending")
    assert c["IngressReady"]["message"] == pending[1]
    assert c["Degraded"]["status"] == "False"  # issuing is progress, not a failure


def test_the_route_check_decides_ready_only_once_the_ingress_is_admitted():
    unreachable = ("RouteUnreachable", "Test Connection ...: HTTP 504")
    c = conds(healthy(route_problem=unreachable))
    assert (c["Ready"]["status"], c["Ready"]["reason"], c["Ready"]["message"]) == (
        "False", "RouteUnreachable", unreachable[1])
    assert c["IngressReady"]["reason"] == "RouteUnreachable"
    assert conds(healthy(ingress={"spec": {}}, route_problem=unreachable))["Ready"][
        "reason"] == "IngressPending"


def test_token_rotation_and_pause_conditions():
    until = NOW + timedelta(hours=72)
    c = conds(healthy(), previous_valid_until=until, paused=True)
    assert c["TokenRotationPending"]["status"] == "True"
    assert "2026-11-29T12:00:00Z" in c["TokenRotationPending"]["message"]
    assert c["Paused"]["status"] == "True" and c["Paused"]["reason"] == "Paused"
    assert conds(healthy(token_present=False))["Ready"]["reason"] == "TokenMissing"


def test_last_transition_time_only_moves_on_a_status_change():
    first = conditions(healthy(), paused=False, previous_valid_until=None, generation=1,
                       previous=None, now=NOW)
    later = NOW + timedelta(minutes=5)
    same = conditions(healthy(), paused=False, previous_valid_until=None, generation=1,
                      previous=first, now=later)
    assert [c["lastTransitionTime"] for c in same] == [c["lastTransitionTime"] for c in first]
    changed = {c["type"]: c for c in conditions(
        healthy(ingress_class_exists=False), paused=False, previous_valid_until=None,
        generation=1, previous=first, now=later)}
    assert changed["Ready"]["lastTransitionTime"] == "2026-11-26T12:05:00Z"
    assert changed["Degraded"]["lastTransitionTime"] == "2026-11-26T12:00:00Z"


def test_a_child_the_api_server_refused_is_degraded_apply_failed():
    c = conds(healthy(apply_errors=["PATCH .../ingresses/acme-scim: 422 invalid annotation"]))
    assert (c["Degraded"]["status"], c["Degraded"]["reason"]) == ("True", "ApplyFailed")
    assert c["Ready"]["reason"] == "ApplyFailed" and "invalid annotation" in c["Ready"]["message"]


def test_merge_patch_nulls_keys_gone_at_any_depth_and_is_empty_when_equal():
    old = {"url": "u", "token": {"issuedAt": "a", "previousValidUntil": "b"},
           "conditions": [{"type": "Ready"}], "gone": 1}
    new = {"url": "u", "token": {"issuedAt": "a"}, "conditions": [{"type": "Ready"}]}
    assert merge_patch(old, new) == {"token": {"previousValidUntil": None}, "gone": None}
    assert merge_patch(new, new) == {}
    assert merge_patch({}, new) == new
    assert merge_patch({"token": "x"}, {"token": {"a": 1}}) == {"token": {"a": 1}}
    assert merge_patch(new, {**new, "conditions": []}) == {"conditions": []}


def test_an_event_stream_problem_degrades_but_entra_is_still_served():
    c = conds(healthy(events_problem=("EventsPushAuthorizationMissing", "Secret fsm-auth ...")))
    assert (c["Degraded"]["status"], c["Degraded"]["reason"]) == (
        "True", "EventsPushAuthorizationMissing")
    assert c["Ready"]["status"] == "True" and c["Ready"]["reason"] == "Ready"
    # A failure of the server itself still names itself first.
    worse = conds(healthy(events_problem=("EventsPushAuthorizationMissing", "m"),
                          apply_errors=["Deployment: refused"]))
    assert worse["Degraded"]["reason"] == "ApplyFailed"


def test_the_next_deadline_is_the_earliest_of_every_previous_credential():
    assert next_deadline({}) is None
    assert next_deadline({"token": {"issuedAt": "2026-11-26T12:00:00Z"}}) is None
    status = {"token": {"previousValidUntil": "2026-11-29T12:00:00Z"},
              "events": {"receiverToken": {"previousValidUntil": "2026-11-28T12:00:00Z"},
                         "signingKey": {"previousValidUntil": "2026-11-27T12:00:00Z"}}}
    assert next_deadline(status) == datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
    del status["events"]["signingKey"]
    assert next_deadline(status) == datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
