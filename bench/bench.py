"""Benchmark: joyn-scim vs scim2-server 0.8.3, in one run, on this machine.

Both servers run under uvicorn with the same options (one worker, uvloop + httptools), so the
comparison is of the SCIM layers: ours with SQLite on disk and bearer auth, scim2-server with its
in-memory storage and no auth. Each is seeded over HTTP with 10,000 users and 200 groups, one of
them with 5,000 members, then measured with wrk (a C load generator) from loopback:

- latency: one connection, requests back to back; median and p99 from wrk's histogram
- throughput: 8 connections; requests per second

Usage: python bench/bench.py [--seconds 5] [--users 10000] [--baseline REF] [--json results.json]
Requires wrk (`make bench` installs it).
"""

from __future__ import annotations

import argparse
import asyncio
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

sys.path.insert(0, str(Path(__file__).resolve().parent))
from baseline import ROOT, source_env, worktree

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


def start_ours(workdir: Path, source: Path = ROOT, name: str = "joyn-scim",
               extra_args: tuple[str, ...] = ()) -> Target:
    """Our server from `source` (this tree, or a baseline's worktree), data in `workdir`."""
    workdir.mkdir(exist_ok=True)
    token = secrets.token_urlsafe(32)
    (workdir / "token").write_text(token)
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "scim_server", "serve", "--port", str(port), "--data-dir",
         str(workdir), "--token-file", str(workdir / "token"), "--log-level", "warning",
         *extra_args],
        cwd=source, env=source_env(source), stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL)
    wait_up(f"http://127.0.0.1:{port}/healthz", proc)
    return Target(name, f"http://127.0.0.1:{port}/scim/v2",
                  {"Authorization": f"Bearer {token}"}, proc)


def start_uvicorn(name: str, app: str, probe: str, base: str) -> Target:
    """Another ASGI app under `python -m uvicorn` with its defaults: uvloop and httptools,
    as our server runs."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", app, "--port", str(port),
         "--log-level", "warning", "--no-access-log"],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_up(f"http://127.0.0.1:{port}{probe}", proc)
    return Target(name, f"http://127.0.0.1:{port}{base}", {}, proc)


def start_scim2_server() -> Target:
    return start_uvicorn("scim2-server 0.8.3", "bench.scim2_server_app:app",
                         "/v2/ServiceProviderConfig", "/v2")


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


def lua_headers(t: Target) -> str:
    headers = {"Content-Type": "application/scim+json", **t.headers}
    return "{" + ",".join(f"[{json.dumps(k)}]={json.dumps(v)}" for k, v in headers.items()) + "}"


def lua_user_requests(t: Target, run_id: str) -> str:
    """Lua builders of the user requests, `make.<workload>(n)` for the n-th request: the
    single workloads and the mix send the very same shapes."""
    template = json.dumps(user_body(0, prefix="RUNPREFIX"))
    return f"""
local ids = {lua_list(t.users[:2000])}
local count = {len(t.users)}
local template = {json.dumps(template)}
local make = {{}}
make.filter = function(n)
  local path = string.format('/Users?filter=userName%%20eq%%20%%22bench-user-%05d%%40example.com%%22', math.random(0, count - 1))
  return wrk.format("GET", wrk.path .. path, headers)
