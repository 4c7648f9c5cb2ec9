"""The log-structured SQLite engine's own behaviour: what it writes for an event and a batch,
its cursors with several batches in flight, batches claimed again, retention by id range, and
files of the other SQLite engine."""

from __future__ import annotations

import contextlib
import sqlite3
import tempfile
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from gateway.errors import OutboxIncompatible
from gateway.storage import DeadLetterFilter
from gateway.storage.sqlite import SqliteOutbox
from gateway.storage.sqlitelog import SqliteLogOutbox
from gateway.storage.sqlitelog.schema import APPLICATION_ID, MIGRATIONS, SCHEMA_VERSION

from ...conftest import FakeClock as Clock
from ..conftest import query
from ..test_conformance import entry


@pytest.fixture
async def outbox(tmp_path: Path, clock: Clock) -> AsyncIterator[SqliteLogOutbox]:
    box = await SqliteLogOutbox.open(tmp_path / "o.db", commit_interval=0.005, lease_seconds=30,
                                     clock=clock)
    yield box
    await box.close()


def cursor(path: Path, destination: str) -> tuple[int, int]:
    [(claimed, acked)] = query(path, "SELECT claimed, acked FROM cursors "
                                     f"WHERE destination = '{destination}'")
    return claimed, acked


async def test_an_event_for_two_destinations_is_stored_once(
    outbox: SqliteLogOutbox, tmp_path: Path
) -> None:
    await outbox.enqueue([entry(1, "a"), entry(1, "b", pixel_id="222"), entry(2, "a")])
    assert query(tmp_path / "o.db", "SELECT id, waiting FROM events") == [
        (1, " a b "), (3, " a ")]
    rows = await outbox.rows()
    assert [(r.id, r.destination, r.pixel_id, r.event_id) for r in rows] == [
        (1, "a", "111", "e1"), (2, "b", "222", "e1"), (3, "a", "111", "e2")]
    [b_row] = (await outbox.claim("b", 10)).rows
    assert (b_row.id, b_row.pixel_id, b_row.payload) == (2, "222", b'{"event_id":"e1"}')


async def test_a_batch_delivered_whole_writes_no_row_per_event(
    outbox: SqliteLogOutbox, tmp_path: Path
) -> None:
    await outbox.enqueue([entry(n) for n in range(100)])
    rows = (await outbox.claim("main", 100)).rows
    assert await outbox.finish(rows) == 100
    path = tmp_path / "o.db"
    assert query(path, "SELECT COUNT(*) FROM exceptions") == [(0,)]
    assert query(path, "SELECT first, last, size, state FROM batches") == [(1, 100, 100, "done")]
    assert cursor(path, "main") == (100, 100)
    assert {r.state for r in await outbox.rows()} == {"delivered"}


async def test_the_cursor_stops_at_the_lowest_batch_still_in_flight(
    outbox: SqliteLogOutbox, tmp_path: Path
) -> None:
    path = tmp_path / "o.db"
    await outbox.enqueue([entry(n) for n in range(6)])
    first = (await outbox.claim("main", 2)).rows
    second = (await outbox.claim("main", 2)).rows
    third = (await outbox.claim("main", 2)).rows
    await outbox.finish(second)
    assert cursor(path, "main") == (6, 0)  # the first batch is still out
    await outbox.finish(third)
    assert cursor(path, "main") == (6, 0)
    await outbox.finish(first)
    assert cursor(path, "main") == (6, 6)  # over all three at once


async def test_a_batch_whose_lease_ran_out_is_split_for_a_smaller_claim(
    outbox: SqliteLogOutbox, clock: Clock, tmp_path: Path
) -> None:
    await outbox.enqueue([entry(n) for n in range(5)])
    stale = (await outbox.claim("main", 5)).rows
    assert await outbox.finish(stale[:1]) == 1
    clock.now += 31  # the holder died; a probe claims one row at a time
    [probe] = (await outbox.claim("main", 1)).rows
    assert probe.event_id == "e1"
    rest = (await outbox.claim("main", 10)).rows
    assert [r.event_id for r in rest] == ["e2", "e3", "e4"]
    assert await outbox.finish(stale) == 0  # the late holder owns nothing any more
    assert await outbox.finish([probe, *rest]) == 4
    assert cursor(tmp_path / "o.db", "main") == (5, 5)
    assert {r.state for r in await outbox.rows()} == {"delivered"}


