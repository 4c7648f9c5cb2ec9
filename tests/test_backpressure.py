"""Backpressure counts the queue seldom: a count stops at the limit, and between counts the
last count plus the rows written since (the last row id's growth) bounds the queue. A real
SQLite outbox; the test only watches how often the queue is counted."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import NamedTuple

import pytest

from gateway.backpressure import COUNTING_SHARE, RECOUNT_EVERY_SECONDS, Backpressure
from gateway.observe import Metrics
from gateway.settings import StorageSettings
from gateway.storage import DeadLetterFilter, Outbox, OutboxEntry, QueueDepth, open_outbox

from .conftest import FakeClock

LIMIT = 10


def entries(start: int, count: int) -> list[OutboxEntry]:
    return [OutboxEntry("main", "111", "", "PageView", f"e{n}", 1_800_000_000, b"{}")
            for n in range(start, start + count)]


class Watched:
    """The outbox's counts, recorded; each count takes `count_seconds` of the clock."""

    def __init__(self, outbox: Outbox, clock: FakeClock, monkeypatch: pytest.MonkeyPatch):
        self.counts: list[int | None] = []
        self.count_seconds = 0.0
        count = outbox.queue_depth

        async def counting(at_most: int | None = None) -> QueueDepth:
            self.counts.append(at_most)
            clock.now += self.count_seconds
            return await count(at_most)

        monkeypatch.setattr(outbox, "queue_depth", counting)


class Store(NamedTuple):
    outbox: Outbox
    clock: FakeClock
    watched: Watched
    backpressure: Backpressure


@pytest.fixture
async def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Store]:
    """A real outbox whose counts are watched, and backpressure with a limit of LIMIT rows."""
    clock = FakeClock(0.0)
    outbox = await open_outbox(StorageSettings(path=tmp_path / "o.db"), clock=clock)
    try:
        yield Store(outbox, clock, Watched(outbox, clock, monkeypatch),
                    Backpressure(outbox, Metrics(), max_rows=LIMIT, max_bytes=2**40,
                                 clock=clock))
    finally:
        await outbox.close()


async def test_the_queue_is_counted_only_when_the_bound_reaches_the_limit(store: Store) -> None:
    outbox, clock, watched, backpressure = store
    await backpressure.check()
    assert watched.counts == [LIMIT]  # the first check counts, up to the limit
    await outbox.enqueue(entries(0, 9))
    await backpressure.check()  # at most 0 + 9 queued: under, without counting
    claimed = (await outbox.claim("main", 5)).rows
    await outbox.finish(claimed)  # 4 queued
    await backpressure.check()
    assert watched.counts == [LIMIT] and backpressure.reason is None
    await outbox.enqueue(entries(9, 3))  # 7 queued; the bound, 12, reaches the limit
    await backpressure.check()
    assert watched.counts == [LIMIT, LIMIT] and backpressure.reason is None
    await outbox.enqueue(entries(12, 3))  # 10 queued
    clock.now += 1
    await backpressure.check()
    assert watched.counts == [LIMIT] * 3
    assert backpressure.reason == f"the outbox holds its limit of {LIMIT} queued events or more"
    # Over the limit each check counts, but counting takes at most its share of the time.
    watched.count_seconds = 0.5
    clock.now += 1
    await backpressure.check()
    assert len(watched.counts) == 4
    clock.now += 0.5 / COUNTING_SHARE - 1
    claimed = (await outbox.claim("main", 10)).rows
    await outbox.finish(claimed)
    await backpressure.check()  # too soon: the last count holds
    assert len(watched.counts) == 4 and backpressure.reason is not None
    clock.now += 1
    await backpressure.check()
    assert len(watched.counts) == 5 and backpressure.reason is None


async def test_rows_back_without_new_ids_are_counted_within_a_minute(store: Store) -> None:
    outbox, clock, watched, backpressure = store
    await outbox.enqueue(entries(0, LIMIT))
    claimed = (await outbox.claim("main", LIMIT)).rows
    await outbox.dead_letter(claimed, "invalid", "refused", None)
    await backpressure.check()
    assert backpressure.reason is None
    await outbox.replay(DeadLetterFilter())  # the queue is back at the limit, same ids
    clock.now += RECOUNT_EVERY_SECONDS - 1
    await backpressure.check()
    assert backpressure.reason is None and len(watched.counts) == 1
    clock.now += 1
    await backpressure.check()
    assert backpressure.reason is not None and len(watched.counts) == 2
