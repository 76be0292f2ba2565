"""The operator's own Kubernetes API calls besides kopf's watching: get, list, server-side
apply under one field manager, status patches, events, deletes.

Raw JSON over kubernetes_asyncio's ApiClient rather than its typed API classes: the objects are
rendered as plain dicts (desired.py), server-side apply is a raw PATCH in any client, and the typed
models are most of a Python operator's memory (kopf's docs, critiques.rst). Credentials come
from the Login that kopf uses too (login.py).
"""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime

from kubernetes_asyncio.client import ApiClient
from kubernetes_asyncio.client.exceptions import ApiException

from .login import Login

FIELD_MANAGER = "joyn-scim-operator"
# kind -> (API prefix, plural) for the kinds the operator touches.
KINDS = {
    "Secret": ("/api/v1", "secrets"),
    "Service": ("/api/v1", "services"),
    "PersistentVolumeClaim": ("/api/v1", "persistentvolumeclaims"),
    "Pod": ("/api/v1", "pods"),
    "Event": ("/api/v1", "events"),
    "Deployment": ("/apis/apps/v1", "deployments"),
    "PodDisruptionBudget": ("/apis/policy/v1", "poddisruptionbudgets"),
    "Job": ("/apis/batch/v1", "jobs"),  # a move from SQLite to PostgreSQL (move.py)
    # CloudNativePG's: the tenant's database in a cluster the platform team runs.
    "Database": ("/apis/postgresql.cnpg.io/v1", "databases"),
    "Cluster": ("/apis/postgresql.cnpg.io/v1", "clusters"),
    "DatabaseRole": ("/apis/postgresql.cnpg.io/v1", "databaseroles"),
    "Ingress": ("/apis/networking.k8s.io/v1", "ingresses"),
    "Certificate": ("/apis/cert-manager.io/v1", "certificates"),  # read only: cert-manager's
    "NetworkPolicy": ("/apis/networking.k8s.io/v1", "networkpolicies"),
    "JoynScimTenant": ("/apis/scim.sevenlakes.com/v1alpha1", "joynscimtenants"),
}


def secret_data(secret: dict | None) -> dict[str, str]:
    """A Secret's data, decoded (empty for None)."""
    data = (secret or {}).get("data") or {}
    return {k: base64.b64decode(v).decode(errors="replace") for k, v in data.items()}


def path(kind: str, namespace: str, name: str | None = None) -> str:
    prefix, plural = KINDS[kind]
    out = f"{prefix}/namespaces/{namespace}/{plural}"
    return f"{out}/{name}" if name else out


class KubeError(Exception):
    def __init__(self, method: str, url: str, status: int, body: str | bytes | None,
                 redact: bool = False) -> None:
        message = body.decode(errors="replace") if isinstance(body, bytes) else (body or "")
        try:
            message = json.loads(message).get("message", message)
        except (ValueError, AttributeError):
            pass
        if redact:  # an error about a Secret might quote a value: never let it reach a log
            message = "(details withheld for a Secret)"
        super().__init__(f"{method} {url}: {status} {message}")
        self.status = status
        self.message = message  # the API server's own words (an RBAC refusal names the verb)


