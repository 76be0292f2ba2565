"""The client is its own small distribution (client/pyproject.toml, `make client`): installed
alone into a fresh environment it works, and brings none of the server's or the operator's
dependencies into the application."""

from __future__ import annotations

import email.parser
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
FORBIDDEN = {"kopf", "uvicorn", "starlette", "kubernetes-asyncio", "kubernetes_asyncio",
             "prometheus-client", "jinja2", "joyn-scim"}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(out),
                    str(ROOT / "client")], check=True)
    [whl] = out.glob("joyn_scim_events-*.whl")
    return whl


def test_the_wheel_requires_only_a_jose_library_and_an_http_client(wheel):
    with zipfile.ZipFile(wheel) as z:
        meta = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
        headers = email.parser.Parser().parsestr(z.read(meta).decode())
        names = {n.split("/")[0] for n in z.namelist() if not n.endswith("/")}
    requires = {r.split(">")[0].split("=")[0].split("<")[0].strip()
                for r in headers.get_all("Requires-Dist")}
    assert requires == {"joserfc", "httpx"}
    assert names == {"joyn_scim_events", meta.split("/")[0]}


def test_installed_alone_it_imports_without_the_servers_dependencies(wheel, tmp_path):
    env = tmp_path / "app-env"
    venv.create(env, with_pip=True)
    python = env / "bin" / "python"
    subprocess.run([python, "-m", "pip", "install", "-q", "--disable-pip-version-check",
                    str(wheel)], check=True)
    installed = subprocess.run([python, "-m", "pip", "list", "--format=freeze"], check=True,
                               capture_output=True, text=True).stdout
    names = {line.split("==")[0].lower() for line in installed.splitlines()}
    assert not names & FORBIDDEN, names & FORBIDDEN
    subprocess.run([python, "-c", "import joyn_scim_events as j; j.PollReceiver; j.PushReceiver"],
                   check=True)
