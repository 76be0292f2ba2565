"""The `cluster` fixture: the whole test cluster for the session (hack/kube/cluster.py): a
real control plane on 127.0.0.1, one real node (containerd, runc, CNI, kubelet), PVCs that bind
and an ingress controller serving HTTPS; `control_plane` is its control plane. Also a small API
client and the operator run as a process (`joyn-scim operator`)."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import ssl
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "hack" / "kube"))
import node as node_module  # noqa: E402
from cluster import Cluster, missing  # noqa: E402
from conftest import built, kube_version  # noqa: E402 (tests import them from here)
from controlplane import ControlPlane, free_port  # noqa: E402


class Kube:
    """Just enough of a Kubernetes API client to show what the API server really does."""

    def __init__(self, cp: ControlPlane, token: str | None = None) -> None:
        self.cp = cp
        self.http = httpx.Client(base_url=cp.server, timeout=30,
                                 verify=ssl.create_default_context(cafile=str(cp.ca_file)),
                                 headers={"Authorization": f"Bearer {token or cp.token}"})

    def request(self, method: str, path: str, **kw) -> httpx.Response:
        return self.http.request(method, path, **kw)

    def get(self, path: str, **kw) -> httpx.Response:
        return self.http.get(path, **kw)

    def create(self, path: str, body: dict) -> httpx.Response:
        return self.http.post(path, json=body)

    def delete(self, path: str, **kw) -> httpx.Response:
        return self.http.request("DELETE", path, **kw)

    def namespace(self, prefix: str) -> str:
        """A new namespace named <prefix>-<random>."""
        name = f"{prefix}-{secrets.token_hex(4)}"
        r = self.create("/api/v1/namespaces", {"metadata": {"name": name}})
        assert r.status_code == 201, r.text
        return name

    def apply(self, path: str, body: dict, manager: str, force: bool = False) -> httpx.Response:
        """Server-side apply (JSON is YAML, so the apply content type takes it)."""
        params = {"fieldManager": manager}
        if force:
            params["force"] = "true"
        return self.http.patch(path, params=params, json=body,
                               headers={"Content-Type": "application/apply-patch+yaml"})


def eventually(condition, timeout: float = 60, what: str = ""):
    """Poll until `condition()` returns something truthy, and return it."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what or condition}")
        time.sleep(0.2)


@pytest.fixture(scope="session")
def cluster(tmp_path_factory) -> Cluster:
    what = missing()
    if what is not None:
        message = f"{what} not built: run `make kube-bins` (needs the packages of `make node-deps`)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    c = Cluster(tmp_path_factory.mktemp("cluster")).start()
    yield c
    c.stop()


@pytest.fixture(scope="session")
def control_plane(cluster) -> ControlPlane:
    return cluster.cp


@pytest.fixture(scope="session")
def kube(control_plane) -> Kube:
    return Kube(control_plane)


@pytest.fixture(scope="session")
def network_policies_enforced(cluster) -> None:
    """For a test that needs NetworkPolicies enforced on the node (kube-network-policies,
    hack/kube/node.py): skips it, saying why, where they are not (fails under CI)."""
    if not cluster.node.policies_enforced():
        message = ("the node does not enforce NetworkPolicies: "
                   f"{cluster.node.policies_error or 'kube-network-policies is not running'}")
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


# What a ClientPod runs: each request in turn, one JSON line each, whatever happens.
CLIENT_SCRIPT = """
import json, sys, time, urllib.request
for url, timeout in json.loads(sys.argv[1]):
    start = time.monotonic()
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            result = {"status": r.status}
    except Exception as e:
        result = {"error": repr(e)}
    print(json.dumps({"url": url, "seconds": round(time.monotonic() - start, 2), **result}),
          flush=True)
"""


class ClientPod:
    """A pod that makes HTTP requests, each with its own client timeout, from a namespace's
    network identity (what a NetworkPolicy admits or refuses), and reports what each got
    through its log: {"url", "seconds", "status"} or {"url", "seconds", "error"} (a refusal
    by NetworkPolicy is a timeout: the connection's packets are dropped). Start several, then
    read each one's results(), so their requests overlap."""

    def __init__(self, kube: Kube, image: str, namespace: str, name: str,
                 requests: list[tuple[str, float]]) -> None:
        self.kube, self.namespace, self.name = kube, namespace, name
        container = {"name": "client", "image": image, "imagePullPolicy": "Never",
                     "command": ["python3", "-c", CLIENT_SCRIPT, json.dumps(requests)]}
        r = kube.create(f"/api/v1/namespaces/{namespace}/pods", {
            "metadata": {"name": name}, "spec": {
                "automountServiceAccountToken": False, "restartPolicy": "Never",
                "containers": [container]}})
        assert r.status_code == 201, r.text

    def results(self, timeout: float = 120) -> list[dict]:
        path = f"/api/v1/namespaces/{self.namespace}/pods/{self.name}"
        eventually(lambda: self.kube.get(path).json()["status"].get("phase") in (
            "Succeeded", "Failed"), timeout=timeout, what=f"client pod {self.name} to finish")
        log = self.kube.get(f"{path}/log").text
        assert self.kube.get(path).json()["status"]["phase"] == "Succeeded", log
        return [json.loads(line) for line in log.splitlines()]


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    funcargs = getattr(item, "funcargs", {})
    if report.failed and "cluster" in funcargs:
        report.sections.append(("cluster logs", funcargs["cluster"].logs()))
    elif report.failed and "kube" in funcargs:
        report.sections.append(("control plane logs", funcargs["kube"].cp.logs()))


