"""The desired state of a tenant's children, as pure functions: (tenant, config) -> manifests.

Plain Python builders rather than templates: most of what they hold is logic (defaults from two
places, the URL, retain-or-own, BYO token volumes), which a template would hide; a unit test can
call each one without a cluster. Every child carries the standard labels and, unless its
deletion policy says to keep it, an ownerReference to the tenant. The tenant's own labels are
never copied (GitOps tools would think they own the children).
"""

from __future__ import annotations

import base64
from dataclasses import dataclass

from . import GROUP, KIND, VERSION
from .config import OperatorConfig

PORT = 8080
DATA_DIR = "/data"
TOKEN_DIR = "/var/run/joyn-scim/token"  # noqa: S105 - a mount path, not a secret
TOKEN_KEY = "token"  # noqa: S105 - a Secret key name
PREVIOUS_TOKEN_KEY = "previous-token"  # noqa: S105 - a Secret key name
MANAGED_BY = "joyn-scim-operator"
DEFAULT_RESOURCES = {"requests": {"cpu": "50m", "memory": "64Mi"},
                     "limits": {"memory": "256Mi"}}


@dataclass(frozen=True)
class Tenant:
    """The parts of a JoynScimTenant the builders need."""

    name: str
    namespace: str
    uid: str
    spec: dict

    @classmethod
    def from_body(cls, body: dict) -> Tenant:
        meta = body["metadata"]
        return cls(meta["name"], meta["namespace"], meta["uid"], body.get("spec") or {})

    def section(self, key: str) -> dict:
        return self.spec.get(key) or {}


# --- names, labels, ownership ------------------------------------------------------------------

def names(t: Tenant) -> dict[str, str]:
    base = f"{t.name}-scim"
    return {"deployment": base, "service": base, "ingress": base, "networkpolicy": base,
            "pvc": f"{base}-data", "secret": f"{base}-token", "tls": f"{t.name}-tls"}


def labels(t: Tenant) -> dict[str, str]:
    return {"app.kubernetes.io/name": "joyn-scim", "app.kubernetes.io/instance": t.name,
            "app.kubernetes.io/component": "scim-server",
            "app.kubernetes.io/managed-by": MANAGED_BY}


def selector(t: Tenant) -> dict[str, str]:
    return {"app.kubernetes.io/name": "joyn-scim", "app.kubernetes.io/instance": t.name}


def owner_reference(t: Tenant) -> dict:
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": KIND, "name": t.name, "uid": t.uid,
            "controller": True, "blockOwnerDeletion": True}


def retained(t: Tenant) -> bool:
    """With deletionPolicy Retain, the volume claim and token Secret outlive the tenant: they get
    no ownerReference, so the garbage collector leaves them."""
    return t.section("storage").get("deletionPolicy", "Retain") == "Retain"


def metadata(t: Tenant, name: str, *, owned: bool = True, extra_labels: dict | None = None,
             annotations: dict | None = None) -> dict:
    meta: dict = {"name": name, "namespace": t.namespace,
                  "labels": {**(extra_labels or {}), **labels(t)}}
    if annotations:
        meta["annotations"] = dict(annotations)
    if owned:
        meta["ownerReferences"] = [owner_reference(t)]
    return meta


# --- URL and TLS -------------------------------------------------------------------------------

def host(t: Tenant, cfg: OperatorConfig) -> str | None:
    """spec.ingress.host, else <tenant>.<operator domain>; None when neither is set."""
    explicit = t.section("ingress").get("host")
    if explicit:
        return explicit
    return f"{t.name}.{cfg.domain}" if cfg.domain else None


def base_path(t: Tenant) -> str:
    return t.section("ingress").get("path") or "/scim/v2"


def tls(t: Tenant, cfg: OperatorConfig) -> dict | None:
    """{secretName, issuerRef?} for the Ingress, or None for plain HTTP."""
    spec_tls = t.section("ingress").get("tls") or {}
    if spec_tls.get("enabled") is False:
        return None
    if spec_tls.get("secretName"):
        return {"secretName": spec_tls["secretName"], "issuerRef": None}
    issuer = spec_tls.get("issuerRef") or cfg.tls_issuer
    if issuer:
        return {"secretName": names(t)["tls"], "issuerRef": {
            "kind": "ClusterIssuer", "group": "cert-manager.io", **issuer}}
    return None


