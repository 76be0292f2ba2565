"""A real Kubernetes control plane: etcd, kube-apiserver, kube-controller-manager,
kube-scheduler. etcd and the controllers listen on 127.0.0.1; the API server on the address it
is given (the host's end of the node's link; pods reach it as the `kubernetes` Service, through
kube-proxy), port 443. The node that runs its pods is hack/kube/node.py;
hack/kube/cluster.py puts them together with storage and an ingress controller.

The binaries come from hack/kube/build.sh (built from the Go module proxy, cached outside the
repository). Everything runs in one folder: keys, static tokens (the admin in system:masters,
the node in system:nodes, kube-proxy as system:kube-proxy, the ingress controller and the
NetworkPolicy agent with their own RBAC), the API server's
self-signed serving certificate and its client certificate for kubelets, each component's log
and a kubeconfig.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pki

HERE = Path(__file__).resolve().parent
NODE_NAME = "joyn-scim-node"  # the one node's name; its kubelet authenticates as system:node:<it>
INGRESS_USER = "joyn-scim:ingress-controller"  # Traefik's user (hack/kube/ingress.py)
# kube-proxy's user: the API server's bootstrap policy binds it to system:node-proxier.
PROXY_USER = "system:kube-proxy"
NETPOL_USER = "joyn-scim:network-policies"  # kube-network-policies' user (hack/kube/node.py)
CONTROLLERS = ("garbage-collector-controller,namespace-controller,deployment-controller,"
               "replicaset-controller,serviceaccount-controller,"
               "persistentvolumeclaim-protection-controller,"
               "persistentvolume-protection-controller,"
               # for a node: PVs bound to claims, EndpointSlices for the ingress controller,
               # kube-root-ca.crt for pods that mount a ServiceAccount token
               "persistentvolume-binder-controller,endpointslice-controller,"
               "root-ca-certificate-publisher-controller,"
               # lifts the not-ready taint a kubelet registers its node with
               "node-lifecycle-controller,"
               # CloudNativePG makes a Cluster's first instance with a Job, and the operator
               # moves a tenant from SQLite to PostgreSQL with one
               "job-controller")
COMPONENTS = ("kube-scheduler", "kube-controller-manager", "kube-apiserver", "etcd")


def binaries_dir(build: bool = False, script: Path = HERE / "build.sh",
                 env: str = "KUBE_BINS_DIR") -> Path | None:
    """The folder holding the binaries `script` builds (None if not built); `build` builds them
    first, which takes minutes on a new machine."""
    if os.environ.get(env):
        return Path(os.environ[env])
    args = [str(script)] + ([] if build else ["--check"])
    r = subprocess.run(args, stdout=subprocess.PIPE, text=True,
                       stderr=None if build else subprocess.DEVNULL)
    if r.returncode != 0:
        if build:
            raise RuntimeError(f"{script} failed")
        return None
    return Path(r.stdout.strip().splitlines()[-1])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def terminate(p: subprocess.Popen | None, timeout: float = 10) -> None:
    """SIGTERM, then SIGKILL after `timeout` seconds."""
    if p is None or p.poll() is not None:
        return
    p.send_signal(signal.SIGTERM)
    try:
        p.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()


def log_tail(path: Path, tail: int = 40) -> str:
    """A log's last lines under a heading naming it, for a failing test or a start-up error."""
    lines = path.read_text(errors="replace").splitlines()[-tail:] if path.exists() else []
    return f"--- {path.stem} ({path}) ---\n" + "\n".join(lines)


def wait_for(what: str, check, procs: dict[str, subprocess.Popen], logs, timeout: float) -> None:
    """Poll `check()` until true; fail early, with `logs()`, if one of `procs` exits."""
    deadline = time.monotonic() + timeout
    while not check():
        for name, p in procs.items():
            if p.poll() is not None:
                raise RuntimeError(f"{name} exited with {p.returncode} while waiting for "
                                   f"{what}\n{logs()}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}\n{logs()}")
        time.sleep(0.1)


