"""One login to the Kubernetes API, shared by kopf (`@kopf.on.login`, handlers.py) and the
operator's own calls (kube.py), so both always hold the same identity.

Built on `kubernetes_asyncio`, the asyncio port of the design card's `kubernetes` package (the
same config loaders): kopf and the operator run on asyncio, and the synchronous package would
block the event loop while an exec plugin runs. Its loaders understand what real clusters'
kubeconfigs hold: exec credential plugins (EKS, GKE, AKS), client certificates, `tokenFile`,
the OIDC auth-provider, and the in-cluster ServiceAccount.

Credentials are re-read every minute, as client-go does for token files: the in-cluster token
the kubelet rewrites, a kubeconfig's `tokenFile`, a kubeconfig edited in place. An exec plugin
runs again only when the token it gave expires. After a 401, everything is loaded afresh.
"""

from __future__ import annotations

import asyncio
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import kopf
from kubernetes_asyncio.client import Configuration
from kubernetes_asyncio.config import ConfigException, load_kube_config
from kubernetes_asyncio.config.incluster_config import InClusterConfigLoader

SA_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
REFRESH = timedelta(minutes=1)


class LoginError(RuntimeError):
    """No usable credentials; the message says where they were looked for."""


def _tls(cfg: Configuration) -> tuple:
    return (cfg.host, cfg.ssl_ca_cert, cfg.cert_file, cfg.key_file, cfg.verify_ssl,
            cfg.tls_server_name, cfg.proxy)


class Login:
    """Where the credentials come from, and the current ones.

    `configuration` is replaced by a new object only when the connection itself changes
    (server, CA, client certificate); a new token is written into it in place. Holders of an API
    client compare it by identity to know when to build a new one."""

    def __init__(self, kubeconfig: str | None = None, context: str | None = None,
                 environ: dict[str, str] | None = None, sa_dir: Path = SA_DIR) -> None:
        self.environ = dict(os.environ if environ is None else environ)
        self.kubeconfig = kubeconfig or self.environ.get("KUBECONFIG") or None
        self.context = context
        self.sa_dir = sa_dir
        self.in_cluster = (not self.kubeconfig and bool(self.environ.get(
            "KUBERNETES_SERVICE_HOST")) and (sa_dir / "token").exists())
        self.configuration: Configuration | None = None
        self.expires: datetime | None = None
        self._loader = None  # the kubeconfig loader, kept so an exec plugin's token is reused
        self._lock: asyncio.Lock | None = None

    @property
    def source(self) -> str:
        if self.in_cluster:
            return f"the in-cluster ServiceAccount ({self.sa_dir})"
        where = self.kubeconfig or "~/.kube/config"
        return f"kubeconfig {where}" + (f", context {self.context}" if self.context else "")

    @property
    def due(self) -> bool:
        """Whether the credentials are to be read again (never read, or a minute has passed)."""
        return self.expires is None or datetime.now(UTC) >= self.expires

    async def refresh(self, force: bool = False) -> Configuration:
        """The current configuration, loaded again when it is due (or `force`d: after a 401)."""
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if force or self.configuration is None or self.due:
                await self._load(force)
        assert self.configuration is not None
        return self.configuration

    async def _load(self, force: bool) -> None:
        cfg = Configuration()
        try:
            if self.in_cluster:
                # try_refresh_token=False: the refresh is ours, on the same schedule for all.
                InClusterConfigLoader(token_filename=str(self.sa_dir / "token"),
                                      cert_filename=str(self.sa_dir / "ca.crt"),
                                      try_refresh_token=False,
                                      environ=self.environ).load_and_set(cfg)
            elif self._loader is None or force:
                self._loader = await load_kube_config(
                    config_file=self.kubeconfig, context=self.context, client_configuration=cfg,
                    persist_config=False)
            else:
                await self._loader.load_and_set(cfg)
        except (ConfigException, OSError, KeyError, TypeError, AssertionError) as e:
            # The loaders' messages name files and fields, never a credential's value.
            raise LoginError(f"cannot log in with {self.source}: {e}") from None
        expires = datetime.now(UTC) + REFRESH
        exec_expiry = getattr(self._loader, "exec_plugin_expiry", None) \
            if not self.in_cluster else None
        if exec_expiry is not None:
            expires = min(expires, exec_expiry.astimezone(UTC))
        self.expires = expires
        if self.configuration is not None and _tls(self.configuration) == _tls(cfg):
            self.configuration.api_key = cfg.api_key
        else:
            self.configuration = cfg

    def connection_info(self) -> kopf.ConnectionInfo:
        """The current credentials in kopf's terms, expiring when ours are next re-read."""
        cfg = self.configuration
        assert cfg is not None, "refresh() first"
        # The loaders keep "<scheme> <credential>" here: Bearer, or Basic for a kubeconfig's
        # username and password.
        scheme, _, token = (cfg.api_key.get("BearerToken") or "").strip().partition(" ")
        return kopf.ConnectionInfo(
            server=cfg.host, ca_path=cfg.ssl_ca_cert, insecure=not cfg.verify_ssl,
            scheme=scheme or None, token=token.strip() or None,
            certificate_path=cfg.cert_file, private_key_path=cfg.key_file,
            proxy_url=cfg.proxy, expiration=self.expires)
