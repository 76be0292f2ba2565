"""The operator at scale, on the real control plane: N tenants applied at once, then a restart.

    python bench/operator_scale.py [--tenants 500] [--baseline REF] [--json FILE]

Starts the pinned control plane (hack/kube: etcd, kube-apiserver, controller-manager,
scheduler; no node, so the servers' pods stay Pending and the figures are the operator's own
work), with an audit log, and runs `joyn-scim operator` as a process against it. Reports:

- cold start: seconds until every tenant is reconciled (status.observedGeneration is its
  generation and the conditions are written), the operator's peak RSS and CPU seconds;
- idle: the operator's CPU seconds in 60 s with nothing changing, from the moment the
  controllers have made every tenant's pod and tried to schedule it (`settled`);
- restart: the operator stopped and started again, seconds until it has reconciled every
  tenant again, and the reconcile errors and warning lines it logged meanwhile;
- the API requests the operator made, by verb, from the API server's audit log (its user
  agents: kopf's and kubernetes_asyncio's; the controllers' and this script's are left out).

Without a node the servers' pods stay Pending, and the scheduler keeps retrying them; a retry
that changes nothing in a pod's status sends no event, so the idle figure is the operator's
own: kopf's watches, the resync, and the token deadlines.

`--baseline REF` runs the same against the operator of a git ref first (a worktree of it on
PYTHONPATH, the same dependencies), so both sets of figures come from one run on one machine.
"""

from __future__ import annotations

import argparse
import asyncio
import calendar
import collections
import json
import os
import re
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "hack" / "kube"))
from baseline import source_env, worktree  # noqa: E402
from controlplane import ControlPlane, binaries_dir, free_port  # noqa: E402
from joyn_operator.keys import INSTANCE_LABEL  # noqa: E402

CRD = ROOT / "crds" / "joynscimtenants.scim.sevenlakes.com.yaml"
NAMESPACE = "bench"
TENANTS = f"/apis/scim.sevenlakes.com/v1alpha1/namespaces/{NAMESPACE}/joynscimtenants"
AUDIT_POLICY = {"apiVersion": "audit.k8s.io/v1", "kind": "Policy",
                "omitStages": ["RequestReceived"], "rules": [{"level": "Metadata"}]}
# The operator's user agents: kopf's watches and patches, kubernetes_asyncio's calls.
OPERATOR_AGENTS = ("kopf/", "OpenAPI-Generator/")
CLK_TCK = os.sysconf("SC_CLK_TCK")


class Operator:
    def __init__(self, cp: ControlPlane, workdir: Path, source: Path) -> None:
        self.cp, self.source, self.log = cp, source, workdir / "operator.log"
        self.proc: subprocess.Popen | None = None
        self.metrics = free_port()

    def start(self) -> None:
        env = {**source_env(self.source), "KUBECONFIG": str(self.cp.kubeconfig),
               "JOYN_OPERATOR_METRICS_ADDRESS": f"127.0.0.1:{self.metrics}",
               "JOYN_OPERATOR_DOMAIN": "scim.bench", "JOYN_OPERATOR_INGRESS_CLASS": "nginx",
               "JOYN_OPERATOR_SERVER_IMAGE": "joyn-scim:bench"}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "scim_server", "operator", "-n", NAMESPACE,
             "--liveness", "", "--log-level", "info"],
            cwd=self.source, env=env, stdout=open(self.log, "ab"), stderr=subprocess.STDOUT)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK

    def rss_mib(self) -> float:
        status = Path(f"/proc/{self.proc.pid}/status").read_text()
        return int(re.search(r"VmRSS:\s+(\d+)", status).group(1)) / 1024

    def log_lines(self, pattern: str) -> int:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return len(re.findall(pattern, text))


def tenant(i: int) -> dict:
    return {"apiVersion": "scim.sevenlakes.com/v1alpha1", "kind": "JoynScimTenant",
            "metadata": {"name": f"t{i:04d}"}, "spec": {"displayName": f"Bench tenant {i}"}}


async def apply_tenants(cp: ControlPlane, n: int) -> None:
    async with httpx.AsyncClient(base_url=cp.server, verify=ssl.create_default_context(cafile=str(cp.ca_file)), timeout=60,
                                 headers={"Authorization": f"Bearer {cp.token}"}) as http:
        gate = asyncio.Semaphore(16)

        async def one(i: int) -> None:
            async with gate:
                r = await http.post(TENANTS, json=tenant(i))
                if r.status_code not in (201, 409):
                    raise RuntimeError(f"tenant {i}: {r.status_code} {r.text[:200]}")

        await asyncio.gather(*(one(i) for i in range(n)))


