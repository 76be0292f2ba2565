"""`make demo`: the whole system, for real, on one machine.

Starts the test cluster (hack/kube/cluster.py: control plane, a real node, storage, the
Traefik ingress controller; images built here), installs the CRD, runs the operator, applies
examples/tenant.yaml, waits until the tenant is Ready, and prints the Tenant URL as a person
reaches it here through the ingress controller, the token, the CA file, Entra's Test Connection
as a curl, and the kubectl lines. The same facts go to joyn-scim-demo/connection.env for
scripts. Runs until Ctrl-C (or SIGTERM), then stops everything and leaves nothing behind.

The token is printed once, to the terminal of the person who asked for it, as `joyn-scim serve`
does on first start, and written to a 0600 file; it is never logged.
"""

from __future__ import annotations

import argparse
import base64
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "hack" / "kube"))
from cluster import Cluster  # noqa: E402
from controlplane import terminate  # noqa: E402

NAMESPACE = "demo"
TENANTS = f"/apis/scim.sevenlakes.com/v1alpha1/namespaces/{NAMESPACE}/joynscimtenants"
CRD = ROOT / "crds" / "joynscimtenants.scim.sevenlakes.com.yaml"
OUT = Path(os.environ.get("JOYN_SCIM_DEMO_DIR") or ROOT / "joyn-scim-demo")  # tests set it


class Stop(Exception):
    """Ctrl-C or SIGTERM: stop, tidily, wherever we are."""


def on_signal(*_):
    raise Stop


def wait(what: str, check, timeout: float = 180, progress=None):
    deadline = time.monotonic() + timeout
    last = None
    while not (result := check()):
        if progress and (now := progress()) != last:
            print(f"  ... {now}", flush=True)
            last = now
        if time.monotonic() > deadline:
            raise SystemExit(f"demo: timed out waiting for {what}")
        time.sleep(0.5)
    return result


def tenant_state(cp, name: str) -> str:
    status = (cp.get_json(f"{TENANTS}/{name}") or {}).get("status") or {}
    ready = {c["type"]: c for c in status.get("conditions") or []}.get("Ready")
    return f"Ready={ready['status']} ({ready['reason']}: {ready['message']})" if ready \
        else "no status yet"