class OperatorProcess:
    """`joyn-scim operator` against the cluster, watching one namespace, with its log kept."""

    def __init__(self, control_plane, namespace: str, workdir: Path, **env: str) -> None:
        self.cp = control_plane
        self.namespace = namespace
        self.log = workdir / "operator.log"
        self.env = env
        self.proc: subprocess.Popen | None = None
        self.metrics_port = free_port()

    def start(self) -> OperatorProcess:
        env = {**os.environ, "KUBECONFIG": str(self.cp.kubeconfig),
               "JOYN_OPERATOR_METRICS_ADDRESS": f"127.0.0.1:{self.metrics_port}",
               **{f"JOYN_OPERATOR_{k}": v for k, v in self.env.items()}}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "scim_server", "operator", "-n", self.namespace,
             "--liveness", "", "--log-level", "debug"],
            env=env, stdout=open(self.log, "ab"), stderr=subprocess.STDOUT)
        return self

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def module_namespace(kube: Kube, prefix: str):
    """A fixture body: a namespace for one test module, deleted after it (the node's servers
    in it would otherwise take the room later modules need: the kubelet's maxPods)."""
    name = kube.namespace(prefix)
    yield name
    kube.delete(f"/api/v1/namespaces/{name}")


def module_operator(cluster, namespace: str, tmp_path_factory, request, **env: str):
    """A fixture body: `joyn-scim operator` watching `namespace` for one test module, its log
    printed if a test of the session failed."""
    op = OperatorProcess(cluster.cp, namespace, tmp_path_factory.mktemp("operator"),
                         **env).start()
    yield op
    op.stop()
    if request.session.testsfailed:
        print(f"--- operator log ---\n{op.log.read_text()[-6000:]}")


@pytest.fixture(scope="session")
def tools_bins() -> Path:
    """helm, kubeconform and kind (hack/tools/build.sh)."""
    return built("tools", "TOOLS_BINS_DIR", "helm/kubeconform/kind are")


@pytest.fixture(scope="session")
def monitoring_bins() -> Path:
    """promtool and the Prometheus Operator's CRDs (hack/monitoring/build.sh)."""
    return built("monitoring", "MONITORING_BINS_DIR",
                 "promtool and the Prometheus Operator's CRDs are")


CHART = ROOT / "charts" / "joyn-scim"


class Helm:
    """helm with homes of its own (nothing in ~), against the test cluster as its admin."""

    def __init__(self, bins: Path, home: Path, kubeconfig: Path | None = None) -> None:
        self.bin = str(bins / "helm")
        self.env = {**os.environ, "HELM_CACHE_HOME": str(home / "cache"),
                    "HELM_CONFIG_HOME": str(home / "config"),
                    "HELM_DATA_HOME": str(home / "data")}
        if kubeconfig:
            self.env["KUBECONFIG"] = str(kubeconfig)

    def run(self, *args: str, check: bool = True, timeout: float = 300
            ) -> subprocess.CompletedProcess:
        r = subprocess.run([self.bin, *args], capture_output=True, text=True, env=self.env,
                           timeout=timeout)
        if check and r.returncode != 0:
            raise AssertionError(f"helm {' '.join(args)}: {r.stderr.strip()}")
        return r

    def template(self, *args: str, values: dict | None = None) -> str:
        return self.run("template", "t", str(CHART), "-n", "ops", "--kube-version", kube_version(),
                        *self.values(values), *args).stdout

    def values(self, values: dict | None) -> list[str]:
        """-f <file> with `values` (JSON is YAML), so no --set escaping rules apply."""
        if not values:
            return []
        path = Path(self.env["HELM_CONFIG_HOME"]) / f"values-{secrets.token_hex(4)}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values))
        return ["-f", str(path)]


@pytest.fixture(scope="module")
def helm(tools_bins, tmp_path_factory, control_plane) -> Helm:
    return Helm(tools_bins, tmp_path_factory.mktemp("helm"), control_plane.kubeconfig)


def chart_values(cluster, watch: str, **extra) -> dict:
    """The chart's values on the test cluster: the image built here, one watched namespace,
    the harness's domain and ingress class, a quick resync and activity poll."""
    repository, _, tag = cluster.images.app.rpartition(":")
    return {"image": {"repository": repository, "tag": tag}, **extra, "operator": {
        "watchNamespaces": [watch], "domain": cluster.domain, "ingressClass": "traefik",
        "resyncSeconds": 10, "activitySeconds": 2, "logLevel": "debug"}}


