"""Watching the stream without consuming it: `GET /events/tail` (events/routes.py) and
`joyn-scim events tail` (events/tail.py)."""

from __future__ import annotations

import json
import subprocess
import sys
import threading

from conftest import new_user, patch, wait_until


def following(srv, lines: list[dict], n: int) -> threading.Thread:
    """`GET /events/tail?follow=1` on a thread, its lines into `lines` until there are `n`."""
    def follow():
        with srv.events.stream("GET", "/events/tail", params={"follow": "1"}) as r:
            for line in r.iter_lines():
                if line:  # the blank lines are heartbeats
                    lines.append(json.loads(line))
                if len(lines) == n:
                    return

    watcher = threading.Thread(target=follow, daemon=True)
    watcher.start()
    return watcher


def test_tail_shows_the_backlog_and_follows_without_consuming(events_server):
    srv = events_server
    first = new_user(srv.scim)
    lines: list[dict] = []
    watcher = following(srv, lines, 3)
    wait_until(lambda: len(lines) == 1, what="the backlog shown")
    second = new_user(srv.scim)
    srv.drain()  # the receiver acknowledges at once: the watcher still sees every event
    patch(srv.scim, f"/Users/{second['id']}", {"op": "add", "path": "title", "value": "t"})
    watcher.join(timeout=20)
    assert [c["sub_id"]["uri"] for c in lines] == [
        f"/Users/{first['id']}", f"/Users/{second['id']}", f"/Users/{second['id']}"]
    assert [int(c["txn"]) for c in lines] == sorted(int(c["txn"]) for c in lines)
    # Watching consumed nothing: without a receiver, the backlog is still there.
    r = srv.events.get("/events/tail")
    assert r.status_code == 200 and r.text.count("\n") == 1  # the patch, not yet acked
    assert srv.events.get("/events/tail", params={"after": "x"}).status_code == 400


def test_joyn_scim_events_tail_prints_a_line_a_change(events_server, tmp_path):
    srv = events_server
    user = new_user(srv.scim)
    patch(srv.scim, f"/Users/{user['id']}", {"op": "Replace", "path": "active", "value": "False"})
    token_file = tmp_path / "receiver"
    token_file.write_text(srv.receiver_token + "\n")
    out = subprocess.run([sys.executable, "-m", "scim_server", "events", "tail", "--url",
                          srv.root, "--token-file", str(token_file)],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert len(lines) == 2
    assert "create" in lines[0] and f"/Users/{user['id']}" in lines[0] and 'W/"1"' in lines[0]
    assert "patch+deactivate" in lines[1] and 'W/"2"' in lines[1]
    assert srv.receiver_token not in out.stdout + out.stderr
    token_file.write_text(srv.token + "\n")  # Entra's token opens no event endpoint
    out = subprocess.run([sys.executable, "-m", "scim_server", "events", "tail", "--url",
                          srv.root, "--token-file", str(token_file)],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 1 and "authentication_failed" in out.stderr
    assert srv.token not in out.stdout + out.stderr


def test_following_after_a_restart_shows_new_events_and_misses_nothing(events_server):
    """Events acknowledged before the watch began (and before the server restarted) are not
    'missed': the watch follows from the head it began at."""
    srv = events_server
    new_user(srv.scim)
    srv.drain()
    srv.stop()
    srv.start()
    lines: list[dict] = []
    watcher = following(srv, lines, 1)
    user = new_user(srv.scim)
    watcher.join(timeout=20)
    assert [line.get("sub_id", line) for line in lines] == [
        {"format": "scim", "uri": f"/Users/{user['id']}"}]
