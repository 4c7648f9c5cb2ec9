"""The outbox on a real SQLite file: group commit, leases, retries, pruning, restarts."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from gateway.errors import OutboxUnavailable
from gateway.outbox import DeadLetterFilter, Outbox, OutboxEntry
from gateway.outbox.sqlthread import SqliteThread

from .conftest import FakeClock as Clock


def entry(n: int, destination: str = "main", **fields: object) -> OutboxEntry:
    values: dict[str, object] = {
        "destination": destination, "pixel_id": "111", "test_event_code": "",
        "event_name": "PageView", "event_id": f"e{n}", "event_time": 1_800_000_000,
        "payload": f'{{"event_id":"e{n}"}}'.encode(), **fields,
    }
    return OutboxEntry(**values)  # type: ignore[arg-type]


async def counts(outbox: Outbox) -> dict[tuple[str, str], int]:
    """Rows per (destination, state), finished ones included."""
    async with outbox.read() as db:
        rows = await db.execute_fetchall(
            "SELECT destination, state, COUNT(*) FROM outbox GROUP BY destination, state")
    return {(destination, state): n for destination, state, n in rows}


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def outbox(tmp_path: Path, clock: Clock) -> AsyncIterator[Outbox]:
    box = await Outbox.open(tmp_path / "o.db", commit_interval=0.005, lease_seconds=30,
                            clock=clock)
    yield box
    await box.close()


async def test_concurrent_enqueues_share_transactions(outbox: Outbox) -> None:
    await asyncio.gather(*(outbox.enqueue([entry(n)]) for n in range(200)))
    assert outbox.commits < 20  # 200 hits, a handful of fsyncs
    rows = (await outbox.claim("main", 1000)).rows
    assert sorted(r.event_id for r in rows) == sorted(f"e{n}" for n in range(200))


async def test_a_bad_entry_does_not_sink_its_neighbours(outbox: Outbox) -> None:
    bad = entry(999, payload=None)  # violates NOT NULL
    results = await asyncio.gather(
        outbox.enqueue([entry(1)]), outbox.enqueue([bad]), outbox.enqueue([entry(2)]),
        return_exceptions=True,
    )
    assert results[0] is None and results[2] is None
    assert isinstance(results[1], OutboxUnavailable)
    assert [r.event_id for r in (await outbox.claim("main", 10)).rows] == ["e1", "e2"]


async def test_claims_are_leased_and_come_back_after_expiry(
    outbox: Outbox, clock: Clock
) -> None:
    await outbox.enqueue([entry(n) for n in range(5)])
    first = (await outbox.claim("main", 3)).rows
    assert [r.event_id for r in first] == ["e0", "e1", "e2"]
    second = (await outbox.claim("main", 10)).rows
    assert [r.event_id for r in second] == ["e3", "e4"]
    assert (await outbox.claim("main", 10)).rows == []
    clock.now += 31  # the worker holding them died: leases expire
    again = (await outbox.claim("main", 10)).rows
    assert sorted(r.event_id for r in again) == [f"e{n}" for n in range(5)]


async def test_retry_later_waits_and_remembers_why(outbox: Outbox, clock: Clock) -> None:
    await outbox.enqueue([entry(1)])
    [row] = (await outbox.claim("main", 10)).rows
    await outbox.retry_later([row], delay=10, error="HTTP 503")
    assert (await outbox.claim("main", 10)).rows == []
    assert await outbox.next_due("main") == pytest.approx(clock.now + 10)
    clock.now += 10
    [again] = (await outbox.claim("main", 10)).rows
    assert again.id == row.id and again.attempts == 1


async def test_finished_rows_are_not_claimed_and_are_pruned_after_retention(
    outbox: Outbox, clock: Clock
) -> None:
    await outbox.enqueue([entry(1), entry(2), entry(3)])
    rows = (await outbox.claim("main", 10)).rows
    await outbox.finish([rows[0]])
    await outbox.finish([rows[1]], state="dry_run")
    await outbox.release([rows[2]])
    assert await counts(outbox) == {("main", "delivered"): 1, ("main", "dry_run"): 1,
                                     ("main", "pending"): 1}
    assert await outbox.prune(older_than=clock.now - 1) == 0
    clock.now += 3600
    assert await outbox.prune(older_than=clock.now - 60) == 2
    assert await counts(outbox) == {("main", "pending"): 1}


async def test_destinations_have_separate_queues(outbox: Outbox) -> None:
    await outbox.enqueue([entry(1, "a"), entry(1, "b")])
    assert [r.event_id for r in (await outbox.claim("a", 10)).rows] == ["e1"]
    assert [r.event_id for r in (await outbox.claim("b", 10)).rows] == ["e1"]
    assert (await outbox.claim("a", 10)).rows == []


async def test_rows_survive_reopening_the_file(tmp_path: Path, clock: Clock) -> None:
    box = await Outbox.open(tmp_path / "o.db", clock=clock)
    await box.enqueue([entry(1), entry(2)])
    await box.close()
    box = await Outbox.open(tmp_path / "o.db", clock=clock)
    try:
        assert [r.event_id for r in (await box.claim("main", 10)).rows] == ["e1", "e2"]
    finally:
        await box.close()


async def test_enqueue_after_close_is_refused(tmp_path: Path) -> None:
    box = await Outbox.open(tmp_path / "o.db")
    await box.close()
    with pytest.raises(OutboxUnavailable):
        await box.enqueue([entry(1)])


async def test_close_commits_what_is_waiting(tmp_path: Path) -> None:
    box = await Outbox.open(tmp_path / "o.db", commit_interval=0.05)
    pending = asyncio.ensure_future(box.enqueue([entry(1)]))
    await asyncio.sleep(0)  # the enqueue is waiting for its group commit
    await box.close()
    await pending
    box = await Outbox.open(tmp_path / "o.db")
    try:
        assert len((await box.claim("main", 10)).rows) == 1
    finally:
        await box.close()


async def test_writable_reports_readiness(tmp_path: Path) -> None:
    box = await Outbox.open(tmp_path / "o.db")
    assert await box.writable()
    await box.close()
    assert not await box.writable()


async def test_a_stale_claim_cannot_overwrite_a_newer_outcome(
    outbox: Outbox, clock: Clock
) -> None:
    await outbox.enqueue([entry(1)])
    [stale] = (await outbox.claim("main", 10)).rows
    clock.now += 31  # lease expired: another attempt claims the row and is still sending
    [fresh] = (await outbox.claim("main", 10)).rows
    # The first attempt answers late: its outcome must not touch the row the second holds.
    assert await outbox.finish([stale]) == 0
    assert await outbox.retry_later([stale], delay=0, error="HTTP 503") == 0
    assert await outbox.release([stale]) == 0
    assert await counts(outbox) == {("main", "inflight"): 1}
    assert await outbox.finish([fresh]) == 1
    assert await counts(outbox) == {("main", "delivered"): 1}


async def test_expired_rows_become_dead_letters_instead_of_being_sent(
    outbox: Outbox, clock: Clock
) -> None:
    await outbox.enqueue([entry(1, expires_at=clock.now + 10), entry(2)])
    clock.now += 11
    claim = await outbox.claim("main", 10)
    assert [r.event_id for r in claim.rows] == ["e2"] and claim.expired == 1
    [letter] = await outbox.dead_letters(DeadLetterFilter(reason="expired"), 10)
    assert letter.event_id == "e1" and "time window" in (letter.last_error or "")


async def test_paused_destinations_age_out_with_their_own_reason(
    outbox: Outbox, clock: Clock
) -> None:
    await outbox.enqueue([entry(1, expires_at=clock.now + 10)])
    clock.now += 11
    assert await outbox.expire("main", reason="token_revoked") == 1
    [letter] = await outbox.dead_letters(DeadLetterFilter(destination="main"), 10)
    assert letter.reason == "token_revoked"


async def test_repeats_of_an_event_are_suppressed_within_the_window(
    outbox: Outbox, clock: Clock
) -> None:
    window = 48 * 3600
    await outbox.enqueue([entry(1), entry(1), entry(2)])  # e1 twice in one claim
    first = await outbox.claim("main", 10, dedup_seconds=window)
    assert [r.event_id for r in first.rows] == ["e1", "e2"] and first.duplicates == 1
    await outbox.finish(first.rows)
    await outbox.enqueue([entry(1)])  # the browser retried an hour later
    clock.now += 3600
    later = await outbox.claim("main", 10, dedup_seconds=window)
    assert later.rows == [] and later.duplicates == 1
    clock.now += window  # past the window the same key is new again
    await outbox.enqueue([entry(1)])
    again = await outbox.claim("main", 10, dedup_seconds=window)
    assert [r.event_id for r in again.rows] == ["e1"]
    assert (await counts(outbox))[("main", "duplicate")] == 2


async def test_open_counts_come_from_the_queue_and_dead_letter_indexes(
    outbox: Outbox, tmp_path: Path
) -> None:
    await outbox.enqueue([entry(n) for n in range(5)] + [entry(9, destination="brand")])
    delivered, dead, _inflight = (await outbox.claim("main", 3)).rows
    await outbox.finish([delivered])
    await outbox.dead_letter([dead], "invalid", "refused", None)
    full = await counts(outbox)
    assert full[("main", "delivered")] == 1
    assert await outbox.open_counts() == {
        ("main", "pending"): 2, ("main", "inflight"): 1, ("main", "dead"): 1,
        ("brand", "pending"): 1,
    } == {key: n for key, n in full.items() if key[1] != "delivered"}
    # /metrics and /status poll these: no step may read the finished rows kept for days.
    statements: list[str] = []
    async with outbox.read() as db:
        await db.set_trace_callback(statements.append)
    try:
        await outbox.open_counts()
    finally:
        async with outbox.read() as db:
            await db.set_trace_callback(None)
    [query] = statements
    with contextlib.closing(sqlite3.connect(tmp_path / "o.db")) as db:
        plan = [row[3] for row in db.execute("EXPLAIN QUERY PLAN " + query)]
    scans = [step for step in plan if step.startswith(("SCAN", "SEARCH"))]
    assert sorted(scans) == ["SCAN outbox USING INDEX outbox_dead",
                             "SCAN outbox USING INDEX outbox_due"]


async def test_stale_dedup_keys_are_pruned_in_chunks(
    outbox: Outbox, clock: Clock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    await outbox.enqueue([entry(n) for n in range(5)])
    await outbox.finish((await outbox.claim("main", 10, dedup_seconds=3600)).rows)
    clock.now += 7200
    await outbox.enqueue([entry(9)])
    await outbox.finish((await outbox.claim("main", 10, dedup_seconds=3600)).rows)
    deleted: list[int] = []  # rows per transaction: finished rows (none here), then stale keys
    real_write = outbox.write

    async def write(fn: Any, *, relaxed: bool = False) -> Any:
        deleted.append(result := await real_write(fn, relaxed=relaxed))
        return result

    monkeypatch.setattr(outbox, "write", write)
    await outbox.prune(older_than=0, dedup_older_than=clock.now - 3600, chunk=2)
    assert deleted == [0, 2, 2, 1]  # rows: none; stale keys: 5 in chunks of 2
    with contextlib.closing(sqlite3.connect(tmp_path / "o.db")) as db:
        assert db.execute("SELECT event_id FROM dedup").fetchall() == [("e9",)]


async def test_a_retried_row_is_not_its_own_duplicate(outbox: Outbox, clock: Clock) -> None:
    await outbox.enqueue([entry(1)])
    [row] = (await outbox.claim("main", 10, dedup_seconds=3600)).rows
    await outbox.retry_later([row], delay=0, error="HTTP 503")
    [again] = (await outbox.claim("main", 10, dedup_seconds=3600)).rows
    assert again.id == row.id


async def test_dead_letters_are_listed_and_replayed(outbox: Outbox, clock: Clock) -> None:
    await outbox.enqueue([entry(1), entry(2), entry(3, "other")])
    rows = (await outbox.claim("main", 10)).rows
    other = (await outbox.claim("other", 10)).rows
    await outbox.dead_letter(rows, "invalid", "HTTP 400, code 100: bad", "TRACE1")
    await outbox.dead_letter(other, "invalid", "HTTP 400, code 100: bad", "TRACE2")
    letters = await outbox.dead_letters(DeadLetterFilter(destination="main"), 10)
    assert [(d.event_id, d.reason, d.fbtrace_id) for d in letters] == [
        ("e2", "invalid", "TRACE1"), ("e1", "invalid", "TRACE1")]
    assert await outbox.replay(DeadLetterFilter(destination="main")) == 2
    replayed = (await outbox.claim("main", 10)).rows
    assert sorted(r.event_id for r in replayed) == ["e1", "e2"]
    assert all(r.attempts == 0 for r in replayed)
    assert len(await outbox.dead_letters(DeadLetterFilter(), 10)) == 1


async def test_a_refused_owner_does_not_block_a_corrected_copy(outbox: Outbox) -> None:
    await outbox.enqueue([entry(1)])
    first = (await outbox.claim("main", 10, dedup_seconds=3600)).rows
    await outbox.dead_letter(first, "invalid", "HTTP 400, code 100: bad value", None)
    await outbox.enqueue([entry(1)])  # the backend fixed the event and sent it again
    again = await outbox.claim("main", 10, dedup_seconds=3600)
    assert [r.event_id for r in again.rows] == ["e1"] and again.duplicates == 0


async def test_a_test_send_does_not_suppress_the_real_event(outbox: Outbox) -> None:
    await outbox.enqueue([entry(1, test_event_code="TEST123"), entry(1)])
    claim = await outbox.claim("main", 10, dedup_seconds=3600)
    assert sorted(r.test_event_code for r in claim.rows) == ["", "TEST123"]
    assert claim.duplicates == 0


async def test_a_failed_commit_leaves_the_connection_usable(tmp_path: Path) -> None:
    # A deferred foreign key fails at COMMIT, as a full disk would: SQLite may leave the
    # transaction open, and an open one would refuse every later BEGIN and hold the lock.
    db = await SqliteThread.open(tmp_path / "t.db", synchronous="FULL", name="test")
    try:
        await db.run(lambda conn: conn.executescript(
            "PRAGMA foreign_keys=ON; CREATE TABLE parent (id INTEGER PRIMARY KEY);"
            "CREATE TABLE child (parent INTEGER REFERENCES parent (id)"
            " DEFERRABLE INITIALLY DEFERRED);"))
        with pytest.raises(sqlite3.IntegrityError):
            await db.transaction(lambda conn: conn.execute("INSERT INTO child VALUES (7)"))
        await db.transaction(lambda conn: conn.execute("INSERT INTO parent VALUES (7)"))
        assert await db.run(lambda conn: conn.execute(
            "SELECT COUNT(*) FROM parent").fetchone()) == (1,)
    finally:
        await db.close()


async def test_a_cancelled_write_returns_only_once_its_transaction_has_ended(
    outbox: Outbox
) -> None:
    ended = threading.Event()

    def slow(conn: sqlite3.Connection) -> None:
        time.sleep(0.2)
        conn.execute("DELETE FROM dedup")
        ended.set()

    task = asyncio.create_task(outbox.write(slow))
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert ended.is_set()  # its caller (and the lock it held) waited for the transaction


async def test_a_cancelled_claim_gives_its_rows_back(outbox: Outbox, tmp_path: Path) -> None:
    # A shutdown cancels a claim that waits for another process's write lock: the claim still
    # commits once it gets the lock (transactions run to their end), so its rows must not stay
    # leased, and unsent, until the lease runs out.
    await outbox.enqueue([entry(1)])
    other = sqlite3.connect(tmp_path / "o.db", isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        claiming = asyncio.create_task(outbox.claim("main", 10))
        await asyncio.sleep(0.2)  # its BEGIN waits in the connection's thread
        claiming.cancel()
        await asyncio.sleep(0.05)
        other.rollback()
        with pytest.raises(asyncio.CancelledError):
            await claiming
    finally:
        other.close()
    assert await counts(outbox) == {("main", "pending"): 1}
    assert [r.event_id for r in (await outbox.claim("main", 10)).rows] == ["e1"]


async def test_a_row_without_its_event_json_becomes_a_dead_letter(
    outbox: Outbox, tmp_path: Path
) -> None:
    await outbox.enqueue([entry(1), entry(2)])
    with sqlite3.connect(tmp_path / "o.db") as db:  # a damaged or hand-edited file
        db.execute("DELETE FROM payloads WHERE id = (SELECT id FROM outbox WHERE event_id = 'e1')")
    claim = await outbox.claim("main", 10)
    assert [r.event_id for r in claim.rows] == ["e2"] and claim.broken == 1
    [dead] = await outbox.dead_letters(DeadLetterFilter(), 10)
    assert (dead.event_id, dead.reason) == ("e1", "invalid")
    assert "missing" in (dead.last_error or "")
