"""scim2-tester (PyPI) against a live server: every check must be SUCCESS."""

import sys
from pathlib import Path

from conftest import ServerProcess, write_token

sys.path.insert(0, str(Path(__file__).parent))
from run_scim2_tester import run


def test_scim2_tester_all_checks_succeed(tmp_path, capsys, db_args):
    token = write_token(tmp_path / "token")
    srv = ServerProcess(tmp_path, [tmp_path / "token"], db_args).start()
    try:
        passed, failed, problems = run(srv.url, token)
    finally:
        srv.stop()
    with capsys.disabled():
        for line in problems:
            print(line.replace(token, "<token>"))
        print(f"\nscim2-tester: {passed} passed, {failed} failed")
    assert failed == 0, problems
    assert passed >= 140  # the suite ran in full (145 checks in scim2-tester 0.5.2)
