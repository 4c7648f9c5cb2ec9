"""Batches and cursors: what a claim handed out of the log, and how far each destination is.

A claim of new rows takes the destination's rows among the events after its `claimed` cursor
and records them as one batch (events first..last, so a destination's batches tile the log up
to `claimed`), leased as a whole. Acknowledgements settle rows of a batch (`settled`, or an
`exceptions` row for anything but a delivery); a batch whose rows are all settled is done, and
the destination's `acked` cursor moves up over the done batches that follow it: with several
batches in flight, it stops at the lowest one still open. A batch whose lease ran out (its
holder died) or that was given back whole is claimed again as it is, or split when the claim
wants fewer rows.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass, field

import orjson

from .routes import EVENT_COLUMNS, Event, events, needle

__all__ = ["Batch", "advance", "covering", "due", "excepted", "members", "merge_done",
           "open_batches"]

_COLUMNS = "destination, last, first, size, state, lease, claimed_at, updated_at, settled"


@dataclass
class Batch:
    destination: str
    last: int
    first: int
    size: int  # rows handed out
    state: str  # inflight | pending (given back whole, due since `lease`) | done
    lease: float
    claimed_at: float
    updated_at: float
    settled: dict[int, float] = field(default_factory=dict)  # event id -> when

    @classmethod
    def from_row(cls, fields: tuple[object, ...]) -> Batch:
        *head, settled = fields
        batch = cls(*head)  # type: ignore[arg-type]
        batch.settled = {int(event): float(at)
                         for event, at in orjson.loads(str(settled)).items()}
        return batch

    @property
    def unsettled(self) -> int:
        return self.size - len(self.settled)

    def settle(self, events: Iterable[int], now: float) -> None:
        """More of its rows have their outcome; the batch is done once all have."""
        self.settled.update(dict.fromkeys(events, now))
        self.updated_at = now
        if len(self.settled) >= self.size:
            self.state = "done"
            # Rows settled now take the batch's time: only earlier ones need their own.
            self.settled = {e: at for e, at in self.settled.items() if at != now}

    def insert(self, conn: sqlite3.Connection) -> None:
        conn.execute(f"INSERT INTO batches ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                     self._values())

    def save(self, conn: sqlite3.Connection) -> None:
        conn.execute("UPDATE batches SET first = ?, size = ?, state = ?, lease = ?, "
                     "claimed_at = ?, updated_at = ?, settled = ? "
                     "WHERE destination = ? AND last = ?",
                     (*self._values()[2:], self.destination, self.last))

    def _values(self) -> tuple[object, ...]:
        settled = orjson.dumps({str(e): at for e, at in self.settled.items()}).decode()
        return (self.destination, self.last, self.first, self.size, self.state, self.lease,
                self.claimed_at, self.updated_at, settled)


def due(conn: sqlite3.Connection, destination: str, now: float) -> list[Batch]:
    """Open batches of `destination` that may be claimed again (lease run out, given back)."""
    return [Batch.from_row(row) for row in conn.execute(
        f"SELECT {_COLUMNS} FROM batches WHERE destination = ? AND state <> 'done' "
        "AND lease <= ? ORDER BY last", (destination, now))]


def open_batches(conn: sqlite3.Connection, destination: str | None = None) -> list[Batch]:
    """Batches not done yet (of one destination, or all)."""
    where, params = ("AND destination = ?", (destination,)) if destination else ("", ())
    return [Batch.from_row(row) for row in conn.execute(
        f"SELECT {_COLUMNS} FROM batches WHERE state <> 'done' {where} ORDER BY destination, last",
        params)]


def covering(conn: sqlite3.Connection, destination: str, event: int) -> Batch | None:
    """The batch of `destination` whose events include `event`, if any."""
    row = conn.execute(f"SELECT {_COLUMNS} FROM batches WHERE destination = ? AND last >= ? "
                       "ORDER BY last LIMIT 1", (destination, event)).fetchone()
    if row is None or row[2] > event:
        return None
    return Batch.from_row(row)


def excepted(conn: sqlite3.Connection, destination: str, first: int, last: int) -> set[int]:
    """Events first..last whose row of `destination` has an exception row."""
    return {int(event) for (event,) in conn.execute(
        "SELECT event FROM exceptions WHERE destination = ? AND event BETWEEN ? AND ?",
        (destination, first, last))}


def members(conn: sqlite3.Connection, batch: Batch) -> list[Event]:
    """The events whose rows of the batch still wait for an outcome, oldest first."""
    found = list(events(conn, f"SELECT {EVENT_COLUMNS} FROM events WHERE id BETWEEN ? AND ? "
                        "AND instr(waiting, ?) ORDER BY id",
                        (batch.first, batch.last, needle(batch.destination))))
    if not found:
        return []
    skip = excepted(conn, batch.destination, batch.first, batch.last)
    return [e for e in found if e.id not in skip and e.id not in batch.settled]


def advance(conn: sqlite3.Connection, destination: str) -> None:
    """Move the destination's `acked` cursor over the done batches that follow it."""
    [(acked,)] = conn.execute("SELECT acked FROM cursors WHERE destination = ?",
                              (destination,)).fetchall()
    reached = acked
    for state, last in conn.execute("SELECT state, last FROM batches WHERE destination = ? "
                                    "AND last >= ? ORDER BY last", (destination, acked)):
        if state != "done":
            break
        reached = last
    if reached != acked:
        conn.execute("UPDATE cursors SET acked = ? WHERE destination = ?",
                     (reached, destination))


# Done batches whose claims began within this many seconds of each other are kept as one:
# with live traffic a destination claims every few hundred milliseconds, and a row per claim
# kept for the retention period would be millions. A merged batch's rows take its latest time,
# so only batches done for this long merge: a row's time never moves while someone following
# the changes (`outbox --follow`, which asks for those of the last second or so) could see it.
MERGE_SECONDS = 60.0


def merge_done(conn: sqlite3.Connection, now: float) -> None:
    """Merge the done batches below each cursor (see MERGE_SECONDS); with retention, at each
    run: between runs they are one row per claim, only the newest ever read."""
    for destination, acked in conn.execute("SELECT destination, acked FROM cursors").fetchall():
        done = [Batch.from_row(row) for row in conn.execute(
            f"SELECT {_COLUMNS} FROM batches WHERE destination = ? AND last <= ? "
            "AND updated_at <= ? ORDER BY last", (destination, acked, now - MERGE_SECONDS))]
        _merge(conn, done)


def _merge(conn: sqlite3.Connection, done: list[Batch]) -> None:
    """Merge runs of adjacent done batches (oldest first) claimed within MERGE_SECONDS."""
    runs: list[list[Batch]] = []
    for batch in done:
        if (runs and batch.first == runs[-1][-1].last + 1
                and batch.claimed_at - runs[-1][0].claimed_at <= MERGE_SECONDS):
            runs[-1].append(batch)
        else:
            runs.append([batch])
    for run in runs:
        if len(run) == 1:
            continue
        last = run[-1]
        merged = Batch(last.destination, last.last, run[0].first, sum(b.size for b in run),
                       "done", max(b.lease for b in run), run[0].claimed_at,
                       max(b.updated_at for b in run))
        for batch in run:
            merged.settled.update(batch.settled)
        merged.settled = {e: at for e, at in merged.settled.items() if at != merged.updated_at}
        conn.execute("DELETE FROM batches WHERE destination = ? AND last BETWEEN ? AND ?",
                     (merged.destination, run[0].last, run[-2].last))
        merged.save(conn)
