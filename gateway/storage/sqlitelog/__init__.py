"""The log-structured SQLite engine (`storage.engine: sqlite-log`): one file in WAL mode, one
row per event, for the processes of one machine.

NOTES (work in progress, issue 21; not the default engine)
- Done: the whole `Outbox` protocol; the conformance suite (tests/storage) runs against it
  unchanged, and the rest of the test suite passed with this engine made the default (except
  tests that patch the sqlite engine's class). Ingest writes one `events` row per event
  (payload once, with its routes), plus per group commit one `row_ids` update and one
  `cursors` upsert per destination. A claim of new rows writes one `batches` row and moves the
  destination's `claimed` cursor; a batch delivered whole is one batch update and one `acked`
  cursor update; done batches claimed within a minute merge as the cursor passes them (a
  delivered row's time is then its merged batch's latest, up to a minute late). Queue depth
  and open counts come from the cursors' totals (never a scan of the backlog).
  bench/writes.py counts what each SQLite engine writes.
- Measured (bench/writes.py, 20,000 events x 2 destinations, per event and destination): the
  sqlite engine changes 2 table rows at ingest and 3 in the relay (claim, finish, dedup key),
  ~11 B-tree writes counting index entries (due index in, out and in again, finished index,
  payload row, dedup key and its index), and writes 0.27 WAL pages; this engine changes 0.52
  rows at ingest and 1.005 in the relay (1.0 is the dedup key, 0.005 with dedup off), ~2.5
  B-tree writes with dedup on and ~0.5 without, and writes 0.10 WAL pages (0.065 without
  dedup). CPU per row in the relay about equals the sqlite engine's (after decoding only the
  route a claim sends and reading a batch's events in one range); bench/relay.py on the shared
  machine (load 6-11 on 2 cores) gave 4,400-7,500 events/s for both engines: too noisy to
  rank them.
- Not done: dedup at ingest (see "Dedup" below: the dedup key is now the largest write per
  row); bench/ingest.py and bench/backlog.py runs (ingest.py accepts `--engine sqlite-log`,
  backlog.py does not yet); `counts`, `rows` and `changes` work out each row's state in Python
  (fine for people, slow on millions of rows); `prune` reads again, at each run, the old events
  that must stay (dead letters, a destination that never drains); routes of one event with
  different per-type contexts are stored as separate events (the payload then more than once);
  no migration of a sqlite engine file (each engine refuses the other's file).

The log
- `events`: id (the row id of its first route: route i of the event is row id + i, so every
  (event, destination) row keeps an id of its own, never reused), the routes (destination,
  pixel id, test code, request fields, expiry, state, note), the event's fields, context and
  payload. `waiting` lists the destinations of its pending routes, for the claim's scan.
- `cursors`: per destination, `claimed` (every event up to it is in one of its batches) and
  `acked` (every batch up to it is settled: with `max_in_flight` batches, the lowest contiguous
  acknowledged event).
- `batches`: what one claim of new rows handed out (events first..last), leased as a whole;
  acknowledgements settle its rows (batches.py). Kept, once done, as the record of when its
  rows were delivered, and pruned with the events.
- `exceptions`: a row of its own only for what is not a plain delivery: retries waiting, rows
  given back alone, dead letters (expired, refused, token revoked), duplicates, dry runs, and
  their later outcomes. These behave as rows of the sqlite engine (leased, fenced, replayed).

Guarantees, as in the protocol: ingest commits with fsync (group commit), relay bookkeeping
without (a lost acknowledgement means a resend). Fencing: a batch row is the caller's while the
batch holds the row's lease and the row is unsettled; an exception row while it is inflight
under that lease. A batch whose lease runs out is claimed again whole (or split when the claim
wants fewer rows), so a dead holder's rows come back; a late answer finds another lease.

Dedup: the protocol takes the window at claim time (`claim(dedup_seconds=...)`), and the
conformance suite claims repeats with a window of 0 and expects them sent, so keys are still
checked per destination when rows are claimed (sqlite/dedup.py), losers becoming exception
rows. Checking once at ingest would need the window when the store opens
(StorageSettings.dedup_hours), a key per event rather than per destination (routes to two
pixels have different keys), and would make "an owner refused or waiting again does not block
a copy" a decision taken at claim time anyway: left for a change of the protocol.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

from ...errors import OutboxUnavailable
from ...settings import StorageSettings
from .. import Engine
from ..outbox import Outbox
from ..sqlite import describe_error
from .store import SqliteLogOutbox

__all__ = ["ENGINE", "SqliteLogOutbox"]


async def _open(storage: StorageSettings, clock: Callable[[], float], shared: bool) -> Outbox:
    try:
        return await SqliteLogOutbox.open(
            storage.path, commit_interval=storage.commit_interval_ms / 1000,
            lease_seconds=storage.lease_seconds, synchronous=storage.synchronous, clock=clock)
    except (sqlite3.Error, OSError) as exc:
        raise OutboxUnavailable(f"the outbox cannot be opened: {describe_error(exc)}") from exc


async def _open_existing(storage: StorageSettings, clock: Callable[[], float]) -> Outbox | None:
    if not storage.path.exists():
        return None
    return await SqliteLogOutbox.open(storage.path, lease_seconds=storage.lease_seconds,
                                      synchronous=storage.synchronous, clock=clock, create=False)


def _describe(storage: StorageSettings) -> str:
    return str(storage.path)


ENGINE = Engine(open=_open, open_existing=_open_existing, describe=_describe)
