"""A tenant resolved: its spec plus the operator's defaults, computed once per reconcile.

Every name, the host, the Tenant URL, TLS, retention and the server's settings are decided
here and nowhere else; the manifest templates (templates/, rendered by desired.py) only place
these values, and the reconcile and status code read them from here.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from datetime import timedelta

from scim_server.durations import parse_duration

from . import GROUP, KIND, VERSION
from .config import OperatorConfig
from .defaults import spec_value, tenant_value
from .keys import (
    APP_NAME,
    CLUSTER_ISSUER_ANNOTATION,
    COMPONENT_LABEL,
    INSTANCE_LABEL,
    ISSUER_ANNOTATION,
    ISSUER_GROUP_ANNOTATION,
    ISSUER_KIND_ANNOTATION,
    MANAGED_BY,
    MANAGED_BY_LABEL,
    NAME_LABEL,
    PAUSED_ANNOTATION,
    REPLACED_ACK_ANNOTATION,
    ROTATE_ANNOTATION,
    ROTATE_EVENTS_TOKEN_ANNOTATION,
    ROTATE_EVENTS_TOKEN_OVERLAP_ANNOTATION,
    ROTATE_OVERLAP_ANNOTATION,
    ROTATE_SIGNING_KEY_ANNOTATION,
    ROTATE_SIGNING_KEY_OVERLAP_ANNOTATION,
    SERVER_COMPONENT,
    TOKEN_KEY,
    UPDATE_SERVER_IMAGE_ANNOTATION,
)


@dataclass(frozen=True)
class Names:
    """The children's names, all derived from the tenant's."""

    deployment: str
    service: str
    ingress: str
    network_policy: str
    pvc: str
    secret: str
    tls: str
    # The event stream's credentials, apart on purpose: the application team is given the
    # receiver's token, and nobody but the server ever reads the signing key.
    events_token: str
    signing_key: str
    # The connection Secret the operator makes for a tenant on a CloudNativePG cluster.
    database: str
    disruption_budget: str

    @classmethod
    def of(cls, tenant: str) -> Names:
        base = f"{tenant}-scim"
        return cls(deployment=base, service=base, ingress=base, network_policy=base,
                   pvc=f"{base}-data", secret=f"{base}-token", tls=f"{tenant}-tls",
                   events_token=f"{base}-events-token",
                   signing_key=f"{base}-events-signing-key",
                   database=f"{base}-database", disruption_budget=base)

    def of_kind(self, kind: str) -> str:
        return {"Deployment": self.deployment, "Service": self.service, "Ingress": self.ingress,
                "NetworkPolicy": self.network_policy, "PersistentVolumeClaim": self.pvc,
                "PodDisruptionBudget": self.disruption_budget, "Secret": self.secret}[kind]


SELECTOR_KEYS = (NAME_LABEL, INSTANCE_LABEL)  # the labels that select a tenant's pods
PG_NAME_MAX = 63  # PostgreSQL's identifier length (NAMEDATALEN - 1)


def pg_name(namespace: str, tenant: str) -> str:
    """The tenant's role and database name in a shared CloudNativePG cluster: unique across
    namespaces, a plain identifier (no quoting needed: lower case, digits, _), at most 63
    bytes (a longer one ends in a hash of the whole, so two never meet)."""
    name = f"scim_{namespace}_{tenant}".replace("-", "_")
    if len(name) <= PG_NAME_MAX:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:10]
    return f"{name[:PG_NAME_MAX - 11]}_{digest}"


@dataclass(frozen=True)
class Issuer:
    """A cert-manager issuer."""

    name: str
    kind: str
    group: str

    def annotations(self) -> dict[str, str]:
        """What cert-manager's ingress-shim reads from the Ingress to issue its certificate."""
        key = CLUSTER_ISSUER_ANNOTATION if self.kind == "ClusterIssuer" else ISSUER_ANNOTATION
        out = {key: self.name}
        if self.group != "cert-manager.io":  # an external issuer (e.g. step-issuer)
            out[ISSUER_GROUP_ANNOTATION] = self.group
            out[ISSUER_KIND_ANNOTATION] = self.kind
        return out


