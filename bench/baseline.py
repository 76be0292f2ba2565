"""A git ref's tree beside this one, so a benchmark measures before and after in one run."""

from __future__ import annotations

import contextlib
import os
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


@contextlib.contextmanager
def worktree(ref: str) -> Iterator[Path]:
    """A detached worktree of `ref`, removed afterwards."""
    tree = Path(tempfile.mkdtemp(prefix="joyn-bench-baseline-"))
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(tree), ref],
                   check=True, capture_output=True)
    try:
        yield tree
    finally:
        subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)],
                       check=False, capture_output=True)


def source_env(source: Path) -> dict[str, str]:
    """The environment that runs `source`'s packages (before the installed ones, which are
    this tree's) with the same dependencies."""
    env = dict(os.environ)
    if source != ROOT:
        env["PYTHONPATH"] = f"{source}{os.pathsep}{source / 'operator'}"
    return env