end
make.get = function(n)
  return wrk.format("GET", wrk.path .. "/Users/" .. ids[math.random(1, #ids)], headers)
end
make.post = function(n)
  return wrk.format("POST", wrk.path .. "/Users", headers, string.gsub(template, "RUNPREFIX", "{run_id}-" .. n))
end
make.user_patch = function(n)
  local b = '{{"schemas":["{PATCH_OP}"],"Operations":[' ..
    '{{"op":"replace","path":"displayName","value":"Renamed ' .. n .. '"}},' ..
    '{{"op":"replace","path":"emails[type eq \\\\"work\\\\"].value","value":"r' .. n .. '@example.com"}},' ..
    '{{"op":"replace","path":"{ENTERPRISE}:department","value":"Dept ' .. n .. '"}}]}}'
  return wrk.format("PATCH", wrk.path .. "/Users/" .. ids[math.random(1, #ids)], headers, b)
end
"""


# An Entra cycle's user requests, in proportion (docs/entra.md): each user in scope is matched
# by userName first, then a changed one is PATCHed, a new one created, some read by id. Group
# PATCHes are left out: scim2-server's cost grows with a group's size and would flatter us.
MIX = (("filter", 4), ("user_patch", 3), ("post", 1), ("get", 2))


def lua_script(t: Target, workload: str, run_id: str) -> str:
    common = f"local headers = {lua_headers(t)}\nlocal n = 0\nmath.randomseed(42)\n"
    if workload in dict(MIX):
        body = lua_user_requests(t, run_id) + f"""
request = function()
  n = n + 1
  return make.{workload}(n)
end"""
    elif workload == "mix":
        slots = [kind for kind, weight in MIX for _ in range(weight)]
        body = lua_user_requests(t, run_id) + f"""
local slots = {lua_list(slots)}
request = function()
  n = n + 1
  return make[slots[(n - 1) % #slots + 1]](n)
end"""
    elif workload == "fixed":
        body = """
request = function()
  return wrk.format("GET", wrk.path .. "/Users", headers)
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
    return wrk_result(script, t.base, connections, seconds)


def wrk_result(script: Path, url: str, connections: int, seconds: int) -> dict:
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--timeout", "10s", "-s",
         str(script), url], capture_output=True, text=True, check=True).stdout
    line = next(ln for ln in out.splitlines() if ln.startswith("RESULT "))
    r = json.loads(line[len("RESULT "):])
    r["rps"] = r["requests"] / (r["duration_us"] / 1e6)
    return r


WORKLOADS = [
    ("filter", 'GET /Users?filter=userName eq "..."'),
    ("get", "GET /Users/{id}"),
    ("post", "POST /Users"),
    ("user_patch", "PATCH /Users/{id} (3 Entra-style ops)"),
    ("group_patch_big", "PATCH one member, 5,000-member group"),
    ("group_patch_small", "PATCH one member, 50-member group"),
    ("mix", "Entra mix (" + ", ".join(f"{w}x {k}" for k, w in MIX) + ")"),
]


async def seed_large(t: Target, n: int, tail: int) -> str:
    """Users 0 to n-1, all but the last `tail` over 8 connections, then those one at a time;
    returns the lastModified of the first of them, which `gt` finds the rest after."""
    async with httpx.AsyncClient(base_url=t.base, headers=t.headers, timeout=120) as c:
        async def post(i: int) -> dict:
            r = await c.post("/Users", json=user_body(i, prefix="large"))
            r.raise_for_status()
            return r.json()

        async def worker(k: int) -> None:
            for i in range(k, n - tail, 8):
                await post(i)
        await asyncio.gather(*(worker(k) for k in range(8)))
        mark = (await post(n - tail))["meta"]["lastModified"]
        for i in range(n - tail + 1, n):
            await post(i)
    return mark


def large_rows(workdir: Path, n: int, seconds: int) -> dict:
    """Our filter latencies at `n` users: the matching attributes Entra can be set to, on
    random users, and the incremental-sync query (meta.lastModified gt: the 149 newest)."""
    d = workdir / "large"
    d.mkdir()
    t = start_ours(d)
    try:
        t0 = time.perf_counter()
        mark = asyncio.run(seed_large(t, n, 150))
        print(f"seeded joyn-scim: {n} users in {time.perf_counter() - t0:.1f} s", flush=True)
        email = "large-%05d@example.com"  # %d: a random user's number, filled in by Lua
        rows = {
            'userName eq "..."': f'userName eq "{email}"',
            'emails[type eq "work"].value eq "..."': f'emails[type eq "work"].value eq "{email}"',
            'emails[type eq "work" and value eq "..."]':
                f'emails[type eq "work" and value eq "{email}"]',
            'externalId eq "..."': 'externalId eq "ext-large-%d"',
            f'meta.lastModified gt "<{n - 150}th user>"': f'meta.lastModified gt "{mark}"',
        }
        out = {}
        for k, (label, flt) in enumerate(rows.items()):
            script = d / f"large-{k}.lua"
            script.write_text(f"""local headers = {lua_headers(t)}
math.randomseed(42)
local function escape(s)
  return (string.gsub(s, "[^%w%-%._~]", function(c) return string.format("%%%02X", string.byte(c)) end))
end
request = function()
  local flt = string.format({json.dumps(flt)}, math.random(0, {n - 151}))
  return wrk.format("GET", wrk.path .. "/Users?count=200&filter=" .. escape(flt), headers)
end""" + LUA_DONE)
            res = wrk_result(script, t.base, 1, seconds)
            out[label] = {"p50_ms": res["p50_us"] / 1000, "p99_ms": res["p99_us"] / 1000,
                          "errors": res["non2xx"] + res["socket_errors"]}
            print(f"  {label:48s} p50 {out[label]['p50_ms']:7.3f} ms  "
                  f"p99 {out[label]['p99_ms']:7.3f} ms", flush=True)
        return out
    finally:
        t.proc.send_signal(signal.SIGTERM)
        t.proc.wait(timeout=30)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=int, default=5)
    ap.add_argument("--users", type=int, default=10_000)
    ap.add_argument("--groups", type=int, default=200)
    ap.add_argument("--big-group", type=int, default=5_000)
    ap.add_argument("--large", type=int, default=100_000,
                    help="users for the filter rows at scale (0: skip them)")
    ap.add_argument("--only", nargs="*", choices=[k for k, _ in WORKLOADS],
                    help="run only these workloads")
    ap.add_argument("--baseline", metavar="REF",
                    help="also run our server as of this git ref, in the same run (before/after)")
    ap.add_argument("--json", help="also write the results to this file")
    ap.add_argument("--profile", type=Path,
                    help="record our server during the mix's 8-connection run with py-spy (on "
                         "PATH), as collapsed stacks in this file")
    args = ap.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("wrk is not installed (apt-get install wrk)")
    workloads = [(k, label) for k, label in WORKLOADS if not args.only or k in args.only]
    if not args.baseline:
        return run(args, workloads, None)
    with worktree(args.baseline) as tree:
        return run(args, workloads, tree)


def run(args: argparse.Namespace, workloads: list, baseline: Path | None) -> int:
    workdir = Path(tempfile.mkdtemp(prefix="joyn-bench-"))
    targets = [start_ours(workdir / "ours"), start_scim2_server()]
    if baseline:
        targets.append(start_ours(workdir / "baseline", baseline, f"joyn-scim {args.baseline}"))
    bare = start_uvicorn("bare ASGI app", "bench.bare_app:app", "/", "")
    results: dict = {"machine": f"{os.cpu_count()} cores", "python": sys.version.split()[0],
                     "users": args.users, "groups": args.groups, "seconds": args.seconds,
                     "results": {}}
    try:
        for t in targets:
            t0 = time.perf_counter()
            seed(t, args.users, args.groups, args.big_group)
            print(f"seeded {t.name}: {args.users} users, {args.groups} groups in "
                  f"{time.perf_counter() - t0:.1f} s", flush=True)
        ceiling = run_wrk(bare, "fixed", 8, args.seconds, workdir)["rps"]
        results["ceiling_rps"] = ceiling
        print(f"  {'GET, a fixed body':42s} {bare.name:20s} {ceiling:8.0f} req/s", flush=True)
        for key, label in workloads:
            for t in targets:
                lat = run_wrk(t, key, 1, args.seconds, workdir)
                spy = None
                if args.profile and key == "mix" and t is targets[0]:
                    spy = subprocess.Popen(
                        ["py-spy", "record", "--pid", str(t.proc.pid), "--duration",
                         str(args.seconds), "--format", "raw", "--nonblocking", "--output",
                         str(args.profile)], stdout=subprocess.DEVNULL)
                thr = run_wrk(t, key, 8, args.seconds, workdir)
                if spy:
                    spy.wait()
                results["results"].setdefault(key, {})[t.name] = {
                    "p50_ms": lat["p50_us"] / 1000, "p99_ms": lat["p99_us"] / 1000,
                    "rps": thr["rps"], "errors": lat["non2xx"] + thr["non2xx"] +
                    lat["socket_errors"] + thr["socket_errors"]}
                print(f"  {label:42s} {t.name:20s} p50 {lat['p50_us'] / 1000:7.3f} ms  "
                      f"p99 {lat['p99_us'] / 1000:7.3f} ms  {thr['rps']:8.0f} req/s  "
                      f"errors {lat['non2xx'] + thr['non2xx']}", flush=True)
        for t in targets:
            t.proc.send_signal(signal.SIGTERM)
            t.proc.wait(timeout=30)
        if args.large:
            results["large"] = {"users": args.large,
                                "rows": large_rows(workdir, args.large, args.seconds)}
    finally:
        for t in [*targets, bare]:
            if t.proc.poll() is None:
                t.proc.send_signal(signal.SIGTERM)
                t.proc.wait(timeout=30)
        shutil.rmtree(workdir, ignore_errors=True)

    ours, theirs = targets[0].name, targets[1].name
    print(f"\n| workload | p50 {ours} | p50 {theirs} | p50 ratio | p99 ratio | req/s {ours} | "
          f"req/s {theirs} | req/s ratio | share of ceiling |")
    print("|---|---|---|---|---|---|---|---|---|")
    for key, label in workloads:
        a, b = results["results"][key][ours], results["results"][key][theirs]
        print(f"| {label} | {a['p50_ms']:.3f} ms | {b['p50_ms']:.3f} ms | "
              f"{b['p50_ms'] / a['p50_ms']:.1f}x | {b['p99_ms'] / a['p99_ms']:.1f}x | "
              f"{a['rps']:.0f} | {b['rps']:.0f} | {a['rps'] / b['rps']:.1f}x | "
              f"{a['rps'] / ceiling:.0%} |")
    if baseline:
        before = targets[2].name
        print(f"\n| workload | req/s {before} | req/s {ours} | after / before |\n|---|---|---|---|")
        for key, label in workloads:
            a, b = results["results"][key][ours], results["results"][key][before]
            print(f"| {label} | {b['rps']:.0f} | {a['rps']:.0f} | {a['rps'] / b['rps']:.2f}x |")
    print(f"\nceiling (a bare ASGI app, a fixed body, same server): {ceiling:.0f} req/s")
    if {"group_patch_big", "group_patch_small"} <= {k for k, _ in workloads}:
        big = results["results"]["group_patch_big"][ours]["p50_ms"]
        small = results["results"]["group_patch_small"][ours]["p50_ms"]
        print(f"{ours}: one-member group PATCH p50 at 5,000 members / at 50 members = "
              f"{big / small:.2f}")
    if "large" in results:
        print(f"\n{ours} at {args.large:,} users, 1 connection:\n\n| filter | p50 | p99 |\n"
              "|---|---|---|")
        for label, r in results["large"]["rows"].items():
            print(f"| `{label}` | {r['p50_ms']:.3f} ms | {r['p99_ms']:.3f} ms |")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    errors = sum(v["errors"] for w in results["results"].values() for v in w.values())
    errors += sum(r["errors"] for r in results.get("large", {}).get("rows", {}).values())
    return 1 if errors else 0


if __name__ == "__main__":
    raise SystemExit(main())