@dataclass(frozen=True)
class TLS:
    secret_name: str
    issuer: Issuer | None  # None: the Secret is the user's own (spec.ingress.tls.secretName)


@dataclass(frozen=True)
class Ingress:
    wanted: bool  # spec.ingress.enabled
    host: str | None  # None when neither spec.ingress.host nor the operator's domain is set
    path: str
    class_name: str | None
    annotations: dict[str, str]  # the operator's, then the tenant's, then cert-manager's
    labels: dict[str, str]  # the tenant's extra labels, under the standard ones
    tls: TLS | None

    @property
    def managed(self) -> bool:
        """Whether the operator creates an Ingress (it needs a host for the rule)."""
        return self.wanted and self.host is not None


@dataclass(frozen=True)
class Cluster:
    """A CloudNativePG cluster the operator makes the tenant's role and database in."""

    name: str
    namespace: str
    role: str  # the tenant's role, and its database's name (pg_name)
    database_object: str  # the Database object's name, in the cluster's namespace
    password_secret: str  # the role's password Secret, in the cluster's namespace

    @property
    def host(self) -> str:
        """The cluster's read-write Service: always the primary."""
        return f"{self.name}-rw.{self.namespace}.svc"


@dataclass(frozen=True)
class Postgres:
    """spec.storage.postgresql: the Secret the server connects with (the tenant's own, or
    the one the operator makes for a CloudNativePG cluster), and which of its keys it reads:
    host, port, dbname, the user key and password as libpq's PG* variables (the password
    never part of a URI), or `uri` alone (with_connection decides from the Secret's keys)."""

    secret: str  # in the tenant's namespace
    cluster: Cluster | None  # None: the Secret is the platform team's (connectionSecretRef)
    user_key: str = "user"  # CloudNativePG's Secrets have both user and username
    uri_only: bool = False


CONNECTION_PARTS = ("host", "port", "dbname", "password")
CONNECTION_DIGEST_ANNOTATION = "scim.sevenlakes.com/connection-digest"


def with_connection(t: ResolvedTenant, secret: dict | None) -> ResolvedTenant:
    """`t` reading the keys its connection Secret has (the names only: the values are the
    server's). A missing or unusable Secret keeps the defaults; connection_problem says why."""
    pg = t.storage.postgres
    if pg is None or secret is None:
        return t
    data = secret.get("data") or {}
    keys = set(data)
    if "host" not in keys and "uri" in keys:
        pg = dataclasses.replace(pg, uri_only=True)
    elif "user" not in keys and "username" in keys:
        pg = dataclasses.replace(pg, user_key="username")
    # The server reads the Secret's values into its environment when it starts: a digest of
    # them on the pod rolls the server when they change (a corrected password, a moved host),
    # and says nothing of the values themselves.
    digest = hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]
    server = dataclasses.replace(t.server, pod_annotations={
        **(t.server.pod_annotations or {}), CONNECTION_DIGEST_ANNOTATION: digest})
    return dataclasses.replace(t, storage=dataclasses.replace(t.storage, postgres=pg),
                               server=server)


def connection_problem(t: ResolvedTenant, secret: dict | None) -> tuple[str, str] | None:
    """Why the server cannot connect with its connection Secret as it is, if it cannot."""
    pg = t.storage.postgres
    if pg is None or pg.cluster is not None:
        return None  # the operator's own Secret (checked by the reconcile that makes it)
    if secret is None:
        return ("DatabaseSecretMissing", f"Secret {pg.secret} (spec.storage.postgresql."
                "connectionSecretRef) does not exist: the server cannot reach its database")
    keys = set(secret.get("data") or {})
    if "host" not in keys and "uri" in keys:
        return None
    missing = [k for k in (*CONNECTION_PARTS, pg.user_key) if k not in keys]
    if missing:
        return ("DatabaseSecretInvalid", f"Secret {pg.secret} has no {', '.join(missing)}: it "
                "needs host, port, dbname, user (or username) and password, or uri, as "
                "CloudNativePG's <cluster>-app Secret has")
    return None


