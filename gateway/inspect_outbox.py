"""`tag-gateway outbox`: what the outbox holds, for a person at a terminal.

Reads the SQLite file directly (read-only), so it works while the gateway runs. Payloads hold
what is (or, in dry run, would be) sent to Meta; they are shown only with `--payload`.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import TextIO

__all__ = ["print_outbox"]


def print_outbox(
    path: Path, out: TextIO, *, state: str | None = None, limit: int = 20, payload: bool = False
) -> int:
    """Print row counts per destination and state, then the newest rows; return an exit code."""
    if not path.exists():
        print(f"{path}: no outbox yet (the gateway creates it on first start)", file=out)
        return 1
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        counts = db.execute(
            "SELECT destination, state, COUNT(*) FROM outbox GROUP BY 1, 2 ORDER BY 1, 2"
        ).fetchall()
        query = ("SELECT id, destination, state, pixel_id, event_name, event_id, attempts, "
                 "last_error, payload FROM outbox")
        params: tuple[object, ...] = ()
        if state:
            query += " WHERE state = ?"
            params = (state,)
        rows = db.execute(query + " ORDER BY id DESC LIMIT ?", (*params, limit)).fetchall()
    print(f"outbox {path}", file=out)
    for destination, row_state, count in counts:
        print(f"  {destination or '(none)':<16} {row_state:<10} {count}", file=out)
    if not counts:
        print("  (empty)", file=out)
    print(f"\nnewest {len(rows)} rows{f' in state {state}' if state else ''}:", file=out)
    for row_id, destination, row_state, pixel, name, event_id, attempts, error, body in rows:
        line = (f"  #{row_id} {destination or '(none)'} {row_state} pixel={pixel} {name} "
                f"event_id={event_id} attempts={attempts}")
        print(line + (f" last_error={error!r}" if error else ""), file=out)
        if payload:
            print(f"    {bytes(body).decode('utf-8', 'replace')}", file=out)
    return 0