def reconciled(http: httpx.Client) -> int:
    """Tenants whose status describes their generation, conditions included."""
    items = http.get(TENANTS).json()["items"]
    done = 0
    for t in items:
        status = t.get("status") or {}
        if status.get("observedGeneration") == t["metadata"]["generation"] and \
                status.get("conditions"):
            done += 1
    return done


def settled(http: httpx.Client) -> int:
    """Tenants whose server the controllers have finished with: the Deployment's status
    describes its generation with one replica, and the pod's scheduling has been tried. Until
    then, 500 Deployments keep the controller-manager busy for a minute or more after the
    operator is done (it creates about 5 pods a second), and every step is an event the
    operator rightly reconciles: the idle minute starts after that."""
    deployments = http.get(f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments").json()["items"]
    pods = http.get(f"/api/v1/namespaces/{NAMESPACE}/pods").json()["items"]
    scheduled = {(p["metadata"].get("labels") or {}).get(INSTANCE_LABEL)
                 for p in pods if any(c.get("type") == "PodScheduled"
                                      for c in (p.get("status") or {}).get("conditions") or [])}
    return sum(1 for d in deployments
               if (d.get("status") or {}).get("observedGeneration") == d["metadata"]["generation"]
               and (d.get("status") or {}).get("replicas") == 1
               and (d["metadata"].get("labels") or {}).get(INSTANCE_LABEL)
               in scheduled)


def audit_counts(path: Path, start: float, end: float) -> dict[str, int]:
    """The operator's requests by verb between two times (from the audit log)."""
    counts: collections.Counter[str] = collections.Counter()
    if not path.exists():
        return {}
    with open(path) as f:
        for line in f:
            event = json.loads(line)
            if event.get("stage") != "ResponseComplete":
                continue
            if not (event.get("userAgent") or "").startswith(OPERATOR_AGENTS):
                continue
            at = event.get("stageTimestamp", "")
            ts = calendar.timegm(time.strptime(at[:19], "%Y-%m-%dT%H:%M:%S"))
            if start - 1 <= ts <= end + 1:
                counts[event["verb"]] += 1
    return dict(sorted(counts.items()))


def wait_all(http: httpx.Client, op: Operator, n: int, count, timeout: float) -> dict:
    started, peak = time.monotonic(), 0.0
    while True:
        peak = max(peak, op.rss_mib())
        done = count()
        if done >= n:
            return {"seconds": round(time.monotonic() - started, 1), "done": done,
                    "peak_rss_mib": round(peak, 1)}
        if time.monotonic() - started > timeout or op.proc.poll() is not None:
            return {"seconds": None, "done": done, "peak_rss_mib": round(peak, 1)}
        time.sleep(1)


def operator_metrics(op: Operator) -> str:
    return httpx.get(f"http://127.0.0.1:{op.metrics}/metrics").text


def reconciles_total(op: Operator) -> dict[str, float]:
    return {m[0]: float(m[1]) for m in re.findall(
        r'^joyn_operator_reconciles_total\{result="(\w+)"\} (\S+)$', operator_metrics(op),
        re.M)}


def _answers(op: Operator) -> bool:
    try:
        operator_metrics(op)
        return True
    except httpx.HTTPError:
        return False


def tenants_seen(op: Operator) -> int:
    """Distinct tenants this operator process has reconciled (each one sets its gauge)."""
    try:
        return len(re.findall(r"^joyn_operator_tenant_ready\{", operator_metrics(op), re.M))
    except httpx.HTTPError:
        return 0


def run(label: str, source: Path, n: int, bins: Path, timeout: float,
        profile: Path | None = None) -> dict:
    work = Path(tempfile.mkdtemp(prefix=f"joyn-bench-{label}-"))
    audit = work / "audit.log"
    (work / "audit-policy.yaml").write_text(yaml.safe_dump(AUDIT_POLICY))
    cp = ControlPlane(bins, work / "cp").start(
        service_range="10.0.0.0/20",  # room for 4,096 Services
        apiserver_args=(f"--audit-policy-file={work / 'audit-policy.yaml'}",
                        f"--audit-log-path={audit}", "--audit-log-format=json",
                        "--audit-log-maxsize=0"))
    op = Operator(cp, work, source)
    result: dict = {"label": label, "tenants": n}
    try:
        cp.kubectl("apply", "--server-side", "-f", str(CRD))
        cp.kubectl("wait", "--for=condition=Established", "--timeout=60s",
                   "crd/joynscimtenants.scim.sevenlakes.com")
        cp.kubectl("create", "namespace", NAMESPACE)
        http = httpx.Client(base_url=cp.server, verify=ssl.create_default_context(cafile=str(cp.ca_file)), timeout=60,
                            headers={"Authorization": f"Bearer {cp.token}"})
        op.start()
        wait_all(http, op, 1, lambda: int(_answers(op)), timeout)  # kopf up, before the clock
        t0, cpu0 = time.time(), op.cpu_seconds()
        asyncio.run(apply_tenants(cp, n))
        cold = wait_all(http, op, n, lambda: reconciled(http), timeout)
        t1 = time.time()
        cold["cpu_seconds"] = round(op.cpu_seconds() - cpu0, 1)
        cold["requests"] = audit_counts(audit, t0, t1)
        result["cold"] = cold

        # Idle: once the controllers have made and tried to schedule every pod, 60 s.
        settle = wait_all(http, op, n, lambda: settled(http), timeout)
        result["settled_after"] = settle["seconds"]
        cpu1, i0 = op.cpu_seconds(), time.time()
        if profile:  # py-spy samples the idle minute: where the operator's CPU goes
            subprocess.run(["py-spy", "record", "--pid", str(op.proc.pid), "--duration", "60",
                            "--format", "raw", "--output", str(profile.with_suffix(
                                f".{label.replace(' ', '-')}.txt"))],
                           check=True, capture_output=True)
        else:
            time.sleep(60)
        result["idle"] = {"cpu_seconds_per_minute": round(op.cpu_seconds() - cpu1, 2),
                          "requests": audit_counts(audit, i0, time.time())}

        op.stop()
        errors_before = op.log_lines(r'"level":"(warning|error)"')
        t2 = time.time()
        op.start()
        cpu2 = op.cpu_seconds()

        restart = wait_all(http, op, n, lambda: tenants_seen(op), timeout)
        restart["cpu_seconds"] = round(op.cpu_seconds() - cpu2, 1)
        restart["failed_reconciles"] = int(reconciles_total(op).get("error", 0))
        restart["warning_lines"] = op.log_lines(r'"level":"(warning|error)"') - errors_before
        restart["requests"] = audit_counts(audit, t2, time.time())
        result["restart"] = restart
    finally:
        op.stop()
        cp.stop()
        shutil.rmtree(work, ignore_errors=True)  # the audit log is tens of MB
    return result


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tenants", type=int, default=500)
    p.add_argument("--baseline", help="a git ref whose operator runs first, for comparison")
    p.add_argument("--timeout", type=float, default=600)
    p.add_argument("--json", type=Path)
    p.add_argument("--profile", type=Path, help="record the idle minute with py-spy (on PATH) "
                                                "into FILE.<label>.txt, py-spy's raw format")
    args = p.parse_args()
    bins = binaries_dir(build=False)
    if bins is None:
        print("the Kubernetes binaries are not built: run `make kube-bins`", file=sys.stderr)
        return 2
    runs = []
    if args.baseline:
        with worktree(args.baseline) as tree:
            runs.append(run(args.baseline, tree, args.tenants, bins, args.timeout,
                            args.profile))
    runs.append(run("this tree", ROOT, args.tenants, bins, args.timeout, args.profile))
    for r in runs:
        print(f"\n== {r['label']}: {r['tenants']} tenants")
        for phase in ("cold", "restart"):
            x = r.get(phase) or {}
            print(f"{phase:8} {x.get('seconds')} s to all reconciled ({x.get('done')}), "
                  f"peak RSS {x.get('peak_rss_mib')} MiB, {x.get('cpu_seconds')} CPU s, "
                  f"requests {x.get('requests')}"
                  + (f", failed reconciles {x.get('failed_reconciles')}, warning lines "
                     f"{x.get('warning_lines')}" if phase == "restart" else ""))
        idle = r.get("idle") or {}
        print(f"idle     {idle.get('cpu_seconds_per_minute')} CPU s a minute, "
              f"requests {idle.get('requests')} (from {r.get('settled_after')} s after the "
              "cold start, when the controllers had made every pod)")
    if args.json:
        args.json.write_text(json.dumps(runs, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
