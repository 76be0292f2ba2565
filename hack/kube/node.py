"""A real Kubernetes node on this machine: containerd + runc + CNI plugins (Debian's packages)
and a kubelet built from the pinned k8s.io/kubernetes module (hack/kube/build.sh).

Everything it creates is its own and inside its folder, never the host's default paths:
containerd's config, root, state and socket; runc's state; the kubelet's root, certificates
and pod logs; the CNI configuration and its IP allocations. What cannot live in the folder is
named after the node's id and removed on stop: the pod bridge, the cgroup root (one in each
cgroup v1 hierarchy), the network namespaces of its pods, the CNI cache entries and the
kubelet's /var/log/containers links. `stop()` tears pods down through the CRI first (crictl,
so the bridge plugin releases each pod's veth and address), then sweeps whatever a crash left.

The pod network is one bridge owned by the node with a /24 of its own (10.217.N.0/24); the host
reaches pod IPs over it directly. The Service range is a /20 of its own (4,096 addresses, room
for the scale benchmark's 500 tenants: 10.64.0.0/12 cut in sixteenths by N) whose first
address, the `kubernetes` Service's ClusterIP, the host owns on the
bridge: the API server listens on it at port 443, so a pod reaches the API exactly where the
kubelet tells it to (KUBERNETES_SERVICE_HOST/PORT) with no NAT in between. No kube-proxy runs:
its iptables chains have fixed, machine-wide names, so two clusters here (the test cluster and
the demo a test starts) would rewrite each other's rules; the ingress controller routes to
EndpointSlices (pod IPs) and no other ClusterIP is used. No cluster DNS either: the pods that
run here resolve no names.
"""

from __future__ import annotations

import ipaddress
import json
import os
import random
import secrets
import shlex
import shutil
import signal
import subprocess
import time
from pathlib import Path

from controlplane import NODE_NAME, free_port, log_tail, terminate, wait_for

CNI_BIN = Path("/usr/lib/cni")
CNI_CACHE = Path("/var/lib/cni")
NETNS_DIR = Path("/run/netns")
CONTAINER_LOGS = Path("/var/log/containers")  # the kubelet's links; fixed in its code
SHIM_SOCKETS = Path("/run/containerd/s")  # containerd 1.6 puts its shims' sockets here
DEVICE_PLUGINS = Path("/var/lib/kubelet/device-plugins")  # the kubelet's socket; fixed in its code
# Host folders the runtime or the kubelet create when missing, whatever their configuration
# says; removed on stop (where empty) unless they were there before the node started.
HOST_FOLDERS = (Path("/run/containerd"), CNI_CACHE, Path("/var/lib/kubelet"), CONTAINER_LOGS)
IPTABLES = ("iptables", "ip6tables")
TABLES = ("filter", "nat", "mangle")