def tenant_url(t: Tenant, cfg: OperatorConfig) -> str | None:
    """The Tenant URL to paste into Entra: https://<host><path>."""
    h = host(t, cfg)
    if h is None:
        return None
    scheme = "https" if tls(t, cfg) else cfg.url_scheme
    return f"{scheme}://{h}{base_path(t)}"


# --- children ----------------------------------------------------------------------------------

def token_secret(t: Tenant, cfg: OperatorConfig, current: str, previous: str | None,
                 annotations: dict[str, str]) -> dict:
    """The generated token Secret. The values come from the caller: generated once at creation,
    then always carried over from the existing Secret (reconciles never change a token)."""
    data = {TOKEN_KEY: current}
    if previous:
        data[PREVIOUS_TOKEN_KEY] = previous
    url = tenant_url(t, cfg)
    if url:
        data["url"] = url
    # `data`, not `stringData`: stringData is write-only, so server-side apply would see a
    # change on every reconcile.
    return {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": metadata(t, names(t)["secret"], owned=not retained(t),
                                 annotations=annotations),
            "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}}


def persistent_volume_claim(t: Tenant) -> dict:
    storage = t.section("storage")
    spec: dict = {"accessModes": ["ReadWriteOnce"],
                  "resources": {"requests": {"storage": str(storage.get("size", "1Gi"))}}}
    if storage.get("storageClassName"):
        spec["storageClassName"] = storage["storageClassName"]
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": metadata(t, names(t)["pvc"], owned=not retained(t)), "spec": spec}


def token_volume(t: Tenant) -> dict:
    byo = t.section("token").get("existingSecretRef")
    if byo:
        return {"name": "token", "secret": {
            "secretName": byo["name"], "items": [{"key": byo.get("key", TOKEN_KEY),
                                                  "path": TOKEN_KEY}]}}
    # Every key of our own Secret, not `items`: outside a rotation it has no previous-token,
    # and the kubelet refuses a volume whose `items` name an absent key (FailedMount), while
    # `optional: true` would start the server without any token if the Secret were missing.
    # Projected this way, previous-token appears and disappears with the key, without a restart.
    return {"name": "token", "secret": {"secretName": names(t)["secret"], "optional": False,
                                        "defaultMode": 0o440}}


def deployment(t: Tenant, cfg: OperatorConfig) -> dict:
    server = t.section("server")
    n = names(t)
    url = tenant_url(t, cfg)
    env = [
        {"name": "JOYN_SCIM_HOST", "value": "0.0.0.0"},  # noqa: S104 - the pod's own interface
        {"name": "JOYN_SCIM_PORT", "value": str(PORT)},
        {"name": "JOYN_SCIM_BASE_PATH", "value": base_path(t)},
        {"name": "JOYN_SCIM_DATA_DIR", "value": DATA_DIR},
        {"name": "JOYN_SCIM_DB", "value": f"{DATA_DIR}/scim.db"},
        {"name": "JOYN_SCIM_TOKEN_FILES",
         "value": f"{TOKEN_DIR}/{TOKEN_KEY},{TOKEN_DIR}/{PREVIOUS_TOKEN_KEY}"},
        {"name": "JOYN_SCIM_LOG_LEVEL", "value": server.get("logLevel", "info")},
        # Only the ingress controller reaches the pod (NetworkPolicy), so its X-Forwarded-Proto
        # is trusted and meta.location carries the scheme Entra used.
        {"name": "JOYN_SCIM_FORWARDED_ALLOW_IPS", "value": "*"},
    ]
    if url:
        env.append({"name": "JOYN_SCIM_PUBLIC_URL", "value": url})
    probe = {"port": "http"}
    container = {
        "name": "scim-server",
        "image": server.get("image") or cfg.server_image,
        "args": ["serve"],
        "env": env,
        "ports": [{"name": "http", "containerPort": PORT, "protocol": "TCP"}],
        "readinessProbe": {"httpGet": {"path": "/readyz", **probe}, "periodSeconds": 5,
                           "failureThreshold": 3},
        "livenessProbe": {"httpGet": {"path": "/healthz", **probe}, "periodSeconds": 10,
                          "failureThreshold": 6},
        "resources": server.get("resources") or DEFAULT_RESOURCES,
        "securityContext": {"readOnlyRootFilesystem": True, "allowPrivilegeEscalation": False,
                            "runAsNonRoot": True, "capabilities": {"drop": ["ALL"]}},
        "volumeMounts": [{"name": "data", "mountPath": DATA_DIR},
                         {"name": "token", "mountPath": TOKEN_DIR, "readOnly": True},
                         {"name": "tmp", "mountPath": "/tmp"}],  # noqa: S108 - an emptyDir
    }
    pod_spec: dict = {
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "securityContext": {"runAsNonRoot": True, "runAsUser": 10001, "runAsGroup": 10001,
                            "fsGroup": 10001, "seccompProfile": {"type": "RuntimeDefault"}},
        "terminationGracePeriodSeconds": 30,
        "containers": [container],
        "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": n["pvc"]}},
                    token_volume(t), {"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}}],
    }
    for key in ("nodeSelector", "tolerations", "affinity"):
        if server.get(key):
            pod_spec[key] = server[key]
    template_meta: dict = {"labels": labels(t)}
    if server.get("podAnnotations"):
        template_meta["annotations"] = dict(server["podAnnotations"])
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": metadata(t, n["deployment"]),
        "spec": {
            "replicas": 1,
            # SQLite on a ReadWriteOnce volume: the old pod must stop before the new one starts.
            "strategy": {"type": "Recreate"},
            "selector": {"matchLabels": selector(t)},
            "template": {"metadata": template_meta, "spec": pod_spec},
        },
    }