@dataclass(frozen=True)
class Storage:
    size: str
    class_name: str | None
    retained: bool  # deletionPolicy Retain: the claim and token Secret outlive the tenant
    # Which of "size" and "class_name" are defaults, not the tenant's: an existing claim keeps
    # its own (with_claim), so a changed operator default never resizes 200 volumes nor hits
    # the claim's immutable storage class.
    defaulted: tuple[str, ...] = ()
    postgres: Postgres | None = None  # None: SQLite on the tenant's volume


@dataclass(frozen=True)
class Server:
    image: str  # the image to run; the rollout (rollout.py) decides it from the two below
    spec_image: str | None  # spec.server.image
    default_image: str  # the operator's server image
    update_requested: bool  # the update-server-image annotation is "true"
    log_level: str
    resources: dict
    node_selector: dict | None
    tolerations: list | None
    affinity: dict | None
    topology_spread: list | None
    priority_class: str | None
    pod_labels: dict[str, str]  # the operator's, then the tenant's, then the standard ones
    pod_annotations: dict | None  # the operator's, then the tenant's
    image_pull_secrets: list | None  # [{name}]: the tenant's, else the operator's
    replicas: int = 1  # above 1 only with PostgreSQL (the CRD refuses it with SQLite)


@dataclass(frozen=True)
class Token:
    secret_name: str  # where the current token is: ours, or the user's own Secret
    key: str
    own: bool  # False: spec.token.existingSecretRef, which the operator only reads


@dataclass(frozen=True)
class Rotation:
    """A rotation request from the annotations: its id (a new value rotates once), the overlap
    it asks for, else the spec's, and why it is refused when the overlap is not a duration."""

    request: str | None
    overlap: timedelta
    invalid: str | None = None

    @classmethod
    def of(cls, annotations: dict[str, str], spec_overlap: timedelta,
           request_key: str = ROTATE_ANNOTATION, overlap_key: str = ROTATE_OVERLAP_ANNOTATION,
           what: str = "token") -> Rotation:
        text = annotations.get(overlap_key)
        request = annotations.get(request_key)
        if text is None:
            return cls(request, spec_overlap)
        try:
            return cls(request, parse_duration(text.strip()))
        except ValueError:
            return cls(request, spec_overlap,
                       f"The annotation {overlap_key}={text[:40]!r} is not a "
                       f"duration such as 24h or 90m; the {what} was not rotated")


@dataclass(frozen=True)
class Push:
    url: str
    authorization: tuple[str, str] | None  # (Secret, key) holding the Authorization value


@dataclass(frozen=True)
class Events:
    """spec.events when enabled: the server's stream settings, where its two credentials
    live, their rotation requests, and who may poll it."""

    audience: str
    retention: str  # a duration as the server reads it (336h)
    retention_count: int
    push: Push | None  # None: the application polls
    receivers: tuple[dict, ...]  # NetworkPolicy peers admitted to the server's port
    token_secret: str
    signing_key_secret: str
    token_rotation: Rotation
    key_rotation: Rotation


@dataclass(frozen=True)
class ResolvedTenant:
    name: str
    namespace: str
    uid: str
    generation: int
    paused: bool
    rotation: Rotation
    replaced_ack: str | None  # the acknowledge-token-replaced annotation
    names: Names
    labels: dict[str, str]
    selector: dict[str, str]
    owner: dict  # the ownerReference every owned child carries
    ingress: Ingress
    url: str | None  # the Tenant URL to paste into Entra
    storage: Storage
    server: Server
    token: Token
    admitted_namespaces: tuple[str, ...]  # by the NetworkPolicy; empty: no NetworkPolicy
    # The operator's own pods, also admitted (to read /metrics): (namespace, pod labels).
    admitted_operator: tuple[str, dict[str, str]] | None
    events: Events | None = None  # None: spec.events.enabled is false
    # NetworkPolicy peers of the ingress controller (spec.networkPolicy.ingressFrom, else the
    # operator's), admitted besides admitted_namespaces; empty: it is admitted by namespace.
    ingress_from: tuple[dict, ...] = ()

    @property
    def pod_selector(self) -> str:
        return ",".join(f"{k}={v}" for k, v in self.selector.items())

    @property
    def network_policy(self) -> bool:
        """Whether the tenant gets a NetworkPolicy (spec.networkPolicy.enabled)."""
        return bool(self.admitted_namespaces or self.ingress_from)


