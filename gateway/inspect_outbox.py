"""`tag-gateway outbox` and `tag-gateway dead-letters`: the outbox, for a person at a terminal.

Reads the SQLite file directly (read-only), so it works while the gateway runs. Payloads hold
what is (or, in dry run, would be) sent to Meta; they are shown only with `--payload`.
"""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path
from typing import TextIO

from .outbox.deadletters import DeadLetter, DeadLetterFilter, list_query, replay_query

__all__ = ["print_dead_letters", "print_outbox", "replay_dead_letters"]


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
                 "last_error, payload FROM outbox_events")
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


def print_dead_letters(
    path: Path, out: TextIO, selection: DeadLetterFilter, *, limit: int = 50, as_json: bool = False
) -> int:
    """`tag-gateway dead-letters list`: newest first, with reason, Meta's message, trace id."""
    if not path.exists():
        print(f"{path}: no outbox yet", file=out)
        return 1
    sql, params = list_query(selection, limit)
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        letters = [DeadLetter(*row) for row in db.execute(sql, params)]
    if as_json:
        json.dump([letter.as_dict() for letter in letters], out, indent=2)
        out.write("\n")
        return 0
    if not letters:
        print("no dead letters", file=out)
    for d in letters:
        print(f"#{d.id} {d.destination} {d.reason} pixel={d.pixel_id} {d.event_name} "
              f"event_id={d.event_id} attempts={d.attempts}", file=out)
        if d.last_error:
            print(f"    {d.last_error}" + (f" [fbtrace_id {d.fbtrace_id}]" if d.fbtrace_id
                                           and d.fbtrace_id not in d.last_error else ""),
                  file=out)
    return 0


def replay_dead_letters(path: Path, out: TextIO, selection: DeadLetterFilter) -> int:
    """`tag-gateway dead-letters replay`: re-queue them; a running gateway picks them up."""
    if not path.exists():
        print(f"{path}: no outbox yet", file=out)
        return 1
    sql, params = replay_query(selection, time.time())
    with sqlite3.connect(path, timeout=10) as db:
        count = db.execute(sql, params).rowcount
    print(f"re-queued {count} dead letter{'s' if count != 1 else ''}", file=out)
    return 0