def _run(*args: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(list(args), check=check, capture_output=True, text=True,
                          timeout=timeout)


def networks(n: int) -> tuple[ipaddress.IPv4Network, ipaddress.IPv4Network]:
    """Cluster N's pod and Service ranges."""
    services = list(ipaddress.ip_network("10.64.0.0/12").subnets(new_prefix=20))[n]
    return ipaddress.ip_network(f"10.217.{n}.0/24"), services


def _free_network() -> int:
    """An N whose ranges no route on this machine (the local table's included) touches."""
    routes = _run("ip", "-4", "route", "show", "table", "all").stdout
    used = []
    for word in routes.split():
        try:
            used.append(ipaddress.ip_network(word, strict=False))
        except ValueError:
            continue
    free = [n for n in range(1, 255)
            if not any(net.overlaps(u) for net in networks(n) for u in used if u.version == 4)]
    if not free:
        raise RuntimeError("no free pod and Service ranges for the cluster")
    return random.choice(free)


def kube_chains() -> list[list[str]]:
    """The KUBE-* iptables chains that exist now, as [command, table, chain] (the kubelet makes
    KUBE-FIREWALL, KUBE-KUBELET-CANARY and KUBE-IPTABLES-HINT)."""
    out = []
    for cmd in IPTABLES:
        for table in TABLES:
            r = _run(f"{cmd}-save", "-t", table, check=False)
            out += [[cmd, table, line[1:].split()[0]] for line in r.stdout.splitlines()
                    if line.startswith(":KUBE-")]
    return out


def cgroup_hierarchies() -> list[Path]:
    """The mounted cgroup hierarchies (cpu, memory, ..., the named systemd one, and the
    unified one of a hybrid set-up)."""
    seen, out = set(), []
    for line in Path("/proc/self/mounts").read_text().splitlines():
        fields = line.split()
        if fields[2] in ("cgroup", "cgroup2") and fields[1] not in seen:
            seen.add(fields[1])
            out.append(Path(fields[1]))
    return out


class Node:
    def __init__(self, cp, kube_bins: Path, node_bins: Path, workdir: Path,
                 images: list[Path]) -> None:
        self.cp = cp
        self.kube_bins = kube_bins
        self.node_bins = node_bins
        self.dir = workdir
        self.images = images
        self.procs: dict[str, subprocess.Popen] = {}
        self.id = secrets.token_hex(3)
        self.bridge = f"jscim{self.id}"
        self.network = f"joyn-scim-{self.id}"
        self.cgroup_root = f"/joyn-scim-{self.id}"
        self.subnet = ""
        self.gateway = ""
        self.service_range = ""
        self.api_address = ""  # the `kubernetes` Service's ClusterIP, owned by the host
        self.chains_before = kube_chains()  # another node's kubelet may share them: kept
        self.folders_before = [str(f) for f in HOST_FOLDERS if f.exists()]

    # -- paths ------------------------------------------------------------------------------

    @property
    def socket(self) -> Path:
        return self.dir / "containerd" / "containerd.sock"

    def log(self, name: str) -> Path:
        return self.dir / f"{name}.log"

    def logs(self, tail: int = 60) -> str:
        return "\n".join(log_tail(self.log(n), tail) for n in ("containerd", "kubelet"))

    def ctr(self, *args: str, check: bool = True, timeout: float = 300):
        return _run("ctr", "--address", str(self.socket), "--namespace", "k8s.io", *args,
                    check=check, timeout=timeout)

    def crictl(self, *args: str, check: bool = True, timeout: float = 60):
        return _run(str(self.node_bins / "crictl"), "--runtime-endpoint",
                    f"unix://{self.socket}", "--timeout", "20s", *args, check=check,
                    timeout=timeout)

    # -- start ------------------------------------------------------------------------------

    def start(self, pause_image: str) -> Node:
        try:
            return self._start(pause_image)
        except BaseException:
            self.stop(remove=False)
            raise

    def _start(self, pause_image: str) -> Node:
        longest = self.dir / "kubelet" / "root" / "pod-resources" / ("0" * 10)  # a kubelet socket
        if len(str(longest)) > 107:
            raise RuntimeError(f"{self.dir} is too long a path for the unix sockets inside it")
        self.dir.mkdir(parents=True, exist_ok=True)
        if not self.subnet:
            self.create_network()
        self._containerd(pause_image)
        for archive in self.images:
            self.ctr("images", "import", str(archive))
        self._cgroups()
        self._kubelet()
        return self

    def create_network(self) -> None:
        """The pod bridge with its gateway and the API server's address; before the control
        plane starts, which listens on that address."""
        self.dir.mkdir(parents=True, exist_ok=True)
        n = _free_network()
        pods, services = networks(n)
        self.subnet, self.gateway = str(pods), str(pods[1])
        self.service_range, self.api_address = str(services), str(services[1])
        _run("ip", "link", "add", "name", self.bridge, "type", "bridge")
        _run("ip", "addr", "add", f"{self.gateway}/24", "dev", self.bridge)
        # /32: the host owns this one address; the rest of the Service range stays unrouted.
        _run("ip", "addr", "add", f"{self.api_address}/32", "dev", self.bridge)
        _run("ip", "link", "set", self.bridge, "up")
        conf = self.dir / "cni" / "net.d"
        conf.mkdir(parents=True, exist_ok=True)
        (conf / "10-joyn-scim.conflist").write_text(json.dumps({
            "cniVersion": "1.0.0", "name": self.network, "plugins": [{
                "type": "bridge", "bridge": self.bridge, "isGateway": True, "ipMasq": False,
                "hairpinMode": True, "ipam": {
                    "type": "host-local", "ranges": [[{"subnet": self.subnet,
                                                       "gateway": self.gateway}]],
                    # Pods route the Service range (the API server) through the host, and
                    # nothing else: they have no way out of the machine.
                    "routes": [{"dst": self.service_range, "gw": self.gateway}],
                    "dataDir": str(self.dir / "cni" / "ipam")}}]}, indent=2))

    def _containerd(self, pause_image: str) -> None:
        d = self.dir / "containerd"
        d.mkdir(parents=True, exist_ok=True)
        cri = 'plugins."io.containerd.grpc.v1.cri"'
        (d / "config.toml").write_text(f"""version = 2
root = "{d / 'root'}"
state = "{d / 'state'}"
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs",
                    "io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.devmapper"]
[grpc]
  address = "{self.socket}"
[ttrpc]
  address = "{self.socket}.ttrpc"
[plugins."io.containerd.internal.v1.opt"]
  path = "{d / 'opt'}"
[{cri}]
  sandbox_image = "{pause_image}"
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_cdi = false
  # This machine may not lower a process's oom_score_adj (the pod sandbox asks for -998);
  # containerd then keeps each container at its own level or above.
  restrict_oom_score_adj = true
[{cri}.containerd]
  snapshotter = "overlayfs"
  default_runtime_name = "runc"
[{cri}.containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"
[{cri}.containerd.runtimes.runc.options]
  SystemdCgroup = false
  Root = "{self.dir / 'runc'}"
[{cri}.cni]
  bin_dir = "{CNI_BIN}"
  conf_dir = "{self.dir / 'cni' / 'net.d'}"
""")
        self._spawn("containerd", ["containerd", "--config", str(d / "config.toml")])
        self._wait("containerd", lambda: self.socket.exists() and self.ctr(
            "version", check=False, timeout=10).returncode == 0)

    def _cgroups(self) -> None:
        """The kubelet wants its cgroup root to exist in every hierarchy; a new cpuset cgroup
        takes no task until it has CPUs and memory nodes, so those are copied from the top."""
        for h in cgroup_hierarchies():
            root = h / self.cgroup_root.lstrip("/")
            root.mkdir(exist_ok=True)
            for name in ("cpuset.cpus", "cpuset.mems"):
                if (h / name).exists():
                    (root / name).write_text((h / name).read_text())

    def _kubelet(self) -> None:
        d = self.dir / "kubelet"
        (d / "pki").mkdir(parents=True, exist_ok=True)
        config = {
            "apiVersion": "kubelet.config.k8s.io/v1beta1", "kind": "KubeletConfiguration",
            "address": self.gateway, "port": free_port(), "readOnlyPort": 0,
            "healthzBindAddress": "127.0.0.1", "healthzPort": free_port(),
            "authentication": {"anonymous": {"enabled": False}, "webhook": {"enabled": True},
                               "x509": {"clientCAFile": str(self.cp.kubelet_client_ca)}},
            "authorization": {"mode": "Webhook"},
            "containerRuntimeEndpoint": f"unix://{self.socket}",
            # Debian's containerd 1.6 has no RuntimeConfig RPC, so the kubelet reads the driver
            # from here (a fallback Kubernetes 1.36 still has); this machine has cgroup v1 only.
            "cgroupDriver": "cgroupfs", "cgroupRoot": self.cgroup_root, "failCgroupV1": False,
            "failSwapOn": False,
            "podLogsDir": str(self.dir / "pod-logs"),
            "resolvConf": "/etc/resolv.conf",
            # Secret volumes are refreshed at each pod sync: every 5 s, not every minute, so a
            # rotated token reaches the pod within seconds (the production default is 1 min).
            "syncFrequency": "5s",
            "nodeStatusUpdateFrequency": "5s",
            "imageGCHighThresholdPercent": 100, "imageGCLowThresholdPercent": 99,
            "evictionHard": {"memory.available": "100Mi", "nodefs.available": "1%",
                             "imagefs.available": "1%"},
            "maxPods": 60, "serializeImagePulls": False,
        }
        (d / "config.json").write_text(json.dumps(config, indent=2))
        kubeconfig = self.cp.write_kubeconfig(d / "kubeconfig", "node", self.cp.node_token)
        self._spawn("kubelet", [
            str(self.kube_bins / "kubelet"), f"--config={d / 'config.json'}",
            f"--kubeconfig={kubeconfig}", f"--root-dir={d / 'root'}", f"--cert-dir={d / 'pki'}",
            f"--hostname-override={NODE_NAME}", f"--node-ip={self.gateway}", "--v=1"])
        self._wait("the node to be Ready", self.ready, timeout=120)

    def ready(self) -> bool:
        node = self.cp.get_json(f"/api/v1/nodes/{NODE_NAME}")
        return any(c["type"] == "Ready" and c["status"] == "True"
                   for c in ((node or {}).get("status") or {}).get("conditions") or [])

    def _spawn(self, name: str, argv: list[str]) -> None:
        with open(self.log(name), "ab") as log:
            self.procs[name] = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                                                stdin=subprocess.DEVNULL, cwd=self.dir,
                                                start_new_session=True)

    def _wait(self, what: str, check, timeout: float = 60) -> None:
        wait_for(what, check, self.procs, self.logs, timeout)

    # -- stop -------------------------------------------------------------------------------

    def stop(self, remove: bool = True, keep_network: bool = False) -> None:
        """Kubelet first (or it would restart what we stop), then every pod sandbox through the
        CRI, then containerd; then the sweep for whatever is left. `keep_network`: leave the
        bridge (and the API server's address on it) for remove_network(), once the API server
        has stopped: it holds connections to itself there, and without the address its
        graceful shutdown waits a minute for them."""
        terminate(self.procs.pop("kubelet", None))
        if self.socket.exists() and "containerd" in self.procs:
            self.crictl("rmp", "--all", "--force", check=False)
        terminate(self.procs.pop("containerd", None))
        sweep(self.dir, self.state(), network=not keep_network)
        if remove and not keep_network:
            shutil.rmtree(self.dir, ignore_errors=True)

    def remove_network(self, remove: bool = True) -> None:
        """The rest of stop(keep_network=True)."""
        _sweep_network(self.state())
        if remove:
            shutil.rmtree(self.dir, ignore_errors=True)

    def state(self) -> dict:
        return {"id": self.id, "bridge": self.bridge, "network": self.network,
                "cgroup_root": self.cgroup_root, "socket": str(self.socket),
                "chains_before": self.chains_before, "folders_before": self.folders_before}