def is_ready(cp, name: str) -> bool:
    status = (cp.get_json(f"{TENANTS}/{name}") or {}).get("status") or {}
    return any(c["type"] == "Ready" and c["status"] == "True"
               for c in status.get("conditions") or [])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tenant", default=str(ROOT / "examples" / "tenant.yaml"))
    args = ap.parse_args()
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    started = time.monotonic()
    # The cluster's folder holds unix sockets, so it lives under the short temporary path.
    workdir = Path(tempfile.mkdtemp(prefix="joyn-scim-demo-"))
    cluster: Cluster | None = None
    operator: subprocess.Popen | None = None
    try:
        print("building or reusing the binaries and images (hack/kube, hack/node) ...",
              flush=True)
        cluster = Cluster(workdir / "cluster")
        print("starting the cluster: control plane, node, storage, ingress controller ...",
              flush=True)
        cluster.start()
        cp = cluster.cp
        cp.kubectl("apply", "--server-side", "-f", str(CRD))
        cp.kubectl("wait", "--for=condition=Established", "--timeout=60s", "-f", str(CRD))
        cp.kubectl("create", "namespace", NAMESPACE)
        env = {**os.environ, "KUBECONFIG": str(cp.kubeconfig),
               "JOYN_OPERATOR_SERVER_IMAGE": cluster.images.app,
               "JOYN_OPERATOR_INGRESS_CLASS": "traefik",
               "JOYN_OPERATOR_DOMAIN": cluster.domain,
               "JOYN_OPERATOR_METRICS_ADDRESS": "127.0.0.1:0"}
        with open(workdir / "operator.log", "ab") as log:
            operator = subprocess.Popen(
                [sys.executable, "-m", "scim_server", "operator", "-n", NAMESPACE,
                 "--liveness", ""], env=env, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True)

        tenant = yaml.safe_load(Path(args.tenant).read_text())
        name = tenant["metadata"]["name"]
        cp.kubectl("-n", NAMESPACE, "apply", "-f", args.tenant)
        print(f"tenant '{name}' applied; waiting until it is Ready ...", flush=True)
        wait(f"tenant {name} to be Ready", lambda: is_ready(cp, name),
             progress=lambda: tenant_state(cp, name))
        ready_after = time.monotonic() - started
        url = cp.get_json(f"{TENANTS}/{name}")["status"]["url"]
        secret = cp.get_json(f"/api/v1/namespaces/{NAMESPACE}/secrets/{name}-scim-token")
        token = base64.b64decode(secret["data"]["token"]).decode()
        host = url.split("/")[2]
        resolve = cluster.ingress.resolve(host)

        OUT.mkdir(exist_ok=True)
        ca_file, token_file = OUT / "ca.crt", OUT / "token"
        shutil.copy(cluster.ingress.ca_file, ca_file)
        token_file.touch(mode=0o600)
        token_file.write_text(token)
        (OUT / "connection.env").write_text(
            f"TENANT_URL={url}\nRESOLVE={resolve}\nCA_FILE={ca_file}\n"
            f"TOKEN_FILE={token_file}\nKUBECONFIG={cp.kubeconfig}\n")
        kubectl = f"{cp.bins / 'kubectl'}"
        print(f"""
Joyn SCIM, the whole system on this machine (ready after {ready_after:.0f} s): a control plane,
one node running the tenant's pod from the image built here, and Traefik serving HTTPS.

  Tenant URL:   {url}
  Secret Token: {token}
  It is served here by the ingress controller at {cluster.ingress.address}:443, with a
  certificate from this demo's CA ({ca_file}); curl reaches it with --resolve {resolve}

  Entra's Test Connection:
  curl --resolve {resolve} --cacert {ca_file} \\
       -H "Authorization: Bearer $(cat {token_file})" \\
       '{url}/Users?filter=userName+eq+%229edf3db5-0000-4000-8000-000000000000%22'

  export KUBECONFIG={cp.kubeconfig}
  {kubectl} -n {NAMESPACE} get jst -o wide
  {kubectl} -n {NAMESPACE} get pods,pvc,ingress
  {kubectl} -n {NAMESPACE} logs deploy/{name}-scim
  The success rep's commands (kubectl runs kubectl-joyn from {Path(sys.executable).parent}):
  export PATH={Path(sys.executable).parent}:$PATH
  {kubectl} joyn -n {NAMESPACE} tenants -o wide
  {kubectl} joyn -n {NAMESPACE} test-connection {name} --address {cluster.ingress.address} \\
       --cacert {ca_file}
  {kubectl} joyn -n {NAMESPACE} handover {name}
  {kubectl} joyn -n {NAMESPACE} credentials {name} --reveal
  {kubectl} joyn -n {NAMESPACE} rotate {name} --overlap 1h
  {kubectl} joyn -n {NAMESPACE} handover {name} --rotation
  (The handover message never holds the token: send it by another channel.)

For scripts: {OUT / 'connection.env'}. Ctrl-C stops everything.
""", flush=True)
        while True:
            time.sleep(1)
            if operator.poll() is not None:
                print(f"demo: the operator exited; its log: {workdir / 'operator.log'}",
                      file=sys.stderr)
                return 1
    except Stop:
        print("\nstopping ...", flush=True)
        return 0
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut this short
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        stopping = time.monotonic()
        terminate(operator)
        took = {"operator": time.monotonic() - stopping}
        if cluster is not None:
            took.update(cluster.stop())
        shutil.rmtree(workdir, ignore_errors=True)
        shutil.rmtree(OUT, ignore_errors=True)
        steps = ", ".join(f"{name} {s:.1f}" for name, s in took.items())
        print(f"stopped in {time.monotonic() - stopping:.1f} s ({steps}); nothing left behind",
              flush=True)


if __name__ == "__main__":
    raise SystemExit(main())
