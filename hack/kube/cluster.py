"""The whole test cluster on this machine, started and stopped in order: the control plane
(controlplane.py), one real node (node.py: containerd, runc, CNI, kubelet, kube-proxy and
NetworkPolicy enforcement, in a network namespace of its own), PVCs that bind
(storage.py: local-path-provisioner) and an ingress controller serving HTTPS (ingress.py:
Traefik). The images the node runs are built here (hack/node/images.sh); nothing is pulled.

Used by the pytest fixtures in tests/kube/, by `make demo` (hack/demo.py) and by a person:

    python hack/kube/cluster.py up [--dir DIR]    # start, print `export KUBECONFIG=...`
    python hack/kube/cluster.py down [--dir DIR]  # stop, leave nothing behind, remove DIR

Every component runs in its own session, so a Ctrl-C in a terminal reaches only the process
that owns the cluster, which then stops everything in order.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import node as node_module
from controlplane import HERE, ControlPlane, binaries_dir, terminate
from ingress import Ingress
from node import Node
from storage import Storage

NODE_SCRIPTS = HERE.parent / "node"
DEFAULT_DOMAIN = "scim.example.com"


@dataclass(frozen=True)
class Images:
    """Image references and their archives (hack/node/images.sh)."""
    base: str
    pause: str
    app: str
    archives: tuple[Path, ...]


def node_binaries_dir(build: bool = False) -> Path | None:
    return binaries_dir(build, NODE_SCRIPTS / "build.sh", "NODE_BINS_DIR")


def images(build: bool = False) -> Images | None:
    """The node's images, built first when `build` (minutes on a new machine)."""
    r = subprocess.run([str(NODE_SCRIPTS / "images.sh")] + ([] if build else ["--check"]),
                       stdout=subprocess.PIPE, text=True,
                       stderr=None if build else subprocess.DEVNULL)
    if r.returncode != 0:
        if build:
            raise RuntimeError("hack/node/images.sh failed")
        return None
    refs, archives = image_report(r.stdout)
    return Images(refs["base"], refs["pause"], refs["app"], archives)


def image_report(text: str) -> tuple[dict[str, str], tuple[Path, ...]]:
    """An images script's report, one `<kind>=<ref> <archive>` a line: refs by kind, and
    the archives to import."""
    refs, archives = {}, []
    for line in text.splitlines():
        kind, _, rest = line.partition("=")
        ref, _, archive = rest.partition(" ")
        refs[kind] = ref
        archives.append(Path(archive))
    return refs, tuple(archives)


def missing() -> str | None:
    """Which binaries are not built yet, as a phrase, or None. (The images are not asked
    about: Cluster() builds them when the sources changed, in about a minute.)"""
    if binaries_dir() is None:
        return "the Kubernetes binaries (hack/kube/build.sh)"
    if node_binaries_dir() is None:
        return "the node's tools (hack/node/build.sh)"
    return None


