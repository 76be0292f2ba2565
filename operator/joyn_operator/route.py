"""The operator's own Test Connection: Entra's first request, sent the way Entra's would
arrive, through the ingress controller, so that Ready means Entra can connect.

Entra sends `GET <Tenant URL>/Users?filter=userName eq "<random>"` with the token and expects
200 (docs/entra.md, Test Connection). The operator sends it to the ingress
controller's address (JOYN_OPERATOR_ROUTE_CHECK_ADDRESS: its Service's in-cluster name and
port, or a load balancer's address) with the Tenant URL's host as SNI and Host, as
`curl --resolve` does, verifying the certificate for that host against the system's trust
store (what Entra trusts: public CAs) or JOYN_OPERATOR_ROUTE_CHECK_CA_FILE (a private CA, on a
test or internal cluster). Not the Certificate's own ca.crt: a certificate trusted only by
its own CA would pass here and fail in Entra.

Cheap for hundreds of tenants: only tenants whose children are otherwise ready are checked,
each once per period (JOYN_OPERATOR_ROUTE_CHECK_SECONDS) and at once when it becomes ready or
its URL changes, a few at a time; a tenant is reconciled again only when its result changes.
Off when no address is configured. The token is sent and never kept or reported: a result
carries the HTTP status or the transport error only.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx

from .config import OperatorConfig
from .kube import path, secret_data

log = logging.getLogger("joyn_operator")
CHECKS_AT_ONCE = 8  # requests in flight over all tenants
TIMEOUT_SECONDS = 10.0  # Entra's own Test Connection gives up after about this long
SCIM_JSON = "application/scim+json"

Key = tuple[str, str]  # (namespace, tenant)
Problem = tuple[str, str] | None


@dataclass(frozen=True)
class Target:
    """What to check for one tenant: its Tenant URL and where its token is."""

    url: str
    namespace: str
    secret: str
    key: str


@dataclass(frozen=True)
class Result:
    ok: bool
    message: str  # the same words for the same outcome, so an unchanged result writes nothing


def request_url(address: str, url: str) -> tuple[str, str, str]:
    """(the URL to send to `address`, the Host header, the SNI name) for Tenant URL `url`."""
    parts = urlsplit(url)
    default_port = 443 if parts.scheme == "https" else 80
    if not urlsplit(f"//{address}").port:
        address = f"{address}:{default_port}"
    return (f"{parts.scheme}://{address}{parts.path.rstrip('/')}/Users", parts.netloc,
            parts.hostname or "")


async def check_route(client: httpx.AsyncClient, address: str, url: str,
                          token: str) -> Result:
    """Entra's Test Connection for Tenant URL `url`, sent to the ingress controller at
    `address`."""
    target, host_header, sni = request_url(address, url)
    what = (f"Test Connection (GET {url.rstrip('/')}/Users?filter=userName eq <random>) "
            f"through the ingress controller at {address}")
    try:
        r = await client.get(
            target, params={"filter": f'userName eq "{uuid.uuid4()}"'},
            headers={"Host": host_header, "Authorization": f"Bearer {token}",
                     "Accept": SCIM_JSON},
            extensions={"sni_hostname": sni} if url.startswith("https:") else {})
    except httpx.TimeoutException:
        return Result(False, f"{what}: no answer within {TIMEOUT_SECONDS:g} s (is the server's "
                      "NetworkPolicy admitting the ingress controller? spec.networkPolicy)")
    except httpx.HTTPError as e:
        # A TLS failure names itself here (certificate verify failed: hostname mismatch, ...).
        return Result(False, f"{what}: {e.__class__.__name__}: {e}")
    if r.status_code == 200:
        return Result(True, f"{what}: 200")
    hint = {401: ": the server refused the tenant's token",
            404: ": the ingress controller has no route for this host and path",
            502: ": the ingress controller cannot reach the server (NetworkPolicy?)",
            503: ": the ingress controller has no ready server behind the route",
            504: ": the ingress controller's request to the server timed out "
                 "(NetworkPolicy?)"}.get(r.status_code, "")
    return Result(False, f"{what}: HTTP {r.status_code}{hint}")


class RouteChecker:
    """The checks' state in the operator: which tenants are due, and their last results.

    `wake(key)` is called when a tenant's result changes, to reconcile it (its status then
    reads problem())."""

    def __init__(self, cfg: OperatorConfig, kube, wake: Callable[[Key], Awaitable[None]],
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.address = cfg.route_check_address or ""
        self.period = cfg.route_check_seconds
        self.cafile = cfg.route_check_ca_file
        self.kube, self.wake, self.clock = kube, wake, clock
        self.targets: dict[Key, Target] = {}
        self.results: dict[Key, Result] = {}
        self.checked: dict[Key, float] = {}
        self.running: set[Key] = set()
        self._kick = asyncio.Event()
        self._gate = asyncio.Semaphore(CHECKS_AT_ONCE)
        self._tasks: set[asyncio.Task] = set()

    def problem(self, key: Key, target: Target | None) -> Problem:
        """For the reconcile: the route problem of tenant `key`, whose children are otherwise
        ready when `target` is given (it is checked from now on) and not when None (it is not
        checked, and its old result is dropped)."""
        if target is None:
            self.forget(key)
            return None
        if self.targets.get(key) != target:
            self.targets[key] = target
            self.results.pop(key, None)
            self.checked.pop(key, None)
            self._kick.set()
        result = self.results.get(key)
        if result is None:
            return ("RoutePending", "The operator is sending Entra's Test Connection through "
                    f"the ingress controller at {self.address}")
        return None if result.ok else ("RouteUnreachable", result.message)

    def forget(self, key: Key) -> None:
        for d in (self.targets, self.results, self.checked):
            d.pop(key, None)

    def _due(self, now: float) -> list[Key]:
        return [k for k in self.targets if k not in self.running
                and (k not in self.checked or now - self.checked[k] >= self.period)]

    async def run(self) -> None:
        verify = ssl.create_default_context(cafile=self.cafile)
        async with httpx.AsyncClient(verify=verify, timeout=TIMEOUT_SECONDS) as client:
            while True:
                self._kick.clear()
                now = self.clock()
                for key in self._due(now):
                    self.running.add(key)
                    task = asyncio.create_task(self._check(client, key, self.targets[key]))
                    self._tasks.add(task)
                    task.add_done_callback(self._tasks.discard)
                waits = [self.checked[k] + self.period - now for k in self.targets
                         if k in self.checked and k not in self.running]
                try:
                    await asyncio.wait_for(self._kick.wait(), max(min(waits, default=self.period),
                                                                  0.5))
                except TimeoutError:
                    pass

    async def _check(self, client: httpx.AsyncClient, key: Key, target: Target) -> None:
        try:
            async with self._gate:
                secret = await self.kube.get(path("Secret", target.namespace, target.secret))
                token = secret_data(secret).get(target.key, "").strip()
                result = await check_route(client, self.address, target.url, token) \
                    if token else Result(False, f"Secret {target.secret} holds no token to "
                                                "send")
        except Exception as e:  # a check must never stop the others
            result = Result(False, f"the check failed: {e.__class__.__name__}")
        finally:
            self.running.discard(key)
            self._kick.set()
        if self.targets.get(key) != target:
            return  # changed or gone while it ran: the new target gets its own check
        before = self.results.get(key)
        self.results[key] = result
        self.checked[key] = self.clock()
        if before != result:
            log.info("route checked", extra={"tenant": f"{key[0]}/{key[1]}", "ok": result.ok})
            try:
                await self.wake(key)
            except Exception as e:  # the next resync writes it
                log.warning("reconcile after a route check failed",
                            extra={"tenant": f"{key[0]}/{key[1]}", "error": str(e)})
