"""Dedup at claim time: one owner row per (destination, pixel, event_name, event_id).

Each claimed row records itself as the owner of its key unless another row of the destination
owns it already within the window; rows that lose become `duplicate` and are not sent. An owner
Meta has not received (refused, expired, or waiting to retry) does not block another copy: the
copy is sent, and the old owner becomes the duplicate if it comes back. A test send (with a
test_event_code) never suppresses the real event with the same id.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

import orjson

__all__ = ["losers", "set_aside_duplicates"]

# {owner_state}: the state of the row `dedup.row_id` (each engine keeps states its own way).
_KEEP_OWNER = """
INSERT INTO dedup (destination, pixel_id, event_name, event_id, row_id, seen_at)
SELECT ?, value ->> 0, value ->> 1, value ->> 2, value ->> 3, ? FROM json_each(?) WHERE true
ON CONFLICT (destination, pixel_id, event_name, event_id) DO UPDATE
SET row_id = excluded.row_id, seen_at = excluded.seen_at
WHERE dedup.seen_at < ? OR {owner_state} IN ('dead', 'pending')
"""
# CROSS JOIN keeps json_each as the outer loop, so each key is one primary-key lookup.
_LOSERS = """
SELECT j.value ->> 3, d.row_id FROM json_each(?) AS j
CROSS JOIN dedup AS d ON d.destination = ? AND d.pixel_id = j.value ->> 0
    AND d.event_name = j.value ->> 1 AND d.event_id = j.value ->> 2
WHERE d.row_id <> j.value ->> 3
"""


def set_aside_duplicates(
    db: sqlite3.Connection, destination: str, rows: list[Any], now: float, window: float
) -> set[int]:
    """Claim ownership of each row's key; mark the rows that lost as duplicates and return
    their ids. `rows` are raw claim rows (id, pixel_id, test_event_code, event_name, event_id,
    ...), inside the claim's transaction."""
    lost = losers(db, destination, rows, now, window,
                  owner_state="(SELECT state FROM outbox WHERE id = dedup.row_id)")
    if lost:
        db.executemany(
            "UPDATE outbox SET state = 'duplicate', updated_at = ?, last_error = ? WHERE id = ?",
            [(now, f"duplicate of row {owner}", row_id) for row_id, owner in lost.items()],
        )
    return set(lost)


def losers(db: sqlite3.Connection, destination: str, rows: Sequence[Any], now: float,
           window: float, *, owner_state: str) -> dict[int, int]:
    """Claim ownership of each row's key in the `dedup` table; the rows that lost, each with
    the row that owns its key. `rows` start (id, pixel_id, test_event_code, event_name,
    event_id); `owner_state` is SQL for the state of row `dedup.row_id`."""
    if window <= 0 or not rows:
        return {}
    keys = orjson.dumps([[f"{r[1]}|{r[2]}" if r[2] else r[1], r[3], r[4], r[0]] for r in rows])
    cursor = db.execute(_KEEP_OWNER.format(owner_state=owner_state),
                        (destination, now, keys, now - window))
    if cursor.rowcount == len(rows):
        return {}  # every row now owns its key: no earlier owner to lose to
    found = db.execute(_LOSERS, (keys, destination)).fetchall()
    return {int(row_id): int(owner) for row_id, owner in found}
