"""Benchmark: joyn-scim vs scim2-server 0.8.3, in one run, on this machine.

Both servers run under uvicorn with the same options (one worker, uvloop + httptools), so the
comparison is of the SCIM layers: ours with SQLite on disk and bearer auth, scim2-server with its
in-memory storage and no auth. Each is seeded over HTTP with 10,000 users and 200 groups, one of
them with 5,000 members, then measured with wrk (a C load generator) from loopback:

- latency: one connection, requests back to back; median and p99 from wrk's histogram
- throughput: 8 connections; requests per second

Usage: python bench/bench.py [--seconds 5] [--users 10000] [--json results.json]
Requires wrk (`make bench` installs it).
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
USER = "urn:ietf:params:scim:schemas:core:2.0:User"
ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
PATCH_OP = "urn:ietf:params:scim:api:messages:2.0:PatchOp"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Target:
    name: str
    base: str  # the SCIM base URL
    headers: dict[str, str]
    proc: subprocess.Popen
    users: list[str] = None
    group_small: str = ""
    group_big: str = ""
    spare: list[str] = None  # users that are in no group, to add and remove


def wait_up(url: str, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited: {proc.returncode}")
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.TransportError:
            time.sleep(0.05)
    raise SystemExit(f"{url} did not come up")


def start_ours(workdir: Path) -> Target:
    token = secrets.token_urlsafe(32)
    (workdir / "token").write_text(token)
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "scim_server", "serve", "--port", str(port), "--data-dir",
         str(workdir), "--token-file", str(workdir / "token"), "--log-level", "warning"],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_up(f"http://127.0.0.1:{port}/healthz", proc)
    return Target("joyn-scim", f"http://127.0.0.1:{port}/scim/v2",
                  {"Authorization": f"Bearer {token}"}, proc)


def start_scim2_server() -> Target:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "bench.scim2_server_app:app", "--port", str(port),
         "--log-level", "warning", "--no-access-log"],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_up(f"http://127.0.0.1:{port}/v2/ServiceProviderConfig", proc)
    return Target("scim2-server 0.8.3", f"http://127.0.0.1:{port}/v2", {}, proc)


def user_body(i: int, prefix: str = "bench-user") -> dict:
    """An Entra-shaped create body (the Joyn FSM attribute mapping)."""
    return {
        "schemas": [USER, ENTERPRISE],
        "externalId": f"ext-{prefix}-{i}",
        "userName": f"{prefix}-{i:05d}@example.com",
        "active": True,
        "displayName": f"Bench User {i}",
        "name": {"formatted": f"Bench User {i}", "givenName": "Bench", "familyName": f"U{i}"},
        "emails": [{"primary": True, "type": "work", "value": f"{prefix}-{i:05d}@example.com"}],
        "phoneNumbers": [{"type": "mobile", "value": f"+47 400 {i:05d}"}],
        "addresses": [{"type": "work", "locality": "Oslo", "country": "NO"}],
        ENTERPRISE: {"department": "Field", "employeeNumber": str(i)},
    }


def seed(t: Target, users: int, groups: int, big: int) -> None:
    with httpx.Client(base_url=t.base, headers=t.headers, timeout=120) as c:
        ids = []
        for i in range(users):
            r = c.post("/Users", json=user_body(i))
            r.raise_for_status()
            ids.append(r.json()["id"])
        gids = []
        for g in range(groups):
            r = c.post("/Groups", json={"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
                                        "displayName": f"Bench Group {g}"})
            r.raise_for_status()
            gids.append(r.json()["id"])
        members = ids[:big]
        for i in range(0, len(members), 500):
            r = c.patch(f"/Groups/{gids[0]}", json={"schemas": [PATCH_OP], "Operations": [
                {"op": "add", "path": "members",
                 "value": [{"value": m} for m in members[i:i + 500]]}]})
            r.raise_for_status()
        r = c.patch(f"/Groups/{gids[1]}", json={"schemas": [PATCH_OP], "Operations": [
            {"op": "add", "path": "members", "value": [{"value": m} for m in ids[:50]]}]})
        r.raise_for_status()
    t.users, t.group_big, t.group_small = ids, gids[0], gids[1]
    t.spare = ids[big:big + 1000]


def lua_list(values: list[str]) -> str:
    return "{" + ",".join(json.dumps(v) for v in values) + "}"


LUA_DONE = r"""
done = function(summary, latency, requests)
  io.write(string.format('RESULT {"requests":%d,"duration_us":%d,"p50_us":%d,"p99_us":%d,' ..
    '"non2xx":%d,"socket_errors":%d}\n', summary.requests, summary.duration,
    latency:percentile(50), latency:percentile(99), summary.errors.status,
    summary.errors.connect + summary.errors.read + summary.errors.write +
    summary.errors.timeout))
