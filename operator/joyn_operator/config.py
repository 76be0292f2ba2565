"""Every operator-wide setting, typed, parsed once at start-up from JOYN_OPERATOR_* variables
(the Helm chart sets each from one value; see charts/joyn-scim/values.yaml) and the command
line. Nothing else in the operator reads the environment.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field

from .defaults import SPEC_DEFAULTS

ENV_PREFIX = "JOYN_OPERATOR_"
LOG_LEVELS = ("debug", "info", "warning", "error")


class ConfigError(ValueError):
    """A setting that cannot be used; the message names the variable."""


@dataclass(frozen=True)
class OperatorConfig:
    server_image: str = "joyn-scim:latest"  # the chart sets the operator's own image
    domain: str | None = None  # tenants without spec.ingress.host get <name>.<domain>
    url_scheme: str = "https"  # the scheme Entra uses; TLS may end before the Ingress
    ingress_class: str | None = None
    ingress_annotations: dict[str, str] = field(default_factory=dict)
    tls_issuer: dict | None = None  # cert-manager issuerRef {name, kind, group}
    ingress_namespace: str = "ingress-nginx"  # admitted by each tenant's NetworkPolicy
    monitoring_namespace: str | None = None  # also admitted, to scrape the servers' /metrics
    watch_namespaces: tuple[str, ...] = ()  # empty: all namespaces; globs allowed
    resync_seconds: float = 300.0  # safety-net reconcile of every tenant
    activity_seconds: float = 60.0  # how often each server's /metrics is read; 0: never
    # Where the operator itself runs (the chart sets both): each tenant's NetworkPolicy admits
    # exactly these pods, to read /metrics. Unset (an operator out of the cluster): no rule.
    pod_namespace: str | None = None
    pod_labels: dict[str, str] = field(default_factory=dict)
    log_level: str = "info"
    metrics_address: str = "0.0.0.0:8080"  # host:port of /metrics; empty: no metrics
    liveness_endpoint: str = "http://0.0.0.0:8081/healthz"  # kopf's probe; empty: none
    kubeconfig: str | None = None  # else $KUBECONFIG, the in-cluster account, ~/.kube/config
    context: str | None = None  # a kubeconfig context other than the current one

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> OperatorConfig:
        """JOYN_OPERATOR_<FIELD> for each field; unset or empty ones keep the defaults."""
        env = dict(os.environ if env is None else env)

        def get(name: str) -> str | None:
            value = env.get(f"{ENV_PREFIX}{name}", "").strip()
            return value or None

        issuer = None
        if get("TLS_ISSUER"):
            issuer = {"name": get("TLS_ISSUER"),
                      "kind": get("TLS_ISSUER_KIND") or SPEC_DEFAULTS["ingress.tls.issuerRef.kind"],
                      "group": get("TLS_ISSUER_GROUP")
                      or SPEC_DEFAULTS["ingress.tls.issuerRef.group"]}
        def seconds(name: str, default: float) -> float:
            text = get(name)
            try:
                return float(text) if text else default
            except ValueError:
                raise ConfigError(f"{ENV_PREFIX}{name}: not a number: {text!r}") from None
        config = cls(
            server_image=get("SERVER_IMAGE") or cls.server_image,
            domain=get("DOMAIN"),
            url_scheme=get("URL_SCHEME") or cls.url_scheme,
            ingress_class=get("INGRESS_CLASS"),
            ingress_annotations=parse_annotations(get("INGRESS_ANNOTATIONS")),
            tls_issuer=issuer,
            ingress_namespace=get("INGRESS_NAMESPACE") or cls.ingress_namespace,
            monitoring_namespace=get("MONITORING_NAMESPACE"),
            watch_namespaces=split_list(get("WATCH_NAMESPACES")),
            resync_seconds=seconds("RESYNC_SECONDS", cls.resync_seconds),
            activity_seconds=seconds("ACTIVITY_SECONDS", cls.activity_seconds),
            pod_namespace=get("POD_NAMESPACE"),
            pod_labels=parse_annotations(get("POD_LABELS"), "POD_LABELS"),
            log_level=(get("LOG_LEVEL") or cls.log_level).lower(),
            # These two may be set to "" on purpose (turned off), so unset differs from empty.
            metrics_address=env.get(f"{ENV_PREFIX}METRICS_ADDRESS", cls.metrics_address).strip(),
            liveness_endpoint=env.get(f"{ENV_PREFIX}LIVENESS_ENDPOINT",
                                      cls.liveness_endpoint).strip(),
            kubeconfig=get("KUBECONFIG"),
            context=get("CONTEXT"),
        )
        config.validate()
        return config

    def validate(self) -> None:
        if self.log_level not in LOG_LEVELS:
            raise ConfigError(f"{ENV_PREFIX}LOG_LEVEL: {self.log_level!r} is not one of "
                              f"{', '.join(LOG_LEVELS)}")
        if self.url_scheme not in ("http", "https"):
            raise ConfigError(f"{ENV_PREFIX}URL_SCHEME: {self.url_scheme!r} is not http or https")
        if self.resync_seconds <= 0:
            raise ConfigError(f"{ENV_PREFIX}RESYNC_SECONDS: must be above 0")
        if self.activity_seconds < 0:
            raise ConfigError(f"{ENV_PREFIX}ACTIVITY_SECONDS: must be 0 (off) or more")
        if self.metrics_address:
            metrics_host_port(self.metrics_address)

    @property
    def clusterwide(self) -> bool:
        return not self.watch_namespaces

    @property
    def namespace_globs(self) -> bool:
        """Whether a watched namespace is a pattern (kopf must then list and watch namespaces)."""
        return any(is_glob(p) for p in self.watch_namespaces)


def is_glob(pattern: str) -> bool:
    return any(c in pattern for c in "*?[")


def split_list(text: str | None) -> tuple[str, ...]:
    return tuple(part.strip() for part in (text or "").split(",") if part.strip())


def parse_annotations(text: str | None, name: str = "INGRESS_ANNOTATIONS") -> dict[str, str]:
    """A JSON object (what the chart writes), or `k=v,k2=v2` (handy on a command line); `name`
    is the variable's, for the error."""
    if not text:
        return {}
    if text.lstrip().startswith("{"):
        try:
            value = json.loads(text)
        except ValueError as e:
            raise ConfigError(f"{ENV_PREFIX}{name}: not JSON: {e}") from None
        if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
            raise ConfigError(f"{ENV_PREFIX}{name}: must map names to strings")
        return value
    out = {}
    for pair in text.split(","):
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"{ENV_PREFIX}{name}: {pair!r} is not key=value")
        out[key.strip()] = value.strip()
    return out


def metrics_host_port(address: str) -> tuple[str, int]:
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise ConfigError(f"{ENV_PREFIX}METRICS_ADDRESS: {address!r} is not host:port")
    return host.strip("[]") or "0.0.0.0", int(port)  # noqa: S104 - a pod listens on all
