"""helm, kubeconform and kind, built from their Go modules (hack/tools), run and report the
pinned versions; helm renders a chart offline."""

import os
import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def tools(tools_bins) -> Path:
    return tools_bins


def pinned(module: str) -> str:
    text = (ROOT / "hack/tools/go.mod").read_text()
    return re.search(re.escape(module) + r" (v[0-9.]+)", text).group(1)


def out(*args) -> str:
    r = subprocess.run(args, check=True, capture_output=True, text=True)
    return r.stdout + r.stderr


def test_versions(tools):
    assert out(str(tools / "helm"), "version", "--short").startswith(pinned("helm.sh/helm/v3"))
    assert pinned("github.com/yannh/kubeconform").lstrip("v") in out(str(tools / "kubeconform"),
                                                                      "-v")
    assert out(str(tools / "kind"), "version").startswith(f"kind {pinned('sigs.k8s.io/kind')}")


def test_helm_renders_a_chart_offline(tools, tmp_path):
    helm = str(tools / "helm")
    env = {**os.environ, "HELM_CACHE_HOME": str(tmp_path / "c"),
           "HELM_CONFIG_HOME": str(tmp_path / "cfg"), "HELM_DATA_HOME": str(tmp_path / "d")}
    subprocess.run([helm, "create", str(tmp_path / "demo")], check=True, capture_output=True,
                   env=env)
    rendered = subprocess.run([helm, "template", "t", str(tmp_path / "demo")], check=True,
                              capture_output=True, text=True, env=env).stdout
    assert "kind: Deployment" in rendered and "kind: Service" in rendered
