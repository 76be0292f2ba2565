"""kubectl joyn's cluster access (joyn_operator/ctl/cluster.py): RBAC refusals named, the
context's namespace as kubectl picks it."""

from __future__ import annotations

import json

import pytest
from joyn_operator.ctl.cluster import CliError, context_namespace, explain
from joyn_operator.kube import KubeError
from joyn_operator.login import Login


def test_a_refusal_names_the_missing_permission():
    e = KubeError("GET", "/api/v1/namespaces/crm/secrets/t-scim-token", 403, json.dumps({
        "message": 'secrets "t-scim-token" is forbidden: User "system:serviceaccount:crm:rep" '
                   'cannot get resource "secrets" in API group "" in the namespace "crm"'}))
    msg = str(explain(e, "read Secret t-scim-token"))
    assert "you lack permission to get secrets in namespace crm" in msg
    assert "rep ClusterRole" in msg


def test_a_cluster_wide_refusal_names_the_group():
    e = KubeError("GET", "/apis/scim.sevenlakes.com/v1alpha1/joynscimtenants", 403, json.dumps({
        "message": 'joynscimtenants.scim.sevenlakes.com is forbidden: User "bob" cannot list '
                   'resource "joynscimtenants" in API group "scim.sevenlakes.com" at the '
                   'cluster scope'}))
    assert "list joynscimtenants.scim.sevenlakes.com cluster-wide" in str(explain(e, "list"))


def test_expired_credentials_say_to_log_in_again():
    assert "log in to the cluster again" in str(explain(KubeError("GET", "/x", 401, ""), "x"))


def kubeconfig(tmp_path, contexts: dict[str, str | None], current: str) -> str:
    path = tmp_path / "config"
    path.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": current,
        "clusters": [{"name": "k", "cluster": {"server": "https://127.0.0.1:1"}}],
        "users": [{"name": "u", "user": {"token": "t"}}],
        "contexts": [{"name": n, "context": {"cluster": "k", "user": "u",
                                             **({"namespace": ns} if ns else {})}}
                     for n, ns in contexts.items()]}))
    return str(path)


def test_the_namespace_is_the_contexts_as_kubectl_picks_it(tmp_path):
    config = kubeconfig(tmp_path, {"a": "crm", "b": None}, current="a")
    login = Login(config, environ={})
    assert context_namespace(login, None) == "crm"
    assert context_namespace(login, "b") == "default"
    with pytest.raises(CliError, match="no context 'c'"):
        context_namespace(login, "c")


def test_a_missing_kubeconfig_says_so(tmp_path):
    with pytest.raises(CliError, match=r"no kubeconfig at .*nothing-here"):
        context_namespace(Login(str(tmp_path / "nothing-here"), environ={}), None)


def test_an_api_server_that_does_not_answer_is_named(tmp_path):
    import asyncio

    from joyn_operator.ctl.cluster import Cluster, Where

    async def go():
        cluster = Cluster(Where(kubeconfig(tmp_path, {"a": "crm"}, "a"), None, None))
        try:
            await cluster.tenants()
        finally:
            await cluster.close()
    with pytest.raises(CliError, match=r"cannot list tenants: the API server at "
                                       r"https://127.0.0.1:1 does not answer"):
        asyncio.run(go())