def references(t: ResolvedTenant) -> list[tuple[str, str, str]]:
    """(kind, namespace, name) of what the tenant needs but the operator does not make: a
    bring-your-own token Secret, a TLS Secret of the user's, the IngressClass, the Certificate
    cert-manager makes for the Ingress, a PostgreSQL connection Secret."""
    out = []
    if not t.token.own:
        out.append(("Secret", t.namespace, t.token.secret_name))
    if t.ingress.managed and t.ingress.tls and not t.ingress.tls.issuer:
        out.append(("Secret", t.namespace, t.ingress.tls.secret_name))
    if t.ingress.managed and t.ingress.tls and t.ingress.tls.issuer:
        out.append(("Certificate", t.namespace, t.ingress.tls.secret_name))
    if t.ingress.managed and t.ingress.class_name:
        out.append(("IngressClass", "", t.ingress.class_name))
    if t.events and t.events.push and t.events.push.authorization:
        out.append(("Secret", t.namespace, t.events.push.authorization[0]))
    pg = t.storage.postgres
    if pg is not None and pg.cluster is None:
        # The platform team's connection Secret: made later, or its password corrected,
        # the server is rolled onto it at once.
        out.append(("Secret", t.namespace, pg.secret))
    return out


def resolve(body: dict, cfg: OperatorConfig) -> ResolvedTenant:
    """The JoynScimTenant `body` with every default applied."""
    meta = body["metadata"]
    spec = body.get("spec") or {}
    annotations = meta.get("annotations") or {}
    name = meta["name"]
    names = Names.of(name)
    selector = {NAME_LABEL: APP_NAME, INSTANCE_LABEL: name}  # immutable in a Deployment
    labels = {**selector, COMPONENT_LABEL: SERVER_COMPONENT, MANAGED_BY_LABEL: MANAGED_BY}
    ingress = _ingress(spec, name, names, labels, cfg)
    url = None
    if ingress.host is not None:
        scheme = "https" if ingress.tls else cfg.url_scheme
        url = f"{scheme}://{ingress.host}{ingress.path}"
    byo = spec_value(spec, "token.existingSecretRef")
    admitted: tuple[str, ...] = ()
    ingress_from: tuple[dict, ...] = ()
    if spec_value(spec, "networkPolicy.enabled"):
        ingress_from, admitted = _ingress_admission(spec, cfg)
        if cfg.monitoring_namespace and cfg.monitoring_namespace not in admitted:
            admitted += (cfg.monitoring_namespace,)
    storage = _storage(spec, cfg, meta["namespace"], name, names)
    return ResolvedTenant(
        name=name, namespace=meta["namespace"], uid=meta["uid"],
        generation=meta.get("generation") or 0,
        paused=annotations.get(PAUSED_ANNOTATION) == "true",
        rotation=Rotation.of(annotations, parse_duration(
            spec_value(spec, "token.previousTokenValidFor"))),
        replaced_ack=annotations.get(REPLACED_ACK_ANNOTATION),
        names=names,
        labels=labels,
        selector=selector,
        owner={"apiVersion": f"{GROUP}/{VERSION}", "kind": KIND, "name": name,
               "uid": meta["uid"], "controller": True, "blockOwnerDeletion": True},
        ingress=ingress,
        url=url,
        storage=storage,
        server=_server(spec, annotations, labels, cfg, storage),
        token=Token(secret_name=byo["name"] if byo else names.secret,
                    key=spec_value(spec, "token.existingSecretRef.key") if byo else TOKEN_KEY,
                    own=not byo),
        admitted_namespaces=admitted,
        admitted_operator=(cfg.pod_namespace, cfg.pod_labels)
        if (admitted or ingress_from) and cfg.pod_namespace and cfg.pod_labels else None,
        events=_events(spec, names, annotations) if spec_value(spec, "events.enabled") else None,
        ingress_from=ingress_from,
    )


