"""Run scim2-tester (python-scim) against a live server through its Python API.

Usage: python run_scim2_tester.py URL TOKEN_FILE
Prints one line per check that is not SUCCESS, then `N passed, N failed`. The token is read from
a file so it never appears on a command line or in the output. Exit status 0 only if every check
is SUCCESS.
"""

from __future__ import annotations

import sys
from collections import Counter


def run(url: str, token: str) -> tuple[int, int, list[str]]:
    from httpx2 import Client
    from scim2_client.engines.httpx2 import SyncSCIMClient
    from scim2_tester import Status, check_server

    http = Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=30)
    results = check_server(SyncSCIMClient(http), raise_exceptions=False)
    counts = Counter(r.status for r in results)
    lines = [f"{r.status.name} {r.title}: {r.reason}" for r in results
             if r.status is not Status.SUCCESS]
    return counts[Status.SUCCESS], len(results) - counts[Status.SUCCESS], lines


def main() -> int:
    url, token_file = sys.argv[1], sys.argv[2]
    with open(token_file) as f:
        token = f.read().strip()
    passed, failed, lines = run(url, token)
    for line in lines:
        print(line.replace(token, "<token>"))
    print(f"{passed} passed, {failed} failed")
    return 0 if failed == 0 and passed > 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
