"""The operator's credentials on the real API server (joyn_operator/login.py): a kubeconfig
whose user is an exec plugin, a token file rewritten under a running operator, and the
in-cluster ServiceAccount's token re-read after it changes. Tokens are a real ServiceAccount's,
bound to Secrets: deleting the Secret revokes its token, as a rotation does."""

from __future__ import annotations

import asyncio
import json
import stat
import sys
from datetime import UTC, datetime, timedelta

import pytest
from joyn_operator.kube import Kube
from joyn_operator.login import Login

from .conftest import OperatorProcess, eventually
from .test_tenant_e2e import TENANTS


class Robot:
    """A ServiceAccount bound to cluster-admin (these tests are about identity, test_chart.py
    about permissions), and tokens for it that each die with a Secret of their own."""

    def __init__(self, kube, namespace: str) -> None:
        self.kube, self.namespace = kube, namespace
        r = kube.create(f"/api/v1/namespaces/{namespace}/serviceaccounts",
                        {"metadata": {"name": "robot"}})
        assert r.status_code == 201, r.text
        r = kube.create("/apis/rbac.authorization.k8s.io/v1/clusterrolebindings", {
            "metadata": {"name": f"robot-{namespace}"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                        "name": "cluster-admin"},
            "subjects": [{"kind": "ServiceAccount", "name": "robot", "namespace": namespace}]})
        assert r.status_code == 201, r.text

    def token(self, holder: str) -> str:
        r = self.kube.create(f"/api/v1/namespaces/{self.namespace}/secrets",
                             {"metadata": {"name": holder}})
        assert r.status_code == 201, r.text
        r = self.kube.create(
            f"/api/v1/namespaces/{self.namespace}/serviceaccounts/robot/token",
            {"spec": {"expirationSeconds": 3600, "boundObjectRef": {
                "kind": "Secret", "apiVersion": "v1", "name": holder,
                "uid": r.json()["metadata"]["uid"]}}})
        assert r.status_code == 201, r.text
        return r.json()["status"]["token"]

    def revoke(self, holder: str, token: str) -> None:
        """Delete the Secret `token` is bound to, and wait until the API server refuses it."""
        r = self.kube.delete(f"/api/v1/namespaces/{self.namespace}/secrets/{holder}")
        assert r.status_code == 200, r.text
        eventually(lambda: self.kube.get("/api/v1/namespaces", headers={
            "Authorization": f"Bearer {token}"}).status_code == 401,
            timeout=30, what="the revoked token to be refused")


def kubeconfig(cp, path, user: dict) -> str:
    path.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "c",
        "clusters": [{"name": "k", "cluster": {"server": cp.server,
                                               "certificate-authority": str(cp.ca_file)}}],
        "users": [{"name": "u", "user": user}],
        "contexts": [{"name": "c", "context": {"cluster": "k", "user": "u"}}]}))
    path.chmod(0o600)
    return str(path)


def new_tenant(kube, ns: str, name: str) -> None:
    r = kube.create(TENANTS.format(ns=ns), {
        "apiVersion": "scim.sevenlakes.com/v1alpha1", "kind": "JoynScimTenant",
        "metadata": {"name": name},
        "spec": {"displayName": name, "ingress": {"host": f"{name}.example.com"}}})
    assert r.status_code == 201, r.text


def reconciled(kube, ns: str, name: str) -> bool:
    status = kube.get(f"{TENANTS.format(ns=ns)}/{name}").json().get("status") or {}
    return "observedGeneration" in status


@pytest.fixture
def ns(kube, tenant_crd) -> str:
    return kube.namespace("login")


