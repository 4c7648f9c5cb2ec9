"""What each SQLite engine writes per event and destination: ingest, then a relay drain.

    python bench/writes.py [--events 20000] [--destinations 2] [--dedup-hours 48] [--rounds 1]

Stores `--events` events, each routed to `--destinations` destinations, in group commits of 100
concurrent enqueues (as ingest does), then drains every destination with claims of 1000 rows,
each finished whole (the relay's happy path). For each engine (`sqlite`, `sqlite-log`) and
phase it prints, per event and destination: write statements run, table rows changed (SQLite's
total_changes: inserts, updates, deletes, triggers included; index entries are not counted),
pages written to the WAL (checkpoints held off, so every page a commit writes is counted; a
page shared by a commit's rows is written once), and the process's CPU time (all its threads;
the only figure that depends on the machine and its load: `--rounds N` measures each engine N
times, the order alternating, and prints each round and the median CPU).
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

_WRITES = ("INSERT", "UPDATE", "DELETE", "REPLACE")


class Counted:
    """Every connection the engine opens, with checkpoints held off and its writes counted."""

    def __init__(self) -> None:
        self.connections: list[sqlite3.Connection] = []
        self.statements = 0
        self._connect = sqlite3.connect

    def connect(self, *args: Any, **kwargs: Any) -> sqlite3.Connection:
        conn = self._connect(*args, **{**kwargs, "check_same_thread": False})
        conn.execute("PRAGMA wal_autocheckpoint=0")
        conn.set_trace_callback(self._statement)
        self.connections.append(conn)
        return conn

    def _statement(self, sql: str) -> None:
        if sql.lstrip().upper().startswith(_WRITES):
            self.statements += 1

    def changes(self) -> int:
        total = 0
        for conn in self.connections:
            try:
                total += conn.total_changes
            except sqlite3.ProgrammingError:  # closed
                continue
        return total


def wal_pages(path: Path) -> int:
    wal = path.with_name(path.name + "-wal")
    if not wal.exists():
        return 0
    with sqlite3.connect(path) as db:
        [(page_size,)] = db.execute("PRAGMA page_size").fetchall()
    return max(0, (wal.stat().st_size - 32) // (page_size + 24))


async def measure(engine: str, events: int, destinations: int, dedup_hours: float
                  ) -> dict[str, tuple[float, ...]]:
    from gateway.settings import StorageSettings
    from gateway.storage import OutboxEntry, open_outbox

    counted = Counted()
    sqlite3.connect = counted.connect  # type: ignore[assignment]
    folder = Path(tempfile.mkdtemp(prefix="bench-writes-"))
    path = folder / "outbox.db"
    outbox = await open_outbox(StorageSettings(engine=engine, path=path, synchronous="NORMAL"),
                               clock=time.time)
    names = [f"d{n}" for n in range(destinations)]
    now = int(time.time())
    payload = b'{"event_name":"Purchase","user_data":{"em":["' + b"a" * 64 + b'"]}}'
    results: dict[str, tuple[float, ...]] = {}
    rows = events * destinations

    def mark() -> tuple[float, ...]:
        return (counted.statements, counted.changes(), wal_pages(path),
                time.process_time() * 1e6)

    def record(phase: str, before: tuple[float, ...]) -> None:
        after = mark()
        results[phase] = tuple((a - b) / rows for a, b in zip(after, before, strict=True))

    start = mark()
    for first in range(0, events, 100):
        await asyncio.gather(*(outbox.enqueue([
            OutboxEntry(name, "111", "", "Purchase", f"e{n}", now, payload,
                        expires_at=now + 86400) for name in names])
            for n in range(first, min(first + 100, events))))
    record("ingest", start)
    start = mark()
    for name in names:
        while claimed := (await outbox.claim(name, 1000, dedup_seconds=dedup_hours * 3600)).rows:
            await outbox.finish(claimed)
    record("relay", start)
    await outbox.close()
    sqlite3.connect = counted._connect
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--destinations", type=int, default=2)
    parser.add_argument("--dedup-hours", type=float, default=48.0)
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()
    print(f"{args.events} events x {args.destinations} destinations, dedup "
          f"{args.dedup_hours:g} h; per event and destination:")
    print(f"{'engine':<11} {'phase':<7} {'statements':>10} {'rows changed':>13} {'WAL pages':>10}"
          f" {'CPU us':>8}")
    engines = ("sqlite", "sqlite-log")
    cpu: dict[tuple[str, str], list[float]] = {}
    for r in range(args.rounds):
        for engine in engines if r % 2 == 0 else engines[::-1]:
            found = asyncio.run(measure(engine, args.events, args.destinations,
                                        args.dedup_hours))
            for phase, (statements, changes, pages, us) in found.items():
                cpu.setdefault((engine, phase), []).append(us)
                print(f"{engine:<11} {phase:<7} {statements:>10.3f} {changes:>13.3f} "
                      f"{pages:>10.3f} {us:>8.1f}")
    if args.rounds > 1:
        for (engine, phase), times in sorted(cpu.items()):
            print(f"median CPU us, {engine} {phase}: {statistics.median(times):.1f}")


if __name__ == "__main__":
    main()
