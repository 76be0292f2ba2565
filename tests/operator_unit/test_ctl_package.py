"""`make kubectl-joyn` (packaging/build-kubectl-joyn.sh): kubectl joyn as one file that runs
with a clean Python, outside this checkout and its virtualenv, and the krew manifest that
names the archive by its sha256."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
# The interpreter this virtualenv was made from: none of the venv's packages, and -I below
# keeps out the user's site-packages, PYTHON* variables and the working directory.
CLEAN_PYTHON = Path(sys.base_prefix) / "bin" / "python3"


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    subprocess.run([str(ROOT / "packaging" / "build-kubectl-joyn.sh")], check=True,
                   env={**os.environ, "PYTHON": sys.executable, "OUT": str(out)}, timeout=540,
                   capture_output=True)
    return out


def run(built: Path, tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(CLEAN_PYTHON), "-I", str(built / "kubectl-joyn"), *args],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120,
                          env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path),
                               "SHIV_ROOT": str(tmp_path / "shiv")})


@pytest.mark.timeout(600)
def test_the_zipapp_runs_with_a_clean_interpreter_and_carries_its_libraries(built, tmp_path):
    r = run(built, tmp_path, "--help")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("usage: kubectl joyn") and "acknowledge" in r.stdout
    # A command past the parser: the Kubernetes client and the rest load from the zipapp.
    r = run(built, tmp_path, "--kubeconfig", str(tmp_path / "none"), "tenants")
    assert r.returncode == 1 and r.stderr.startswith(f"error: no kubeconfig at {tmp_path}"), \
        r.stderr
    assert "Traceback" not in r.stderr


@pytest.mark.timeout(600)
def test_the_krew_manifest_names_the_archive_by_its_sha256(built):
    manifest = yaml.safe_load((built / "krew" / "joyn.yaml").read_text())
    assert manifest["apiVersion"] == "krew.googlecontainertools.github.com/v1alpha2"
    assert manifest["kind"] == "Plugin" and manifest["metadata"]["name"] == "joyn"
    assert manifest["spec"]["version"].startswith("v0.")
    [platform] = manifest["spec"]["platforms"]
    assert platform["selector"]["matchLabels"] == {"os": "linux", "arch": "amd64"}
    archive = built / "kubectl-joyn-linux-amd64.tar.gz"
    assert platform["sha256"] == hashlib.sha256(archive.read_bytes()).hexdigest()
    assert platform["uri"].endswith("/kubectl-joyn-linux-amd64.tar.gz")
    with tarfile.open(archive) as tar:
        [member] = tar.getmembers()
        assert member.name == platform["bin"] == "kubectl-joyn" and member.mode & 0o111
        assert tar.extractfile(member).read() == (built / "kubectl-joyn").read_bytes()
    assert list(built.glob("joyn_scim-*-py3-none-any.whl"))