async def test_a_batch_given_back_whole_is_due_again_without_rows_of_its_own(
    outbox: SqliteLogOutbox, clock: Clock, tmp_path: Path
) -> None:
    await outbox.enqueue([entry(n) for n in range(3)])
    rows = (await outbox.claim("main", 10)).rows
    assert await outbox.release(rows) == 3
    assert query(tmp_path / "o.db", "SELECT COUNT(*) FROM exceptions") == [(0,)]
    assert await outbox.next_due("main") == clock.now
    assert await outbox.open_counts() == {("main", "pending"): 3}
    again = (await outbox.claim("main", 10)).rows
    assert [r.id for r in again] == [r.id for r in rows]
    assert await outbox.release(again[:1]) == 1  # one alone: an exception row
    assert query(tmp_path / "o.db", "SELECT id, state FROM exceptions") == [(1, "pending")]


async def test_retention_deletes_finished_events_and_keeps_the_others(
    outbox: SqliteLogOutbox, clock: Clock, tmp_path: Path
) -> None:
    path = tmp_path / "o.db"
    # e0, e1 go to both destinations; "stuck" never drains, so e0 stays for it.
    await outbox.enqueue([entry(0, "main"), entry(0, "stuck"), entry(1, "main"), entry(2),
                          entry(3, state="unrouted", note="no destination")])
    rows = (await outbox.claim("main", 10)).rows
    await outbox.dead_letter(rows[1:2], "invalid", "refused", None)
    await outbox.finish([rows[0], rows[2]])
    clock.now += 3600
    assert await outbox.prune(older_than=clock.now - 60) == 2  # e2 and the unrouted e3
    assert [(r.event_id, r.destination, r.state) for r in await outbox.rows()] == [
        ("e0", "main", "delivered"), ("e0", "stuck", "pending"), ("e1", "main", "dead")]
    # Pruned batches leave the cursor to say what was delivered.
    assert query(path, "SELECT COUNT(*) FROM batches") == [(0,)]
    # Ids are never reused, even once the newest events are gone.
    await outbox.enqueue([entry(4)])
    assert max(r.id for r in await outbox.rows()) == 6


async def test_each_sqlite_engine_refuses_the_other_ones_file(tmp_path: Path) -> None:
    theirs = await SqliteOutbox.open(tmp_path / "sqlite.db")
    await theirs.close()
    with pytest.raises(OutboxIncompatible, match="another storage engine"):
        await SqliteLogOutbox.open(tmp_path / "sqlite.db")
    ours = await SqliteLogOutbox.open(tmp_path / "log.db")
    await ours.close()
    with pytest.raises(OutboxIncompatible):
        await SqliteOutbox.open(tmp_path / "log.db")


async def test_queue_depth_and_open_counts_do_not_read_the_backlog(
    outbox: SqliteLogOutbox, tmp_path: Path
) -> None:
    # Backpressure asks every second, /status and /metrics as often as they are polled: the
    # rows after a cursor are counted from the cursor's totals, not read.
    await outbox.enqueue([entry(n) for n in range(4)] + [entry(9, "other")])
    await outbox.dead_letter((await outbox.claim("main", 1)).rows, "invalid", "refused", None)
    with contextlib.closing(sqlite3.connect(tmp_path / "o.db")) as db, db:
        db.execute("DELETE FROM events WHERE id > 1")  # what a scan would have counted
    assert (await outbox.queue_depth()).rows == 4
    assert await outbox.open_counts() == {("main", "dead"): 1, ("main", "pending"): 3,
                                          ("other", "pending"): 1}


