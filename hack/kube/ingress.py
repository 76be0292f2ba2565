"""The ingress controller: Traefik v3 (hack/node/build.sh), out of the cluster, watching
Ingresses of the IngressClass `traefik` (the default class) with its own user and RBAC, and
serving HTTPS on port 443 of a loopback address of its own (127.x.y.z), so a Tenant URL
https://<host>/<path> is reached exactly as written with `curl --resolve <host>:443:<addr>`.

Certificates come from the harness's CA (`ca_file`): each Ingress's TLS Secret (`issue()`
writes one), and a default certificate for `*.<default_domain>` that Traefik serves for an
Ingress without a TLS section (TLS ending at the ingress controller, as on many clusters).
Traefik writes each Ingress's status.loadBalancer with its address, which is what the
operator's IngressReady condition waits for.
"""

from __future__ import annotations

import base64
import json
import random
import socket
import subprocess
import urllib.request
from pathlib import Path

import pki
from controlplane import INGRESS_USER, free_port, log_tail, terminate, wait_for

CLASS = "traefik"
RBAC = {
    "apiVersion": "v1", "kind": "List", "items": [
        {"apiVersion": "networking.k8s.io/v1", "kind": "IngressClass",
         "metadata": {"name": CLASS, "annotations": {
             "ingressclass.kubernetes.io/is-default-class": "true"}},
         "spec": {"controller": "traefik.io/ingress-controller"}},
        # What Traefik's Kubernetes Ingress provider reads and writes (its documented RBAC).
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
         "metadata": {"name": "joyn-scim-ingress-controller"},
         "rules": [
             {"apiGroups": [""], "resources": ["services", "secrets", "nodes"],
              "verbs": ["get", "list", "watch"]},
             {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"],
              "verbs": ["list", "watch"]},
             {"apiGroups": ["networking.k8s.io"], "resources": ["ingresses", "ingressclasses"],
              "verbs": ["get", "list", "watch"]},
             {"apiGroups": ["networking.k8s.io"], "resources": ["ingresses/status"],
              "verbs": ["update"]}]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
         "metadata": {"name": "joyn-scim-ingress-controller"},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                     "name": "joyn-scim-ingress-controller"},
         "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User",
                       "name": INGRESS_USER}]},
    ]}


def _free_loopback() -> str:
    """A 127.x.y.z whose port 443 is free (the whole 127/8 is loopback on Linux)."""
    for _ in range(50):
        addr = "127.{}.{}.{}".format(*(random.randint(1, 254) for _ in range(3)))
        with socket.socket() as s:
            try:
                s.bind((addr, 443))
                return addr
            except OSError:
                continue
    raise RuntimeError("no loopback address with a free port 443")


class Ingress:
    def __init__(self, cp, node_bins: Path, workdir: Path, default_domain: str) -> None:
        self.cp = cp
        self.bin = node_bins / "traefik"
        self.dir = workdir
        self.default_domain = default_domain
        self.address = ""
        self.ping_port = 0
        self.proc: subprocess.Popen | None = None
        self.ca: tuple[Path, Path] | None = None

    @property
    def ca_file(self) -> Path:
        assert self.ca is not None
        return self.ca[0]

    def start(self) -> Ingress:
        self.dir.mkdir(parents=True, exist_ok=True)
        self.ca = pki.make_ca(self.dir / "pki", "ca", "joyn-scim test ingress CA")
        cert, key = pki.issue(self.ca, self.dir / "pki", "default", f"*.{self.default_domain}",
                              dns=(f"*.{self.default_domain}", self.default_domain))
        dynamic = self.dir / "dynamic.json"
        dynamic.write_text(json.dumps({"tls": {"stores": {"default": {"defaultCertificate": {
            "certFile": str(cert), "keyFile": str(key)}}}}}))
        self.cp.kubectl("apply", "--server-side", "-f", "-", input=json.dumps(RBAC))
        kubeconfig = self.cp.write_kubeconfig(self.dir / "kubeconfig", "ingress",
                                              self.cp.ingress_token)
        self.address, self.ping_port = _free_loopback(), free_port()
        with open(self.dir / "traefik.log", "ab") as log:
            self.proc = subprocess.Popen([
                str(self.bin), "--global.checknewversion=false",
                "--global.sendanonymoususage=false", "--log.level=INFO",
                f"--entrypoints.websecure.address={self.address}:443",
                "--entrypoints.websecure.http.tls=true",
                f"--entrypoints.traefik.address=127.0.0.1:{self.ping_port}", "--ping=true",
                "--providers.kubernetesingress=true",
                # A Service without a ready pod (a server stopped for a move, or starting) is
                # answered 503, as ingress-nginx answers it, and Entra retries; by default
                # Traefik drops the route then and answers 404 (docs/platform/install.md).
                "--providers.kubernetesingress.allowEmptyServices=true",
                f"--providers.kubernetesingress.ingressendpoint.ip={self.address}",
                f"--providers.file.filename={dynamic}",
                f"--accesslog.filepath={self.dir / 'access.log'}",
            ], env={"KUBECONFIG": str(kubeconfig), "PATH": "/usr/bin:/bin"}, stdout=log,
                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=self.dir,
                start_new_session=True)
        wait_for("traefik to answer /ping", self._pinged, {"traefik": self.proc}, self.logs, 60)
        return self

    def _pinged(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.ping_port}/ping", timeout=2) as r:
                return r.status == 200
        except OSError:
            return False

    def issue(self, namespace: str, name: str, hosts: tuple[str, ...]) -> None:
        """A kubernetes.io/tls Secret for `hosts`, signed by the harness CA."""
        cert, key = pki.issue(self.ca, self.dir / "pki", f"{namespace}-{name}", hosts[0],
                              dns=hosts)
        secret = {"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
                  "metadata": {"name": name, "namespace": namespace},
                  "data": {"tls.crt": base64.b64encode(cert.read_bytes()).decode(),
                           "tls.key": base64.b64encode(key.read_bytes()).decode()}}
        self.cp.kubectl("apply", "--server-side", "-f", "-", input=json.dumps(secret))

    def resolve(self, host: str) -> str:
        """curl's --resolve value that sends `host`'s https to this controller."""
        return f"{host}:443:{self.address}"

    def logs(self, tail: int = 40) -> str:
        return log_tail(self.dir / "traefik.log", tail)

    def stop(self) -> None:
        terminate(self.proc)