def _pids_where(match) -> list[int]:
    out = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if match(proc):
                out.append(int(proc.name))
        except OSError:
            continue
    return out


def sweep(folder: Path, state: dict, network: bool = True) -> None:
    """Remove what a node made outside its folder, and unmount what it mounted inside it, once
    its kubelet and containerd are stopped. Safe to call twice, and after a crash (reads only
    `state` and the machine)."""
    sock = state["socket"]
    cgroup_root = state["cgroup_root"]
    # Shims outlive containerd (they are their own session); the containers' processes sit in
    # the node's cgroups.
    victims = _pids_where(lambda p: sock in (p / "cmdline").read_bytes().decode(errors="replace"))
    victims += _pids_where(lambda p: f":{cgroup_root}/" in (p / "cgroup").read_text())
    for pid in set(victims):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + 10
    while set(victims) & {int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()}:
        if time.monotonic() > deadline:
            break
        time.sleep(0.05)
    sandboxes = folder / "containerd" / "root" / "io.containerd.grpc.v1.cri" / "sandboxes"
    sandbox_ids = [p.name for p in sandboxes.iterdir()] if sandboxes.is_dir() else []
    if network:
        _sweep_network(state)
    _sweep_iptables(state.get("chains_before") or [])
    mounts = [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()]
    for m in sorted((m for m in mounts if m.startswith(str(folder) + "/")), key=len, reverse=True):
        _run("umount", "-l", m, check=False)
    for h in cgroup_hierarchies():
        root = h / cgroup_root.lstrip("/")
        _remove_empty_folders(root)
    results = CNI_CACHE / "results"
    for entry in results.glob(f"{state['network']}-*"):
        entry.unlink(missing_ok=True)
    for sandbox in sandbox_ids:  # containerd's own loopback network, one entry a sandbox
        for entry in results.glob(f"cni-loopback-{sandbox}-*"):
            entry.unlink(missing_ok=True)
    listening = {line.split()[-1] for line in
                 Path("/proc/net/unix").read_text().splitlines()[1:] if len(line.split()) > 7}
    for sockets in (SHIM_SOCKETS, DEVICE_PLUGINS):  # sockets nothing listens on any more
        if sockets.is_dir():
            for sock_file in sockets.iterdir():
                if sock_file.is_socket() and str(sock_file) not in listening:
                    sock_file.unlink(missing_ok=True)
    if CONTAINER_LOGS.is_dir():
        for link in CONTAINER_LOGS.iterdir():
            if link.is_symlink() and os.readlink(link).startswith(str(folder) + "/"):
                link.unlink()
    for f in HOST_FOLDERS:  # where another node's runtime uses them now, they are not empty
        if str(f) not in state.get("folders_before", [str(f)]):
            _remove_empty_folders(f)