class ControlPlane:
    def __init__(self, bins: Path, workdir: Path) -> None:
        self.bins = bins
        self.dir = workdir
        self.address = "127.0.0.1"
        self.service_range = "10.0.0.0/24"
        self.procs: dict[str, subprocess.Popen] = {}
        self.token = ""
        self.node_token = ""
        self.ingress_token = ""
        self.proxy_token = ""
        self.netpol_token = ""
        self.kubelet_client_ca: Path | None = None
        self.api_port = 0
        self.etcd_port = 0
        self.apiserver_args: tuple[str, ...] = ()

    # -- paths ------------------------------------------------------------------------------

    @property
    def kubeconfig(self) -> Path:
        return self.dir / "admin.kubeconfig"

    @property
    def server(self) -> str:
        return f"https://{self.address}:{self.api_port}"

    @property
    def ca_file(self) -> Path:
        return self.dir / "pki" / "apiserver.crt"

    def log(self, name: str) -> Path:
        return self.dir / f"{name}.log"

    def logs(self, tail: int = 60) -> str:
        """The last lines of each component's log, for a failing test to show."""
        return "\n".join(log_tail(self.log(n), tail) for n in reversed(COMPONENTS))

    # -- start / stop -----------------------------------------------------------------------

    def _spawn(self, name: str, args: list[str], detach: bool) -> None:
        with open(self.log(name), "ab") as log:
            self.procs[name] = subprocess.Popen(
                [str(self.bins / name), *args], stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, cwd=self.dir, start_new_session=detach)

    def _wait(self, what: str, check, timeout: float = 90) -> None:
        wait_for(what, check, self.procs, self.logs, timeout)

    def start(self, detach: bool = False, address: str | None = None,
              service_range: str | None = None,
              apiserver_args: tuple[str, ...] = ()) -> ControlPlane:
        """Start every component; if one fails to come up, stop the others before raising.
        `detach`: each in a session of its own, so a terminal's Ctrl-C reaches only our owner.
        `address` and `service_range`: where the API server listens (port 443, and the
        `kubernetes` Service's endpoint) and the Services' ClusterIPs. `apiserver_args`:
        more flags for the API server (the operator benchmark's audit log)."""
        self.address = address or self.address
        self.service_range = service_range or self.service_range
        self.apiserver_args = apiserver_args
        try:
            return self._start(detach)
        except BaseException:
            self.stop(remove=False)  # keep the logs for the error message's reader
            raise

    def _start(self, detach: bool) -> ControlPlane:
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "pki").mkdir(exist_ok=True)
        sa_key = self.dir / "pki" / "sa.key"
        subprocess.run(["openssl", "genrsa", "-out", str(sa_key), "2048"], check=True,
                       capture_output=True)
        (self.token, self.node_token, self.ingress_token, self.proxy_token,
         self.netpol_token) = (secrets.token_urlsafe(32) for _ in range(5))
        tokens = self.dir / "pki" / "tokens.csv"
        tokens.write_text(f'{self.token},admin,admin-uid,"system:masters"\n'
                          f'{self.node_token},system:node:{NODE_NAME},node-uid,"system:nodes"\n'
                          f'{self.ingress_token},{INGRESS_USER},ingress-uid\n'
                          f'{self.proxy_token},{PROXY_USER},kube-proxy-uid\n'
                          f'{self.netpol_token},{NETPOL_USER},network-policies-uid\n')
        os.chmod(tokens, 0o600)
        # The API server's identity towards kubelets (logs, exec); they trust this CA.
        ca = pki.make_ca(self.dir / "pki", "kubelet-client-ca", "joyn-scim kubelet client CA")
        self.kubelet_client_ca = ca[0]
        kubelet_client = pki.issue(ca, self.dir / "pki", "apiserver-kubelet-client",
                                   "kube-apiserver-kubelet-client",
                                   organization="system:masters", client=True)

        self.etcd_port, peer = free_port(), free_port()
        self._spawn("etcd", [
            "--name=test", f"--data-dir={self.dir / 'etcd'}",
            f"--listen-client-urls=http://127.0.0.1:{self.etcd_port}",
            f"--advertise-client-urls=http://127.0.0.1:{self.etcd_port}",
            f"--listen-peer-urls=http://127.0.0.1:{peer}",
            f"--initial-advertise-peer-urls=http://127.0.0.1:{peer}",
            f"--initial-cluster=test=http://127.0.0.1:{peer}",
            "--unsafe-no-fsync", "--log-level=warn",
        ], detach)
        self._wait("etcd /health", lambda: self._get(
            f"http://127.0.0.1:{self.etcd_port}/health") == 200)

        # 443 on loopback would be the machine's one port; each cluster's own address has one.
        self.api_port = 443 if self.address != "127.0.0.1" else free_port()
        self._spawn("kube-apiserver", [
            f"--etcd-servers=http://127.0.0.1:{self.etcd_port}",
            f"--bind-address={self.address}", f"--advertise-address={self.address}",
            f"--secure-port={self.api_port}", f"--cert-dir={self.dir / 'pki'}",
            f"--service-cluster-ip-range={self.service_range}",
            f"--service-account-issuer={self.server}",
            f"--service-account-key-file={sa_key}",
            f"--service-account-signing-key-file={sa_key}",
            "--authorization-mode=Node,RBAC", "--enable-admission-plugins=NodeRestriction",
            f"--token-auth-file={tokens}",
            f"--kubelet-client-certificate={kubelet_client[0]}",
            f"--kubelet-client-key={kubelet_client[1]}",
            "--kubelet-preferred-address-types=InternalIP",
            "--allow-privileged=true", "--profiling=false", *self.apiserver_args,
        ], detach)
        self._wait("kube-apiserver /readyz",
                   lambda: self.ca_file.exists() and self._get(f"{self.server}/readyz") == 200)
        self._write_kubeconfig()

        self._spawn("kube-controller-manager", [
            f"--kubeconfig={self.kubeconfig}", f"--authentication-kubeconfig={self.kubeconfig}",
            f"--authorization-kubeconfig={self.kubeconfig}",
            "--leader-elect=false", f"--controllers={CONTROLLERS}",
            "--use-service-account-credentials=false", "--bind-address=127.0.0.1",
            f"--secure-port={free_port()}", f"--service-account-private-key-file={sa_key}",
            f"--root-ca-file={self.ca_file}", "--profiling=false",
        ], detach)
        # The namespace controller is running once `default`'s ServiceAccount exists
        # (the serviceaccount controller started with it).
        self._wait("kube-controller-manager", lambda: self._get(
            f"{self.server}/api/v1/namespaces/default/serviceaccounts/default") == 200)
        self._spawn("kube-scheduler", [
            f"--kubeconfig={self.kubeconfig}", f"--authentication-kubeconfig={self.kubeconfig}",
            f"--authorization-kubeconfig={self.kubeconfig}", "--leader-elect=false",
            "--bind-address=127.0.0.1", f"--secure-port={free_port()}", "--profiling=false",
        ], detach)
        return self

    def stop(self, remove: bool = True) -> None:
        for name in COMPONENTS:
            terminate(self.procs.get(name))
        if remove:
            shutil.rmtree(self.dir, ignore_errors=True)

    # -- helpers ----------------------------------------------------------------------------

    def _ssl(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca_file))

    def kubectl(self, *args: str, input: str | None = None) -> str:
        """Run kubectl as the admin; raise with its message on failure."""
        r = subprocess.run([str(self.bins / "kubectl"), f"--kubeconfig={self.kubeconfig}", *args],
                           input=input, capture_output=True, text=True, timeout=120)
        if r.returncode != 0:
            raise RuntimeError(f"kubectl {' '.join(args)}: {r.stderr.strip()}")
        return r.stdout

    def get_json(self, path: str) -> dict | None:
        """GET an API path as the admin: the object, or None when it is not there."""
        req = urllib.request.Request(self.server + path,
                                     headers={"Authorization": f"Bearer {self.token}"})
        try:
            with urllib.request.urlopen(req, timeout=10, context=self._ssl()) as r:
                return json.loads(r.read())
        except urllib.error.HTTPError as e:
            if e.code == 404:
                return None
            raise

    def _get(self, url: str) -> int:
        req = urllib.request.Request(url)
        if url.startswith("https"):
            req.add_header("Authorization", f"Bearer {self.token}")
        try:
            ctx = self._ssl() if url.startswith("https") else None
            with urllib.request.urlopen(req, timeout=2, context=ctx) as r:
                return r.status
        except urllib.error.HTTPError as e:
            return e.code
        except (OSError, ssl.SSLError):
            return 0

    def _write_kubeconfig(self) -> None:
        self.write_kubeconfig(self.kubeconfig, "admin", self.token)

    def write_kubeconfig(self, path: Path, user: str, token: str) -> Path:
        """A kubeconfig (mode 0600) for this API server with one of its static tokens."""
        path.write_text(json.dumps({
            "apiVersion": "v1", "kind": "Config", "current-context": user,
            "clusters": [{"name": "test", "cluster": {
                "server": self.server, "certificate-authority": str(self.ca_file)}}],
            "users": [{"name": user, "user": {"token": token}}],
            "contexts": [{"name": user, "context": {"cluster": "test", "user": user}}],
        }, indent=2))
        path.chmod(0o600)
        return path