end
"""


def lua_script(t: Target, workload: str, run_id: str) -> str:
    headers = {"Content-Type": "application/scim+json", **t.headers}
    hdr = "{" + ",".join(f"[{json.dumps(k)}]={json.dumps(v)}" for k, v in headers.items()) + "}"
    common = f"local headers = {hdr}\nlocal n = 0\nmath.randomseed(42)\n"
    if workload == "filter":
        body = f"""
local count = {len(t.users)}
request = function()
  local i = math.random(0, count - 1)
  local path = string.format('/Users?filter=userName%%20eq%%20%%22bench-user-%05d%%40example.com%%22', i)
  return wrk.format("GET", wrk.path .. path, headers)
end"""
    elif workload == "post":
        template = json.dumps(user_body(0, prefix="RUNPREFIX"))
        body = f"""
local template = {json.dumps(template)}
request = function()
  n = n + 1
  local b = string.gsub(template, "RUNPREFIX", "{run_id}-" .. n)
  return wrk.format("POST", wrk.path .. "/Users", headers, b)
end"""
    elif workload == "user_patch":
        body = f"""
local ids = {lua_list(t.users[:2000])}
request = function()
  n = n + 1
  local id = ids[math.random(1, #ids)]
  local b = '{{"schemas":["{PATCH_OP}"],"Operations":[' ..
    '{{"op":"replace","path":"displayName","value":"Renamed ' .. n .. '"}},' ..
    '{{"op":"replace","path":"emails[type eq \\\\"work\\\\"].value","value":"r' .. n .. '@example.com"}},' ..
    '{{"op":"replace","path":"{ENTERPRISE}:department","value":"Dept ' .. n .. '"}}]}}'
  return wrk.format("PATCH", wrk.path .. "/Users/" .. id, headers, b)
end"""
    elif workload.startswith("group_patch"):
        gid = t.group_big if workload == "group_patch_big" else t.group_small
        body = f"""
local spare = {lua_list(t.spare)}
request = function()
  n = n + 1
  local k = math.floor((n - 1) / 2) % #spare + 1
  local b
  if n % 2 == 1 then
    b = '{{"schemas":["{PATCH_OP}"],"Operations":[{{"op":"add","path":"members","value":[{{"value":"' .. spare[k] .. '"}}]}}]}}'
  else
    b = '{{"schemas":["{PATCH_OP}"],"Operations":[{{"op":"remove","path":"members[value eq \\\\"' .. spare[k] .. '\\\\"]"}}]}}'
  end
  return wrk.format("PATCH", wrk.path .. "/Groups/{gid}", headers, b)
end"""
    else:
        raise ValueError(workload)
    return common + body + LUA_DONE


def run_wrk(t: Target, workload: str, connections: int, seconds: int, workdir: Path) -> dict:
    run_id = f"w{secrets.token_hex(3)}"
    script = workdir / f"{workload}-{run_id}.lua"
    script.write_text(lua_script(t, workload, run_id))
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--timeout", "10s", "-s",
         str(script), t.base], capture_output=True, text=True, check=True).stdout
    line = next(ln for ln in out.splitlines() if ln.startswith("RESULT "))
    r = json.loads(line[len("RESULT "):])
    r["rps"] = r["requests"] / (r["duration_us"] / 1e6)
    return r


WORKLOADS = [
    ("filter", 'GET /Users?filter=userName eq "..."'),
    ("post", "POST /Users"),
    ("user_patch", "PATCH /Users/{id} (3 Entra-style ops)"),
    ("group_patch_big", "PATCH one member, 5,000-member group"),
    ("group_patch_small", "PATCH one member, 50-member group"),
]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=int, default=5)
    ap.add_argument("--users", type=int, default=10_000)
    ap.add_argument("--groups", type=int, default=200)
    ap.add_argument("--big-group", type=int, default=5_000)
    ap.add_argument("--json", help="also write the results to this file")
    args = ap.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("wrk is not installed (apt-get install wrk)")
    workdir = Path(tempfile.mkdtemp(prefix="joyn-bench-"))
    targets = [start_ours(workdir), start_scim2_server()]
    results: dict = {"machine": f"{os.cpu_count()} cores", "python": sys.version.split()[0],
                     "users": args.users, "groups": args.groups, "seconds": args.seconds,
                     "results": {}}
    try:
        for t in targets:
            t0 = time.perf_counter()
            seed(t, args.users, args.groups, args.big_group)
            print(f"seeded {t.name}: {args.users} users, {args.groups} groups in "
                  f"{time.perf_counter() - t0:.1f} s", flush=True)
        for key, label in WORKLOADS:
            for t in targets:
                lat = run_wrk(t, key, 1, args.seconds, workdir)
                thr = run_wrk(t, key, 8, args.seconds, workdir)
                results["results"].setdefault(key, {})[t.name] = {
                    "p50_ms": lat["p50_us"] / 1000, "p99_ms": lat["p99_us"] / 1000,
                    "rps": thr["rps"], "errors": lat["non2xx"] + thr["non2xx"] +
                    lat["socket_errors"] + thr["socket_errors"]}
                print(f"  {label:42s} {t.name:20s} p50 {lat['p50_us'] / 1000:7.3f} ms  "
                      f"p99 {lat['p99_us'] / 1000:7.3f} ms  {thr['rps']:8.0f} req/s  "
                      f"errors {lat['non2xx'] + thr['non2xx']}", flush=True)
    finally:
        for t in targets:
            t.proc.send_signal(signal.SIGTERM)
            t.proc.wait(timeout=30)
        shutil.rmtree(workdir, ignore_errors=True)

    ours, theirs = targets[0].name, targets[1].name
    print(f"\n| workload | p50 {ours} | p50 {theirs} | p50 ratio | p99 ratio | req/s {ours} | "
          f"req/s {theirs} | req/s ratio |")
    print("|---|---|---|---|---|---|---|---|")
    for key, label in WORKLOADS:
        a, b = results["results"][key][ours], results["results"][key][theirs]
        print(f"| {label} | {a['p50_ms']:.3f} ms | {b['p50_ms']:.3f} ms | "
              f"{b['p50_ms'] / a['p50_ms']:.1f}x | {b['p99_ms'] / a['p99_ms']:.1f}x | "
              f"{a['rps']:.0f} | {b['rps']:.0f} | {a['rps'] / b['rps']:.1f}x |")
    big = results["results"]["group_patch_big"][ours]["p50_ms"]
    small = results["results"]["group_patch_small"][ours]["p50_ms"]
    print(f"\n{ours}: one-member group PATCH p50 at 5,000 members / at 50 members = "
          f"{big / small:.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    errors = sum(v["errors"] for w in results["results"].values() for v in w.values())
    return 1 if errors else 0


if __name__ == "__main__":
    raise SystemExit(main())
