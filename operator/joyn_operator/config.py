"""Operator-wide configuration, from the environment (the Helm chart sets it)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field


@dataclass(frozen=True)
class OperatorConfig:
    server_image: str = "joyn-scim:latest"
    domain: str | None = None  # tenants without spec.ingress.host get <name>.<domain>
    url_scheme: str = "https"  # the scheme Entra uses; TLS may end before the Ingress
    ingress_class: str | None = None
    ingress_annotations: dict[str, str] = field(default_factory=dict)
    tls_issuer: dict | None = None  # cert-manager issuerRef {name, kind, group}
    ingress_namespace: str = "ingress-nginx"  # admitted by each tenant's NetworkPolicy
    watch_namespaces: tuple[str, ...] = ()  # empty: all namespaces
    resync_seconds: float = 300.0  # safety-net reconcile of every tenant

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> OperatorConfig:
        """JOYN_OPERATOR_* variables; unset ones keep the defaults above."""
        env = dict(os.environ if env is None else env)

        def get(name: str) -> str | None:
            value = env.get(f"JOYN_OPERATOR_{name}", "").strip()
            return value or None

        issuer = None
        if get("TLS_ISSUER"):
            issuer = {"name": get("TLS_ISSUER"),
                      "kind": get("TLS_ISSUER_KIND") or "ClusterIssuer",
                      "group": get("TLS_ISSUER_GROUP") or "cert-manager.io"}
        annotations = {}
        for pair in (get("INGRESS_ANNOTATIONS") or "").split(","):
            key, sep, value = pair.partition("=")
            if sep and key.strip():
                annotations[key.strip()] = value.strip()
        return cls(
            server_image=get("SERVER_IMAGE") or cls.server_image,
            domain=get("DOMAIN"),
            url_scheme=get("URL_SCHEME") or cls.url_scheme,
            ingress_class=get("INGRESS_CLASS"),
            ingress_annotations=annotations,
            tls_issuer=issuer,
            ingress_namespace=get("INGRESS_NAMESPACE") or cls.ingress_namespace,
            resync_seconds=float(get("RESYNC_SECONDS") or cls.resync_seconds),
            watch_namespaces=tuple(n.strip() for n in (get("WATCH_NAMESPACES") or "").split(",")
                                   if n.strip()),
        )