def _remove_empty_folders(root: Path) -> None:
    """`root` and the folders below it, deepest first, where empty (an empty cgroup is one
    without processes)."""
    if not root.is_dir():
        return
    for sub, _dirs, _files in sorted(os.walk(root), key=lambda w: -len(w[0])):
        try:
            os.rmdir(sub)
        except OSError:
            pass


def _sweep_iptables(before: list[list[str]]) -> None:
    """The KUBE-* chains our kubelet made, and the rules that jump to them."""
    for cmd, table, chain in kube_chains():
        if [cmd, table, chain] in before:
            continue
        for line in _run(f"{cmd}-save", "-t", table, check=False).stdout.splitlines():
            if line.startswith("-A ") and f"-j {chain}" in line:
                _run(cmd, "-t", table, "-D", *shlex.split(line[3:]), check=False)
        _run(cmd, "-t", table, "-F", chain, check=False)
        _run(cmd, "-t", table, "-X", chain, check=False)


def _sweep_network(state: dict) -> None:
    """The pods' network namespaces (found through their veths on our bridge), then the bridge."""
    bridge = state["bridge"]
    links = _run("ip", "-j", "link", "show", "master", bridge, check=False)
    ids = {link.get("link_netnsid") for link in json.loads(links.stdout or "[]")}
    namespaces = json.loads(_run("ip", "-j", "netns", "list", check=False).stdout or "[]")
    for ns in namespaces:
        if ns.get("id") in ids:
            _run("ip", "netns", "delete", ns["name"], check=False)
    _run("ip", "link", "delete", bridge, check=False)
