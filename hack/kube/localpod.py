"""Run a Deployment's SCIM server container as a local process, the way a kubelet would: its
args and env, each volume mount mapped under a local root, the token Secret's keys written
where the token volume points (replaced atomically, as a Secret volume update is).

Used by the wiring test (tests/kube/test_operator.py) and by the demo (hack/demo.py): there is
no kubelet in the local control plane.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from controlplane import free_port


class LocalPod:
    """Runs a Deployment's container the way the kubelet would, as a local process: its args
    and env, with each volume mount mapped under a temporary root (the token Secret's keys
    written there, replaced atomically on change as a Secret volume update does)."""

    def __init__(self, deployment: dict, root: Path) -> None:
        self.pod = deployment["spec"]["template"]["spec"]
        self.container = self.pod["containers"][0]
        self.root = root
        self.mounts = {m["name"]: m["mountPath"] for m in self.container["volumeMounts"]}
        self.port = 0
        self.proc: subprocess.Popen | None = None

    def local(self, container_path: str) -> Path:
        return self.root / container_path.lstrip("/")

    def map_path(self, value: str) -> str:
        """A container path under a mount -> the same path under the local root."""
        for mount in sorted(self.mounts.values(), key=len, reverse=True):
            if value == mount or value.startswith(mount + "/"):
                return str(self.local(mount)) + value[len(mount):]
        return value

    def write_secret(self, data: dict[str, str]) -> None:
        """The token volume's items, like the kubelet's projection of the Secret."""
        volume = next(v for v in self.pod["volumes"] if v["name"] == "token")
        folder = self.local(self.mounts["token"])
        folder.mkdir(parents=True, exist_ok=True)
        for item in volume["secret"]["items"]:
            target = folder / item["path"]
            if item["key"] in data:
                tmp = target.with_suffix(".new")
                tmp.write_text(data[item["key"]])
                os.replace(tmp, target)
            elif target.exists():
                target.unlink()

    def start(self, port: int | None = None) -> LocalPod:
        env = {e["name"]: ",".join(self.map_path(p) for p in e["value"].split(","))
               for e in self.container["env"]}
        for mount in self.mounts.values():
            self.local(mount).mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        env.update(JOYN_SCIM_HOST="127.0.0.1", JOYN_SCIM_PORT=str(self.port))  # loopback only
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "scim_server", *self.container["args"]],
            env={"PATH": os.environ["PATH"], **env}, stdout=subprocess.DEVNULL,
            stderr=open(self.root / "server.log", "ab"))
        deadline = time.monotonic() + 30
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError("the server exited: " +
                                   (self.root / "server.log").read_text()[-2000:])
            try:
                with urllib.request.urlopen(
                        f"http://127.0.0.1:{self.port}/healthz", timeout=1):
                    return self
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("the server did not come up") from None
                time.sleep(0.05)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=30)


