"""What backpressure's look at the queue costs with a large queue, on either engine.

    python bench/queuedepth.py [--engine sqlite|sqlite-log|postgres] [--rows 1000000]
                               [--limit N ...] [--calls 20] [--reports]

Fills a fresh outbox with `--rows` queued events for one destination (`Outbox.enqueue` in
batches of 10,000, payloads of ~300 bytes), then times, `--calls` times each (median and
slowest): a count of the queue bounded by each `--limit` (default: `storage.max_queue_rows`'s
default), the cheap read between counts (`store_size`), and the backpressure check itself (its
first call counts, the next ones read the bound). A gateway from before the bound (whose
`queue_depth` takes no argument and counted every queued row at every check) gets that count
timed instead. `--reports` also times, once each, what people read: the counts per state
(`tag-gateway outbox`), the newest rows, the newest dead letters among them (none: every row
is read), the open counts (/status) and the oldest queued row. PostgreSQL: a
durable throwaway server (bench/pgserver.py), the table vacuumed and analyzed after the fill as
autovacuum would have by then. SQLite: a file in a temporary folder (`synchronous: full`).
Never part of pytest.
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path
from typing import Any

import pgserver  # bench/pgserver.py: the PostgreSQL server (puts the repository on sys.path)

from gateway.backpressure import Backpressure
from gateway.observe import Metrics
from gateway.settings import StorageSettings
from gateway.storage import OutboxEntry, open_outbox

BATCH = 10_000
PAYLOAD = b'{"event_name":"Purchase","user_data":{"em":["' + b"a" * 64 + b'"],"ph":["' + \
    b"b" * 64 + b'"]},"custom_data":{"currency":"EUR","value":42.5},"x":"' + b"c" * 90 + b'"}'


def entries(start: int, count: int, now: float) -> list[OutboxEntry]:
    return [OutboxEntry("main", "111", "", "Purchase", f"e{n}", int(now), PAYLOAD,
                        expires_at=now + 7 * 86400) for n in range(start, start + count)]


async def measure(storage: StorageSettings, rows: int, limits: list[int], calls: int,
                  reports: bool, after_fill: Callable[[], object] | None = None) -> None:
    outbox = await open_outbox(storage, clock=time.time)
    try:
        started = time.perf_counter()
        for start in range(0, rows, BATCH):
            await outbox.enqueue(entries(start, min(BATCH, rows - start), time.time()))
        print(f"filled {rows:,} queued rows in {time.perf_counter() - started:.1f} s")
    finally:
        await outbox.close()
    if after_fill is not None:
        after_fill()
    outbox = await open_outbox(storage, clock=time.time)
    try:
        if "at_most" not in inspect.signature(outbox.queue_depth).parameters:
            # Before the bound: every check counted every queued row.
            await timed("queue_depth() (every check, unbounded)", outbox.queue_depth, calls)
            return
        await timed("store_size() (between counts)", outbox.store_size, calls)
        for limit in limits:
            await timed(f"queue_depth(at_most={limit:,}) (a count)",
                        partial(outbox.queue_depth, at_most=limit), calls)
            backpressure = Backpressure(outbox, Metrics(), max_rows=limit, max_bytes=2**50)
            await timed(f"limit {limit:,}: Backpressure.check(), the first (counts)",
                        backpressure.check, 1)
            await timed(f"limit {limit:,}: Backpressure.check(), the next ones",
                        backpressure.check, calls)
            print(f"limit {limit:,}: backpressure {backpressure.reason or 'off'}")
        if reports:
            await timed("counts() (tag-gateway outbox)", outbox.counts, 1)
            await timed("rows(limit=20, newest_first=True)",
                        partial(outbox.rows, limit=20, newest_first=True), 1, summary=len)
            await timed("rows(state='dead', limit=20, newest_first=True) (none there)",
                        partial(outbox.rows, state="dead", limit=20, newest_first=True), 1,
                        summary=len)
            await timed("open_counts() (/status)", outbox.open_counts, 1)
            await timed("oldest_pending() (/status)", outbox.oldest_pending, 1)
    finally:
        await outbox.close()


async def timed(what: str, call: Callable[[], Awaitable[Any]], calls: int,
                summary: Callable[[Any], object] = lambda result: result) -> None:
    times, result = [], None
    for _ in range(calls):
        started = time.perf_counter()
        result = await call()
        times.append(time.perf_counter() - started)
    print(f"{what}: median {statistics.median(times) * 1000:.2f} ms, slowest "
          f"{max(times) * 1000:.2f} ms over {calls} calls; {summary(result)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engine", choices=("sqlite", "sqlite-log", "postgres"),
                        default="sqlite")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--limit", type=int, action="append",
                        help="the bound (repeat for several); default: max_queue_rows's default")
    parser.add_argument("--calls", type=int, default=20)
    parser.add_argument("--reports", action="store_true",
                        help="also time the reports people read (once each)")
    args = parser.parse_args()
    limits = args.limit or [StorageSettings().max_queue_rows]
    if args.engine != "postgres":
        with tempfile.TemporaryDirectory(prefix="queuedepth-") as folder:
            storage = StorageSettings(engine=args.engine, path=Path(folder) / "gateway.db")
            asyncio.run(measure(storage, args.rows, limits, args.calls, args.reports))
        return
    with pgserver.running() as cluster:
        database = cluster.fresh_database()
        print(cluster.describe(), file=sys.stderr)
        storage = StorageSettings(engine="postgres", dsn=cluster.dsn(database))
        asyncio.run(measure(storage, args.rows, limits, args.calls, args.reports,
                            lambda: cluster.sql("VACUUM ANALYZE", database)))


if __name__ == "__main__":
    main()
