"""`tag-gateway outbox` and `tag-gateway dead-letters`: the outbox, for a person at a terminal.

Reads through the `Outbox` protocol on a store opened for inspection (never created), so it
works while the gateway runs; a replay is picked up by the running relay within its idle poll.
Payloads hold what is (or, in dry run, would be) sent to Meta; they are shown only with
`--payload`.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TextIO

from ..settings import StorageSettings
from . import describe, open_existing
from .outbox import Outbox
from .types import DeadLetterFilter

__all__ = ["print_dead_letters", "print_outbox", "replay_dead_letters"]


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
        rows = await outbox.rows(state=state, limit=limit, newest_first=True)
    print(f"outbox {describe(storage)}", file=out)
    for (destination, row_state), count in counts.items():
        print(f"  {destination or '(none)':<16} {row_state:<10} {count}", file=out)
    if not counts:
        print("  (empty)", file=out)
    print(f"\nnewest {len(rows)} rows{f' in state {state}' if state else ''}:", file=out)
    for row in rows:
        line = (f"  #{row.id} {row.destination or '(none)'} {row.state} pixel={row.pixel_id} "
                f"{row.event_name} event_id={row.event_id} attempts={row.attempts}")
        print(line + (f" last_error={row.last_error!r}" if row.last_error else ""), file=out)
        if payload:
            body = "(missing)" if row.payload is None else row.payload.decode("utf-8", "replace")
            print(f"    {body}", file=out)
    return 0


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