class Cluster:
    def __init__(self, workdir: Path, domain: str = DEFAULT_DOMAIN) -> None:
        self.dir = workdir
        self.domain = domain
        self.images = images(build=True)
        self.kube_bins = binaries_dir(build=True)
        self.node_bins = node_binaries_dir(build=True)
        self.cp = ControlPlane(self.kube_bins, workdir / "control-plane")
        self.node = Node(self.cp, self.kube_bins, self.node_bins, workdir / "node",
                         list(self.images.archives))
        self.storage = Storage(self.cp, self.node_bins, workdir / "storage", self.images.base)
        self.ingress = Ingress(self.cp, self.node_bins, workdir / "ingress", domain)
        self.dns: subprocess.Popen | None = None

    def start(self, detach: bool = False) -> Cluster:
        try:
            self.node.create_network()  # first: the API server listens on the node's network
            self.cp.start(detach=True, address=self.node.api_address,
                          service_range=self.node.service_range)
            self._start_dns()
            self.node.start(self.images.pause)
            self.storage.start()
            self.ingress.start()
        except BaseException:
            self.stop(remove=False)
            raise
        self._write_state()
        return self

    def _start_dns(self) -> None:
        """The pods' DNS (dns.py) on the host's end of the node's link, as the admin."""
        d = self.dir / "dns"
        d.mkdir(parents=True, exist_ok=True)
        token = d / "token"
        token.touch(mode=0o600)
        token.write_text(self.cp.token)
        with open(d / "dns.log", "ab") as log:
            self.dns = subprocess.Popen(
                [sys.executable, str(HERE / "dns.py"), "--listen", self.node.api_address,
                 "--api", self.cp.server, "--token-file", str(token),
                 "--ca-file", str(self.cp.ca_file), "--domain", node_module.CLUSTER_DOMAIN],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True)

    def _write_state(self) -> None:
        pids = {f"cp:{n}": p.pid for n, p in self.cp.procs.items()}
        if self.dns:
            pids["dns"] = self.dns.pid
        pids.update({f"node:{n}": p.pid for n, p in self.node.procs.items()})
        for name, part in (("storage", self.storage), ("ingress", self.ingress)):
            if part.proc:
                pids[name] = part.proc.pid
        (self.dir / "cluster.json").write_text(json.dumps({
            "pids": pids, "node": self.node.state(), "node_dir": str(self.node.dir),
            "crictl": str(self.node_bins / "crictl")}))

    def logs(self) -> str:
        return "\n".join([self.cp.logs(), self.node.logs(), self.storage.logs(),
                          self.ingress.logs()])

    def stop(self, remove: bool = True) -> dict[str, float]:
        """The ingress controller and the provisioner, the node (its pods first), the control
        plane, then the node's network, which holds the API server's address. Returns the
        seconds each step took, for a caller that promises a quick stop to show where."""
        steps = {"ingress": self.ingress.stop, "storage": self.storage.stop,
                 "dns": lambda: terminate(self.dns),
                 "node": lambda: self.node.stop(remove=remove, keep_network=True),
                 "control plane": lambda: self.cp.stop(remove=remove),
                 # the API server's address goes last
                 "network": lambda: self.node.remove_network(remove=remove)}
        took = {}
        for name, step in steps.items():
            t0 = time.monotonic()
            step()
            took[name] = time.monotonic() - t0
        if remove:
            shutil.rmtree(self.dir, ignore_errors=True)
        return took


def _kill(pid: int, timeout: float = 10) -> None:
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)


def down(workdir: Path) -> None:
    """Stop a cluster started with `up` (by its state file), in the same order as stop()."""
    state_file = workdir / "cluster.json"
    if state_file.exists():
        state = json.loads(state_file.read_text())
        pids = state["pids"]
        for name in ("ingress", "storage", "dns", "node:network-policies", "node:kube-proxy",
                     "node:kubelet"):
            if name in pids:
                _kill(pids[name])
        sock = state["node"]["socket"]
        if Path(sock).exists():
            subprocess.run([state["crictl"], "--runtime-endpoint", f"unix://{sock}", "--timeout",
                            "20s", "rmp", "--all", "--force"], capture_output=True, timeout=60)
        for name in ("node:containerd", "cp:kube-scheduler", "cp:kube-controller-manager",
                     "cp:kube-apiserver", "cp:etcd"):
            if name in pids:
                _kill(pids[name])
        node_module.sweep(Path(state["node_dir"]), state["node"])
    shutil.rmtree(workdir, ignore_errors=True)


def main() -> int:
    ap = argparse.ArgumentParser(description="A local Kubernetes cluster with one real node.")
    ap.add_argument("command", choices=["up", "down"])
    ap.add_argument("--dir", default=os.path.join(tempfile.gettempdir(), "joyn-scim-dev-cluster"))
    args = ap.parse_args()
    workdir = Path(args.dir)
    if args.command == "down":
        down(workdir)
        print(f"stopped; removed {workdir}")
        return 0
    if (workdir / "cluster.json").exists():
        print(f"already running in {workdir}; stop it with: make dev-cluster-down",
              file=sys.stderr)
        return 1
    c = Cluster(workdir).start()
    print(f"cluster running: {c.cp.server}, node {node_module.NODE_NAME}, ingress controller "
          f"on {c.ingress.address}:443 (logs in {workdir})\n"
          f"export KUBECONFIG={c.cp.kubeconfig}\n"
          f"{c.cp.bins / 'kubectl'} get nodes,pods -A\n"
          f"server image: {c.images.app}\n"
          "stop it with: make dev-cluster-down")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
