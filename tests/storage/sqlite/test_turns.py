"""Turns to write a SQLite file (gateway/storage/sqlite/turns.py): one at a time, durable
writes ahead of relaxed ones but never twice in a row while a relaxed one waits, cancelled
waiters skipped; and what the SQLite engines' ingest gets from them."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gateway.storage.sqlite import SqliteOutbox
from gateway.storage.sqlite.turns import WriteTurns
from gateway.storage.sqlitelog import SqliteLogOutbox

from ...conftest import FakeClock as Clock
from ...conftest import wait_until
from ..test_conformance import entry


async def take_turns(turns: WriteTurns, order: list[str], name: str, *, durable: bool,
                     release: asyncio.Event | None = None) -> None:
    async with turns.turn(durable=durable):
        order.append(name)
        if release is not None:
            await release.wait()


async def queued(*tasks: asyncio.Task[None]) -> None:
    """Let the tasks reach their wait for a turn, in the order given."""
    for _ in tasks:
        await asyncio.sleep(0)


async def test_a_durable_write_goes_ahead_of_relaxed_ones_waiting() -> None:
    turns, order, running = WriteTurns(), [], asyncio.Event()
    first = asyncio.create_task(take_turns(turns, order, "relay-running", durable=False,
                                           release=running))
    await queued(first)
    waiting = [asyncio.create_task(take_turns(turns, order, f"relay-{n}", durable=False))
               for n in range(3)]
    await queued(*waiting)
    commit = asyncio.create_task(take_turns(turns, order, "commit", durable=True))
    await queued(commit)
    running.set()
    await asyncio.gather(first, commit, *waiting)
    assert order == ["relay-running", "commit", "relay-0", "relay-1", "relay-2"]


async def test_relaxed_writes_are_not_starved_by_a_stream_of_commits() -> None:
    turns, order, running = WriteTurns(), [], asyncio.Event()
    first = asyncio.create_task(take_turns(turns, order, "commit-running", durable=True,
                                           release=running))
    await queued(first)
    tasks = []
    for n in range(2):
        tasks.append(asyncio.create_task(take_turns(turns, order, f"relay-{n}", durable=False)))
        tasks.append(asyncio.create_task(take_turns(turns, order, f"commit-{n}", durable=True)))
    await queued(*tasks)
    running.set()
    await asyncio.gather(first, *tasks)
    # Whoever else waits, the two kinds alternate: each waits for at most one of the other.
    assert order == ["commit-running", "relay-0", "commit-0", "relay-1", "commit-1"]


async def test_one_turn_at_a_time() -> None:
    turns, inside, most = WriteTurns(), 0, 0

    async def write(durable: bool) -> None:
        nonlocal inside, most
        async with turns.turn(durable=durable):
            inside += 1
            most = max(most, inside)
            await asyncio.sleep(0.001)
            inside -= 1

    await asyncio.gather(*(write(n % 3 == 0) for n in range(30)))
    assert most == 1


async def test_a_cancelled_waiter_is_skipped_and_the_turn_passes_on() -> None:
    turns, order, running = WriteTurns(), [], asyncio.Event()
    first = asyncio.create_task(take_turns(turns, order, "running", durable=False,
                                           release=running))
    await queued(first)
    gone = asyncio.create_task(take_turns(turns, order, "cancelled", durable=True))
    after = asyncio.create_task(take_turns(turns, order, "after", durable=False))
    await queued(gone, after)
    gone.cancel()
    running.set()
    await asyncio.gather(first, after)
    with pytest.raises(asyncio.CancelledError):
        await gone
    assert order == ["running", "after"]
    async with asyncio.timeout(1):  # nothing holds the turn now
        await take_turns(turns, order, "later", durable=True)


async def test_a_waiter_cancelled_as_it_is_handed_the_turn_hands_it_on() -> None:
    turns, order = WriteTurns(), []
    holder = turns.turn(durable=True)
    await holder.__aenter__()
    handed = asyncio.create_task(take_turns(turns, order, "handed", durable=True))
    after = asyncio.create_task(take_turns(turns, order, "after", durable=False))
    await queued(handed, after)
    await holder.__aexit__(None, None, None)  # the turn goes to `handed`, not yet running
    handed.cancel()
    async with asyncio.timeout(1):
        await after
    with pytest.raises(asyncio.CancelledError):
        await handed
    assert order == ["after"]


# -- the engines ------------------------------------------------------------------------------
@pytest.fixture(params=[SqliteOutbox, SqliteLogOutbox], ids=["sqlite", "sqlite-log"])
async def outbox(request: pytest.FixtureRequest, tmp_path: Path,
                 clock: Clock) -> AsyncIterator[SqliteOutbox | SqliteLogOutbox]:
    box = await request.param.open(tmp_path / "o.db", commit_interval=0.005, lease_seconds=30,
                                   clock=clock)
    yield box
    await box.close()


async def relay_write_running(outbox: SqliteOutbox | SqliteLogOutbox
                              ) -> tuple[asyncio.Task[None], threading.Event]:
    """A relaxed write (relay bookkeeping) holding the turn until the event returned is set."""
    started, release = threading.Event(), threading.Event()

    def hold(_conn: sqlite3.Connection) -> None:
        started.set()
        release.wait(5)

    task = asyncio.create_task(outbox.write(hold, relaxed=True))
    await wait_until(started.is_set)
    return task, release


async def test_a_hit_commits_ahead_of_the_relay_writes_waiting(
    outbox: SqliteOutbox | SqliteLogOutbox
) -> None:
    running, release = await relay_write_running(outbox)
    commits_seen: list[int] = []
    waiting = [asyncio.create_task(outbox.write(lambda _conn: commits_seen.append(outbox.commits),
                                                relaxed=True)) for _ in range(3)]
    await queued(*waiting)
    before = outbox.commits
    hit = asyncio.create_task(outbox.enqueue([entry(1)]))
    await asyncio.sleep(0.05)  # past the commit interval: the commit waits for its turn
    release.set()
    await asyncio.gather(running, hit, *waiting)
    assert commits_seen == [before + 1] * 3


async def test_hits_arriving_while_a_commit_waits_for_its_turn_share_it(
    outbox: SqliteOutbox | SqliteLogOutbox
) -> None:
    running, release = await relay_write_running(outbox)
    before = outbox.commits
    first = asyncio.create_task(outbox.enqueue([entry(1)]))
    await asyncio.sleep(0.05)  # past the commit interval: the commit waits for its turn
    later = [asyncio.create_task(outbox.enqueue([entry(n)])) for n in (2, 3)]
    await queued(*later)
    release.set()
    await asyncio.gather(running, first, *later)
    assert outbox.commits == before + 1
    assert sorted(r.event_id for r in (await outbox.claim("main", 10)).rows) == ["e1", "e2", "e3"]
