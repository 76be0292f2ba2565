"""The cluster as the CLI sees it: the user's kubeconfig and context, as kubectl reads them
(exec plugins included: login.py), and the few reads and writes the commands make.

Every refusal becomes a CliError a person can act on: a 403 names the verb, resource and
namespace the user lacks, a 401 says to log in again, a missing tenant says where it looked.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import aiohttp
from kubernetes_asyncio.config import ConfigException, list_kube_config_contexts

from ..keys import INSTANCE_LABEL
from ..kube import Kube, KubeError, path, secret_data
from ..login import Login, LoginError
from . import portforward

# What the API server says when RBAC refuses a request.
_FORBIDDEN = re.compile(r'cannot (?P<verb>[\w-]+) resource "(?P<resource>[^"]+)"'
                        r'(?: in API group "(?P<group>[^"]*)")?'
                        r'(?: in the namespace "(?P<namespace>[^"]+)")?')
REP_ROLE_HINT = ("ask your platform team to bind you the chart's rep ClusterRole "
                 "(<release>-rep, docs/reps.md: Permissions)")


class CliError(Exception):
    """A failure the person can fix; its message is all they see (no traceback)."""


def explain(e: KubeError, doing: str) -> CliError:
    """A KubeError in a person's words."""
    if e.status == 403:
        m = _FORBIDDEN.search(e.message)
        if m:
            resource = m["resource"] + (f".{m['group']}" if m["group"] else "")
            where = f" in namespace {m['namespace']}" if m["namespace"] else " cluster-wide"
            return CliError(f"cannot {doing}: you lack permission to {m['verb']} {resource}"
                            f"{where}; {REP_ROLE_HINT}")
        return CliError(f"cannot {doing}: forbidden ({e.message}); {REP_ROLE_HINT}")
    if e.status == 401:
        return CliError(f"cannot {doing}: the API server refused your credentials; log in to "
                        "the cluster again (your kubeconfig's token or plugin)")
    return CliError(f"cannot {doing}: {e}")


@dataclass(frozen=True)
class Where:
    """The kubectl-style options every command takes."""

    kubeconfig: str | None
    context: str | None
    namespace: str | None  # None: the context's namespace
    all_namespaces: bool = False

    @classmethod
    def of(cls, args) -> Where:
        return cls(getattr(args, "kubeconfig", None), getattr(args, "context", None),
                   getattr(args, "namespace", None), getattr(args, "all_namespaces", False))


def context_namespace(login: Login, context: str | None) -> str:
    """The namespace kubectl would use: the context's, the ServiceAccount's in a pod, else
    "default"."""
    if login.in_cluster:
        try:
            return (login.sa_dir / "namespace").read_text().strip() or "default"
        except OSError:
            return "default"
    files = [Path(f).expanduser() for f in (login.kubeconfig or "~/.kube/config").split(
        os.pathsep) if f]
    if not any(f.exists() for f in files):
        raise CliError(f"no kubeconfig at {os.pathsep.join(map(str, files))}: log in to your "
                       "cluster first, or pass --kubeconfig")
    try:
        contexts, active = list_kube_config_contexts(login.kubeconfig)
    except (ConfigException, OSError) as e:
        raise CliError(f"cannot read {login.source}: {e}") from None
    chosen = next((c for c in contexts if c.get("name") == context), None) if context \
        else active
    if context and chosen is None:
        raise CliError(f"no context {context!r} in {login.source}")
    return ((chosen or {}).get("context") or {}).get("namespace") or "default"


