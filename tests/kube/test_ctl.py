"""`kubectl joyn` (joyn_operator/ctl/) on the real cluster: run by the real kubectl as its
plugin, as a success rep whose only rights are the chart's rep ClusterRole bound in the tenant
namespace, against tenants the operator runs on the real node, through the real ingress
controller (HTTPS with the harness's CA, reached at its loopback address with --address).

No test prints a token: outputs are searched for them, and only the verdict is asserted."""

from __future__ import annotations

import hashlib
import json
import os
import select
import subprocess
import sys
import tarfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml
from joyn_operator.keys import REPLACED_ACK_ANNOTATION

from .conftest import ROOT, Helm, built, eventually, module_namespace, module_operator
from .test_tenant_e2e import TENANTS, USER, Entra, create_tenant, secret, wait_ready
from .test_tenant_e2e import tenant as tenant_of

BIN = Path(sys.executable).parent  # where pip put the kubectl-joyn console script
# The first test waits for the module's tenant (up to 180 s on a busy machine) on top of its own.
pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def ns(kube, tenant_crd):
    yield from module_namespace(kube, "ctl")


@pytest.fixture(scope="module")
def operator(cluster, ns, tmp_path_factory, request):
    yield from module_operator(cluster, ns, tmp_path_factory, request, DOMAIN=cluster.domain,
                               SERVER_IMAGE=cluster.images.app, INGRESS_CLASS="traefik",
                               RESYNC_SECONDS="10", ACTIVITY_SECONDS="2")


