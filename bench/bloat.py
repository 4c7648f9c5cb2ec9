"""Table and index sizes of the PostgreSQL outbox under sustained load, over several retention
periods: do they level off?

    python bench/bloat.py [--rate 400] [--retention 90] [--periods 4]

One throwaway durable PostgreSQL server (bench/pgserver.py), one store opened as a gateway
node opens it, and three loops on it for `--periods` retention periods:
- ingest: `--rate` events/s of one destination, committed every 100 ms (a ~600-byte event
  JSON each, unique event ids);
- relay: claims batches of up to 500 with dedup on, acknowledges them delivered at once;
- upkeep: `prune` as the gateway's upkeep calls it (finished rows older than the retention,
  dedup keys older than the dedup window), every `--retention`/6 seconds.
Time is scaled down from the defaults (retention 72 h, dedup 48 h, prune every 10 min):
retention `--retention` seconds, dedup window two thirds of it, prune six times per retention
period, and autovacuum's naptime from 60 s to 1 s (the tables' own autovacuum settings are the
engine's). Each row is written, claimed, acknowledged and deleted, so the tables see the full
churn of a gateway's life, faster.

Every `--sample` seconds it prints the size of each table with its indexes (and TOAST), its
live and dead rows and how often autovacuum has run on it; at the end, the total at the end of
each retention period: once the first period has filled the window, a plateau shows as flat
totals.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import ingest  # bench/ingest.py, next to this script: machine info, signal handling
import orjson
import pgserver  # bench/pgserver.py: the PostgreSQL server

ROOT = Path(__file__).resolve().parent.parent

_SIZES = """
SELECT relname, pg_total_relation_size(relid), pg_relation_size(relid),
       pg_indexes_size(relid), n_live_tup, n_dead_tup, autovacuum_count
FROM pg_stat_user_tables WHERE relname IN ('outbox', 'payloads', 'dedup') ORDER BY relname
"""


def sizes(cluster: pgserver.DurableCluster, database: str) -> dict[str, list[int]]:
    """Per table: total bytes, heap bytes, index bytes, live rows, dead rows, autovacuums."""
    found: dict[str, list[int]] = {}
    for line in cluster.sql(_SIZES, database).splitlines():
        name, *numbers = line.split("|")
        found[name] = [int(x) for x in numbers]
    return found


def event(n: int, now: int) -> bytes:
    digest = f"{n:064x}"
    return orjson.dumps({
        "event_name": "Purchase", "event_time": now, "event_id": f"order-{n}",
        "event_source_url": "https://shop.example.com/checkout", "action_source": "website",
        "user_data": {"em": [digest], "ph": [digest[::-1]], "client_ip_address": "203.0.113.7",
                      "client_user_agent": "Mozilla/5.0 (Windows NT 10.0; Win64; x64) "
                      "AppleWebKit/537.36 Chrome/131.0", "fbp": f"fb.1.1700000000000.{n}"},
        "custom_data": {"value": 10.0 + n % 90, "currency": "USD"}})


async def load(args: argparse.Namespace, cluster: pgserver.DurableCluster,
               database: str) -> None:
    from gateway.config import parse_settings
    from gateway.storage import OutboxEntry, open_outbox

    settings = parse_settings(f"""
version: 1
storage: {{engine: postgres, dsn: '{cluster.dsn(database)}'}}
destinations:
  - name: main
    pixel_id: "123456789012345"
    access_token: BENCH-TOKEN
""", env={})
    outbox = await open_outbox(replace(settings.storage), clock=time.time)
    retention, dedup = args.retention, args.retention * 2 / 3
    end = time.monotonic() + args.periods * retention
    counts = {"enqueued": 0, "delivered": 0, "pruned": 0}
    totals: list[tuple[float, int]] = []

    async def ingest_loop() -> None:
        per_tick, tick, n = max(1, round(args.rate / 10)), 0.1, 0
        due = time.monotonic()
        while time.monotonic() < end:
            now = int(time.time())
            await outbox.enqueue([
                OutboxEntry("main", "123456789012345", "", "Purchase", f"order-{k}", now,
                            event(k, now), expires_at=now + 86400)
                for k in range(n, n + per_tick)])
            n += per_tick
            counts["enqueued"] = n
            due += tick
            await asyncio.sleep(max(0.0, due - time.monotonic()))

    async def relay_loop() -> None:
        while time.monotonic() < end:
            claim = await outbox.claim("main", 500, dedup_seconds=dedup)
            if claim.rows:
                counts["delivered"] += await outbox.finish(claim.rows)
            else:
                await asyncio.sleep(0.05)

    async def upkeep_loop() -> None:
        while time.monotonic() < end:
            await asyncio.sleep(retention / 6)
            counts["pruned"] += await outbox.prune(time.time() - retention,
                                                   dedup_older_than=time.time() - dedup)

    async def sample_loop() -> None:
        start = time.monotonic()
        while time.monotonic() < end:
            await asyncio.sleep(args.sample)
            found = await asyncio.to_thread(sizes, cluster, database)
            total = sum(row[0] for row in found.values())
            elapsed = time.monotonic() - start
            totals.append((elapsed, total))
            print(f"{elapsed:6.0f} s  enqueued {counts['enqueued']:>8,}  delivered "
                  f"{counts['delivered']:>8,}  pruned {counts['pruned']:>8,}  total "
                  f"{total / 2**20:6.1f} MiB  " + "  ".join(
                      f"{name} {row[0] / 2**20:5.1f} MiB (heap {row[1] / 2**20:.1f}, idx "
                      f"{row[2] / 2**20:.1f}; live {row[3]:,} dead {row[4]:,}; av {row[5]})"
                      for name, row in found.items()), flush=True)

    try:
        await asyncio.gather(ingest_loop(), relay_loop(), upkeep_loop(), sample_loop())
    finally:
        await outbox.close()
    print(f"events: {counts['enqueued']:,} enqueued, {counts['delivered']:,} delivered, "
          f"{counts['pruned']:,} pruned")
    print("total size (outbox + payloads + dedup, with indexes and TOAST) at the end of each "
          "retention period:")
    for period in range(1, args.periods + 1):
        at = [total for elapsed, total in totals if elapsed <= period * retention + 1e-6]
        if at:
            print(f"  after {period} x retention ({period * retention:.0f} s): "
                  f"{at[-1] / 2**20:.1f} MiB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=400.0, help="events per second")
    parser.add_argument("--retention", type=float, default=90.0, help="seconds")
    parser.add_argument("--periods", type=int, default=4, help="retention periods to run")
    parser.add_argument("--sample", type=float, default=15.0, help="seconds between samples")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, ingest._terminate)
    with pgserver.running() as cluster:
        cluster.sql("ALTER SYSTEM SET autovacuum_naptime = '1s'")
        cluster.sql("SELECT pg_reload_conf()")
        database = cluster.fresh_database()
        print(ingest.machine_info())
        print(f"outbox on {cluster.describe()}, autovacuum_naptime 1s")
        print(f"{args.rate:g} events/s for {args.periods} x {args.retention:g} s retention "
              f"(dedup {args.retention * 2 / 3:g} s, prune every {args.retention / 6:g} s); "
              f"load average before: {os.getloadavg()[0]:.2f}")
        run: Any = load(args, cluster, database)
        try:
            import uvloop

            uvloop.run(run)
        except ImportError:
            asyncio.run(run)
        print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
