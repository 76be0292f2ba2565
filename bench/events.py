"""Benchmark: the event stream, in one run on this machine (`make bench-events`).

- **Write cost**: the Entra mix (bench.py's, 8 connections) against our server with the stream
  off and on, alternating, 3 rounds; medians and their ratio. "On" records every change in the
  outbox with no receiver draining it (the write path's own cost), and once more with a poll
  receiver draining it meanwhile, on the same two cores.
- **Poll drain**: N events waiting; a receiver polls them in batches of 1,000, acknowledging each
  batch in the next poll. Twice: bare polls, and the client (joyn_scim_events.PollReceiver),
  which verifies every signature against the JWKS and applies each event to a store.
- **Push**: N events waiting for a receiver that was down; a bare RFC 8935 receiver comes up
  (bench/push_receiver_app.py, 202 to every POST) and the server pushes the backlog, one SET a
  request, in order; the rate between its first and last arrival.
- **An initial cycle**: `--cycle` users (default 100,000) created over 8 connections, as Entra's
  first cycle does, with events off, then on with the client polling meanwhile in a process of
  its own; the seconds from the last write until nothing is left unacknowledged. Then every
  user is renamed with no receiver listening: the database file's size with all those events
  waiting, the client's rate draining them, and the size once they are acknowledged.

Usage: python bench/events.py [--seconds 5] [--users 5000] [--events 20000] [--cycle 100000]
Requires wrk (`make bench` installs it).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench import Target, free_port, run_wrk, seed, start_ours, user_body, wait_up

ROUNDS = 3


def start(workdir: Path, events: bool, *extra: str) -> Target:
    workdir.mkdir(parents=True, exist_ok=True)
    args = ["--events-token-file", str(workdir / "receiver-token"), *extra] if events else []
    (workdir / "receiver-token").write_text("bench-receiver-token\n")
    t = start_ours(workdir, extra_args=tuple(args), name="events on" if events else "events off")
    t.root = t.base.removesuffix("/scim/v2")
    t.workdir = workdir
    return t


def stop(t: Target) -> None:
    if t.proc.poll() is None:
        t.proc.send_signal(signal.SIGTERM)
        t.proc.wait(timeout=60)


def backlog(t: Target) -> int:
    text = httpx.get(t.root + "/metrics", timeout=30).text
    return int(float(re.search(r"^scim_events_backlog (\S+)", text, re.M)[1]))


def receiver_process(t: Target, issuer: str) -> subprocess.Popen:
    """The client polling `t` with a store that keeps only its position, in its own process."""
    code = f"""
import threading
from joyn_scim_events import EventServer, PollReceiver
class Store:
    at = None
    def position(self): return self.at
    def apply(self, event): self.at = event.position
    def reset(self, snapshot):
        for _ in snapshot.users: pass
        for _ in snapshot.groups: pass
        self.at = snapshot.position
