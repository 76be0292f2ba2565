"""A restart with a few hundred tenants converges: every tenant is reconciled again by the new
operator within the same two minutes, with no failed reconcile, no warning in its log and no
write to a tenant whose state did not change. (bench/operator_scale.py measures 500.)"""

from __future__ import annotations

import asyncio
import base64
import re
import ssl

import httpx
import pytest

from .conftest import OperatorProcess, eventually, module_namespace
from .test_operator import SECRETS, child, tenants_url

TENANTS = 200
# Their pods can go nowhere: the test is about the operator, not 200 servers on one node.
NOWHERE = {"nodeSelector": {"scim.sevenlakes.com/benchmark": "nowhere"}}


@pytest.fixture(scope="module")
def ns(kube, tenant_crd):
    yield from module_namespace(kube, "scale")


def tenant_ready_series(op: OperatorProcess) -> int:
    """Tenants this operator process has reconciled: each sets its joyn_operator_tenant_ready."""
    try:
        text = httpx.get(f"http://127.0.0.1:{op.metrics_port}/metrics").text
    except httpx.HTTPError:
        return 0
    return len(re.findall(r"^joyn_operator_tenant_ready\{", text, re.M))


async def create_all(kube, ns: str) -> None:
    async with httpx.AsyncClient(base_url=kube.cp.server,
                                 verify=ssl.create_default_context(cafile=str(kube.cp.ca_file)),
                                 headers={"Authorization": f"Bearer {kube.cp.token}"},
                                 timeout=60) as http:
        gate = asyncio.Semaphore(16)

        async def one(i: int) -> None:
            async with gate:
                r = await http.post(tenants_url(ns), json={
                    "apiVersion": "scim.sevenlakes.com/v1alpha1", "kind": "JoynScimTenant",
                    "metadata": {"name": f"s{i:03d}"},
                    "spec": {"displayName": f"Scale {i}", "server": NOWHERE}})
                assert r.status_code == 201, r.text

        await asyncio.gather(*(one(i) for i in range(TENANTS)))


@pytest.mark.timeout(420)
def test_a_restart_with_hundreds_of_tenants_converges_quietly(kube, cluster, ns,
                                                             tmp_path_factory):
    op = OperatorProcess(cluster.cp, ns, tmp_path_factory.mktemp("operator"),
                         DOMAIN="scim.test", SERVER_IMAGE=cluster.images.app,
                         INGRESS_CLASS="traefik", RESYNC_SECONDS="600")
    op.start()
    try:
        asyncio.run(create_all(kube, ns))

        def settled() -> bool:
            """Each tenant at rest: its claim waits for a pod that has no node to go to, and
            the ingress controller has admitted its Ingress."""
            items = kube.get(tenants_url(ns)).json()["items"]
            return len(items) == TENANTS and all(
                {c["type"]: (c["status"], c["reason"]) for c in (t.get("status") or {}).get(
                    "conditions", [])}.get("IngressReady") == ("True", "IngressReady") and
                (t.get("status") or {}).get("conditions", [{}])[0].get("reason")
                == "VolumePending" for t in items)

        eventually(settled, timeout=180, what=f"all {TENANTS} tenants reconciled and at rest")
        tokens = {n: child(kube, ns, SECRETS, f"{n}-scim-token")["data"]["token"]
                  for n in ("s000", "s099", "s199")}
        versions = {t["metadata"]["name"]: t["metadata"]["resourceVersion"]
                    for t in kube.get(tenants_url(ns)).json()["items"]}
        op.stop()
        before = op.log.read_text().count("\n")
        op.start()
        eventually(lambda: tenant_ready_series(op) >= TENANTS, timeout=120,
                   what=f"the restarted operator to reconcile all {TENANTS} tenants")
        text = op.log.read_text().splitlines()[before:]
        assert not [line for line in text if '"level":"warning"' in line or
                    '"level":"error"' in line], "warnings after the restart"
        metrics = httpx.get(f"http://127.0.0.1:{op.metrics_port}/metrics").text
        assert 'joyn_operator_reconciles_total{result="error"} 0.0' in metrics
        for name, token in tokens.items():  # no token changed, no status rewritten
            assert child(kube, ns, SECRETS, f"{name}-scim-token")["data"]["token"] == token
            assert base64.b64decode(token)
        after = {t["metadata"]["name"]: t["metadata"]["resourceVersion"]
                 for t in kube.get(tenants_url(ns)).json()["items"]}
        assert after == versions
    finally:
        op.stop()