def service(t: Tenant) -> dict:
    return {"apiVersion": "v1", "kind": "Service", "metadata": metadata(t, names(t)["service"]),
            "spec": {"type": "ClusterIP", "selector": selector(t),
                     "ports": [{"name": "http", "port": PORT, "targetPort": "http",
                                "protocol": "TCP"}]}}


def ingress(t: Tenant, cfg: OperatorConfig) -> dict | None:
    """None when spec.ingress.enabled is false or no host can be derived."""
    spec_ingress = t.section("ingress")
    h = host(t, cfg)
    if spec_ingress.get("enabled") is False or h is None:
        return None
    annotations = {**cfg.ingress_annotations, **(spec_ingress.get("annotations") or {})}
    tls_cfg = tls(t, cfg)
    if tls_cfg and tls_cfg["issuerRef"]:
        issuer = tls_cfg["issuerRef"]
        key = "cert-manager.io/cluster-issuer" if issuer["kind"] == "ClusterIssuer" \
            else "cert-manager.io/issuer"
        annotations[key] = issuer["name"]
        if issuer.get("group") and issuer["group"] != "cert-manager.io":
            annotations["cert-manager.io/issuer-group"] = issuer["group"]
            annotations["cert-manager.io/issuer-kind"] = issuer["kind"]
    spec: dict = {"rules": [{"host": h, "http": {"paths": [{
        "path": base_path(t), "pathType": "Prefix",
        "backend": {"service": {"name": names(t)["service"], "port": {"name": "http"}}}}]}}]}
    class_name = spec_ingress.get("className") or cfg.ingress_class
    if class_name:
        spec["ingressClassName"] = class_name
    if tls_cfg:
        spec["tls"] = [{"hosts": [h], "secretName": tls_cfg["secretName"]}]
    return {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
            "metadata": metadata(t, names(t)["ingress"],
                                 extra_labels=spec_ingress.get("labels"),
                                 annotations=annotations or None),
            "spec": spec}


def network_policy(t: Tenant, cfg: OperatorConfig) -> dict | None:
    np = t.section("networkPolicy")
    if np.get("enabled") is False:
        return None
    admitted = [np.get("ingressNamespace") or cfg.ingress_namespace]
    if cfg.monitoring_namespace and cfg.monitoring_namespace not in admitted:
        admitted.append(cfg.monitoring_namespace)
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": metadata(t, names(t)["networkpolicy"]),
            "spec": {"podSelector": {"matchLabels": selector(t)},
                     "policyTypes": ["Ingress"],
                     "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {
                         "kubernetes.io/metadata.name": namespace}}} for namespace in admitted],
                         "ports": [{"port": PORT, "protocol": "TCP"}]}]}}


def children(t: Tenant, cfg: OperatorConfig) -> list[dict]:
    """Every child except the token Secret (whose values need the cluster), in apply order."""
    out = [persistent_volume_claim(t), deployment(t, cfg), service(t)]
    for optional in (ingress(t, cfg), network_policy(t, cfg)):
        if optional is not None:
            out.append(optional)
    return out
