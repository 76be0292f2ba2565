"""Moving a running tenant from SQLite to PostgreSQL (joyn_operator.move): when a move is due,
what runs meanwhile, and the copy Job."""

from joyn_operator.config import OperatorConfig
from joyn_operator.desired import children
from joyn_operator.move import (
    MOVED_ANNOTATION,
    failure_message,
    job_outcome,
    move_job,
    move_pending,
    on_sqlite,
)
from joyn_operator.tenant import resolve

CFG = OperatorConfig(server_image="registry.example/joyn-scim:1.2.3", domain="scim.example.com",
                     ingress_namespace="ingress-nginx")


def tenant(postgres=True, **server):
    storage = {"postgresql": {"connectionSecretRef": {"name": "acme-db"}}} if postgres else {}
    return resolve({"metadata": {"name": "acme", "namespace": "customers", "uid": "uid-1"},
                    "spec": {"displayName": "Acme", "storage": storage,
                             "server": server}}, CFG)


def claim(**annotations):
    return {"metadata": {"name": "acme-scim-data", "annotations": annotations}}


def deployment(t):
    return next(c for c in children(t) if c["kind"] == "Deployment")


def test_a_move_is_due_only_for_postgresql_with_our_unmoved_claim():
    t = tenant()
    assert move_pending(t, claim(), ours=True)
    assert not move_pending(t, claim(**{MOVED_ANNOTATION: "2026-12-07T04:00:00Z"}), ours=True)
    assert not move_pending(t, None, ours=False)  # a new tenant: nothing to move
    assert not move_pending(t, claim(), ours=False)  # somebody else's claim is never read
    assert not move_pending(tenant(postgres=False), claim(), ours=True)


def test_meanwhile_the_tenant_runs_on_its_volume_stopped_or_serving():
    t = tenant(replicas=3)
    stopped = {c["kind"]: c for c in children(on_sqlite(t, 0))}
    assert "PersistentVolumeClaim" in stopped and "PodDisruptionBudget" not in stopped
    assert stopped["Deployment"]["spec"]["replicas"] == 0
    assert stopped["Deployment"]["spec"]["strategy"] == {"type": "Recreate"}
    serving = {c["kind"]: c for c in children(on_sqlite(t, 1))}
    assert serving["Deployment"]["spec"]["replicas"] == 1


def test_the_copy_job_runs_the_servers_pod_on_the_volume_once():
    t = tenant()
    job = move_job(t, deployment(t))
    assert job["spec"]["backoffLimit"] == 0 and job["metadata"]["ownerReferences"] == [t.owner]
    pod = job["spec"]["template"]
    # Never selected by the tenant's Service (it selects name and instance), still found by
    # the operator's watch of its children (instance and managed-by).
    assert pod["metadata"]["labels"]["app.kubernetes.io/name"] != t.selector[
        "app.kubernetes.io/name"]
    assert pod["metadata"]["labels"]["app.kubernetes.io/instance"] == "acme"
    spec = pod["spec"]
    assert spec["restartPolicy"] == "Never"
    (c,) = spec["containers"]
    assert c["args"] == ["storage", "copy", "--from", "sqlite:/data/scim.db",
                         "--to", "$(JOYN_SCIM_DB)"]
    assert "readinessProbe" not in c and "ports" not in c
    env = {e["name"]: e for e in c["env"]}
    assert env["PGPASSWORD"]["valueFrom"]["secretKeyRef"] == {"name": "acme-db",
                                                              "key": "password"}
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert volumes["data"] == {"name": "data",
                               "persistentVolumeClaim": {"claimName": "acme-scim-data"}}
    assert c["securityContext"]["readOnlyRootFilesystem"] is True


def test_the_jobs_outcome_and_what_it_said():
    assert job_outcome(None) is None
    assert job_outcome({"status": {"active": 1}}) == "running"
    assert job_outcome({"status": {"conditions": [
        {"type": "Complete", "status": "True"}]}}) == "succeeded"
    assert job_outcome({"status": {"conditions": [
        {"type": "Failed", "status": "True"}]}}) == "failed"
    pods = [{"status": {"containerStatuses": [{"state": {"terminated": {
        "message": "joyn-scim storage copy: the target already holds Users: it must be\n"
                   "empty"}}}]}}]
    message = failure_message(tenant(), pods)
    assert "the target already holds Users: it must be empty" in message
    assert "delete the Job to try again" in message
