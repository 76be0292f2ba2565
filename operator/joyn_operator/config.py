"""Every operator-wide setting, typed, parsed once at start-up from JOYN_OPERATOR_* variables
(the Helm chart sets each from one value; see charts/joyn-scim/values.yaml) and the command
line. Nothing else in the operator reads the environment.
"""

from __future__ import annotations

import ipaddress
import json
import os
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from .defaults import OPERATOR_DEFAULTS, SPEC_DEFAULTS
from .rollout import POLICIES, RolloutPolicy

ENV_PREFIX = "JOYN_OPERATOR_"
LOG_LEVELS = ("debug", "info", "warning", "error")


class ConfigError(ValueError):
    """A setting that cannot be used; the message names the variable."""


@dataclass(frozen=True)
class OperatorConfig:
    server_image: str = "joyn-scim:latest"  # the chart sets the operator's own image
    # How running servers move to a new server_image (rollout.py); new servers start on it.
    rollout: RolloutPolicy = field(default_factory=RolloutPolicy)
    # Operator-wide defaults of OPERATOR_DEFAULTS, keyed by the dotted path under spec.
    tenant_defaults: dict[str, object] = field(default_factory=dict)
    domain: str | None = None  # tenants without spec.ingress.host get <name>.<domain>
    url_scheme: str = "https"  # the scheme Entra uses; TLS may end before the Ingress
    ingress_class: str | None = None
    ingress_annotations: dict[str, str] = field(default_factory=dict)
    tls_issuer: dict | None = None  # cert-manager issuerRef {name, kind, group}
    ingress_namespace: str = "ingress-nginx"  # admitted by each tenant's NetworkPolicy
    # NetworkPolicy peers (namespaceSelector, podSelector, ipBlock) admitted instead of
    # ingress_namespace: a controller's pods only, or a load balancer sending from outside.
    ingress_from: tuple[dict, ...] = ()
    # The operator's Test Connection through the ingress controller (route.py): where to send
    # it (host:port of the controller's Service or load balancer); empty: no check.
    route_check_address: str | None = None
    route_check_ca_file: str | None = None  # else the system's trust store (Entra's: public)
    route_check_seconds: float = 300.0  # each ready tenant's route is checked this often
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

        def number(name: str, default, parse=float, what: str = "a number"):
            text = get(name)
            try:
                return parse(text) if text else default
            except ValueError:
                raise ConfigError(f"{ENV_PREFIX}{name}: not {what}: {text!r}") from None
        config = cls(
            server_image=get("SERVER_IMAGE") or cls.server_image,
            rollout=RolloutPolicy(
                policy=get("SERVER_IMAGE_ROLLOUT") or RolloutPolicy.policy,
                batch_size=number("SERVER_IMAGE_BATCH_SIZE", RolloutPolicy.batch_size, int,
                                  "a whole number")),
            tenant_defaults=parse_tenant_defaults(get("TENANT_DEFAULTS")),
            domain=get("DOMAIN"),
            url_scheme=get("URL_SCHEME") or cls.url_scheme,
            ingress_class=get("INGRESS_CLASS"),
            ingress_annotations=parse_annotations(get("INGRESS_ANNOTATIONS")),
            tls_issuer=issuer,
            ingress_namespace=get("INGRESS_NAMESPACE") or cls.ingress_namespace,
            ingress_from=parse_peers(get("INGRESS_FROM"), f"{ENV_PREFIX}INGRESS_FROM"),
            route_check_address=get("ROUTE_CHECK_ADDRESS"),
            route_check_ca_file=get("ROUTE_CHECK_CA_FILE"),
            route_check_seconds=number("ROUTE_CHECK_SECONDS", cls.route_check_seconds),
            monitoring_namespace=get("MONITORING_NAMESPACE"),
            watch_namespaces=split_list(get("WATCH_NAMESPACES")),
            resync_seconds=number("RESYNC_SECONDS", cls.resync_seconds),
            activity_seconds=number("ACTIVITY_SECONDS", cls.activity_seconds),
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
        if self.route_check_seconds <= 0:
            raise ConfigError(f"{ENV_PREFIX}ROUTE_CHECK_SECONDS: must be above 0")
        if self.route_check_address and not _host_port(self.route_check_address):
            raise ConfigError(f"{ENV_PREFIX}ROUTE_CHECK_ADDRESS: {self.route_check_address!r} "
                              "is not host:port (e.g. ingress-nginx-controller.ingress-nginx"
                              ".svc:443)")
        if self.rollout.policy not in POLICIES:
            raise ConfigError(f"{ENV_PREFIX}SERVER_IMAGE_ROLLOUT: {self.rollout.policy!r} is not "
                              f"one of {', '.join(POLICIES)}")
        if self.rollout.batch_size < 1:
            raise ConfigError(f"{ENV_PREFIX}SERVER_IMAGE_BATCH_SIZE: must be 1 or more")

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


# The JSON type each operator-wide default must have (the CRD checks a tenant's own values; the
# chart's values.schema.json checks these in more detail before they get here).
_DEFAULT_TYPES = {"server.resources": dict, "server.nodeSelector": dict,
                  "server.tolerations": list, "server.affinity": dict,
                  "server.topologySpreadConstraints": list, "server.priorityClassName": str,
                  "server.podLabels": dict, "server.podAnnotations": dict,
                  "server.imagePullSecrets": list, "storage.size": str,
                  "storage.storageClassName": str}
assert set(_DEFAULT_TYPES) == set(OPERATOR_DEFAULTS)


def parse_tenant_defaults(text: str | None) -> dict[str, object]:
    """JOYN_OPERATOR_TENANT_DEFAULTS: a JSON object shaped like a tenant's spec,
    {"server": {"resources": ..., ...}, "storage": {"size": ...}}, as {"server.resources": ...}.
    An empty value ({}, [], "") sets no default, so the chart's empty placeholders mean nothing."""
    name = f"{ENV_PREFIX}TENANT_DEFAULTS"
    if not text:
        return {}
    try:
        value = json.loads(text)
    except ValueError as e:
        raise ConfigError(f"{name}: not JSON: {e}") from None
    if not isinstance(value, dict) or not all(isinstance(v, dict) for v in value.values()):
        raise ConfigError(f"{name}: must be an object of objects, like a tenant's spec")
    out: dict[str, object] = {}
    for section, fields in value.items():
        for key, item in fields.items():
            dotted = f"{section}.{key}"
            if dotted not in _DEFAULT_TYPES:
                raise ConfigError(f"{name}: {dotted} cannot be defaulted; one of "
                                  f"{', '.join(OPERATOR_DEFAULTS)}")
            if item in ({}, [], "", None):
                continue
            if not isinstance(item, _DEFAULT_TYPES[dotted]):
                raise ConfigError(f"{name}: {dotted} must be a JSON "
                                  f"{_DEFAULT_TYPES[dotted].__name__}")
            if dotted == "server.imagePullSecrets" and not all(
                    isinstance(s, dict) and isinstance(s.get("name"), str) and s["name"]
                    for s in item):
                raise ConfigError(f"{name}: server.imagePullSecrets must be a list of {{name}}")
            out[dotted] = item
    return out


def _host_port(address: str) -> bool:
    try:
        parts = urlsplit(f"//{address}")
        return bool(parts.hostname) and parts.port is not None and not parts.path
    except ValueError:
        return False


PEER_KEYS = ("namespaceSelector", "podSelector", "ipBlock")
SELECTOR_OPERATORS = ("In", "NotIn", "Exists", "DoesNotExist")


def parse_peers(text: str | None, name: str) -> tuple[dict, ...]:
    """A JSON list of NetworkPolicy peers (networking.k8s.io/v1 NetworkPolicyPeer), checked
    here so that a mistake stops the operator at start-up, naming the variable, rather than
    failing each tenant's NetworkPolicy. Mirrors what the CRD checks for a tenant's own."""
    if not text:
        return ()
    try:
        value = json.loads(text)
    except ValueError as e:
        raise ConfigError(f"{name}: not JSON: {e}") from None
    if not isinstance(value, list):
        raise ConfigError(f"{name}: must be a list of NetworkPolicy peers")
    for i, peer in enumerate(value):
        where = f"{name}[{i}]"
        if not isinstance(peer, dict) or not peer or set(peer) - set(PEER_KEYS):
            raise ConfigError(f"{where}: must have one or more of {', '.join(PEER_KEYS)} and "
                              "nothing else")
        if "ipBlock" in peer:
            if len(peer) > 1:
                raise ConfigError(f"{where}: ipBlock cannot be combined with a selector")
            block = peer["ipBlock"]
            if not isinstance(block, dict) or set(block) - {"cidr", "except"}:
                raise ConfigError(f"{where}.ipBlock: must have cidr and optionally except")
            for cidr in [block.get("cidr"), *(block.get("except") or [])]:
                try:
                    ipaddress.ip_network(cidr)
                except (TypeError, ValueError):
                    raise ConfigError(f"{where}.ipBlock: {cidr!r} is not a CIDR such as "
                                      "10.0.0.0/16") from None
        for key in ("namespaceSelector", "podSelector"):
            if key in peer and not _selector(peer[key]):
                raise ConfigError(f"{where}.{key}: must be a label selector (matchLabels "
                                  "and/or matchExpressions)")
    return tuple(value)


def _selector(sel) -> bool:
    if not isinstance(sel, dict) or set(sel) - {"matchLabels", "matchExpressions"}:
        return False
    labels = sel.get("matchLabels", {})
    exprs = sel.get("matchExpressions", [])
    return isinstance(labels, dict) and all(isinstance(v, str) for v in labels.values()) and \
        isinstance(exprs, list) and all(
            isinstance(e, dict) and isinstance(e.get("key"), str)
            and e.get("operator") in SELECTOR_OPERATORS for e in exprs)


def metrics_host_port(address: str) -> tuple[str, int]:
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise ConfigError(f"{ENV_PREFIX}METRICS_ADDRESS: {address!r} is not host:port")
    return host.strip("[]") or "0.0.0.0", int(port)  # noqa: S104 - a pod listens on all
