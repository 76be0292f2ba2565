"""PersistentVolumeClaims that really bind: Rancher's local-path-provisioner (hack/node/
build.sh), out of the cluster, behind the default StorageClass `local-path`. It makes each
volume a folder under the harness's own storage folder on the node, through a helper pod that
runs the node's base image (no busybox to pull here). Volumes bind when their first pod is
scheduled (WaitForFirstConsumer), as on most real clusters, and outlive the pod.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from controlplane import log_tail, terminate

NAMESPACE = "local-path-storage"
CLASS = "local-path"
SERVICE_ACCOUNT = "local-path-provisioner"
SETUP = 'set -eu\nmkdir -m 0777 -p "$VOL_DIR"\n'
TEARDOWN = 'set -eu\nrm -rf "$VOL_DIR"\n'


def manifests(volumes: Path, helper_image: str) -> dict:
    helper_pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "helper-pod"},
                  "spec": {"containers": [{"name": "helper-pod", "image": helper_image,
                                           "imagePullPolicy": "Never"}]}}
    config = {"nodePathMap": [{"node": "DEFAULT_PATH_FOR_NON_LISTED_NODES",
                               "paths": [str(volumes)]}]}
    return {"apiVersion": "v1", "kind": "List", "items": [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}},
        {"apiVersion": "v1", "kind": "ServiceAccount",
         "metadata": {"name": SERVICE_ACCOUNT, "namespace": NAMESPACE}},
        {"apiVersion": "v1", "kind": "ConfigMap",
         "metadata": {"name": "local-path-config", "namespace": NAMESPACE},
         "data": {"config.json": json.dumps(config), "setup": SETUP, "teardown": TEARDOWN,
                  "helperPod.yaml": json.dumps(helper_pod)}},
        {"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
         "metadata": {"name": CLASS, "annotations": {
             "storageclass.kubernetes.io/is-default-class": "true"}},
         "provisioner": "rancher.io/local-path", "reclaimPolicy": "Delete",
         "volumeBindingMode": "WaitForFirstConsumer"},
    ]}


class Storage:
    def __init__(self, cp, node_bins: Path, workdir: Path, helper_image: str) -> None:
        self.cp = cp
        self.bin = node_bins / "local-path-provisioner"
        self.dir = workdir
        self.helper_image = helper_image
        self.proc: subprocess.Popen | None = None

    @property
    def volumes(self) -> Path:
        return self.dir / "volumes"

    def start(self) -> Storage:
        self.volumes.mkdir(parents=True, exist_ok=True)
        self.cp.kubectl("apply", "--server-side", "-f", "-",
                        input=json.dumps(manifests(self.volumes, self.helper_image)))
        with open(self.dir / "local-path-provisioner.log", "ab") as log:
            self.proc = subprocess.Popen([
                str(self.bin), "start", f"--kubeconfig={self.cp.kubeconfig}",
                f"--namespace={NAMESPACE}", "--configmap-name=local-path-config",
                f"--service-account-name={SERVICE_ACCOUNT}", f"--helper-image={self.helper_image}",
            ], stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=self.dir,
                start_new_session=True)
        return self

    def logs(self, tail: int = 40) -> str:
        return log_tail(self.dir / "local-path-provisioner.log", tail)

    def stop(self) -> None:
        terminate(self.proc)
