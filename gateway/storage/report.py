"""`tag-gateway outbox` and `tag-gateway dead-letters`: the outbox, for a person at a terminal.

Reads through the `Outbox` protocol on a store opened for inspection (never created), so it
works while the gateway runs; a replay is picked up by the running relay within its idle poll.
Payloads hold what is (or, in dry run, would be) sent to Meta; they are shown only with
`--payload`. Events the rules dropped have no rows: the outbox shows their counts per rule, and
`--follow` tells them as they are committed, with every new row and change of state.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import UTC, datetime
from typing import TextIO

from ..settings import StorageSettings
from . import describe, open_existing
from .outbox import Outbox
from .types import DeadLetterFilter, DropCount, OutboxRow

__all__ = ["follow_outbox", "print_dead_letters", "print_outbox", "replay_dead_letters"]

FOLLOW_POLL = 0.5  # seconds between two reads of the store while following
# A change is committed a little after the time it records (its transaction may wait for the
# write lock): each read looks back this far, and rows already told are not told again.
FOLLOW_MARGIN = 2.0
FOLLOW_LIMIT = 10_000  # changes per read
STORED_STATES = ("pending", "unrouted", "invalid")  # what a row is written as


@asynccontextmanager
async def _inspect(storage: StorageSettings) -> AsyncIterator[Outbox | None]:
    outbox = await open_existing(storage, clock=time.time)
    try:
        yield outbox
    finally:
        if outbox is not None:
            await outbox.close()


async def print_outbox(
    storage: StorageSettings, out: TextIO, *, state: str | None = None, limit: int = 20,
    payload: bool = False,
) -> int:
    """Print row counts per destination and state, then the newest rows; return an exit code."""
    async with _inspect(storage) as outbox:
        if outbox is None:
            print(f"{describe(storage)}: no outbox yet (the gateway creates it on first start)",
                  file=out)
            return 1
        counts = await outbox.counts()
        drops = await outbox.drops()
        rows = await outbox.rows(state=state, limit=limit, newest_first=True)
    print(f"outbox {describe(storage)}", file=out)
    for (destination, row_state), count in counts.items():
        print(f"  {destination or '(none)':<16} {row_state:<10} {count}", file=out)
    if not counts:
        print("  (empty)", file=out)
    _print_drops(drops, out)
    print(f"\nnewest {len(rows)} rows{f' in state {state}' if state else ''}:", file=out)
    for row in rows:
        print(f"  {_row_line(row)}", file=out)
        if payload:
            print(f"    {_payload(row)}", file=out)
    return 0


def _row_line(row: OutboxRow) -> str:
    line = (f"#{row.id} {row.destination or '(none)'} {row.state}"
            + (f" ({row.reason})" if row.state == "dead" and row.reason else "")
            + f" pixel={row.pixel_id} {row.event_name} event_id={row.event_id} "
            f"attempts={row.attempts}")
    return line + (f" last_error={row.last_error!r}" if row.last_error else "")


def _payload(row: OutboxRow) -> str:
    return "(missing)" if row.payload is None else row.payload.decode("utf-8", "replace")


def _print_drops(drops: Iterable[DropCount], out: TextIO) -> None:
    """Events dropped by rules (no rows: only counts), per rule, source and event name, over
    the hours kept."""
    totals: Counter[tuple[str, str, str]] = Counter()
    first: dict[tuple[str, str, str], int] = {}
    for drop in drops:
        key = (drop.rule, drop.source, drop.event_name)
        totals[key] += drop.events
        first.setdefault(key, drop.hour)
    since = f" since {_moment(min(first.values()))}" if first else ""
    print(f"\ndropped by rules{since} (not stored, not sent):", file=out)
    for (rule, source, name), count in sorted(totals.items()):
        print(f"  {rule!r:<24} {source:<8} {name!r:<20} {count}", file=out)
    if not totals:
        print("  (none)", file=out)


def _moment(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


async def follow_outbox(
    storage: StorageSettings, out: TextIO, *, state: str | None = None, payload: bool = False,
) -> int:
    """`tag-gateway outbox --follow`: tell each new row, change of state and drop, as lines,
    until interrupted. Reads only (a reader beside the gateway's writer)."""
    async with _inspect(storage) as outbox:
        if outbox is None:
            print(f"{describe(storage)}: no outbox yet (the gateway creates it on first start)",
                  file=out)
            return 1
        await _follow(outbox, out, state, payload, describe(storage))
    return 0


async def _follow(outbox: Outbox, out: TextIO, state: str | None, payload: bool,
                  name: str) -> None:
    newest = await outbox.rows(limit=1, newest_first=True)
    after_id = newest[0].id if newest else 0
    since = started = time.time()  # changes from here on (earlier ones were listed)
    told: dict[int, tuple[float, str]] = {}  # rows told within the margin: (updated_at, state)
    dropped = {_drop_key(d): d.events for d in await outbox.drops(since=since - 3600)}
    print(f"following {name} (Ctrl-C to stop)", file=out, flush=True)
    while True:
        now = time.time()
        rows = await outbox.changes(after_id=after_id,
                                    since=max(since - FOLLOW_MARGIN, started),
                                    limit=FOLLOW_LIMIT)
        for row in rows:
            if told.get(row.id) == (row.updated_at, row.state):
                continue
            told[row.id] = (row.updated_at, row.state)
            changes = [("changed", row)]
            if row.id > after_id:
                # New since the last read, perhaps sent already: a row the relay moved on was
                # stored pending (the states it can be stored in: pending, unrouted, invalid).
                moved = row.state not in STORED_STATES
                stored = replace(row, state="pending", attempts=0, last_error=None,
                                 reason=None, updated_at=row.created_at) if moved else row
                changes = [("stored ", stored), *changes] if moved else [("stored ", row)]
            for what, shown in changes:
                # Leases (inflight) are noise unless asked for: the outcome follows.
                if shown.state == state if state else shown.state != "inflight":
                    print(f"{_moment(shown.updated_at)} {what} {_row_line(shown)}", file=out)
                    if payload:
                        print(f"    {_payload(shown)}", file=out)
        if len(rows) == FOLLOW_LIMIT:
            print(f"{_moment(now)} (more than {FOLLOW_LIMIT} changes at once: some are not "
                  "shown; `tag-gateway outbox` has the counts)", file=out)
        after_id = max([after_id, *(row.id for row in rows)])
        since = now
        told = {k: v for k, v in told.items() if v[0] >= since - FOLLOW_MARGIN}
        if state is None:  # drops have no state
            counted = await outbox.drops(since=now - 3600)  # this hour's and the last one's
            for drop in counted:
                more = drop.events - dropped.get(_drop_key(drop), 0)
                if more > 0:
                    print(f"{_moment(now)} dropped {more} {drop.event_name!r} ({drop.source}) "
                          f"by rule {drop.rule!r}", file=out)
            dropped = {_drop_key(d): d.events for d in counted}
        out.flush()
        await asyncio.sleep(FOLLOW_POLL)


def _drop_key(drop: DropCount) -> tuple[int, str, str, str]:
    return drop.hour, drop.rule, drop.source, drop.event_name


async def print_dead_letters(
    storage: StorageSettings, out: TextIO, selection: DeadLetterFilter, *, limit: int = 50,
    as_json: bool = False,
) -> int:
    """`tag-gateway dead-letters list`: newest first, with reason, Meta's message, trace id."""
    async with _inspect(storage) as outbox:
        if outbox is None:
            print(f"{describe(storage)}: no outbox yet", file=out)
            return 1
        letters = await outbox.dead_letters(selection, limit)
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


async def replay_dead_letters(
    storage: StorageSettings, out: TextIO, selection: DeadLetterFilter
) -> int:
    """`tag-gateway dead-letters replay`: re-queue them; a running gateway picks them up."""
    async with _inspect(storage) as outbox:
        if outbox is None:
            print(f"{describe(storage)}: no outbox yet", file=out)
            return 1
        count = await outbox.replay(selection)
    print(f"re-queued {count} dead letter{'s' if count != 1 else ''}", file=out)
    return 0