async def test_retention_goes_on_chunk_by_chunk_up_to_the_cut(
    outbox: SqliteLogOutbox, clock: Clock
) -> None:
    await outbox.enqueue([entry(n, state="unrouted") for n in range(12)])
    clock.now += 3600
    await outbox.enqueue([entry(n, state="unrouted") for n in range(12, 15)])  # after the cut
    assert await outbox.prune(older_than=clock.now - 60, chunk=5) == 12
    assert [r.event_id for r in await outbox.rows()] == ["e12", "e13", "e14"]


async def test_done_batches_of_live_traffic_are_kept_as_one_per_minute(
    outbox: SqliteLogOutbox, clock: Clock, tmp_path: Path
) -> None:
    # Live traffic claims every few hundred milliseconds: a batch row kept per claim for the
    # retention period would be millions. Once done for a minute, those claimed within a
    # minute merge (at each retention run), their rows taking the latest time among them.
    start = clock.now
    for n in range(6):
        await outbox.enqueue([entry(n)])
        await outbox.finish((await outbox.claim("main", 10)).rows)
        clock.now += 20 if n != 2 else 61
    path = tmp_path / "o.db"
    exact = [0, 20, 40, 101, 121, 141]
    assert [r.updated_at - start for r in await outbox.rows()] == exact  # not merged yet
    clock.now += 20
    await outbox.prune(older_than=0)
    assert query(path, "SELECT first, last, state FROM batches ORDER BY last") == [
        (1, 3, "done"), (4, 5, "done"), (6, 6, "done")]  # the last is done for 40 s only
    assert cursor(path, "main") == (6, 6)
    delivered = await outbox.rows()
    assert [r.state for r in delivered] == ["delivered"] * 6
    assert [r.updated_at - start for r in delivered] == [40, 40, 40, 121, 121, 141]


async def test_rows_expired_while_paused_are_passed_by_the_cursor(
    outbox: SqliteLogOutbox, clock: Clock, tmp_path: Path
) -> None:
    # A destination paused past its events' expiry: claims and the oldest queued row must not
    # read through every dead row after the cursor each time.
    await outbox.enqueue([entry(n, expires_at=clock.now + 10) for n in range(4)])
    await outbox.enqueue([entry(9, expires_at=clock.now + 100)])
    clock.now += 11
    assert await outbox.expire("main") == 4
    assert cursor(tmp_path / "o.db", "main") == (4, 4)  # the live row (id 5) still after it
    assert await outbox.oldest_pending() == {"main": clock.now - 11}
    assert [r.event_id for r in (await outbox.claim("main", 10)).rows] == ["e9"]
    assert await outbox.counts() == {("main", "dead"): 4, ("main", "inflight"): 1}


async def test_a_delivery_is_not_told_again_as_a_change_when_later_ones_come(
    outbox: SqliteLogOutbox, clock: Clock
) -> None:
    # `outbox --follow` reads the rows changed since its last look: an earlier delivery must
    # keep its time when later batches of the same minute are delivered.
    await outbox.enqueue([entry(1)])
    await outbox.finish((await outbox.claim("main", 10)).rows)
    clock.now += 5
    since = clock.now
    await outbox.enqueue([entry(2)])
    await outbox.finish((await outbox.claim("main", 10)).rows)
    changed = await outbox.changes(after_id=1, since=since, limit=100)
    assert [(r.event_id, r.state) for r in changed] == [("e2", "delivered")]


Step = tuple[str, int]
STEPS = st.lists(st.one_of(
    st.tuples(st.just("enqueue"), st.integers(1, 4)),
    st.tuples(st.sampled_from(["claim", "claim_b"]), st.integers(1, 4)),
    st.tuples(st.sampled_from(["finish", "retry", "release", "dead", "forget"]),
              st.integers(0, 3)),
    st.tuples(st.sampled_from(["wait", "expire", "replay", "retry_now"]), st.integers(0, 40)),
), max_size=30)


