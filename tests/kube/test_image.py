"""The image built from the Dockerfile (hack/node/images.sh: buildah, on a Debian base made by
debootstrap), run as a container by the node's containerd."""

from __future__ import annotations

import secrets
import tomllib

from .conftest import ROOT


def run(cluster, *argv: str):
    """The image's container with `argv` as its whole command; (exit code, output)."""
    node = cluster.node
    r = node.ctr("run", "--rm", "--runc-root", str(node.dir / "runc"),  # not the host's /run
                 "--fifo-dir", str(node.dir / "fifo"), cluster.images.app,
                 f"image-test-{secrets.token_hex(3)}", *argv, check=False, timeout=120)
    return r.returncode, (r.stdout + r.stderr).strip()


def test_runs_as_the_unprivileged_user(cluster):
    assert run(cluster, "id", "-u") == (0, "10001")
    assert run(cluster, "id", "-g") == (0, "10001")


def test_the_command_answers_with_the_package_version(cluster):
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    code, out = run(cluster, "joyn-scim", "--version")
    assert code == 0 and version in out


def test_the_final_stage_holds_no_build_tools_or_sources(cluster):
    code, out = run(cluster, "sh", "-c", "command -v gcc cc make git || true")
    assert (code, out) == (0, "")
    assert run(cluster, "test", "-e", "/src")[0] == 1