def _ingress_admission(spec: dict, cfg: OperatorConfig) -> tuple[tuple[dict, ...], tuple[str, ...]]:
    """(peers, namespaces) the NetworkPolicy admits the ingress controller by. The tenant's
    own setting wins over the operator's, and a list of peers (namespace and pod selectors, or
    an address block) over a namespace's name: the most specific the user wrote."""
    own_peers = spec_value(spec, "networkPolicy.ingressFrom")
    if own_peers:
        return tuple(own_peers), ()
    own_namespace = spec_value(spec, "networkPolicy.ingressNamespace")
    if own_namespace:
        return (), (own_namespace,)
    if cfg.ingress_from:
        return cfg.ingress_from, ()
    return (), (cfg.ingress_namespace,)


def _storage(spec: dict, cfg: OperatorConfig, namespace: str, tenant: str,
             names: Names) -> Storage:
    size, size_defaulted = tenant_value(spec, "storage.size", cfg.tenant_defaults)
    class_name, class_defaulted = tenant_value(spec, "storage.storageClassName",
                                               cfg.tenant_defaults)
    postgres = None
    if spec_value(spec, "storage.postgresql.cluster.name"):
        cluster_namespace = spec_value(spec, "storage.postgresql.cluster.namespace") or namespace
        role = pg_name(namespace, tenant)
        # Named by namespace and tenant: one cluster's namespace holds every tenant's objects.
        object_name = f"{namespace}-{tenant}-scim"
        postgres = Postgres(secret=names.database, cluster=Cluster(
            name=spec_value(spec, "storage.postgresql.cluster.name"),
            namespace=cluster_namespace, role=role, database_object=object_name,
            password_secret=object_name))
    elif spec_value(spec, "storage.postgresql.connectionSecretRef.name"):
        postgres = Postgres(secret=spec_value(spec, "storage.postgresql.connectionSecretRef.name"),
                            cluster=None)
    return Storage(size=str(size), class_name=class_name,
                   retained=spec_value(spec, "storage.deletionPolicy") == "Retain",
                   defaulted=(("size",) if size_defaulted else ())
                   + (("class_name",) if class_defaulted else ()),
                   postgres=postgres)


def with_claim(t: ResolvedTenant, pvc: dict | None) -> ResolvedTenant:
    """`t` with the size and storage class of its existing claim wherever `t` has only a
    default: the operator's defaults are for new volumes (a claim's class cannot change; a
    default that grows would resize every volume whose class allows it, and fail the others)."""
    if pvc is None or not t.storage.defaulted:
        return t
    spec = pvc.get("spec") or {}
    kept = {"size": ((spec.get("resources") or {}).get("requests") or {}).get("storage"),
            "class_name": spec.get("storageClassName")}
    changes = {k: kept[k] for k in t.storage.defaulted if k == "class_name" or kept[k]}
    return dataclasses.replace(t, storage=dataclasses.replace(t.storage, **changes))