async def _step(box: SqliteLogOutbox, clock: Clock, held: list[list[Any]], n: int,
                action: str, k: int) -> None:
    if action == "enqueue":  # odd events go to "b" too (one event row, two rows)
        await box.enqueue([e for i in range(k) for e in (
            entry(n * 10 + i, "a", expires_at=clock.now + 30 + 10 * i),
            *([entry(n * 10 + i, "b")] if i % 2 else []),
            *([entry(n * 10 + i, "c", state="invalid", note="bad value")] if i == 2 else []))])
    elif action in ("claim", "claim_b"):
        held.append((await box.claim("a" if action == "claim" else "b", k,
                                     dedup_seconds=60 if k == 1 else 0)).rows)
    elif action == "wait":
        clock.now += k
    elif action == "expire":
        await box.expire("a")
    elif action == "replay":
        await box.replay(DeadLetterFilter())
    elif action == "retry_now":
        await box.retry_now("a")
    elif held:
        rows = held.pop(k % len(held))
        if action == "finish":
            await box.finish(rows)
        elif action == "retry":
            await box.retry_later(rows, delay=5, error="HTTP 503")
        elif action == "release":
            await box.release(rows)
        elif action == "dead":
            await box.dead_letter(rows, "invalid", "refused", None)


async def _reports_agree_with_the_rows(box: SqliteLogOutbox) -> None:
    every = await box.rows()
    assert await box.counts() == dict(sorted(Counter((r.destination, r.state)
                                                     for r in every).items()))
    for state in ("dead", "duplicate", "invalid"):  # found in SQL, not row by row
        assert await box.rows(state=state) == [r for r in every if r.state == state]
        newest = [r for r in reversed(every) if r.state == state][:2]
        assert await box.rows(state=state, limit=2, newest_first=True) == newest
    queued = [r for r in every if r.state in ("pending", "inflight")]
    assert (await box.queue_depth()).rows == len(queued)
    assert await box.open_counts() == {key: count for key, count in (await box.counts()).items()
                                       if key[1] in ("pending", "inflight", "dead")}
    oldest: dict[str, float] = {}
    for r in queued:
        oldest[r.destination] = min(r.created_at, oldest.get(r.destination, r.created_at))
    assert await box.oldest_pending() == oldest
    for name in ("a", "b"):
        due = [r.available_at for r in queued if r.destination == name]
        assert await box.next_due(name) == (min(due) if due else None)


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=STEPS)
# An open batch's oldest row is not one a claim set aside in it (found by the property).
@example(steps=[("enqueue", 1), ("wait", 31), ("enqueue", 1), ("expire", 0), ("claim", 1)])
async def test_the_counts_kept_in_the_cursors_agree_with_every_row(
    tmp_path: Path, steps: list[Step]
) -> None:
    """Queue depth, open counts, the oldest queued row and the next due time come from
    counters, batches and exception rows, counts per state from SQL over the routes and
    exception rows; `rows()` works out each row from scratch. They agree
    after any mix of steps, on events going to one or two destinations."""
    clock = Clock()
    box = await SqliteLogOutbox.open(Path(tempfile.mkdtemp(dir=tmp_path)) / "o.db",
                                     commit_interval=0, clock=clock)
    held: list[list[Any]] = []
    try:
        for n, (action, k) in enumerate(steps):
            await _step(box, clock, held, n, action, k)
            await _reports_agree_with_the_rows(box)
    finally:
        await box.close()


async def test_a_file_of_the_first_version_gains_the_whole_gateways_tables(
    tmp_path: Path, clock: Clock
) -> None:
    path = tmp_path / "o.db"
    with contextlib.closing(sqlite3.connect(path)) as db:
        for statement in MIGRATIONS[1]:
            db.execute(statement)
        db.execute(f"PRAGMA application_id={APPLICATION_ID}")
        db.execute("PRAGMA user_version=1")
        db.commit()
    outbox = await SqliteLogOutbox.open(path, clock=clock)
    try:
        assert query(path, "PRAGMA user_version") == [(SCHEMA_VERSION,)]
        await outbox.add_live_events("a:1", [b"1"], keep_rows=10, keep_seconds=60)
        assert [e.event for e in await outbox.live_events(0, 10)] == [b"1"]
        await outbox.enqueue([entry(1)])
        assert (await outbox.store_size()).last_id == 1
    finally:
        await outbox.close()
