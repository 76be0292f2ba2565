"""A small async Kubernetes API client for what the operator does besides watching: get, list,
server-side apply under one field manager, and status patches.

Hand-written over httpx rather than the official `kubernetes` client: server-side apply needs a
raw PATCH with the apply content type in either client, and the official client's typed models
are most of a Python operator's memory (kopf docs, critiques.rst). kopf does the watching.
"""

from __future__ import annotations

import base64
import os
import ssl
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import httpx
import yaml

FIELD_MANAGER = "joyn-scim-operator"
SA_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")

# kind -> (API prefix, plural) for the kinds the operator touches.
KINDS = {
    "Secret": ("/api/v1", "secrets"),
    "Service": ("/api/v1", "services"),
    "PersistentVolumeClaim": ("/api/v1", "persistentvolumeclaims"),
    "Pod": ("/api/v1", "pods"),
    "Event": ("/api/v1", "events"),
    "Deployment": ("/apis/apps/v1", "deployments"),
    "Ingress": ("/apis/networking.k8s.io/v1", "ingresses"),
    "NetworkPolicy": ("/apis/networking.k8s.io/v1", "networkpolicies"),
    "JoynScimTenant": ("/apis/scim.sevenlakes.com/v1alpha1", "joynscimtenants"),
}


def path(kind: str, namespace: str, name: str | None = None) -> str:
    prefix, plural = KINDS[kind]
    out = f"{prefix}/namespaces/{namespace}/{plural}"
    return f"{out}/{name}" if name else out


class KubeError(Exception):
    def __init__(self, response: httpx.Response, redact: bool = False) -> None:
        try:
            message = response.json().get("message", response.text)
        except ValueError:
            message = response.text
        if redact:  # an error about a Secret might quote a value: never let it reach a log
            message = "(details withheld for a Secret)"
        super().__init__(f"{response.request.method} {response.request.url.path}: "
                         f"{response.status_code} {message}")
        self.status = response.status_code


class Kube:
    def __init__(self, server: str, verify: ssl.SSLContext | bool, headers: dict[str, str],
                 cert: tuple[str, str] | None = None) -> None:
        self.http = httpx.AsyncClient(base_url=server, verify=verify, headers=headers,
                                      cert=cert, timeout=30)

    @classmethod
    def from_environment(cls, kubeconfig: str | None = None) -> Kube:
        """In a pod: its ServiceAccount. Elsewhere: $KUBECONFIG (current context)."""
        kubeconfig = kubeconfig or os.environ.get("KUBECONFIG")
        if not kubeconfig and (SA_DIR / "token").exists():
            host = os.environ["KUBERNETES_SERVICE_HOST"]
            port = os.environ.get("KUBERNETES_SERVICE_PORT", "443")
            ctx = ssl.create_default_context(cafile=str(SA_DIR / "ca.crt"))
            token = (SA_DIR / "token").read_text().strip()
            return cls(f"https://{host}:{port}", ctx, {"Authorization": f"Bearer {token}"})
        cfg = yaml.safe_load(Path(kubeconfig or "~/.kube/config").expanduser().read_text())
        ctx_name = cfg["current-context"]
        context = next(c["context"] for c in cfg["contexts"] if c["name"] == ctx_name)
        cluster = next(c["cluster"] for c in cfg["clusters"] if c["name"] == context["cluster"])
        user = next(u["user"] for u in cfg["users"] if u["name"] == context["user"])
        verify: ssl.SSLContext | bool = True
        if cluster.get("insecure-skip-tls-verify"):
            verify = False
        elif cluster.get("certificate-authority"):
            verify = ssl.create_default_context(cafile=cluster["certificate-authority"])
        elif cluster.get("certificate-authority-data"):
            verify = ssl.create_default_context(cadata=base64.b64decode(
                cluster["certificate-authority-data"]).decode())
        headers = {"Authorization": f"Bearer {user['token']}"} if user.get("token") else {}
        cert = None
        if user.get("client-certificate"):
            cert = (user["client-certificate"], user["client-key"])
        elif user.get("client-certificate-data"):
            folder = Path(tempfile.mkdtemp(prefix="joyn-operator-"))
            for key, name in (("client-certificate-data", "tls.crt"),
                              ("client-key-data", "tls.key")):
                (folder / name).write_bytes(base64.b64decode(user[key]))
                os.chmod(folder / name, 0o600)
            cert = (str(folder / "tls.crt"), str(folder / "tls.key"))
        return cls(cluster["server"], verify, headers, cert)

    async def close(self) -> None:
        await self.http.aclose()

    async def get(self, url: str) -> dict | None:
        r = await self.http.get(url)
        if r.status_code == 404:
            return None
        if r.status_code >= 400:
            raise KubeError(r)
        return r.json()

    async def list(self, url: str, label_selector: str | None = None) -> list[dict]:
        params = {"labelSelector": label_selector} if label_selector else None
        r = await self.http.get(url, params=params)
        if r.status_code >= 400:
            raise KubeError(r)
        return r.json().get("items") or []

    async def apply(self, obj: dict) -> tuple[dict, bool]:
        """Server-side apply under our field manager; returns (object, created)."""
        meta = obj["metadata"]
        r = await self.http.patch(
            path(obj["kind"], meta["namespace"], meta["name"]),
            params={"fieldManager": FIELD_MANAGER, "force": "true"},
            content=yaml.safe_dump(obj).encode(),  # JSON would do too; YAML is the apply form
            headers={"Content-Type": "application/apply-patch+yaml"})
        if r.status_code >= 400:
            raise KubeError(r, redact=obj["kind"] == "Secret")
        return r.json(), r.status_code == 201

    async def patch_status(self, kind: str, namespace: str, name: str, status: dict) -> None:
        r = await self.http.patch(f"{path(kind, namespace, name)}/status",
                                  json={"status": status},
                                  headers={"Content-Type": "application/merge-patch+json"})
        if r.status_code >= 400:
            raise KubeError(r)

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
        r = await self.http.post(path("Event", meta["namespace"]), json=event)
        if r.status_code >= 400:
            raise KubeError(r)

    async def delete(self, url: str) -> None:
        r = await self.http.request("DELETE", url)
        if r.status_code >= 400 and r.status_code != 404:
            raise KubeError(r)
