"""What can be checked of the Dockerfile without a Docker engine: its shape, the files it copies,
and that the command it runs works from a clean install of exactly those files."""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
from conftest import free_port, wait_until

ROOT = Path(__file__).resolve().parent.parent


def stages() -> list[list[str]]:
    """The Dockerfile's instructions (continuation lines joined), split into build stages."""
    text = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text())
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]
    out: list[list[str]] = []
    for ln in lines:
        if ln.upper().startswith("FROM "):
            out.append([])
        if out:
            out[-1].append(ln)
    return out


def test_multi_stage_non_root_slim_and_entrypoint():
    st = stages()
    assert len(st) >= 2
    final = st[-1]
    assert any(re.match(r"COPY --from=build ", ln) for ln in final)
    user = [ln.split()[1] for ln in final if ln.upper().startswith("USER ")]
    assert user and user[-1].split(":")[0] not in ("0", "root")
    joined = " ".join(final).lower()
    for tool in ("gcc", "build-essential", "apt-get install", "pip install"):
        assert tool not in joined
    entry = [ln for ln in final if ln.upper().startswith("ENTRYPOINT")]
    assert json.loads(entry[-1].split(None, 1)[1]) == ["joyn-scim"]
    text = (ROOT / "Dockerfile").read_text()
    assert re.search(r"ARG PYTHON_IMAGE=python:3\.11-slim", text)


def copied_sources() -> list[str]:
    out = []
    for stage in stages():
        for ln in stage:
            parts = ln.split()
            if parts[0].upper() == "COPY" and not any(p.startswith("--from") for p in parts):
                out += [p for p in parts[1:-1] if not p.startswith("--")]
    return out


def test_copied_files_exist():
    sources = copied_sources()
    assert "scim_server" in sources and "pyproject.toml" in sources
    for src in sources:
        assert (ROOT / src).exists(), src


def test_command_runs_from_a_clean_install_of_the_copied_files(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for name in copied_sources():
        p = ROOT / name
        if p.is_dir():
            shutil.copytree(p, src / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(p, src / name)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "--no-compile", str(src)],
                   check=True)
    exe = str(venv / "bin" / "joyn-scim")
    version = subprocess.run([exe, "--version"], capture_output=True, text=True, check=True)
    assert version.stdout.startswith("joyn-scim ")
    # The image's environment, but on loopback and a free port.
    env_lines = [ln for ln in stages()[-1] if ln.upper().startswith("ENV ")]
    image_env = dict(re.findall(r"(\w+)=(\S+)", " ".join(env_lines)))
    assert image_env["JOYN_SCIM_HOST"] == "0.0.0.0"
    port = free_port()
    env = {"PATH": os.environ["PATH"], **{k: v for k, v in image_env.items()
                                          if k.startswith("JOYN_SCIM_")},
           "JOYN_SCIM_HOST": "127.0.0.1", "JOYN_SCIM_PORT": str(port),
           "JOYN_SCIM_DATA_DIR": str(tmp_path / "data")}
    proc = subprocess.Popen([exe, "serve"], env=env, cwd=tmp_path,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        def up():
            assert proc.poll() is None, "serve exited"
            try:
                return httpx.get(f"http://127.0.0.1:{port}/readyz").status_code == 200
            except httpx.TransportError:
                return False
        wait_until(up, timeout=30, what="the installed server")
        assert (tmp_path / "data" / "token").exists()
        assert (tmp_path / "data" / "scim.db").exists()
    finally:
        proc.terminate()
        proc.wait(timeout=30)