def _server(spec: dict, annotations: dict[str, str], labels: dict[str, str],
            cfg: OperatorConfig, storage: Storage) -> Server:
    def value(dotted: str):
        return tenant_value(spec, dotted, cfg.tenant_defaults)[0]

    def merged(dotted: str) -> dict[str, str]:
        """Maps of labels and annotations merge key by key, the tenant's over the operator's
        (as the Ingress's annotations do): a tenant adds one without repeating the rest."""
        return {**(cfg.tenant_defaults.get(dotted) or {}), **(spec_value(spec, dotted) or {})}

    spec_image = spec_value(spec, "server.image")
    # One pod on SQLite whatever an object stored before the CRD's rule says.
    replicas = int(spec_value(spec, "server.replicas") or 1) if storage.postgres else 1
    spread = value("server.topologySpreadConstraints")
    if spread is None and replicas > 1:
        # Replicas on one node fall together: spread them, but still schedule where the
        # cluster has fewer nodes than replicas.
        spread = [{"maxSkew": 1, "topologyKey": "kubernetes.io/hostname",
                   "whenUnsatisfiable": "ScheduleAnyway",
                   "labelSelector": {"matchLabels": {k: labels[k] for k in SELECTOR_KEYS}}}]
    return Server(image=spec_image or cfg.server_image, spec_image=spec_image,
                  default_image=cfg.server_image,
                  update_requested=annotations.get(UPDATE_SERVER_IMAGE_ANNOTATION) == "true",
                  log_level=spec_value(spec, "server.logLevel"),
                  resources=value("server.resources"),
                  node_selector=value("server.nodeSelector"),
                  tolerations=value("server.tolerations"),
                  affinity=value("server.affinity"),
                  topology_spread=spread,
                  priority_class=value("server.priorityClassName"),
                  # The standard labels last: they select the pod (the Service and the
                  # Deployment's immutable selector), so no pod label may replace them.
                  pod_labels={**merged("server.podLabels"), **labels},
                  pod_annotations=merged("server.podAnnotations") or None,
                  # Replaces the operator's list, not merged with it: a tenant pulling from
                  # another registry (or a public image) can then drop the platform's ([]).
                  image_pull_secrets=value("server.imagePullSecrets"),
                  replicas=replicas)


def _events(spec: dict, names: Names, annotations: dict[str, str]) -> Events:
    push = None
    if spec_value(spec, "events.push.url"):
        ref = spec_value(spec, "events.push.authorizationSecretRef")
        push = Push(url=spec_value(spec, "events.push.url"),
                    authorization=(ref["name"], spec_value(
                        spec, "events.push.authorizationSecretRef.key")) if ref else None)
    receivers = tuple({k: r[k] for k in ("namespaceSelector", "podSelector") if k in r}
                      for r in spec_value(spec, "events.receivers") or ())
    return Events(
        audience=spec_value(spec, "events.audience"),
        retention=spec_value(spec, "events.retention.maxAge"),
        retention_count=int(spec_value(spec, "events.retention.maxEvents")),
        push=push, receivers=receivers,
        token_secret=names.events_token, signing_key_secret=names.signing_key,
        token_rotation=Rotation.of(
            annotations, parse_duration(spec_value(spec, "events.previousTokenValidFor")),
            ROTATE_EVENTS_TOKEN_ANNOTATION, ROTATE_EVENTS_TOKEN_OVERLAP_ANNOTATION,
            "event receiver token"),
        key_rotation=Rotation.of(
            annotations, parse_duration(spec_value(spec, "events.previousSigningKeyValidFor")),
            ROTATE_SIGNING_KEY_ANNOTATION, ROTATE_SIGNING_KEY_OVERLAP_ANNOTATION,
            "event signing key"))


def _ingress(spec: dict, name: str, names: Names, labels: dict[str, str],
             cfg: OperatorConfig) -> Ingress:
    host = spec_value(spec, "ingress.host") or (f"{name}.{cfg.domain}" if cfg.domain else None)
    tls = None
    if spec_value(spec, "ingress.tls.enabled"):
        own_secret = spec_value(spec, "ingress.tls.secretName")
        if own_secret:
            tls = TLS(secret_name=own_secret, issuer=None)
        elif spec_value(spec, "ingress.tls.issuerRef"):
            tls = TLS(names.tls, Issuer(spec_value(spec, "ingress.tls.issuerRef.name"),
                                        spec_value(spec, "ingress.tls.issuerRef.kind"),
                                        spec_value(spec, "ingress.tls.issuerRef.group")))
        elif cfg.tls_issuer:
            tls = TLS(names.tls, Issuer(**cfg.tls_issuer))
    annotations = {**cfg.ingress_annotations, **(spec_value(spec, "ingress.annotations") or {})}
    if tls and tls.issuer:
        annotations.update(tls.issuer.annotations())
    return Ingress(wanted=bool(spec_value(spec, "ingress.enabled")), host=host,
                   path=spec_value(spec, "ingress.path"),
                   class_name=spec_value(spec, "ingress.className") or cfg.ingress_class,
                   annotations=annotations,
                   labels={**(spec_value(spec, "ingress.labels") or {}), **labels},
                   tls=tls)
