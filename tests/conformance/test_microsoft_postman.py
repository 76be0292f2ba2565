"""Microsoft's "SCIM Tests" Postman collection (AzureAD/SCIMReferenceCode, MIT), run with newman
against a live server. Every assertion must pass except those listed, with a reason, in
microsoft-expected-failures.txt."""

import json
import os
import subprocess
from collections import Counter
from pathlib import Path

import pytest
from conftest import ServerProcess, write_token

from .expectations import check

HERE = Path(__file__).parent
# Not in this repository: MICROSOFT_SCIM_TESTS names the file, else it is looked for beside it.
COLLECTION = Path(os.environ.get("MICROSOFT_SCIM_TESTS") or HERE.parents[2] / "shared" /
                  "conformance" / "microsoft-scim-tests.postman_collection.json")
WHERE = ("Microsoft's SCIM Tests Postman collection (github.com/AzureAD/SCIMReferenceCode, "
         "MIT): set MICROSOFT_SCIM_TESTS to its file")
NEWMAN = HERE / "node_modules" / ".bin" / "newman"
# "Get Token" calls the reference code's dev-only /Token endpoint; our token is passed instead.
FOLDERS = ["Endpoint tests", "User tests", "Group tests", "ComplexAttribute tests",
           "User tests with garbage", "Group tests with garbage", "Teardown garbage"]


def outcomes_of(report: dict) -> dict[str, bool]:
    out: dict[str, bool] = {}
    seen: Counter = Counter()
    for ex in report["run"]["executions"]:
        name = ex["item"]["name"]
        seen[name] += 1
        key = name if seen[name] == 1 else f"{name} #{seen[name]}"
        for a in ex.get("assertions", []):
            out[f"{key} / {a['assertion']}"] = "error" not in a
    return out


def test_microsoft_scim_tests_collection(tmp_path, capsys, db_args):
    assert NEWMAN.exists(), "newman is not installed: run `make test` (npm ci in tests/conformance)"
    if not COLLECTION.exists():
        if os.environ.get("CI"):
            pytest.fail(f"{COLLECTION} is missing, and CI must run it: {WHERE}")
        pytest.skip(f"{COLLECTION} is missing: {WHERE}")
    token = write_token(tmp_path / "token")
    srv = ServerProcess(tmp_path, [tmp_path / "token"], db_args).start()
    report_path = tmp_path / "newman.json"
    args = [str(NEWMAN), "run", str(COLLECTION), "--env-var", "Protocol=http",
            "--env-var", "Server=127.0.0.1", "--env-var", f"Port=:{srv.port}",
            "--env-var", "Api=scim/v2", "--env-var", f"token={token}",
            "--reporters", "json", "--reporter-json-export", str(report_path)]
    for folder in FOLDERS:
        args += ["--folder", folder]
    try:
        run = subprocess.run(args, capture_output=True, text=True, timeout=300)
    finally:
        srv.stop()
    # newman exits 1 when any assertion fails; the report is what counts.
    assert report_path.exists(), f"newman wrote no report: {run.stderr[-2000:]}"
    outcomes = outcomes_of(json.loads(report_path.read_text()))
    problems = check(capsys, "Microsoft SCIM Tests (newman)", outcomes,
                     "microsoft-expected-failures.txt")
    assert len(outcomes) >= 100  # the collection ran in full (103 assertions)
    assert not problems, problems
