"""Checked-in expected failures of the third-party suites, and the comparison with a run.

Each expectations file has one line per accepted failure: `<check> | <reason>` (`#` starts a
comment). A run fails if a check fails that is not listed, or if a listed one now passes (the
list must shrink when the server improves)."""

from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).parent


def load(name: str) -> dict[str, str]:
    out = {}
    for line in (HERE / name).read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        check, sep, reason = line.rpartition(" | ")
        assert sep and check and reason.strip(), f"{name}: needs '<check> | <reason>': {line}"
        out[check.strip()] = reason.strip()
    return out


def compare(outcomes: dict[str, bool], expected: dict[str, str]) -> list[str]:
    """Problems with a run: unexpected failures, expected failures that passed, unknown keys."""
    problems = [f"unexpected failure: {k}" for k, ok in outcomes.items()
                if not ok and k not in expected]
    problems += [f"listed as failing but passed (remove it from the list): {k}"
                 for k in expected if outcomes.get(k) is True]
    problems += [f"listed but not in the run (renamed?): {k}" for k in expected
                 if k not in outcomes]
    return problems


def summary(outcomes: dict[str, bool]) -> str:
    passed = sum(outcomes.values())
    return f"{passed} passed, {len(outcomes) - passed} failed"


def check(capsys, title: str, outcomes: dict[str, bool], expectations: str,
          note: str = "") -> list[str]:
    """Compare a run with its expectations file, print the problems and the closing
    `N passed, N failed` line (shown even though pytest captures output); return the problems."""
    expected = load(expectations)
    problems = compare(outcomes, expected)
    with capsys.disabled():
        for p in problems:
            print(p)
        print(f"\n{title}: {summary(outcomes)}{note} ({len(expected)} failures expected)")
    return problems
