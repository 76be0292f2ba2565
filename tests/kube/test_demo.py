"""`make demo` (hack/demo.py) as a person runs it: it comes up, its connection.env reaches the
tenant through the ingress controller, and a terminal's Ctrl-C (SIGINT to the whole process
group) stops it quickly, without a traceback, leaving nothing behind."""

from __future__ import annotations

import os
import re
import signal
import ssl
import subprocess
import sys

import httpx

from .conftest import ROOT, eventually, machine_state, nothing_left_behind

# The README's "within a few seconds", with room for a loaded 2-core machine: each step of
# the demo's stop is bounded by its own timeout, and their sum is far above this.
STOP_WITHIN = 20


def redacted(output: str) -> str:
    return re.sub(r"Secret Token: \S+", "Secret Token: <redacted>", output)


def read_env(path) -> dict[str, str]:
    return dict(line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)


def test_the_demo_serves_its_tenant_and_ctrl_c_leaves_nothing_behind(cluster, tmp_path):
    out = tmp_path / "demo"
    before = machine_state(cluster)
    demo = subprocess.Popen([sys.executable, str(ROOT / "hack" / "demo.py")],
                            env={**os.environ, "JOYN_SCIM_DEMO_DIR": str(out)},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)  # a process group of its own, as in a shell
    try:
        env = eventually(lambda: (out / "connection.env").exists() and read_env(
            out / "connection.env"), timeout=300, what="the demo's connection.env")
        host, port, address = env["RESOLVE"].split(":")
        assert env["TENANT_URL"].startswith(f"https://{host}/") and port == "443"
        token = (out / "token").read_text()
        assert (out / "token").stat().st_mode & 0o777 == 0o600
        ca = ssl.create_default_context(cafile=env["CA_FILE"])
        with httpx.Client(verify=ca, timeout=10) as http:  # what curl --resolve does
            r = http.request("GET", f"https://{address}{env['TENANT_URL'].split(host, 1)[1]}"
                             "/Users", headers={"Host": host, "Authorization": f"Bearer {token}"},
                             extensions={"sni_hostname": host})
        assert r.status_code == 200 and r.json()["totalResults"] == 0
    finally:
        os.killpg(demo.pid, signal.SIGINT)  # what a terminal's Ctrl-C does
        try:
            output, _ = demo.communicate(timeout=STOP_WITHIN)
        except subprocess.TimeoutExpired:
            os.killpg(demo.pid, signal.SIGKILL)
            output, _ = demo.communicate()
            raise AssertionError(f"the demo did not stop within {STOP_WITHIN} s of Ctrl-C; "
                                 f"its output:\n{redacted(output)}") from None
    # The demo prints the token once, for a person; a failing test must not print it again.
    shown = redacted(output)
    assert demo.returncode == 0, shown
    assert "Traceback" not in output and "nothing left behind" in output, shown
    assert token not in shown, "the token appears more than once in the demo's output"
    assert not out.exists()
    nothing_left_behind(cluster, before)