class Person:
    """A ServiceAccount with a kubeconfig of its own whose context's namespace is `ns`, bound
    there to `role` (a ClusterRole) by a RoleBinding."""

    def __init__(self, kube, cluster, ns: str, name: str, role: str, home: Path) -> None:
        r = kube.create(f"/api/v1/namespaces/{ns}/serviceaccounts", {"metadata": {"name": name}})
        assert r.status_code == 201, r.text
        r = kube.create(f"/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/rolebindings", {
            "metadata": {"name": name},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                        "name": role},
            "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": ns}]})
        assert r.status_code == 201, r.text
        r = kube.create(f"/api/v1/namespaces/{ns}/serviceaccounts/{name}/token",
                        {"spec": {"expirationSeconds": 3600}})
        assert r.status_code == 201, r.text
        self.kubeconfig = home / f"{name}.kubeconfig"
        self.kubeconfig.write_text(json.dumps({
            "apiVersion": "v1", "kind": "Config", "current-context": "joyn",
            "clusters": [{"name": "k", "cluster": {
                "server": cluster.cp.server, "certificate-authority": str(cluster.cp.ca_file)}}],
            "users": [{"name": name, "user": {"token": r.json()["status"]["token"]}}],
            "contexts": [{"name": "joyn", "context": {"cluster": "k", "user": name,
                                                      "namespace": ns}}]}))
        self.kubeconfig.chmod(0o600)
        self.kubectl = str(cluster.cp.bins / "kubectl")

    def joyn(self, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
        """`kubectl joyn ...`: kubectl finds the plugin on PATH."""
        env = {**os.environ, "KUBECONFIG": str(self.kubeconfig),
               "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
        return subprocess.run([self.kubectl, "joyn", *args], capture_output=True, text=True,
                              env=env, timeout=200, cwd=cwd)


@pytest.fixture(scope="module")
def rep_role(kube, tools_bins, tmp_path_factory, ns):
    """The chart's rep ClusterRole, as the chart renders it, under a name of this run."""
    helm = Helm(tools_bins, tmp_path_factory.mktemp("helm"))
    role = yaml.safe_load(helm.template("--show-only", "templates/rep-role.yaml"))
    role["metadata"]["name"] = f"joyn-rep-{ns}"
    r = kube.create("/apis/rbac.authorization.k8s.io/v1/clusterroles", role)
    assert r.status_code == 201, r.text
    yield role["metadata"]["name"]
    kube.delete(f"/apis/rbac.authorization.k8s.io/v1/clusterroles/{role['metadata']['name']}")


@pytest.fixture(scope="module")
def rep(kube, cluster, ns, rep_role, tmp_path_factory) -> Person:
    return Person(kube, cluster, ns, "rep", rep_role, tmp_path_factory.mktemp("rep"))


@pytest.fixture(scope="module")
def tenant(kube, cluster, ns, operator) -> str:
    name = create_tenant(kube, cluster, ns)
    wait_ready(kube, ns, name)
    return name


def through_ingress(cluster) -> list[str]:
    return ["--address", cluster.ingress.address, "--cacert", str(cluster.ingress.ca_file)]


def ok(r: subprocess.CompletedProcess) -> str:
    assert r.returncode == 0, f"exit {r.returncode}: {r.stderr.strip()}\n{r.stdout}"
    return r.stdout


def test_tenants_lists_the_tenant_ready_with_its_url(rep, tenant, cluster, kube, ns):
    out = ok(rep.joyn("tenants")).splitlines()
    assert out[0].split()[:4] == ["NAME", "READY", "REASON", "URL"]
    row = next(line.split() for line in out if line.startswith(tenant))
    assert row[1:4] == ["True", "Ready", f"https://{tenant}.{cluster.domain}/scim/v2"]
    [listed] = [t for t in json.loads(ok(rep.joyn("tenants", "-o", "json")))
                if t["name"] == tenant]
    assert listed["ready"] == "True" and listed["tokenIssuedAt"]


def test_credentials_are_masked_unless_revealed(rep, tenant, kube, ns, cluster):
    token = secret(kube, ns, tenant)["token"]
    out = ok(rep.joyn("credentials", tenant))
    leaked = token in out
    assert not leaked and f"****{token[-4:]}" in out
    assert f"Tenant URL:   https://{tenant}.{cluster.domain}/scim/v2" in out
    revealed = json.loads(ok(rep.joyn("credentials", tenant, "--reveal", "-o", "json")))
    same = revealed["secretToken"] == token
    assert same and revealed["tenantUrl"].endswith("/scim/v2")
    env = ok(rep.joyn("credentials", tenant, "-o", "env"))
    assert "JOYN_SCIM_TENANT_URL=https://" in env and token not in env


def test_connection_flags_go_before_the_command_as_kubectl_users_type_them(rep, tenant, ns):
    # Each flag before the command is read: a context, a file and a namespace that are wrong
    # are named (and the rep's own context's namespace would have served otherwise).
    r = rep.joyn("--context", "nope", "tenants")
    assert r.returncode == 1 and "no context 'nope'" in r.stderr, r.stderr
    r = rep.joyn("--kubeconfig", "/nonexistent/config", "tenants")
    assert r.returncode == 1 and "no kubeconfig at /nonexistent/config" in r.stderr, r.stderr
    r = rep.joyn("-n", "default", "tenants")
    assert r.returncode == 1 and "in namespace default" in r.stderr, r.stderr
    # As the demo prints them, then after the command as before.
    out = ok(rep.joyn("--kubeconfig", str(rep.kubeconfig), "--context", "joyn", "-n", ns,
                      "tenants", "-o", "wide")).splitlines()
    assert out[0].split()[-3:] == ["LAST", "ROTATED", "MESSAGE"], out[0]
    assert any(line.startswith(tenant) for line in out[1:])
    assert ok(rep.joyn("tenants", "-n", ns, "--context", "joyn")) != ""


def test_handover_is_ready_to_send_and_never_holds_the_token(rep, tenant, kube, ns):
    token = secret(kube, ns, tenant)["token"]
    r = rep.joyn("-n", ns, "handover", tenant)
    text = ok(r)
    assert "Tenant URL" in text and f"https://{tenant}." in text and "Test Connection" in text
    assert "Create the application" in text and "joynFieldId" in text and "**" not in text
    assert token not in text and f"kubectl joyn credentials {tenant} --reveal" in r.stderr
    refused = rep.joyn("handover", tenant, "--reveal", "--format", "markdown")
    leaked = token in refused.stdout + refused.stderr
    assert refused.returncode == 1 and not leaked and refused.stdout == ""
    assert "never carries the Secret Token" in refused.stderr
    md = ok(rep.joyn("handover", tenant, "--rotation", "--format", "markdown"))
    assert md.startswith("# Joyn FSM: a new Secret Token") and token not in md
    assert "open your existing **Joyn FSM**" in md and "Restart provisioning" in md
    assert "Create" not in md and f"`https://{tenant}." in md


def test_test_connection_passes_against_a_healthy_tenant(rep, tenant, cluster):
    r = rep.joyn("test-connection", tenant, *through_ingress(cluster))
    out = ok(r)
    for name in ("DNS", "Test Connection", "ServiceProviderConfig", "Schemas", "Wrong token",
                 "Latency"):
        assert f"[  ok] {name}:" in out, name
    # The harness's certificates live as long as a public ACME one (hack/kube/pki.py): no
    # warning (the warning itself: tests/operator_unit/test_ctl_probe.py).
    assert f"[  ok] TLS: verified for {tenant}.{cluster.domain}" in out
    assert "expires in 89 days" in out and "fix:" not in out
    assert out.rstrip().endswith("all checks passed")


def test_test_connection_names_a_wrong_token(rep, tenant, cluster, tmp_path):
    wrong = tmp_path / "pasted"
    wrong.write_text("not-the-token\n")
    r = rep.joyn("test-connection", tenant, "--token-file", str(wrong), *through_ingress(cluster))
    assert r.returncode == 1
    assert f"[FAIL] Test Connection: HTTP 401 with the token in {wrong}" in r.stdout
    assert "fix: the server refuses the token" in r.stdout
    assert 'in Entra: Test Connection: "You appear to have entered invalid credentials"' \
        in r.stdout


def test_test_connection_names_a_certificate_for_another_host(rep, kube, cluster, ns, operator):
    host = f"mismatch-{ns}.example.org"
    cluster.ingress.issue(ns, "other-tls", (f"other.{host}",))
    name = create_tenant(kube, cluster, ns, tls=False, ingress={
        "host": host, "tls": {"secretName": "other-tls"}})
    # The operator reads the Secret's certificate: the tenant is not Ready, and says why.
    eventually(lambda: (c := (tenant_of(kube, ns, name).get("status") or {}).get("conditions"))
               and c[0]["reason"] == "TLSCertificateInvalid" and f"does not name {host}"
               in c[0]["message"], timeout=120, what="Ready=False/TLSCertificateInvalid")
    r = rep.joyn("test-connection", name, *through_ingress(cluster))
    assert r.returncode == 1
    assert f"[FAIL] TLS: the certificate does not name {host}" in r.stdout
    assert "check spec.ingress.host and spec.ingress.tls" in r.stdout
    assert "] Test Connection:" not in r.stdout  # nothing sent over an unverified connection
    assert "in Entra: Test Connection: " in r.stdout and "trust relationship" in r.stdout


def test_test_connection_names_a_server_that_is_down(rep, kube, cluster, ns, operator):
    name = create_tenant(kube, cluster, ns)
    wait_ready(kube, ns, name)
    for body, kind in (({"metadata": {"annotations": {"scim.sevenlakes.com/paused": "true"}}},
                        f"{TENANTS.format(ns=ns)}/{name}"),
                       ({"spec": {"replicas": 0}},
                        f"/apis/apps/v1/namespaces/{ns}/deployments/{name}-scim")):
        r = kube.request("PATCH", kind, json=body,
                         headers={"Content-Type": "application/merge-patch+json"})
        assert r.status_code == 200, r.text

    def down():
        c = {c["type"]: c for c in kube.get(f"{TENANTS.format(ns=ns)}/{name}").json()[
            "status"]["conditions"]}
        return c["Ready"]["status"] == "False"
    eventually(down, timeout=120, what="the tenant to say it is not Ready")
    r = eventually(lambda: (r := rep.joyn("test-connection", name, *through_ingress(cluster)))
                   .returncode == 1 and "[FAIL] Test Connection" in r.stdout and r,
                   timeout=60, what="the ingress controller to lose the server")
    assert "TLS: verified" in r.stdout
    assert "the tenant says Ready=False" in r.stdout


def test_server_activity_shows_in_tenants_and_status(rep, tenant, cluster, tmp_path):
    wrong = tmp_path / "stale"
    wrong.write_text("a-token-entra-still-holds\n")
    # Entra with a stale token, then with the right one.
    assert rep.joyn("test-connection", tenant, "--token-file", str(wrong),
                    *through_ingress(cluster)).returncode == 1
    started = datetime.now(UTC).replace(microsecond=0)
    ok(rep.joyn("test-connection", tenant, *through_ingress(cluster)))

    def seen():
        [row] = [t for t in json.loads(ok(rep.joyn("tenants", "-o", "json")))
                 if t["name"] == tenant]
        return row["lastRequestAt"] and datetime.fromisoformat(
            row["lastRequestAt"].replace("Z", "+00:00")) >= started and row
    row = eventually(seen, timeout=60, what="the operator to read the server's activity")
    assert row["unauthorizedLastHour"] >= 2 and row["users"] == 0 and row["groups"] == 0
    out = ok(rep.joyn("status", tenant))
    assert "Activity:   last SCIM request" in out and "0 users, 0 groups" in out
    table = ok(rep.joyn("tenants"))
    assert " ago " in table.splitlines()[[line.split()[0] for line in
                                          table.splitlines()].index(tenant)]


def test_rotate_waits_for_the_new_token_and_both_work_until_the_overlap_ends(
        rep, tenant, kube, ns, cluster):
    before = secret(kube, ns, tenant)["token"]
    started = datetime.now(UTC)
    out = ok(rep.joyn("rotate", tenant, "--overlap", "10m"))
    after = secret(kube, ns, tenant)
    rotated = after["token"] != before and after["previous-token"] == before
    assert rotated
    until = out.split("stays valid until ")[1].split(":", 3)
    until = datetime.fromisoformat(":".join(until[:3]).replace("Z", "+00:00"))
    assert started + timedelta(minutes=10) - timedelta(seconds=5) <= until \
        <= datetime.now(UTC) + timedelta(minutes=10)
    assert f"kubectl joyn handover {tenant} --rotation" in out
    ok(rep.joyn("test-connection", tenant, "--token", "previous", *through_ingress(cluster)))
    # The kubelet refreshes the Secret volume within its sync period; the server re-reads it.
    eventually(lambda: rep.joyn("test-connection", tenant, *through_ingress(cluster))
               .returncode == 0, timeout=120, what="the new token to work through the ingress")
    status = ok(rep.joyn("status", tenant))
    assert "previous token valid until" in status and "TokenRotated" in status
    assert "TokenRotationPending   True" in status
    # Now the tenant's status knows of a rotation: the first-time message comes with a note.
    r = rep.joyn("handover", tenant)
    assert r.returncode == 0 and f"kubectl joyn handover {tenant} --rotation` instead" \
        in r.stderr, r.stderr


def test_rotate_refuses_an_overlap_that_is_no_duration_and_changes_nothing(rep, tenant, kube,
                                                                           ns):
    before = secret(kube, ns, tenant)["token"]
    r = rep.joyn("rotate", tenant, "--overlap", "3 days")
    assert r.returncode == 1 and "is not a duration" in r.stderr
    same = secret(kube, ns, tenant)["token"] == before
    assert same


def test_status_shows_conditions_events_and_token_dates(rep, tenant):
    out = ok(rep.joyn("status", tenant))
    assert f"Tenant URL: https://{tenant}." in out and "Ready:      True (Ready)" in out
    for kind in ("Ready", "Progressing", "Degraded", "IngressReady", "TokenRotationPending",
                 "Paused"):
        assert any(line.startswith(kind + " ") for line in out.splitlines()), kind
    assert "TokenGenerated" in out and "Token:      issued 20" in out
    data = json.loads(ok(rep.joyn("status", tenant, "-o", "json")))
    assert data["status"]["url"].startswith("https://") and data["events"]


def test_report_bundles_the_tenant_children_events_and_logs_with_every_token_redacted(
        rep, tenant, kube, ns, tmp_path):
    tokens = secret(kube, ns, tenant)
    out = ok(rep.joyn("report", tenant, "-f", str(tmp_path / "bundle.tar.gz")))
    assert "tokens redacted" in out
    with tarfile.open(tmp_path / "bundle.tar.gz") as tar:
        files = {m.name: tar.extractfile(m).read().decode() for m in tar.getmembers()}
    assert {"tenant.yaml", "events.yaml", "status.txt", "README.txt"} <= files.keys()
    kinds = {name.split("/")[1].split("-")[0] for name in files if name.startswith("children/")}
    assert {"deployment", "pod", "service", "ingress", "networkpolicy",
            "persistentvolumeclaim"} <= kinds
    [log] = [text for name, text in files.items() if name.startswith("logs/")]
    assert '"starting"' in log  # the server's own log lines
    values = [tokens["token"], *tokens.get("previous-token", "").splitlines()]
    leaked = sum(v in text for v in values for text in files.values())
    assert leaked == 0


def test_a_rep_without_secret_access_is_told_which_permission_is_missing(
        kube, cluster, ns, tenant, tmp_path):
    r = kube.create("/apis/rbac.authorization.k8s.io/v1/clusterroles", {
        "metadata": {"name": f"tenant-viewer-{ns}"},
        "rules": [{"apiGroups": ["scim.sevenlakes.com"], "resources": ["joynscimtenants"],
                   "verbs": ["get", "list"]}]})
    assert r.status_code == 201, r.text
    try:
        viewer = Person(kube, cluster, ns, "viewer", f"tenant-viewer-{ns}", tmp_path)
        ok(viewer.joyn("tenants"))
        r = viewer.joyn("credentials", tenant)
        assert r.returncode == 1
        assert f"you lack permission to get secrets in namespace {ns}" in r.stderr
        assert "Traceback" not in r.stderr
        r = viewer.joyn("tenants", "-A")
        assert r.returncode == 1 and "list joynscimtenants.scim.sevenlakes.com cluster-wide" \
            in r.stderr
    finally:
        kube.delete(f"/apis/rbac.authorization.k8s.io/v1/clusterroles/tenant-viewer-{ns}")


def test_acknowledge_clears_token_replaced_as_a_rep(rep, kube, cluster, ns, operator):
    name = create_tenant(kube, cluster, ns)
    wait_ready(kube, ns, name)
    r = rep.joyn("acknowledge", name)
    assert r.returncode == 1 and "no replaced token to acknowledge" in r.stderr, r.stderr
    assert REPLACED_ACK_ANNOTATION not in (tenant_of(kube, ns, name)["metadata"].get(
        "annotations") or {})
    # The platform team's mistake the condition is for: the token Secret deleted.
    r = kube.delete(f"/api/v1/namespaces/{ns}/secrets/{name}-scim-token")
    assert r.status_code == 200, r.text

    def degraded():
        t = tenant_of(kube, ns, name)
        c = {c["type"]: c for c in t.get("status", {}).get("conditions") or []}
        return c.get("Degraded", {}).get("reason") == "TokenReplaced" and t
    eventually(degraded, timeout=120, what="TokenReplaced")
    assert "--rotation" in ok(rep.joyn("status", name))
    out = ok(rep.joyn("acknowledge", name))  # waits for the operator
    assert out.startswith("Acknowledged:"), out
    t = tenant_of(kube, ns, name)
    assert "replacedAt" not in t["status"]["token"]
    assert {c["type"]: c for c in t["status"]["conditions"]}["Degraded"]["reason"] \
        != "TokenReplaced"


@pytest.mark.timeout(600)
def test_krew_installs_the_plugin_make_built_and_kubectl_runs_it(rep, tenant, tmp_path):
    """`make kubectl-joyn`'s archive and manifest, installed by the real krew, run by kubectl
    with the system's python3 and nothing of this checkout or its virtualenv on PATH."""
    krew = built("krew", "KREW_BINS_DIR", "krew is") / "krew"
    dist = tmp_path / "dist"
    subprocess.run([str(ROOT / "packaging" / "build-kubectl-joyn.sh")], check=True,
                   capture_output=True, timeout=540,
                   env={**os.environ, "PYTHON": sys.executable, "OUT": str(dist)})
    home = tmp_path / "home"
    env = {"PATH": f"{home / '.krew' / 'bin'}{os.pathsep}/usr/bin{os.pathsep}/bin",
           "HOME": str(home), "KUBECONFIG": str(rep.kubeconfig)}
    manifest = dist / "krew" / "joyn.yaml"
    archive = dist / "kubectl-joyn-linux-amd64.tar.gz"
    r = subprocess.run([str(krew), "install", f"--manifest={manifest}", f"--archive={archive}"],
                       capture_output=True, text=True, env=env, stdin=subprocess.DEVNULL,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    r = subprocess.run([rep.kubectl, "joyn", "tenants", "-o", "wide"], capture_output=True,
                       text=True, env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    assert any(line.startswith(tenant) for line in r.stdout.splitlines()), r.stdout
    # The manifest is what krew checks the archive against: another archive is refused.
    sha = yaml.safe_load(manifest.read_text())["spec"]["platforms"][0]["sha256"]
    tampered = tmp_path / "tampered.yaml"
    tampered.write_text(manifest.read_text().replace(
        sha, hashlib.sha256(b"another archive").hexdigest()))
    r = subprocess.run([str(krew), "install", f"--manifest={tampered}", f"--archive={archive}"],
                       capture_output=True, text=True, env={**env, "HOME": str(tmp_path)},
                       stdin=subprocess.DEVNULL, timeout=120)
    assert r.returncode != 0 and "checksum" in r.stderr.lower(), r.stderr


# -- the event stream, for the application team ---------------------------------------------------

@pytest.fixture(scope="module")
def events_tenant(kube, cluster, ns, operator) -> str:
    name = create_tenant(kube, cluster, ns, events={"enabled": True})
    wait_ready(kube, ns, name)
    return name


def receiver_token(kube, ns, name) -> str:
    import base64
    s = kube.get(f"/api/v1/namespaces/{ns}/secrets/{name}-scim-events-token").json()
    return base64.b64decode(s["data"]["token"]).decode()


def test_credentials_events_hand_over_the_receiver_credential(rep, events_tenant, tenant, kube,
                                                              ns, cluster):
    token = receiver_token(kube, ns, events_tenant)
    out = ok(rep.joyn("credentials", events_tenant, "--events"))
    leaked = token in out
    assert not leaked and f"****{token[-4:]}" in out
    events_url = f"http://{events_tenant}-scim.{ns}.svc:8080/events"
    assert f"Poll (RFC 8936): POST {events_url}" in out
    assert f"JWKS:            {events_url}/jwks.json" in out
    assert f"Issuer (iss):    https://{events_tenant}.{cluster.domain}/scim/v2" in out
    assert "Audience (aud):  joyn-fsm" in out
    facts = json.loads(ok(rep.joyn("credentials", events_tenant, "--events", "--reveal",
                                   "-o", "json")))
    same = facts["receiverToken"] == token
    assert same and facts["revealed"] and facts["delivery"] == "poll"
    assert facts["issuer"] == tenant_of(kube, ns, events_tenant)["status"]["url"]
    env = ok(rep.joyn("credentials", events_tenant, "--events", "-o", "env"))
    assert f"JOYN_EVENTS_URL={events_url}" in env and token not in env
    r = rep.joyn("credentials", tenant, "--events")
    assert r.returncode == 1 and "spec.events.enabled is not true" in r.stderr


def test_events_shows_the_stream_through_a_port_forward_as_a_rep(rep, events_tenant, kube, ns,
                                                                 cluster):
    url = tenant_of(kube, ns, events_tenant)["status"]["url"]
    entra = Entra(cluster, url)
    token = secret(kube, ns, events_tenant)["token"]
    created = eventually(lambda: (r := entra.request("POST", "/Users", token, json={
        "schemas": [USER], "userName": "ada@acme.example"})).status_code not in (404, 503)
        and r, timeout=30, what="the ingress controller's route")
    assert created.status_code == 201, created.text
    user = created.json()

    lines = ok(rep.joyn("events", events_tenant)).splitlines()
    assert lines[0].split() == ["TIME", "TXN", "EVENT", "RESOURCE", "VERSION"]
    [row] = [line.split() for line in lines[1:] if user["id"] in line]
    assert row[2:] == ["create", f"/Users/{user['id']}", user["meta"]["version"]]
    claims = [json.loads(line) for line in ok(rep.joyn(
        "events", events_tenant, "-o", "json")).splitlines()]
    mine = [c for c in claims if c["sub_id"]["uri"] == f"/Users/{user['id']}"]
    assert [list(c["events"]) for c in mine] == [
        ["urn:ietf:params:scim:event:prov:create:full"]]
    assert mine[0]["iss"] == url and mine[0]["aud"] == "joyn-fsm"
    seq = max(int(c["jti"].rsplit(".", 1)[1]) for c in claims)
    assert ok(rep.joyn("events", events_tenant, "--after", str(seq))).splitlines()[1:] == []

    # --follow shows what commits while it watches (and acknowledges nothing).
    env = {**os.environ, "KUBECONFIG": str(rep.kubeconfig),
           "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    follow = subprocess.Popen([rep.kubectl, "joyn", "events", events_tenant, "--follow",
                               "--after", str(seq), "-o", "json"], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=env)
    try:
        later = entra.request("POST", "/Users", token, json={
            "schemas": [USER], "userName": "grace@acme.example"}).json()
        deadline = time.monotonic() + 60
        seen = []
        while time.monotonic() < deadline and not any(later["id"] in s for s in seen):
            ready, _, _ = select.select([follow.stdout], [], [], 1)
            if ready:
                seen.append(follow.stdout.readline())
        assert any(later["id"] in s for s in seen), follow.poll()
    finally:
        follow.terminate()
        follow.wait(timeout=30)
    # Watching consumed nothing: both users' events still wait for the receiver.
    eventually(lambda: tenant_of(kube, ns, events_tenant)["status"]["events"].get("backlog")
               == 2, what="status.events.backlog 2")


def test_a_tenant_that_does_not_exist_is_named(rep, ns):
    r = rep.joyn("status", "no-such-tenant")
    assert r.returncode == 1 and f"no JoynScimTenant 'no-such-tenant' in namespace {ns}" \
        in r.stderr