PollReceiver(EventServer({t.root!r}, "bench-receiver-token"), {issuer!r}, Store()).run()
"""
    return subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)


async def create_users(t: Target, n: int, prefix: str, connections: int = 8) -> float:
    """n users over `connections` connections; returns the time the last write answered."""
    async with httpx.AsyncClient(base_url=t.base, headers=t.headers, timeout=120) as c:
        async def worker(k: int) -> None:
            for i in range(k, n, connections):
                r = await c.post("/Users", json=user_body(i, prefix=prefix))
                r.raise_for_status()
        await asyncio.gather(*(worker(k) for k in range(connections)))
    return time.monotonic()


def write_cost(workdir: Path, users: int, seconds: int) -> dict:
    off, on = start(workdir / "off", False), start(workdir / "on", True)
    try:
        for t in (off, on):
            seed(t, users, 20, 500)
        rps: dict[str, list[float]] = {"off": [], "on": [], "on, drained": []}
        for _ in range(ROUNDS):
            rps["off"].append(run_wrk(off, "mix", 8, seconds, workdir)["rps"])
            rps["on"].append(run_wrk(on, "mix", 8, seconds, workdir)["rps"])
        drainer = receiver_process(on, on.base)
        try:
            for _ in range(ROUNDS):
                rps["on, drained"].append(run_wrk(on, "mix", 8, seconds, workdir)["rps"])
        finally:
            drainer.terminate()
            drainer.wait(timeout=30)
        return {k: statistics.median(v) for k, v in rps.items()} | {"runs": rps}
    finally:
        stop(off)
        stop(on)


def poll_drain(workdir: Path, n: int) -> dict:
    from joyn_scim_events import EventServer, PollReceiver

    out = {}
    for kind in ("bare polls", "client, verifying"):
        t = start(workdir / kind.replace(" ", "-").replace(",", ""), True)
        try:
            asyncio.run(create_users(t, n, "drain"))
            events = httpx.Client(base_url=t.root, timeout=120,
                                  headers={"Authorization": "Bearer bench-receiver-token"})
            started = time.perf_counter()
            if kind == "bare polls":
                acks: list[str] = []
                got = 0
                while True:
                    sets = events.post("/events", json={"ack": acks, "maxEvents": 1000,
                                                        "returnImmediately": True}).json()["sets"]
                    if not sets:
                        break
                    got += len(sets)
                    acks = list(sets)
            else:
                class Store:
                    at, applied = None, 0

                    def position(self):
                        return self.at

                    def apply(self, event):
                        self.at, self.applied = event.position, self.applied + 1

                    def reset(self, snapshot):  # starts empty: nothing to read but the ends
                        list(snapshot.users), list(snapshot.groups)
                        self.at = snapshot.position._replace(seq=0)

                store = Store()
                receiver = PollReceiver(EventServer(t.root, "bench-receiver-token"), t.base,
                                        store, wait=0)
                while receiver.poll_once(return_immediately=True):
                    pass
                receiver.flush()
                got = store.applied
            elapsed = time.perf_counter() - started
            assert got == n and backlog(t) == 0, (got, n)
            out[kind] = n / elapsed
        finally:
            stop(t)
    return out


def push(workdir: Path, n: int) -> dict:
    port = free_port()
    t = start(workdir / "push", True, "--events-push-url", f"http://127.0.0.1:{port}/",
              "--events-push-timeout", "5")
    receiver = None
    try:
        asyncio.run(create_users(t, n, "push"))  # the receiver is down: all of them wait
        receiver = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "bench.push_receiver_app:app", "--port",
             str(port), "--log-level", "warning", "--no-access-log"],
            cwd=Path(__file__).resolve().parent.parent, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL)
        wait_up(f"http://127.0.0.1:{port}/stats", receiver)
        deadline = time.monotonic() + 600
        while (stats := httpx.get(f"http://127.0.0.1:{port}/stats").json())["count"] < n:
            assert time.monotonic() < deadline, stats
            time.sleep(0.5)
        return {"bare receiver": (n - 1) / (stats["last"] - stats["first"])}
    finally:
        stop(t)
        if receiver:
            receiver.terminate()
            receiver.wait(timeout=30)


async def rename_users(t: Target, connections: int = 8) -> None:
    """A PATCH of every user's displayName, to the same name in capitals: an incremental cycle
    that touches everyone and leaves the users' own rows as large as they were, so the file's
    size after the acknowledgements compares with the size before."""
    async with httpx.AsyncClient(base_url=t.base, headers=t.headers, timeout=120) as c:
        users: list[tuple[str, str]] = []
        start = 1
        while True:
            page = (await c.get("/Users", params={"startIndex": start, "count": 1000,
                                                  "attributes": "displayName"})).json()
            users += [(r["id"], r["displayName"]) for r in page["Resources"]]
            start += page["itemsPerPage"]
            if not page["Resources"]:
                break

        async def worker(k: int) -> None:
            for uid, name in users[k::connections]:
                r = await c.patch(f"/Users/{uid}", json={"Operations": [
                    {"op": "Replace", "path": "displayName", "value": name.upper()}]})
                r.raise_for_status()
        await asyncio.gather(*(worker(k) for k in range(connections)))


def initial_cycle(workdir: Path, n: int) -> dict:
    plain = start(workdir / "cycle-off", False)
    try:
        t0 = time.monotonic()
        off_rate = n / (asyncio.run(create_users(plain, n, "cycle")) - t0)
    finally:
        stop(plain)
    t = start(workdir / "cycle-on", True)
    db = t.workdir / "scim.db"
    drainer = receiver_process(t, t.base)
    try:
        t0 = time.monotonic()
        last_write = asyncio.run(create_users(t, n, "cycle"))
        while backlog(t) > 0:
            time.sleep(0.2)
        drained = time.monotonic() - last_write
        on_rate = n / (last_write - t0)
    finally:
        drainer.terminate()
        drainer.wait(timeout=30)
    floor = db.stat().st_size
    # The disk: every user changed while no receiver listens, then drained and acknowledged.
    asyncio.run(rename_users(t))
    assert backlog(t) == n
    full = db.stat().st_size
    drainer = receiver_process(t, t.base)
    try:
        t0 = time.monotonic()
        while backlog(t) > 0:
            time.sleep(0.2)
        backlog_rate = n / (time.monotonic() - t0)
    finally:
        drainer.terminate()
        drainer.wait(timeout=30)
    stop(t)
    # The retention's pass (at start, then once a minute) gives acknowledged events' pages
    # back; a restart runs it now.
    t = start(t.workdir, True)
    stop(t)
    return {"users": n, "creates_per_s_events_off": off_rate, "creates_per_s_drained": on_rate,
            "drained_after_last_write_s": drained, "db_bytes": floor,
            "db_bytes_with_all_unacked": full, "db_bytes_after_acks": db.stat().st_size,
            "backlog_drain_events_per_s": backlog_rate}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=int, default=5)
    ap.add_argument("--users", type=int, default=5000, help="users seeded for the mix")
    ap.add_argument("--events", type=int, default=20_000, help="events to drain and push")
    ap.add_argument("--cycle", type=int, default=100_000, help="users of the initial cycle "
                                                               "(0: skip it)")
    ap.add_argument("--json", help="also write the results to this file")
    args = ap.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("wrk is not installed (apt-get install wrk)")
    workdir = Path(tempfile.mkdtemp(prefix="joyn-bench-events-"))
    results: dict = {"machine": f"{os.cpu_count()} cores", "python": sys.version.split()[0]}
    try:
        cost = results["write_cost"] = write_cost(workdir, args.users, args.seconds)
        print(f"Entra mix, 8 connections, median of {ROUNDS}: events off {cost['off']:.0f} "
              f"req/s, on {cost['on']:.0f} ({cost['on'] / cost['off']:.2f}x), on and drained "
              f"meanwhile {cost['on, drained']:.0f} ({cost['on, drained'] / cost['off']:.2f}x)",
              flush=True)
        drain = results["poll_drain"] = poll_drain(workdir, args.events)
        for kind, rate in drain.items():
            print(f"poll drain of {args.events} events, {kind}: {rate:.0f} events/s", flush=True)
        pushed = results["push"] = push(workdir, args.events)
        for kind, rate in pushed.items():
            print(f"push of {args.events} events to a {kind}: {rate:.0f} events/s", flush=True)
        if args.cycle:
            c = results["initial_cycle"] = initial_cycle(workdir, args.cycle)
            print(f"initial cycle of {c['users']} users: {c['creates_per_s_events_off']:.0f} "
                  f"creates/s with events off, {c['creates_per_s_drained']:.0f} on with the "
                  f"client draining meanwhile; drained {c['drained_after_last_write_s']:.1f} s "
                  f"after the last write", flush=True)
            print(f"then every user renamed with no receiver: database "
                  f"{c['db_bytes'] / 1e6:.1f} MB -> {c['db_bytes_with_all_unacked'] / 1e6:.1f} "
                  f"MB with {c['users']} events waiting; the client drained them at "
                  f"{c['backlog_drain_events_per_s']:.0f} events/s; "
                  f"{c['db_bytes_after_acks'] / 1e6:.1f} MB once acknowledged", flush=True)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
