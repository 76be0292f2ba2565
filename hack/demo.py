"""`make demo`: the whole system on one machine.

Starts the local control plane (hack/kube), installs the CRD, runs the operator, applies
examples/tenant.yaml, runs that tenant's SCIM server the way the kubelet would (hack/kube/
localpod.py: there is no kubelet here), and prints the Tenant URL, the token and a curl that
performs Entra's Test Connection. Runs until Ctrl-C, then stops everything and removes its files.
The token is printed once, to the terminal of the person who asked for it, as `joyn-scim serve`
does on first start; it is never logged.
"""

from __future__ import annotations

import argparse
import base64
import os
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

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "hack" / "kube"))
from controlplane import ControlPlane, binaries_dir  # noqa: E402
from localpod import LocalPod  # noqa: E402

NAMESPACE = "demo"
TENANTS = f"/apis/scim.sevenlakes.com/v1alpha1/namespaces/{NAMESPACE}/joynscimtenants"


def wait(what: str, check, timeout: float = 90):
    deadline = time.monotonic() + timeout
    while not (result := check()):
        if time.monotonic() > deadline:
            raise SystemExit(f"demo: timed out waiting for {what}")
        time.sleep(0.2)
    return result


def secret_data(api: httpx.Client, name: str) -> dict[str, str] | None:
    r = api.get(f"/api/v1/namespaces/{NAMESPACE}/secrets/{name}-scim-token")
    if r.status_code != 200:
        return None
    return {k: base64.b64decode(v).decode() for k, v in r.json()["data"].items()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, default=8080, help="local port of the tenant's server")
    ap.add_argument("--tenant", default=str(ROOT / "examples" / "tenant.yaml"))
    args = ap.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="joyn-scim-demo-"))
    print("building or reusing the Kubernetes binaries (hack/kube/build.sh) ...", flush=True)
    cp = ControlPlane(binaries_dir(build=True), workdir / "cluster")
    operator: subprocess.Popen | None = None
    pod: LocalPod | None = None
    stop = False

    def on_signal(*_):
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        cp.start()
        api = httpx.Client(base_url=cp.server, timeout=30,
                           verify=ssl.create_default_context(cafile=str(cp.ca_file)),
                           headers={"Authorization": f"Bearer {cp.token}"})
        crd = yaml.safe_load((ROOT / "crds/joynscimtenants.scim.sevenlakes.com.yaml").read_text())
        crd_url = ("/apis/apiextensions.k8s.io/v1/customresourcedefinitions/"
                   + crd["metadata"]["name"])
        api.patch(crd_url, params={"fieldManager": "demo", "force": "true"}, json=crd,
                  headers={"Content-Type": "application/apply-patch+yaml"}).raise_for_status()
        wait("the CRD", lambda: any(
            c["type"] == "Established" and c["status"] == "True"
            for c in (api.get(crd_url).json().get("status") or {}).get("conditions") or []))
        api.post("/api/v1/namespaces", json={"metadata": {"name": NAMESPACE}})

        env = {**os.environ, "KUBECONFIG": str(cp.kubeconfig), "JOYN_OPERATOR_URL_SCHEME": "https",
               "JOYN_OPERATOR_SERVER_IMAGE": "joyn-scim:local", "JOYN_OPERATOR_METRICS_HOST":
               "127.0.0.1", "JOYN_OPERATOR_METRICS_PORT": "0"}
        with open(workdir / "operator.log", "ab") as log:
            operator = subprocess.Popen(
                [sys.executable, "-m", "scim_server", "operator", "-n", NAMESPACE, "--liveness",
                 ""], env=env, stdout=log, stderr=subprocess.STDOUT)

        tenant = yaml.safe_load(Path(args.tenant).read_text())
        name = tenant["metadata"]["name"]
        api.post(TENANTS, json=tenant).raise_for_status()
        deployment = wait("the tenant's Deployment", lambda: (
            r := api.get(f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments/{name}-scim")
        ).status_code == 200 and r.json())
        url = wait("status.url", lambda: (api.get(f"{TENANTS}/{name}").json().get("status")
                                          or {}).get("url"))
        data = wait("the token Secret", lambda: secret_data(api, name))
        pod = LocalPod(deployment, workdir / "pod")
        pod.write_secret(data)
        pod.start(port=args.port)

        path = url.split("/", 3)[3] if url.count("/") >= 3 else ""
        local = f"http://127.0.0.1:{args.port}/{path}"
        print(f"""
Joyn SCIM, the whole system on this machine (control plane, operator, tenant '{name}').

  Tenant URL (in status; a real cluster serves it through the Ingress): {url}
  Tenant URL here (no ingress controller, so its server runs locally):  {local}
  Secret Token: {data['token']}

  Entra's Test Connection:
  curl -s -H 'Authorization: Bearer {data['token']}' \\
       '{local}/Users?filter=userName+eq+%229edf3db5-0000-4000-8000-000000000000%22'

  export KUBECONFIG={cp.kubeconfig}
  {cp.bins / 'kubectl'} -n {NAMESPACE} get jst -o wide
  Rotate the token: {cp.bins / 'kubectl'} -n {NAMESPACE} annotate jst {name} \\
       scim.sevenlakes.com/rotate-token="$(date +%s)" --overwrite

Ctrl-C stops everything.
""", flush=True)
        while not stop:  # carry Secret updates (rotations) into the server's token files
            time.sleep(1)
            latest = secret_data(api, name)
            if latest and latest != data:
                data = latest
                pod.write_secret(data)
                print("token Secret changed (rotation): the server picked it up", flush=True)
            if operator.poll() is not None or pod.proc.poll() is not None:
                print(f"demo: a process exited; logs in {workdir}", file=sys.stderr)
                return 1
        return 0
    finally:
        if pod:
            pod.stop()
        if operator and operator.poll() is None:
            operator.terminate()
            operator.wait(timeout=30)
        cp.stop()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
