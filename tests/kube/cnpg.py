"""CloudNativePG on the test cluster: its CRDs and its operator (a Deployment in `cnpg-system`,
with its RBAC and its admission webhooks, from the release manifest the pinned module ships),
then PostgreSQL `Cluster`s it runs on the real node. Everything is built here: the manager from
the Go module proxy (hack/cnpg/build.sh), the operator's image and a PostgreSQL 15 image from
Debian's packages (hack/cnpg/images.sh); nothing is pulled.

    op = CloudNativePG(cluster, workdir).start()   # 15-20 s on a running test cluster
    pg = op.create_cluster(kube, ns, "pg")          # ~22 s until Ready
    pg.connect(kube)                                # psycopg, as the `-app` Secret's user
    op.stop()                                       # uninstall all but the CRDs

(CloudNativePG() builds the images first where they are missing, as Cluster() does its own:
about a minute.)

What the harness adds to the release manifest, and why:
- The images are the ones built here (`imagePullPolicy: Never`, as no registry serves them);
  the operator is told both (OPERATOR_IMAGE_NAME: what each PostgreSQL pod's init container
  copies the instance manager from; POSTGRES_IMAGE_NAME: a Cluster's default `imageName`).
CloudNativePG makes a Cluster's first instance with a Job (`<cluster>-1-initdb`): the test
control plane runs the Job controller for it (hack/kube/controlplane.py). A pod reaches a
Cluster by its `-rw` Service's name, as its `-app` Secret says (the test node's DNS,
hack/kube/dns.py); the host, which has no cluster DNS, by the Service's ClusterIP.
The webhooks are CloudNativePG's own, served by its pod: the API server (a process on the host)
calls them through their Service's ClusterIP, which the host routes into the node.
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import psycopg
import yaml
from cluster import image_report  # hack/kube, on the path by conftest

from .conftest import ROOT, built, eventually

NAMESPACE = "cnpg-system"  # the release manifest's
DEPLOYMENT = "cnpg-controller-manager"
API = "/apis/postgresql.cnpg.io/v1"
WEBHOOKS = ("mutatingwebhookconfigurations", "validatingwebhookconfigurations")


@dataclass(frozen=True)
class Images:
    operator: str
    postgresql: str
    archives: tuple[Path, ...]


def images() -> Images:
    """The operator's and PostgreSQL's images, built first when missing (a minute or two)."""
    r = subprocess.run([str(ROOT / "hack" / "cnpg" / "images.sh")], stdout=subprocess.PIPE,
                       text=True)
    if r.returncode != 0:
        raise RuntimeError("hack/cnpg/images.sh failed")
    refs, archives = image_report(r.stdout)
    return Images(refs["operator"], refs["postgresql"], archives)


def manifests(release: Path, images: Images) -> list[dict]:
    """The release manifest with the images built here (see the module's docstring)."""
    docs = [d for d in yaml.load_all(release.read_text(), Loader=yaml.CSafeLoader) if d]
    for d in docs:
        if d["kind"] == "Deployment" and d["metadata"]["name"] == DEPLOYMENT:
            c = d["spec"]["template"]["spec"]["containers"][0]
            c["image"], c["imagePullPolicy"] = images.operator, "Never"
            ours = {"OPERATOR_IMAGE_NAME": images.operator,
                    "POSTGRES_IMAGE_NAME": images.postgresql}
            c["env"] = [e for e in c["env"] if e["name"] not in ours] + [
                {"name": k, "value": v} for k, v in ours.items()]
    return docs


class CloudNativePG:
    """CloudNativePG installed on a running test cluster (`cluster`: hack/kube/cluster.py)."""

    def __init__(self, cluster, workdir: Path) -> None:
        self.cluster = cluster
        self.dir = workdir
        self.bins = built("cnpg", "CNPG_BINS_DIR", "CloudNativePG is")
        self.images = images()
        self.docs = manifests(self.bins / "cnpg.yaml", self.images)

    @property
    def version(self) -> str:
        return self.bins.name.removeprefix("cnpg-")

    def start(self) -> CloudNativePG:
        node, cp = self.cluster.node, self.cluster.cp
        # Once per node: a second module's install finds them there.
        present = set(node.ctr("images", "ls", "-q").stdout.split())
        for ref, archive in zip((self.images.operator, self.images.postgresql),
                                self.images.archives, strict=True):
            if ref not in present:
                node.ctr("images", "import", str(archive))
        cp.kubectl("apply", "--server-side", "--force-conflicts", "-f", "-",
                   input=json.dumps({"apiVersion": "v1", "kind": "List", "items": self.docs}))
        try:
            eventually(self.ready, timeout=180, what="CloudNativePG's operator to be ready")
        except AssertionError as e:
            raise AssertionError(f"{e}\n{self.logs()}") from None
        return self

    def ready(self) -> bool:
        """The operator's pod is Ready (its readiness probe is the webhook server's /readyz)
        and it has put its CA into both webhook configurations."""
        cp = self.cluster.cp
        d = cp.get_json(f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments/{DEPLOYMENT}")
        if not ((d or {}).get("status") or {}).get("availableReplicas"):
            return False
        for kind in WEBHOOKS:
            name = f"cnpg-{kind.removesuffix('webhookconfigurations')}-webhook-configuration"
            w = cp.get_json(f"/apis/admissionregistration.k8s.io/v1/{kind}/{name}") or {}
            if not all(h.get("clientConfig", {}).get("caBundle") for h in w.get("webhooks", [])):
                return False
        return True

    def logs(self, *namespaces: str, tail: int = 60) -> str:
        """The operator's log and its pods' in `namespaces` (through the API: the kubelet's),
        and each pod's state."""
        cp = self.cluster.cp
        out = []
        for ns in (NAMESPACE, *namespaces):
            for p in (cp.get_json(f"/api/v1/namespaces/{ns}/pods") or {}).get("items", []):
                name = p["metadata"]["name"]
                states = [(c["name"], c.get("state"), c.get("restartCount")) for c in
                          (p["status"].get("initContainerStatuses") or [])
                          + (p["status"].get("containerStatuses") or [])]
                try:
                    text = cp.kubectl("logs", "-n", ns, name, "--all-containers",
                                      f"--tail={tail}")
                except RuntimeError as e:
                    text = str(e)
                out.append(f"--- {ns}/{name} {p['status'].get('phase')} {states} ---\n{text}")
        return "\n".join(out)

    def create_cluster(self, kube, ns: str, name: str, timeout: float = 300,
                       **spec) -> PostgresCluster:
        """A Cluster of one instance on the harness's default StorageClass, Ready; `spec`
        adds to (or replaces) its spec."""
        body = {"apiVersion": "postgresql.cnpg.io/v1", "kind": "Cluster",
                "metadata": {"name": name},
                "spec": {"instances": 1, "storage": {"size": "1Gi"}, **spec}}
        # The first write after the install can reach the webhooks' Service before kube-proxy
        # has its endpoint (the API server then answers 500, "failed calling webhook").
        r = eventually(lambda: (r := kube.create(f"{API}/namespaces/{ns}/clusters", body))
                       .status_code != 500 and r, timeout=60,
                       what="the Cluster webhooks to answer")
        assert r.status_code == 201, r.text
        pg = PostgresCluster(self, ns, name)
        try:
            eventually(lambda: pg.ready(kube), timeout=timeout, what=f"Cluster {name} Ready")
        except AssertionError as e:
            raise AssertionError(f"{e}\nstatus: {json.dumps(pg.status(kube))}\n"
                                 f"{self.logs(ns)}") from None
        return pg

    def stop(self) -> None:
        """Uninstall all but the CRDs (as a cluster's CRDs outlive an uninstall). The Clusters'
        namespaces go first: CloudNativePG removes its own finalizers (a Database's) only
        while it runs."""
        rest = [d for d in self.docs if d["kind"] != "CustomResourceDefinition"]
        self.cluster.cp.kubectl(
            "delete", "--ignore-not-found", "--wait=true", "--timeout=60s", "-f", "-",
            input=json.dumps({"apiVersion": "v1", "kind": "List", "items": rest}))


class PostgresCluster:
    """One CloudNativePG Cluster: its status, its Services and Secrets, a connection."""

    def __init__(self, op: CloudNativePG, ns: str, name: str) -> None:
        self.op, self.ns, self.name = op, ns, name
        self.url = f"{API}/namespaces/{ns}/clusters/{name}"

    def status(self, kube) -> dict:
        return kube.get(self.url).json().get("status") or {}

    def ready(self, kube) -> bool:
        return any(c["type"] == "Ready" and c["status"] == "True"
                   for c in self.status(kube).get("conditions") or [])

    def secret(self, kube, name: str) -> dict[str, str]:
        r = kube.get(f"/api/v1/namespaces/{self.ns}/secrets/{name}")
        assert r.status_code == 200, r.text
        return {k: base64.b64decode(v).decode() for k, v in r.json()["data"].items()}

    def service_ip(self, kube, suffix: str = "rw") -> str:
        r = kube.get(f"/api/v1/namespaces/{self.ns}/services/{self.name}-{suffix}")
        assert r.status_code == 200, r.text
        return r.json()["spec"]["clusterIP"]

    def connect(self, kube, user: str | None = None, password: str | None = None,
                dbname: str | None = None, timeout: float = 60) -> psycopg.Connection:
        """A connection from the host to the `-rw` Service (its ClusterIP: the host has no
        cluster DNS to resolve the `-app` Secret's `host`), over TLS verified against the
        Cluster's own CA; by default as the `-app` Secret's user to its database."""
        app = self.secret(kube, f"{self.name}-app")
        ca = self.op.dir / f"{self.ns}-{self.name}-ca.crt"
        ca.write_text(self.secret(kube, f"{self.name}-ca")["ca.crt"])
        args = {"host": self.service_ip(kube), "port": int(app["port"]),
                "user": user or app["username"], "password": password or app["password"],
                "dbname": dbname or app["dbname"], "sslmode": "verify-ca",
                "sslrootcert": str(ca), "connect_timeout": 5}

        def attempt():
            try:
                return psycopg.connect(**args)
            # Until kube-proxy sends the `-rw` Service to the pod the instance manager has
            # labelled primary: for a moment after Ready, "Network is unreachable".
            except psycopg.OperationalError as e:
                if "authentication failed" in str(e):  # the server answered: no use waiting
                    raise
                print(f"connect to {self.name}-rw: {str(e).splitlines()[0]}", file=sys.stderr)
                return None
        return eventually(attempt, timeout=timeout, what=f"a connection to {self.name}-rw")

    def primary_memory(self) -> int:
        """The primary's PostgreSQL container's working set, in bytes (the CRI's figure)."""
        node = self.op.cluster.node
        r = node.crictl("stats", "-o", "json", "--label",
                        f"io.kubernetes.pod.name={self.name}-1", "--label",
                        "io.kubernetes.container.name=postgres")
        stats = json.loads(r.stdout)["stats"]
        return int(stats[0]["memory"]["workingSetBytes"]["value"])


def module_cnpg(cluster, tmp_path_factory):
    """A fixture body: CloudNativePG installed for one test module."""
    op = timed("CloudNativePG installed and ready",
               CloudNativePG(cluster, tmp_path_factory.mktemp("cnpg")).start)
    yield op
    op.stop()


def module_cluster_namespace(kube, prefix: str):
    """A fixture body: a namespace for Clusters (and tenants), gone, with CloudNativePG's
    finalizers done, before CloudNativePG is uninstalled."""
    name = kube.namespace(prefix)
    yield name
    kube.delete(f"/api/v1/namespaces/{name}")
    try:
        eventually(lambda: kube.get(f"/api/v1/namespaces/{name}").status_code == 404,
                   timeout=300, what=f"namespace {name} to be deleted")
    except AssertionError as e:
        left = [(kind, o["metadata"]["name"], o["metadata"].get("finalizers"))
                for kind, url in (("pod", f"/api/v1/namespaces/{name}/pods"),
                                  *((k, f"{API}/namespaces/{name}/{k}")
                                    for k in ("clusters", "databases", "databaseroles")))
                for o in kube.get(url).json().get("items", [])]
        status = kube.get(f"/api/v1/namespaces/{name}").json().get("status")
        raise AssertionError(f"{e}\nleft: {left}\nnamespace: {status}") from None


def timed(what: str, f, *args, **kw):
    """`f(*args, **kw)`, printing how long it took (pytest -s shows it)."""
    t0 = time.monotonic()
    result = f(*args, **kw)
    print(f"{what}: {time.monotonic() - t0:.1f} s")
    return result
