"""A real Kubernetes node on this machine: containerd + runc + CNI plugins (Debian's packages),
the kubelet and kube-proxy built from the pinned k8s.io/kubernetes module (hack/kube/build.sh),
and kube-network-policies (hack/node/build.sh) enforcing NetworkPolicies.

The node has a network namespace of its own (`joyn-scim-<id>`), as a real node has a network
stack of its own: containerd (so the CNI plugin and every pod's veth), the kubelet, kube-proxy
and kube-network-policies run in it (`nsenter --net`; the mount namespace stays the host's, so
containerd's mounts and the pods' network namespaces are where the host sees them). That is what
lets kube-proxy run at all: its nftables table (`kube-proxy`) and its chains have fixed names,
so two nodes in one namespace (the test cluster and the demo a test starts, or a second test
cluster) would rewrite each other's rules; in a namespace each they cannot meet, and everything
they programmed goes with the namespace when the node stops.

Inside: the pod bridge (`jscim-pods`, 10.217.N.0/24 with the gateway .1, the kubelet's node IP)
and the node's end (10.218.N.2) of a veth pair to the host (`jscim<id>`, 10.218.N.1, where the
API server listens on port 443). The Service range is a /20 of its own (4,096 addresses, room
for the scale benchmark's 500 tenants: 10.64.0.0/12 cut in sixteenths by N); kube-proxy sends
its ClusterIPs, the `kubernetes` Service's first, to their endpoints, so a pod reaches the API
where the kubelet tells it to (KUBERNETES_SERVICE_HOST/PORT). The host routes the pod range and
the Service range into the node (it reaches pod IPs, as the ingress controller does, and
ClusterIPs); pods route the Service range and the link to their gateway, and nothing else: they
have no way out of the machine. Their DNS (dns.py, on the host's end of the link) resolves
`<service>.<namespace>.svc.cluster.local` to ClusterIPs, and no other name.

Everything else the node creates is its own and inside its folder, never the host's default
paths: containerd's config, root, state and socket; runc's state; the kubelet's root,
certificates and pod logs; the CNI configuration and its IP allocations. What cannot live in the
folder is named after the node's id and removed on stop: the node's namespace and its link, the
cgroup root (one in each cgroup v1 hierarchy), the network namespaces of its pods, the CNI cache
entries and the kubelet's /var/log/containers links. `stop()` tears pods down through the CRI
first (crictl, so the bridge plugin releases each pod's veth and address), then sweeps whatever
a crash left.
"""

from __future__ import annotations

import ipaddress
import json
import os
import random
import secrets
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from controlplane import NETPOL_USER, NODE_NAME, free_port, log_tail, terminate, wait_for

CNI_BIN = Path("/usr/lib/cni")
CNI_CACHE = Path("/var/lib/cni")
NETNS_DIR = Path("/run/netns")
CONTAINER_LOGS = Path("/var/log/containers")  # the kubelet's links; fixed in its code
SHIM_SOCKETS = Path("/run/containerd/s")  # containerd 1.6 puts its shims' sockets here
DEVICE_PLUGINS = Path("/var/lib/kubelet/device-plugins")  # the kubelet's socket; fixed in its code
# Host folders the runtime or the kubelet create when missing, whatever their configuration
# says; removed on stop (where empty) unless they were there before the node started.
HOST_FOLDERS = (Path("/run/containerd"), CNI_CACHE, Path("/var/lib/kubelet"), CONTAINER_LOGS)
# Inside the node's namespace, so the same names in every node.
BRIDGE = "jscim-pods"
UPLINK = "jscim-host"  # the node's end of its link to the host
CLUSTER_DOMAIN = "cluster.local"
PROXY_HEALTH_PORT = 10256  # kube-proxy's default, free in a namespace of the node's own
NFQUEUE = 100  # kube-network-policies' default queue; queues are per network namespace
NETPOL_CHAIN = "JOYN-SCIM-NETWORK-POLICIES"
NETPOL_RBAC = {
    "apiVersion": "v1", "kind": "List", "items": [
        # kube-network-policies' own install.yaml, plus the Events its recorder writes.
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
         "metadata": {"name": "joyn-scim-network-policies"},
         "rules": [
             {"apiGroups": [""], "resources": ["pods", "namespaces"],
              "verbs": ["list", "watch"]},
             {"apiGroups": ["networking.k8s.io"], "resources": ["networkpolicies"],
              "verbs": ["list", "watch"]},
             {"apiGroups": ["", "events.k8s.io"], "resources": ["events"],
              "verbs": ["create", "patch", "update"]}]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
         "metadata": {"name": "joyn-scim-network-policies"},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                     "name": "joyn-scim-network-policies"},
         "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User",
                       "name": NETPOL_USER}]},
    ]}


