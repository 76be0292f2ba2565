"""`make demo` (hack/demo.py) as a person runs it: it comes up, its connection.env reaches the
tenant through the ingress controller, and a terminal's Ctrl-C (SIGINT to the whole process
group) stops it quickly, without a traceback, leaving nothing behind."""

from __future__ import annotations

import os
import re
import shlex
import signal
import ssl
import subprocess
import sys
import threading

import httpx

from .conftest import ROOT, eventually, machine_state, nothing_left_behind

# The README's "within a few seconds", with room for a loaded 2-core machine: each step of
# the demo's stop is bounded by its own timeout, and their sum is far above this.
STOP_WITHIN = 20


def redacted(output: str) -> str:
    return re.sub(r"Secret Token: \S+", "Secret Token: <redacted>", output)


def read_env(path) -> dict[str, str]:
    return dict(line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)


def printed_joyn_commands(lines: list[str]) -> list[list[str]]:
    """The `kubectl joyn ...` lines the demo printed, continuation lines joined."""
    text = "".join(lines).replace("\\\n", " ")
    return [shlex.split(line) for line in text.splitlines()
            if " joyn " in line and line.strip().split()[0].endswith("kubectl")]


def test_the_demo_serves_its_tenant_and_ctrl_c_leaves_nothing_behind(cluster, tmp_path):
    out = tmp_path / "demo"
    before = machine_state(cluster)
    demo = subprocess.Popen([sys.executable, str(ROOT / "hack" / "demo.py")],
                            env={**os.environ, "JOYN_SCIM_DEMO_DIR": str(out)},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)  # a process group of its own, as in a shell
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(demo.stdout), daemon=True)
    reader.start()
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
        # The rep's commands run as printed (flags before the command, as kubectl users type
        # them), and the demo's certificate is not about to expire.
        eventually(lambda: any("Ctrl-C stops everything" in line for line in lines),
                   timeout=30, what="the demo's instructions")
        commands = {c[c.index("joyn") + 3]: c for c in printed_joyn_commands(lines)
                    if "--reveal" not in c and "--rotation" not in c}
        assert {"tenants", "test-connection", "handover"} <= set(commands), \
            redacted("".join(lines))
        bin_dir = next(line.split("PATH=")[1].split(":")[0] for line in lines
                       if "export PATH=" in line)
        joyn_env = {**os.environ, "KUBECONFIG": env["KUBECONFIG"],
                    "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
        for name in ("tenants", "test-connection", "handover"):
            r = subprocess.run(commands[name], capture_output=True, text=True, env=joyn_env,
                               timeout=120)
            assert r.returncode == 0, (name, r.stdout, r.stderr)
            assert token not in r.stdout + r.stderr
        checked = subprocess.run(commands["test-connection"], capture_output=True, text=True,
                                 env=joyn_env, timeout=120).stdout
        assert "[  ok] TLS: verified" in checked and "[warn]" not in checked, checked
    finally:
        os.killpg(demo.pid, signal.SIGINT)  # what a terminal's Ctrl-C does
        try:
            demo.wait(timeout=STOP_WITHIN)
        except subprocess.TimeoutExpired:
            os.killpg(demo.pid, signal.SIGKILL)
            demo.wait()
            reader.join(timeout=10)
            output = "".join(lines)
            raise AssertionError(f"the demo did not stop within {STOP_WITHIN} s of Ctrl-C; "
                                 f"its output:\n{redacted(output)}") from None
    reader.join(timeout=10)
    output = "".join(lines)
    # The demo prints the token once, for a person; a failing test must not print it again.
    shown = redacted(output)
    assert demo.returncode == 0, shown
    assert "Traceback" not in output and "nothing left behind" in output, shown
    assert token not in shown, "the token appears more than once in the demo's output"
    assert not out.exists()
    nothing_left_behind(cluster, before)