def _session_parts(session) -> dict[str, set[str]]:
    """What the session cluster's own pods hold on the machine right now: their network
    namespaces, their CNI results and their shims' sockets. Its pods come and go while a test
    runs (a tenant's rollout, the provisioner's helper pods), so a check that another cluster
    left nothing behind leaves these out. (Their veths are in the session node's own network
    namespace, not the host's.)"""
    node = session.node
    sandboxes = node.dir / "containerd" / "root" / "io.containerd.grpc.v1.cri" / "sandboxes"
    sandbox_ids = [p.name for p in sandboxes.iterdir()] if sandboxes.is_dir() else []
    listening = {inode: path.rsplit("/", 1)[1] for inode, path in
                 node_module.unix_sockets().items() if path.startswith("/run/containerd/s/")}
    shim_sockets = set()
    for proc in Path("/proc").iterdir():
        try:
            if not proc.name.isdigit() or str(node.socket) not in \
                    (proc / "cmdline").read_bytes().decode(errors="replace"):
                continue
            for fd in (proc / "fd").iterdir():
                target = os.readlink(fd)
                if target.startswith("socket:["):
                    shim_sockets.add(listening.get(target[8:-1], ""))
        except OSError:
            continue
    return {"netns": node_module.pod_namespaces(node.state()),
            "cni": (f"{node.network}-", *(f"cni-loopback-{sid}-" for sid in sandbox_ids)),
            "shim sockets": shim_sockets}


def machine_state(session) -> dict:
    """What a node could leave on the machine outside its folder, less what the session
    cluster's own pods hold (`_session_parts`). Rules: iptables' (the nf_tables tables that
    iptables-nft made included) and every other nftables table, such as kube-proxy's or
    kube-network-policies' had they been loaded in the host's namespace; a node's own go with
    its namespace, which "netns" sees."""
    def run(*args: str) -> str:
        return subprocess.run(args, capture_output=True, text=True).stdout

    def listing(folder: str) -> list[str]:
        p = Path(folder)
        return sorted(x.name for x in p.iterdir()) if p.is_dir() else []

    own = _session_parts(session)
    namespaces = json.loads(run("ip", "-j", "netns", "list") or "[]")
    return {
        "links": sorted(link["ifname"] for link in json.loads(run("ip", "-j", "link"))),
        "routes": run("ip", "route", "show", "table", "all").splitlines(),
        "netns": sorted(ns["name"] for ns in namespaces if ns["name"] not in own["netns"]),
        "iptables": [line for line in run("iptables-save").splitlines()
                     if not line.startswith("#")],
        "ip6tables": [line for line in run("ip6tables-save").splitlines()
                      if not line.startswith("#")],
        "nftables": run("nft", "--stateless", "list", "ruleset").splitlines(),
        "cni": [f for f in listing("/var/lib/cni/results") if not f.startswith(own["cni"])],
        "host folders": [f for f in ("/run/containerd", "/var/lib/cni", "/var/lib/kubelet",
                                     "/var/log/containers") if Path(f).exists()],
        "containerd run folder": listing("/run/containerd"),
        "kubelet device plugins": listing("/var/lib/kubelet/device-plugins"),
        "shim sockets": [f for f in listing("/run/containerd/s")
                         if f not in own["shim sockets"]],
        "container logs": [name for name in listing("/var/log/containers") if not os.readlink(
            f"/var/log/containers/{name}").startswith(str(session.dir))],
        "cgroups": sorted(p.name for h in Path("/sys/fs/cgroup").iterdir() if h.is_dir()
                          for p in h.glob("joyn-scim-*")),
    }


def nothing_left_behind(session, before: dict) -> None:
    """The machine as `before`, once a pod the session cluster is just making (its veth not
    yet on the bridge) is done: a real leftover stays, and fails with the difference."""
    with contextlib.suppress(AssertionError):  # the assert below shows the difference
        eventually(lambda: machine_state(session) == before, timeout=30)
    assert machine_state(session) == before


CRD_PATH = ROOT / "crds" / "joynscimtenants.scim.sevenlakes.com.yaml"
TENANTS_API = "/apis/scim.sevenlakes.com/v1alpha1"


@pytest.fixture(scope="session")
def tenant_crd(kube) -> str:
    """The JoynScimTenant CRD from crds/, applied and Established; returns its API path."""
    import yaml

    crd = yaml.safe_load(CRD_PATH.read_text())
    url = f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{crd['metadata']['name']}"
    r = kube.apply(url, crd, manager="tests", force=True)
    assert r.status_code in (200, 201), r.text

    def established():
        c = kube.get(url).json()
        return any(x["type"] == "Established" and x["status"] == "True"
                   for x in (c.get("status") or {}).get("conditions") or [])

    eventually(established, what="the JoynScimTenant CRD to be Established")
    return TENANTS_API