def _run(*args: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(list(args), check=check, capture_output=True, text=True,
                          timeout=timeout)


def networks(n: int) -> tuple[ipaddress.IPv4Network, ...]:
    """Cluster N's pod range, Service range and host-node link."""
    services = list(ipaddress.ip_network("10.64.0.0/12").subnets(new_prefix=20))[n]
    return (ipaddress.ip_network(f"10.217.{n}.0/24"), services,
            ipaddress.ip_network(f"10.218.{n}.0/30"))


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
        raise RuntimeError("no free pod, Service and link ranges for the cluster")
    return random.choice(free)


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


def in_netns(netns: str, *argv: str) -> list[str]:
    """`argv` run in the named network namespace (only that one: the mount namespace stays)."""
    return ["nsenter", f"--net={NETNS_DIR / netns}", *argv]


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
        self.netns = f"joyn-scim-{self.id}"  # the node's network namespace
        self.link = f"jscim{self.id}"  # the host's end of its link to the node
        self.bridge = BRIDGE
        self.network = f"joyn-scim-{self.id}"
        self.cgroup_root = f"/joyn-scim-{self.id}"
        self.subnet = ""
        self.gateway = ""
        self.service_range = ""
        self.link_range = ""
        self.api_address = ""  # the host's end of the link, where the API server listens
        self.node_address = ""  # the node's end
        self.policies_error = ""  # why NetworkPolicies are not enforced, if they are not
        self.folders_before = [str(f) for f in HOST_FOLDERS if f.exists()]

    # -- paths ------------------------------------------------------------------------------

    @property
    def socket(self) -> Path:
        return self.dir / "containerd" / "containerd.sock"

    def log(self, name: str) -> Path:
        return self.dir / f"{name}.log"

    @property
    def registry_hosts(self) -> Path:
        """containerd's hosts folder: how it reaches each registry (hosts.toml)."""
        return self.dir / "containerd" / "certs.d"

    def logs(self, tail: int = 60) -> str:
        return "\n".join(log_tail(self.log(n), tail) for n in (
            "containerd", "kubelet", "kube-proxy", "network-policies"))

    def ctr(self, *args: str, check: bool = True, timeout: float = 300):
        return _run("ctr", "--address", str(self.socket), "--namespace", "k8s.io", *args,
                    check=check, timeout=timeout)

    def crictl(self, *args: str, check: bool = True, timeout: float = 60):
        return _run(str(self.node_bins / "crictl"), "--runtime-endpoint",
                    f"unix://{self.socket}", "--timeout", "20s", *args, check=check,
                    timeout=timeout)

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        """A command in the node's network namespace (`ip`, `nft`, `iptables`...)."""
        return _run(*in_netns(self.netns, *args), check=check)

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
        self._kube_proxy()
        try:
            self._network_policies()
        except RuntimeError as e:  # a kernel without nfnetlink_queue or NFQUEUE, say
            terminate(self.procs.pop("network-policies", None))
            for rule in (("-D", "POSTROUTING", "-j", NETPOL_CHAIN), ("-F", NETPOL_CHAIN),
                         ("-X", NETPOL_CHAIN)):
                self.run("iptables", "-t", "mangle", *rule, check=False)
            self.policies_error = str(e).splitlines()[0]
            print(f"node: NetworkPolicies are not enforced: {self.policies_error} "
                  f"(see {self.log('network-policies')})", file=sys.stderr)
        return self

    def create_network(self) -> None:
        """The node's namespace with the pod bridge and its link to the host, whose end is the
        API server's address; before the control plane starts, which listens there."""
        self.dir.mkdir(parents=True, exist_ok=True)
        n = _free_network()
        pods, services, link = networks(n)
        self.subnet, self.gateway = str(pods), str(pods[1])
        self.service_range, self.link_range = str(services), str(link)
        self.api_address, self.node_address = str(link[1]), str(link[2])
        _run("ip", "netns", "add", self.netns)
        node = ("ip", "-n", self.netns)
        _run(*node, "link", "set", "lo", "up")
        _run(*node, "link", "add", BRIDGE, "type", "bridge")
        _run(*node, "addr", "add", f"{self.gateway}/24", "dev", BRIDGE)
        _run(*node, "link", "set", BRIDGE, "up")
        _run("ip", "link", "add", self.link, "type", "veth", "peer", "name", UPLINK,
             "netns", self.netns)
        # The API server's address is outside the Service range: kube-proxy rejects a
        # connection whose destination is still a ClusterIP after its DNAT (it takes it for a
        # port the Service lacks), which is what the `kubernetes` Service's would be were its
        # endpoint its own ClusterIP.
        _run("ip", "addr", "add", f"{self.api_address}/30", "dev", self.link)
        _run(*node, "addr", "add", f"{self.node_address}/30", "dev", UPLINK)
        _run("ip", "link", "set", self.link, "up")
        _run(*node, "link", "set", UPLINK, "up")
        for dst in (self.subnet, self.service_range):
            _run("ip", "route", "add", dst, "via", self.node_address, "dev", self.link)
        # Forwarding: pods to the host and to each other through ClusterIPs. br_netfilter on
        # the bridge: when kube-proxy sends a pod's connection to a ClusterIP to a pod on the
        # same bridge, the answer is bridged straight back (same subnet, no routing); only
        # when bridged packets pass the IP hooks does conntrack see it and put the ClusterIP
        # back as its source, else the client drops an answer from an address it never
        # called. (--masquerade-all would also fix it, by routing the answer back through the
        # node, but would hide the client's address from the server, and a NetworkPolicy
        # admits by that address.) Both are the kernel's defaults here; set so they hold.
        self.run("sysctl", "-q", "-w", "net.ipv4.ip_forward=1",
                 "net.bridge.bridge-nf-call-iptables=1")
        conf = self.dir / "cni" / "net.d"
        conf.mkdir(parents=True, exist_ok=True)
        (conf / "10-joyn-scim.conflist").write_text(json.dumps({
            "cniVersion": "1.0.0", "name": self.network, "plugins": [{
                # hairpinMode: a pod that reaches its own Service and is sent to itself gets
                # the packet back out of the port it came in on (kube-proxy masquerades it).
                "type": "bridge", "bridge": BRIDGE, "isGateway": True, "ipMasq": False,
                "hairpinMode": True, "ipam": {
                    "type": "host-local", "ranges": [[{"subnet": self.subnet,
                                                       "gateway": self.gateway}]],
                    # Pods route the Service range (kube-proxy's ClusterIPs) and the link (the
                    # host, to answer it) through the node, and nothing else: they have no way
                    # out of the machine.
                    "routes": [{"dst": self.service_range, "gw": self.gateway},
                               {"dst": self.link_range, "gw": self.gateway}],
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
  # the node's own loopback: the kubelet, beside it, proxies exec and port-forward to it
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
# A folder per registry host (<host:port>/hosts.toml), read at each pull: a test adds the
# registry it runs (tests/kube/test_pull_secrets.py) without restarting containerd.
[{cri}.registry]
  config_path = "{self.registry_hosts}"
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
            # Service names resolve (dns.py, which cluster.py runs on the host's end of the
            # link), with a cluster's usual search path; nothing else does.
            "clusterDNS": [self.api_address], "clusterDomain": CLUSTER_DOMAIN,
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

    def _kube_proxy(self) -> None:
        """kube-proxy in nftables mode (the kernel's nf_tables; its rules in a table of its
        own, `ip kube-proxy`, in the node's namespace). Ready once it answers /healthz, which
        it does only after its first full sync of Services and EndpointSlices."""
        d = self.dir / "kube-proxy"
        d.mkdir(parents=True, exist_ok=True)
        kubeconfig = self.cp.write_kubeconfig(d / "kubeconfig", "kube-proxy",
                                              self.cp.proxy_token)
        config = {
            "apiVersion": "kubeproxy.config.k8s.io/v1alpha1", "kind": "KubeProxyConfiguration",
            "mode": "nftables", "clientConnection": {"kubeconfig": str(kubeconfig)},
            "hostnameOverride": NODE_NAME,
            # Traffic from outside the pod range to a ClusterIP (the host's) is masqueraded.
            "clusterCIDR": self.subnet, "detectLocalMode": "ClusterCIDR",
            "nodePortAddresses": ["primary"],
            "healthzBindAddress": f"{self.gateway}:{PROXY_HEALTH_PORT}",
            "metricsBindAddress": "127.0.0.1:10249",
            # nf_conntrack_max is the machine's (read-only outside the host's namespace): left
            # alone. The TCP timeouts it sets are the node namespace's own.
            "conntrack": {"maxPerCore": 0, "min": 0},
        }
        (d / "config.json").write_text(json.dumps(config, indent=2))
        self._spawn("kube-proxy", [str(self.kube_bins / "kube-proxy"),
                                   f"--config={d / 'config.json'}"])
        self._wait("kube-proxy's first sync", self.proxy_ready, timeout=60)

    def proxy_ready(self) -> bool:
        try:
            with urllib.request.urlopen(
                    f"http://{self.gateway}:{PROXY_HEALTH_PORT}/healthz", timeout=2) as r:
                return r.status == 200
        except OSError:
            return False

    def _network_policies(self) -> None:
        """kube-network-policies: it decides each new connection to or from a pod by the
        NetworkPolicies, in user space, on the first packet that netfilter queues to it.

        Its own nftables rules cannot be loaded here: they queue with nftables' `queue`
        statement, and this kernel is built without it (CONFIG_NFT_QUEUE unset; `nft add rule
        ... queue num 100` fails with "No such file or directory"), so its table is never made:
        it logs `"syncing nftables rules" error=<conn.Receive: netlink receive: no such file or
        directory>` at each sync and goes on. The kernel does have the queue itself
        (nfnetlink_queue) and iptables' NFQUEUE target, so the harness loads the equivalent
        rule with iptables-nft, in the node's namespace. It queues every new connection of a
        pod, not only those of pods a policy selects (it has no such set), which costs a trip
        to user space per connection and decides the same."""
        d = self.dir / "network-policies"
        sa = d / "serviceaccount"
        sa.mkdir(parents=True, exist_ok=True)
        (sa / "token").write_text(self.cp.netpol_token)
        (sa / "token").chmod(0o600)
        shutil.copy(self.cp.ca_file, sa / "ca.crt")
        self.cp.kubectl("apply", "--server-side", "-f", "-", input=json.dumps(NETPOL_RBAC))
        # Mirrors its postrouting chain: after kube-proxy's DNAT (the destination is the pod,
        # not the ClusterIP), before any masquerade (the source is still the client pod).
        # What it lets through unasked: connections already decided, the node's own root
        # processes (its `meta skuid 0 accept`: the kubelet's probes), and the host's address,
        # for the same reason: here the host runs what a node would (the ingress controller,
        # the operator as a process, the tests).
        rules = "\n".join([
            "*mangle", f":{NETPOL_CHAIN} - [0:0]", f"-A POSTROUTING -j {NETPOL_CHAIN}",
            f"-A {NETPOL_CHAIN} -m conntrack --ctstate ESTABLISHED,RELATED -j RETURN",
            f"-A {NETPOL_CHAIN} -m owner --uid-owner 0 -j RETURN",
            f"-A {NETPOL_CHAIN} -s {self.api_address}/32 -j RETURN",
            # --queue-bypass: while nothing listens (it is starting), connections pass.
            f"-A {NETPOL_CHAIN} -s {self.subnet} -j NFQUEUE --queue-num {NFQUEUE} "
            "--queue-bypass",
            f"-A {NETPOL_CHAIN} -d {self.subnet} -j NFQUEUE --queue-num {NFQUEUE} "
            "--queue-bypass",
            "COMMIT", ""])
        r = subprocess.run(in_netns(self.netns, "iptables-restore", "--noflush"), input=rules,
                           capture_output=True, text=True, timeout=60)
        if r.returncode != 0:
            raise RuntimeError(f"iptables-restore in {self.netns}: {r.stderr.strip()}")
        # It takes its credentials only from a pod's paths (rest.InClusterConfig); a mount
        # namespace of its own has them, over a /run of its own, and goes with the process.
        script = ("mount -t tmpfs -o mode=0755 tmpfs /run && "
                  "mkdir -p /run/secrets/kubernetes.io && "
                  'ln -s "$0" /run/secrets/kubernetes.io/serviceaccount && exec "$@"')
        self._spawn("network-policies", [
            "unshare", "--mount", "--propagation", "private", "sh", "-c", script, str(sa),
            str(self.node_bins / "kube-network-policies"), f"--hostname-override={NODE_NAME}",
            f"--nfqueue-id={NFQUEUE}", "--metrics-bind-address=127.0.0.1:9080",
            # containerd 1.6 has no NRI; the kernel has the conntrack fix (6.12+) this is for
            "--disable-nri", "--netfilter-bug-1766-fix=false"],
            env={"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
                 "KUBERNETES_SERVICE_HOST": self.api_address, "KUBERNETES_SERVICE_PORT": "443"})
        self._wait("kube-network-policies to take its queue", self.policies_enforced,
                   timeout=60)

    def policies_enforced(self) -> bool:
        """True while kube-network-policies listens on its queue (it starts to only after its
        caches of NetworkPolicies, namespaces and pods have synced): NetworkPolicies are
        enforced. When not, `policies_error` says why."""
        p = self.procs.get("network-policies")
        if p is None or p.poll() is not None:
            return False
        try:
            queues = Path(f"/proc/{p.pid}/net/netfilter/nfnetlink_queue").read_text()
        except OSError:
            return False
        return any(line.split()[:1] == [str(NFQUEUE)] for line in queues.splitlines())

    def ready(self) -> bool:
        node = self.cp.get_json(f"/api/v1/nodes/{NODE_NAME}")
        return any(c["type"] == "Ready" and c["status"] == "True"
                   for c in ((node or {}).get("status") or {}).get("conditions") or [])

    def _spawn(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> None:
        """`argv` in the node's network namespace, in a session of its own."""
        with open(self.log(name), "ab") as log:
            self.procs[name] = subprocess.Popen(in_netns(self.netns, *argv), stdout=log,
                                                stderr=subprocess.STDOUT,
                                                stdin=subprocess.DEVNULL, cwd=self.dir,
                                                env=env, start_new_session=True)

    def _wait(self, what: str, check, timeout: float = 60) -> None:
        wait_for(what, check, self.procs, self.logs, timeout)

    # -- stop -------------------------------------------------------------------------------

    def stop(self, remove: bool = True, keep_network: bool = False) -> None:
        """The network agents, the kubelet (or it would restart what we stop), every pod
        sandbox through the CRI, then containerd; then the sweep for whatever is left.
        kube-proxy's and the policies' rules need no clean-up of their own: they are in the
        node's namespace and go with it. `keep_network`: leave the namespace and the link (and
        the API server's address on it) for remove_network(), once the API server has stopped:
        it holds connections to itself there, and without the address its graceful shutdown
        waits a minute for them."""
        terminate(self.procs.pop("network-policies", None))
        terminate(self.procs.pop("kube-proxy", None))
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
        return {"id": self.id, "netns": self.netns, "link": self.link, "bridge": self.bridge,
                "network": self.network, "cgroup_root": self.cgroup_root,
                "socket": str(self.socket), "folders_before": self.folders_before}


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


def _same_netns(netns: str):
    """A test for /proc/<pid>: is that process in the named network namespace?"""
    try:
        st = os.stat(NETNS_DIR / netns)
    except OSError:
        return lambda proc: False

    def match(proc: Path) -> bool:
        ns = os.stat(proc / "ns" / "net")
        return (ns.st_dev, ns.st_ino) == (st.st_dev, st.st_ino)
    return match


def unix_sockets() -> dict[str, str]:
    """Every bound unix socket on the machine, as inode -> path. /proc/net/unix lists only
    those of the reader's network namespace, and a node's kubelet and shims are in the node's:
    so each namespace's list, read through one of its processes."""
    out, seen = {}, set()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            ns = os.stat(proc / "ns" / "net").st_ino
            if ns in seen:
                continue
            lines = (proc / "net" / "unix").read_text().splitlines()[1:]
        except OSError:
            continue
        seen.add(ns)
        for line in lines:
            fields = line.split()
            if len(fields) > 7:
                out[fields[6]] = fields[7]
    return out


def pod_namespaces(state: dict) -> set[str]:
    """The names of the network namespaces of the node's pods (their veths on its bridge)."""
    netns = state["netns"]
    if not (NETNS_DIR / netns).exists():
        return set()
    node = ("ip", "-n", netns, "-j")
    links = json.loads(_run(*node, "link", "show", "master", state["bridge"],
                            check=False).stdout or "[]")
    ids = {link.get("link_netnsid") for link in links} - {None}
    # Namespace ids are per namespace: these are the node's, as the veths' are.
    named = json.loads(_run(*node, "netns", "list", check=False).stdout or "[]")
    return {ns["name"] for ns in named if ns.get("id") in ids}


def sweep(folder: Path, state: dict, network: bool = True) -> None:
    """Remove what a node made outside its folder, and unmount what it mounted inside it, once
    its kubelet and containerd are stopped. Safe to call twice, and after a crash (reads only
    `state` and the machine)."""
    sock = state["socket"]
    cgroup_root = state["cgroup_root"]
    # Shims outlive containerd (they are their own session); the containers' processes sit in
    # the node's cgroups; kube-proxy and the policies' agent in its namespace.
    victims = _pids_where(lambda p: sock in (p / "cmdline").read_bytes().decode(errors="replace"))
    victims += _pids_where(lambda p: f":{cgroup_root}/" in (p / "cgroup").read_text())
    victims += _pids_where(_same_netns(state["netns"]))
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
    listening = set(unix_sockets().values())
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


def _sweep_network(state: dict) -> None:
    """The pods' network namespaces, the link (its host end takes the node's with it, and the
    host's routes into the node), then the node's namespace: its bridge, and every rule that
    kube-proxy, the kubelet and the policies loaded in it."""
    for name in pod_namespaces(state):
        _run("ip", "netns", "delete", name, check=False)
    _run("ip", "link", "delete", state["link"], check=False)
    _run("ip", "netns", "delete", state["netns"], check=False)