class Kube:
    def __init__(self, login: Login, timeout: float = 30) -> None:
        self.login = login
        self.timeout = timeout
        self._api: ApiClient | None = None

    async def close(self) -> None:
        if self._api is not None:
            await self._api.close()
            self._api = None

    async def _client(self, force: bool = False) -> ApiClient:
        cfg = await self.login.refresh(force=force)
        if self._api is None or self._api.configuration is not cfg:
            await self.close()  # a new server, CA or client certificate: a new connection pool
            self._api = ApiClient(configuration=cfg)
        return self._api

    async def _retrying(self, call):
        """`call(api)` once; after a 401 (KubeError) the credentials are loaded afresh and it
        is tried once more."""
        refused = False
        while True:
            try:
                return await call(await self._client(force=refused))
            except KubeError as e:
                if e.status != 401 or refused:
                    raise
                refused = True

    async def request(self, method: str, url: str, *, query: dict | None = None,
                      body: dict | None = None, content_type: str = "application/json",
                      redact: bool = False) -> tuple[int, dict]:
        """One call. Errors raise KubeError (with the server's message, withheld when
        `redact`)."""
        async def call(api: ApiClient) -> tuple[int, dict]:
            try:
                data, status, _headers = await api.call_api(
                    url, method, query_params=list((query or {}).items()),
                    header_params={"Content-Type": content_type, "Accept": "application/json"},
                    body=body, auth_settings=["BearerToken"],
                    response_types_map={200: "object", 201: "object", 202: "object"},
                    _request_timeout=self.timeout)
            except ApiException as e:
                raise KubeError(method, url, e.status or 0, e.body, redact=redact) from None
            return status, data or {}
        return await self._retrying(call)

    async def text(self, url: str, query: dict | None = None) -> str:
        """A GET whose answer is text, not JSON (a pod's log): the client's JSON decoding would
        turn a log of one JSON line into a dict."""
        async def call(api: ApiClient) -> str:
            r = await api.call_api(url, "GET", query_params=list((query or {}).items()),
                                   header_params={"Accept": "*/*"},
                                   auth_settings=["BearerToken"], _preload_content=False,
                                   _request_timeout=self.timeout)
            try:
                body = await r.text(errors="replace")
            finally:
                r.release()
            if not 200 <= r.status < 300:
                raise KubeError("GET", url, r.status, body)
            return body
        return await self._retrying(call)

    async def get(self, url: str) -> dict | None:
        try:
            return (await self.request("GET", url))[1]
        except KubeError as e:
            if e.status == 404:
                return None
            raise

    async def list(self, url: str, label_selector: str | None = None) -> list[dict]:
        query = {"labelSelector": label_selector} if label_selector else None
        return (await self.request("GET", url, query=query))[1].get("items") or []

    async def apply(self, obj: dict) -> tuple[dict, bool]:
        """Server-side apply under our field manager; returns (object, created). Sent as JSON
        (valid apply YAML): nothing a YAML parser could retype, such as `y` or `no`."""
        meta = obj["metadata"]
        status, data = await self.request(
            "PATCH", path(obj["kind"], meta["namespace"], meta["name"]),
            query={"fieldManager": FIELD_MANAGER, "force": "true"}, body=obj,
            content_type="application/apply-patch+yaml", redact=obj["kind"] == "Secret")
        return data, status == 201

    async def annotate(self, kind: str, namespace: str, name: str,
                       annotations: dict[str, str]) -> dict:
        """Add annotations by a merge patch, outside server-side apply: a marker the next
        apply (which does not name it) must leave alone."""
        return (await self.request("PATCH", path(kind, namespace, name),
                                   body={"metadata": {"annotations": annotations}},
                                   content_type="application/merge-patch+json"))[1]

    async def patch_status(self, kind: str, namespace: str, name: str, status: dict) -> dict:
        """A merge patch of the status; returns the object as it is now."""
        return (await self.request("PATCH", f"{path(kind, namespace, name)}/status",
                                   body={"status": status},
                                   content_type="application/merge-patch+json"))[1]

    async def post_event(self, obj: dict, type_: str, reason: str, message: str) -> None:
        """A core/v1 Event about `obj`. Messages are written by us and never hold a token."""
        meta = obj["metadata"]
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        event = {
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
            "involvedObject": {"apiVersion": obj.get("apiVersion"), "kind": obj.get("kind"),
                               "name": meta["name"], "namespace": meta["namespace"],
                               "uid": meta.get("uid")},
            "type": type_, "reason": reason, "message": message, "count": 1,
            "firstTimestamp": now, "lastTimestamp": now,
            "source": {"component": FIELD_MANAGER},
            "reportingComponent": FIELD_MANAGER, "reportingInstance": FIELD_MANAGER,
        }
        await self.request("POST", path("Event", meta["namespace"]), body=event)

    async def delete(self, url: str) -> None:
        try:
            await self.request("DELETE", url)
        except KubeError as e:
            if e.status != 404:
                raise