class Cluster:
    """The reads and writes of the CLI's commands, each failure a CliError."""

    def __init__(self, where: Where) -> None:
        self.login = Login(where.kubeconfig, where.context)
        self.kube = Kube(self.login, timeout=20)
        self.all_namespaces = where.all_namespaces
        self._namespace = where.namespace

    @property
    def namespace(self) -> str:
        if self._namespace is None:
            self._namespace = context_namespace(self.login, self.login.context)
        return self._namespace

    async def close(self) -> None:
        await self.kube.close()

    async def _call(self, doing: str, coro):
        try:
            return await coro
        except KubeError as e:
            raise explain(e, doing) from None
        except LoginError as e:
            raise CliError(str(e)) from None
        except (aiohttp.ClientError, TimeoutError, OSError) as e:
            host = self.login.configuration.host if self.login.configuration else "the cluster"
            raise CliError(f"cannot {doing}: the API server at {host} does not answer "
                           f"({e.__class__.__name__}: {e})") from None

    async def tenant(self, name: str) -> dict:
        got = await self._call(f"read tenant {name}",
                               self.kube.get(path("JoynScimTenant", self.namespace, name)))
        if got is None:
            raise CliError(f"no JoynScimTenant {name!r} in namespace {self.namespace} "
                           "(-n NAMESPACE, or `kubectl joyn tenants -A` to find it)")
        return got

    async def tenants(self) -> list[dict]:
        url = ("/apis/scim.sevenlakes.com/v1alpha1/joynscimtenants" if self.all_namespaces
               else path("JoynScimTenant", self.namespace))
        return await self._call("list tenants", self.kube.list(url))

    async def secret(self, namespace: str, name: str
                     ) -> tuple[dict[str, str], dict[str, str]] | None:
        """A Secret's data, decoded, and its annotations (None: absent)."""
        got = await self._call(f"read Secret {name}",
                               self.kube.get(path("Secret", namespace, name)))
        if got is None:
            return None
        return secret_data(got), got["metadata"].get("annotations") or {}

    async def annotate(self, tenant: dict, annotations: dict[str, str | None]) -> None:
        meta = tenant["metadata"]
        await self._call(f"annotate tenant {meta['name']}", self.kube.request(
            "PATCH", path("JoynScimTenant", meta["namespace"], meta["name"]),
            body={"metadata": {"annotations": annotations}},
            content_type="application/merge-patch+json"))

    async def events(self, namespace: str, names: list[str]) -> list[dict]:
        """Events about the named objects in the namespace, oldest first."""
        items = await self._call(f"list Events in {namespace}",
                                 self.kube.list(path("Event", namespace)))
        wanted = set(names)
        items = [e for e in items if (e.get("involvedObject") or {}).get("name") in wanted]
        return sorted(items, key=lambda e: e.get("lastTimestamp") or e.get("eventTime") or "")

    async def children(self, tenant: dict, kinds: tuple[str, ...] = (
            "Deployment", "Pod", "Service", "Ingress", "NetworkPolicy",
            "PersistentVolumeClaim")) -> dict[str, list[dict]]:
        """The tenant's objects by kind: what the operator made, and its pods."""
        meta = tenant["metadata"]
        selector = f"{INSTANCE_LABEL}={meta['name']}"
        out = {}
        for kind in kinds:
            out[kind] = await self._call(f"list {kind}s in {meta['namespace']}", self.kube.list(
                path(kind, meta["namespace"]), label_selector=selector))
        return out

    async def log(self, namespace: str, pod: str, tail: int) -> str:
        return await self._call(f"read the log of pod {pod}", self.kube.text(
            f"{path('Pod', namespace, pod)}/log", {"tailLines": str(tail)}))

    async def forward_get(self, namespace: str, pod: str, port: int, target: str,
                          headers: dict[str, str]):
        """GET `target` on a pod's port through a port-forward (ctl/portforward.py says why
        not the service proxy): yields (HTTP status, body bytes) as they arrive."""
        doing = f"forward to port {port} of pod {pod}"
        try:
            async for item in portforward.get(self.kube, namespace, pod, port, target, headers):
                yield item
        except KubeError as e:
            if e.status == 403:
                # A WebSocket handshake's refusal has no body to name the verb: both are needed.
                raise CliError(f"cannot {doing}: you lack permission to get and create "
                               f"pods/portforward in namespace {namespace}; {REP_ROLE_HINT}"
                               ) from None
            raise explain(e, doing) from None
        except portforward.ForwardError as e:
            raise CliError(f"cannot {doing}: {e}") from None
        except LoginError as e:
            raise CliError(str(e)) from None
        except (aiohttp.ClientError, TimeoutError, OSError) as e:
            raise CliError(f"cannot {doing}: {e.__class__.__name__}: {e}") from None