def test_a_kubeconfig_whose_user_is_an_exec_plugin_works_and_is_run_again_before_expiry(
        kube, control_plane, ns, tmp_path):
    token = Robot(kube, ns).token("exec-holder")
    (tmp_path / "token").write_text(token)
    runs = tmp_path / "runs"
    plugin = tmp_path / "credential-plugin"
    # Each run logs a line; its token "expires" 5 min 5 s from now, and kubernetes_asyncio
    # renews 5 minutes early: the operator must run the plugin again within a minute or so.
    plugin.write_text(f"""#!{sys.executable}
import json, datetime
open({str(runs)!r}, "a").write("run\\n")
until = datetime.datetime.now(datetime.UTC) + datetime.timedelta(minutes=5, seconds=5)
print(json.dumps({{"apiVersion": "client.authentication.k8s.io/v1", "kind": "ExecCredential",
                  "status": {{"token": open({str(tmp_path / 'token')!r}).read(),
                             "expirationTimestamp": until.strftime("%Y-%m-%dT%H:%M:%SZ")}}}}))
""")
    plugin.chmod(plugin.stat().st_mode | stat.S_IXUSR)
    config = kubeconfig(control_plane, tmp_path / "exec.kubeconfig", {"exec": {
        "apiVersion": "client.authentication.k8s.io/v1", "command": str(plugin),
        "interactiveMode": "Never"}})
    op = OperatorProcess(control_plane, ns, tmp_path, KUBECONFIG=config).start()
    try:
        new_tenant(kube, ns, "exec-a")
        eventually(lambda: reconciled(kube, ns, "exec-a"), timeout=60,
                   what="the tenant reconciled by an operator logged in through the plugin")
        eventually(lambda: runs.read_text().count("run") >= 2, timeout=150,
                   what="the plugin run again before its token expired")
        new_tenant(kube, ns, "exec-b")
        eventually(lambda: reconciled(kube, ns, "exec-b"), timeout=60,
                   what="a tenant reconciled with the renewed token")
    finally:
        op.stop()
    assert token not in op.log.read_text()


def test_a_token_file_rewritten_under_a_running_operator_is_used_without_a_restart(
        kube, control_plane, ns, tmp_path):
    robot = Robot(kube, ns)
    first, second = robot.token("first-holder"), robot.token("second-holder")
    token_file = tmp_path / "token"
    token_file.write_text(first)
    config = kubeconfig(control_plane, tmp_path / "file.kubeconfig",
                        {"tokenFile": str(token_file)})
    op = OperatorProcess(control_plane, ns, tmp_path, KUBECONFIG=config).start()
    try:
        new_tenant(kube, ns, "file-a")
        eventually(lambda: reconciled(kube, ns, "file-a"), timeout=60, what="tenant file-a")
        pid = op.proc.pid
        token_file.write_text(second)  # what the kubelet does with a projected token
        robot.revoke("first-holder", first)  # the old token is refused from now on
        new_tenant(kube, ns, "file-b")
        eventually(lambda: reconciled(kube, ns, "file-b"), timeout=90,
                   what="a tenant reconciled after the token file changed")
        assert op.proc.poll() is None and op.proc.pid == pid  # no restart
    finally:
        op.stop()
    log = op.log.read_text()
    assert first not in log and second not in log


def test_the_in_cluster_token_is_read_again_when_refused(kube, control_plane, ns, tmp_path):
    robot = Robot(kube, ns)
    first, second = robot.token("sa-first"), robot.token("sa-second")
    sa_dir = tmp_path / "serviceaccount"
    sa_dir.mkdir()
    (sa_dir / "token").write_text(first)
    (sa_dir / "ca.crt").write_bytes(control_plane.ca_file.read_bytes())
    # The variables the kubelet sets in every pod; the address is the kubernetes Service's.
    environ = {"KUBERNETES_SERVICE_HOST": control_plane.address,
               "KUBERNETES_SERVICE_PORT": str(control_plane.api_port)}

    async def scenario() -> tuple[str, str, datetime]:
        login = Login(environ=environ, sa_dir=sa_dir)
        kube_client = Kube(login)
        try:
            assert login.in_cluster
            await kube_client.get(f"/api/v1/namespaces/{ns}")
            before = login.connection_info().token
            (sa_dir / "token").write_text(second)
            await asyncio.to_thread(robot.revoke, "sa-first", first)
            got = await kube_client.get(f"/api/v1/namespaces/{ns}")  # 401, re-read, retried
            assert got["metadata"]["name"] == ns
            return before, login.connection_info().token, login.connection_info().expiration
        finally:
            await kube_client.close()

    before, after, expiration = asyncio.run(scenario())
    assert before == first and after == second
    # kopf is told to ask again within a minute, when the file is due to be read again.
    assert expiration <= datetime.now(UTC) + timedelta(minutes=1)
