"""Benchmark: N tenants on one PostgreSQL cluster, as databases or as schemas (issue 24, part 3).

On a throw-away cluster (bench/pgcluster.py: durable settings, this machine), each layout makes
N tenants the same way, one after the other, and then drops a few:

- database: CREATE ROLE t LOGIN; CREATE DATABASE t OWNER t (the default strategy, WAL_LOG,
  as CloudNativePG's `Database` makes one); the server's migration, as the tenant's role
  (opening `PostgresStorage(dsn)` and closing it);
- schema: CREATE ROLE t LOGIN; ALTER ROLE t SET search_path = t; CREATE SCHEMA t
  AUTHORIZATION t, in one shared database; the very same migration, as the tenant's role, whose
  search_path puts every table in its schema.

Reported per layout: seconds per tenant (the container, the migration), disk per tenant (the
cluster folder's growth after a CHECKPOINT, without pg_wal, and the databases' own sizes), the
catalog's size (pg_catalog's relations in every database), and seconds to drop one tenant.

Usage: python bench/tenant_layout.py [--tenants 100] [--drop 5] [--json FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pgcluster import Cluster

from scim_server.storage.postgres import PostgresStorage

SHARED = "tenants"  # the schema layout's one database

CATALOG_SQL = ("SELECT (SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c "
               "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'pg_catalog' "
               "AND c.relkind IN ('r', 'm', 't')), (SELECT count(*) FROM pg_class)")


async def migrate(dsn: str) -> None:
    storage = PostgresStorage(dsn)
    await storage.open()
    await storage.close()


def base_bytes(pg: Cluster) -> int:
    """The cluster folder without its WAL, after a checkpoint: the tables and catalogs."""
    pg.execute("CHECKPOINT")
    out = subprocess.run(["du", "-sB1", "--exclude=pg_wal", str(pg.data)], capture_output=True,
                         text=True, check=True).stdout
    return int(out.split()[0])


def catalog(pg: Cluster) -> tuple[int, int]:
    """pg_catalog's bytes and pg_class's rows, summed over every database but the templates."""
    total = rels = 0
    for (name,) in pg.execute("SELECT datname FROM pg_database WHERE NOT datistemplate"):
        size, count = pg.execute(CATALOG_SQL, database=name)[0]
        total, rels = total + int(size), rels + int(count)
    return total, rels


def make_tenant(pg: Cluster, layout: str, name: str) -> tuple[float, float]:
    """One tenant in `layout`; the seconds its container took, and its migration."""
    t0 = time.perf_counter()
    pg.execute(f'CREATE ROLE "{name}" LOGIN')
    if layout == "database":
        pg.execute(f'CREATE DATABASE "{name}" OWNER "{name}"')
        dsn = pg.dsn(name, name)
    else:
        pg.execute(f'ALTER ROLE "{name}" SET search_path = "{name}"')
        pg.execute(f'GRANT CONNECT ON DATABASE "{SHARED}" TO "{name}"')
        pg.execute(f'CREATE SCHEMA "{name}" AUTHORIZATION "{name}"', database=SHARED)
        dsn = pg.dsn(SHARED, name)
    t1 = time.perf_counter()
    asyncio.run(migrate(dsn))
    return t1 - t0, time.perf_counter() - t1


def drop_tenant(pg: Cluster, layout: str, name: str) -> float:
    t0 = time.perf_counter()
    if layout == "database":
        pg.execute(f'DROP DATABASE "{name}"')
    else:
        pg.execute(f'DROP SCHEMA "{name}" CASCADE', database=SHARED)
        pg.execute(f'REVOKE CONNECT ON DATABASE "{SHARED}" FROM "{name}"')
    pg.execute(f'DROP ROLE "{name}"')
    return time.perf_counter() - t0


def isolated(pg: Cluster, layout: str, a: str, b: str) -> bool:
    """Whether tenant `a`'s role is refused tenant `b`'s users (the layout isolates)."""
    dsn = pg.dsn(b if layout == "database" else SHARED, a)
    table = "users" if layout == "database" else f'"{b}".users'
    try:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f"SELECT count(*) FROM {table}")
    except psycopg.Error:
        return True
    return False


def measure(layout: str, tenants: int, drops: int) -> dict:
    with Cluster() as pg:
        if layout == "schema":
            pg.execute(f'CREATE DATABASE "{SHARED}"')
            # Only the tenants' roles connect, each granted CONNECT by make_tenant.
            pg.execute(f'REVOKE CONNECT, TEMPORARY ON DATABASE "{SHARED}" FROM PUBLIC')
        disk0, cat0 = base_bytes(pg), catalog(pg)
        lsn = "SELECT pg_current_wal_lsn() - '0/0'::pg_lsn"
        wal0 = int(pg.execute(lsn)[0][0])
        shared0 = int(pg.execute("SELECT pg_database_size(%s)", (SHARED,))[0][0]) \
            if layout == "schema" else 0
        made = []
        for i in range(tenants):
            made.append(make_tenant(pg, layout, f"tenant_{i:04d}"))
            if (i + 1) % 25 == 0:
                print(f"  {layout}: {i + 1} tenants", flush=True)
        # The WAL the tenants wrote: what streaming replicas receive and the archive (backups)
        # keeps; before base_bytes' CHECKPOINT, whose own record is not the tenants'.
        wal1 = int(pg.execute(lsn)[0][0])
        disk1, cat1 = base_bytes(pg), catalog(pg)
        if layout == "database":
            sizes = [int(r[0]) for r in pg.execute(
                "SELECT pg_database_size(datname) FROM pg_database WHERE datname LIKE 'tenant%%'")]
        else:
            shared1 = int(pg.execute("SELECT pg_database_size(%s)", (SHARED,))[0][0])
            sizes = [(shared1 - shared0) / tenants]
        result = {
            "tenants": tenants,
            "container_s_per_tenant": statistics.mean(c for c, _ in made),
            "migration_s_per_tenant": statistics.mean(m for _, m in made),
            "total_s_per_tenant": statistics.mean(c + m for c, m in made),
            "disk_bytes_per_tenant": (disk1 - disk0) / tenants,
            "database_size_bytes_per_tenant": statistics.mean(sizes),
            "wal_bytes_per_tenant": (wal1 - wal0) / tenants,
            "catalog_bytes_before": cat0[0], "catalog_bytes_after": cat1[0],
            "pg_class_rows_before": cat0[1], "pg_class_rows_after": cat1[1],
            "catalog_bytes_per_tenant": (cat1[0] - cat0[0]) / tenants,
            "isolated": isolated(pg, layout, "tenant_0000", "tenant_0001"),
        }
        dropped = [drop_tenant(pg, layout, f"tenant_{i:04d}") for i in range(tenants - drops,
                                                                           tenants)]
        result["drop_s_median"] = statistics.median(dropped)
        result["drop_s"] = dropped
        return result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tenants", type=int, default=100)
    ap.add_argument("--drop", type=int, default=5, help="tenants dropped (timed) at the end")
    ap.add_argument("--layouts", nargs="+", choices=["database", "schema"],
                    default=["database", "schema"])
    ap.add_argument("--json", help="also write the results to this file")
    args = ap.parse_args()
    results = {}
    for layout in args.layouts:
        results[layout] = measure(layout, args.tenants, min(args.drop, args.tenants))
    rows = [
        ("seconds per tenant: container (role + database or schema)",
         lambda r: f"{r['container_s_per_tenant']:.3f} s"),
        ("seconds per tenant: the server's migration", lambda r: f"{r['migration_s_per_tenant']:.3f} s"),
        ("seconds per tenant: total", lambda r: f"{r['total_s_per_tenant']:.3f} s"),
        ("disk per tenant (cluster folder without pg_wal, after CHECKPOINT)",
         lambda r: f"{r['disk_bytes_per_tenant'] / 2**20:.2f} MiB"),
        ("pg_database_size per tenant (schema: the shared database's growth / N)",
         lambda r: f"{r['database_size_bytes_per_tenant'] / 2**20:.2f} MiB"),
        ("WAL written per tenant (replicated and archived)",
         lambda r: f"{r['wal_bytes_per_tenant'] / 2**20:.2f} MiB"),
        ("catalog (pg_catalog, all databases) before -> after",
         lambda r: f"{r['catalog_bytes_before'] / 2**20:.1f} -> "
                   f"{r['catalog_bytes_after'] / 2**20:.1f} MiB"),
        ("catalog growth per tenant", lambda r: f"{r['catalog_bytes_per_tenant'] / 2**10:.0f} KiB"),
        ("pg_class rows (all databases) before -> after",
         lambda r: f"{r['pg_class_rows_before']} -> {r['pg_class_rows_after']}"),
        ("drop one tenant (median)", lambda r: f"{r['drop_s_median']:.3f} s"),
        ("tenant 0's role refused tenant 1's table", lambda r: "yes" if r["isolated"] else "NO"),
    ]
    layouts = list(results)
    print(f"\n{args.tenants} tenants, one after the other:\n\n| | " + " | ".join(
        f"{layout} per tenant" for layout in layouts) + " |\n" + "|---" * (1 + len(layouts)) + "|")
    for label, fmt in rows:
        print(f"| {label} | " + " | ".join(fmt(results[lay]) for lay in layouts) + " |")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0 if all(r["isolated"] for r in results.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
