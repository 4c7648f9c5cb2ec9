"""What every storage engine's outbox does, written once against the `Outbox` protocol: group
commit, leases, fencing, retries, dead letters, expiry, dedup, pruning, reports, drop counts,
following changes, closing, and crash recovery. Runs once per engine (see conftest.py)."""

from __future__ import annotations

import asyncio
import itertools
import os
import pickle
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.errors import OutboxUnavailable
from gateway.settings import StorageSettings
from gateway.storage import (
    FINISHED_STATES,
    OPEN_STATES,
    ClaimedRow,
    DeadLetterFilter,
    DropCount,
    Outbox,
    OutboxEntry,
)

from ..conftest import FakeClock as Clock
from .conftest import Opener

REPO = Path(__file__).resolve().parents[2]


def entry(n: int, destination: str = "main", **fields: object) -> OutboxEntry:
    values: dict[str, object] = {
        "destination": destination, "pixel_id": "111", "test_event_code": "",
        "event_name": "PageView", "event_id": f"e{n}", "event_time": 1_800_000_000,
        "payload": f'{{"event_id":"e{n}"}}'.encode(), **fields,
    }
    return OutboxEntry(**values)  # type: ignore[arg-type]


async def event_ids(outbox: Outbox, destination: str = "main", limit: int = 1000) -> list[str]:
    return [r.event_id for r in (await outbox.claim(destination, limit)).rows]


# -- ingest ---------------------------------------------------------------------------------------
async def test_concurrent_enqueues_share_commits_and_are_durable(
    outbox: Outbox, open_store: Opener
) -> None:
    await asyncio.gather(*(outbox.enqueue([entry(n)]) for n in range(200)))
    assert 1 <= outbox.commits < 20  # 200 hits, a handful of commits
    await outbox.close()
    reopened = await open_store()
    assert sorted(await event_ids(reopened)) == sorted(f"e{n}" for n in range(200))


async def test_a_bad_entry_does_not_sink_its_neighbours(outbox: Outbox) -> None:
    bad = entry(999, payload=None)  # no event: the store refuses it
    results = await asyncio.gather(
        outbox.enqueue([entry(1)]), outbox.enqueue([bad]), outbox.enqueue([entry(2)]),
        return_exceptions=True,
    )
    assert results[0] is None and results[2] is None
    assert isinstance(results[1], OutboxUnavailable)
    assert await event_ids(outbox) == ["e1", "e2"]


async def test_an_enqueue_wakes_its_destination(outbox: Outbox) -> None:
    main, other = outbox.wakeup("main"), outbox.wakeup("other")
    await outbox.enqueue([entry(1)])
    assert main.is_set() and not other.is_set()


async def test_the_context_travels_with_the_event(outbox: Outbox) -> None:
    context = b'{"gclid":"abc","consent":{"ads":true}}'
    await outbox.enqueue([entry(1, context=context), entry(2)])
    [stored_1, stored_2] = await outbox.rows()
    assert (stored_1.context, stored_2.context) == (context, b"")
    rows = (await outbox.claim("main", 10)).rows
    assert [(r.event_id, r.context, r.payload) for r in rows] == [
        ("e1", context, b'{"event_id":"e1"}'), ("e2", b"", b'{"event_id":"e2"}')]


async def test_rows_survive_reopening_the_store(outbox: Outbox, open_store: Opener) -> None:
    await outbox.enqueue([entry(1), entry(2)])
    await outbox.close()
    assert await event_ids(await open_store()) == ["e1", "e2"]


async def test_enqueue_after_close_is_refused(outbox: Outbox) -> None:
    await outbox.close()
    with pytest.raises(OutboxUnavailable):
        await outbox.enqueue([entry(1)])


async def test_close_commits_what_is_waiting(open_store: Opener) -> None:
    outbox = await open_store(commit_interval_ms=50)
    pending = asyncio.ensure_future(outbox.enqueue([entry(1)]))
    await asyncio.sleep(0)  # the enqueue is waiting for its group commit
    await outbox.close()
    await pending
    assert await event_ids(await open_store()) == ["e1"]


async def test_write_problem_reports_readiness(outbox: Outbox) -> None:
    assert await outbox.write_problem() is None
    # Checks asked for together all get the answer (an engine may share one probe).
    assert await asyncio.gather(*(outbox.write_problem() for _ in range(3))) == [None] * 3
    await outbox.close()
    assert await outbox.write_problem() is not None


# -- claims and acknowledgements --------------------------------------------------------------
async def test_claims_are_leased_and_come_back_after_expiry(outbox: Outbox, clock: Clock) -> None:
    await outbox.enqueue([entry(n) for n in range(5)])
    first = (await outbox.claim("main", 3)).rows
    assert [r.event_id for r in first] == ["e0", "e1", "e2"]
    assert all(r.lease == clock.now + 30 for r in first)
    assert await event_ids(outbox) == ["e3", "e4"]
    assert await event_ids(outbox) == []
    clock.now += 29
    assert await event_ids(outbox) == []
    clock.now += 2  # the worker holding them died: leases expire
    assert sorted(await event_ids(outbox)) == [f"e{n}" for n in range(5)]


async def test_destinations_have_separate_queues(outbox: Outbox) -> None:
    await outbox.enqueue([entry(1, "a"), entry(1, "b")])
    assert await event_ids(outbox, "a") == ["e1"]
    assert await event_ids(outbox, "b") == ["e1"]
    assert await event_ids(outbox, "a") == []


async def test_retry_later_waits_and_remembers_why(outbox: Outbox, clock: Clock) -> None:
    await outbox.enqueue([entry(1)])
    [row] = (await outbox.claim("main", 10)).rows
    assert await outbox.retry_later([row], delay=10, error="HTTP 503") == 1
    assert (await outbox.claim("main", 10)).rows == []
    assert await outbox.next_due("main") == pytest.approx(clock.now + 10)
    [stored] = await outbox.rows()
    assert (stored.state, stored.last_error, stored.attempts) == ("pending", "HTTP 503", 1)
    clock.now += 10
    [again] = (await outbox.claim("main", 10)).rows
    assert again.id == row.id and again.attempts == 1


async def test_retry_now_makes_only_waiting_retries_of_one_destination_due(
    outbox: Outbox, clock: Clock
) -> None:
    # After an outage the relay makes the rows that failed during it due at once, instead of
    # each waiting out its own backoff.
    await outbox.enqueue([entry(1), entry(2), entry(3), entry(4, destination="other")])
    waiting, leased, _ = (await outbox.claim("main", 3)).rows
    [other] = (await outbox.claim("other", 10)).rows
    await outbox.retry_later([waiting], delay=600, error="HTTP 503")
    await outbox.retry_later([other], delay=600, error="HTTP 503")
    await outbox.release([_])  # due already: nothing to change
    assert await outbox.retry_now("main") == 1
    assert await outbox.next_due("main") == pytest.approx(clock.now)
    assert await outbox.next_due("other") == pytest.approx(clock.now + 600)
    claimed = (await outbox.claim("main", 10)).rows
    assert sorted(row.event_id for row in claimed) == ["e1", "e3"]  # e2 is still leased
    [row] = [row for row in claimed if row.event_id == "e1"]
    assert row.attempts == 1  # the failed attempt still counts
    assert await outbox.finish([leased]) == 1  # its lease was left alone
    assert await outbox.retry_now("main") == 0


async def test_release_gives_rows_back_untried(outbox: Outbox) -> None:
    await outbox.enqueue([entry(1)])
    [row] = (await outbox.claim("main", 10)).rows
    assert await outbox.release([row]) == 1
    [again] = (await outbox.claim("main", 10)).rows
    assert again.id == row.id and again.attempts == 0


async def test_finished_rows_are_not_claimed_and_are_pruned_after_retention(
    outbox: Outbox, clock: Clock
) -> None:
    await outbox.enqueue([entry(1), entry(2), entry(3), entry(4)])
    rows = (await outbox.claim("main", 10)).rows
    assert await outbox.finish([rows[0]]) == 1
    assert await outbox.finish([rows[1]], state="dry_run") == 1
    await outbox.release([rows[2]])
    await outbox.dead_letter([rows[3]], "invalid", "refused", None)
    assert await outbox.counts() == {("main", "dead"): 1, ("main", "delivered"): 1,
                                     ("main", "dry_run"): 1, ("main", "pending"): 1}
    assert await outbox.prune(older_than=clock.now - 1) == 0
    clock.now += 3600
    assert await outbox.prune(older_than=clock.now - 60) == 2
    assert await outbox.counts() == {("main", "dead"): 1, ("main", "pending"): 1}


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
    assert await outbox.dead_letter([stale], "invalid", "refused", None) == 0
    assert await outbox.counts() == {("main", "inflight"): 1}
    assert await outbox.finish([fresh]) == 1
    assert await outbox.counts() == {("main", "delivered"): 1}


# -- dead letters and expiry --------------------------------------------------------------------
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
    await outbox.enqueue([entry(1, expires_at=clock.now + 10), entry(2, expires_at=clock.now + 99),
                          entry(3, "other", expires_at=clock.now + 10)])
    clock.now += 11
    assert await outbox.expire("main", reason="token_revoked") == 1
    [letter] = await outbox.dead_letters(DeadLetterFilter(), 10)
    assert (letter.event_id, letter.reason) == ("e1", "token_revoked")
    assert await outbox.expire("other") == 1
    assert [d.reason for d in await outbox.dead_letters(DeadLetterFilter(), 10)] == [
        "expired", "token_revoked"]


async def test_dead_letters_are_listed_filtered_and_replayed(outbox: Outbox) -> None:
    await outbox.enqueue([entry(1), entry(2), entry(3, "other")])
    rows = (await outbox.claim("main", 10)).rows
    other = (await outbox.claim("other", 10)).rows
    await outbox.dead_letter(rows, "invalid", "HTTP 400, code 100: bad", "TRACE1")
    await outbox.dead_letter(other, "token_revoked", "HTTP 401", None)
    letters = await outbox.dead_letters(DeadLetterFilter(destination="main"), 10)
    assert [(d.event_id, d.reason, d.fbtrace_id, d.attempts) for d in letters] == [
        ("e2", "invalid", "TRACE1", 1), ("e1", "invalid", "TRACE1", 1)]
    assert [d.event_id for d in await outbox.dead_letters(DeadLetterFilter(), 2)] == ["e3", "e2"]
    by_reason = await outbox.dead_letters(DeadLetterFilter(reason="token_revoked"), 10)
    assert [d.destination for d in by_reason] == ["other"]
    by_id = await outbox.dead_letters(DeadLetterFilter(ids=(rows[0].id,)), 10)
    assert [d.event_id for d in by_id] == ["e1"]

    wakeup = outbox.wakeup("main")
    wakeup.clear()
    assert await outbox.replay(DeadLetterFilter(destination="main")) == 2
    assert wakeup.is_set()
    replayed = (await outbox.claim("main", 10)).rows
    assert sorted(r.event_id for r in replayed) == ["e1", "e2"]
    assert all(r.attempts == 0 for r in replayed)
    assert [d.event_id for d in await outbox.dead_letters(DeadLetterFilter(), 10)] == ["e3"]
    assert await outbox.replay(DeadLetterFilter(destination="main")) == 0


# -- dedup -----------------------------------------------------------------------------------------
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
    assert (await outbox.counts())[("main", "duplicate")] == 2


async def test_without_a_window_repeats_are_sent(outbox: Outbox) -> None:
    await outbox.enqueue([entry(1), entry(1)])
    claim = await outbox.claim("main", 10)
    assert [r.event_id for r in claim.rows] == ["e1", "e1"] and claim.duplicates == 0


async def test_a_retried_row_is_not_its_own_duplicate(outbox: Outbox) -> None:
    await outbox.enqueue([entry(1)])
    [row] = (await outbox.claim("main", 10, dedup_seconds=3600)).rows
    await outbox.retry_later([row], delay=0, error="HTTP 503")
    [again] = (await outbox.claim("main", 10, dedup_seconds=3600)).rows
    assert again.id == row.id


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


async def test_destinations_dedup_apart(outbox: Outbox) -> None:
    await outbox.enqueue([entry(1, "a"), entry(1, "b")])
    for name in ("a", "b"):
        claim = await outbox.claim(name, 10, dedup_seconds=3600)
        assert [r.event_id for r in claim.rows] == ["e1"] and claim.duplicates == 0


async def test_pruned_dedup_keys_no_longer_suppress(outbox: Outbox, clock: Clock) -> None:
    window = 48 * 3600
    await outbox.enqueue([entry(1)])
    await outbox.finish((await outbox.claim("main", 10, dedup_seconds=window)).rows)
    clock.now += 3600
    await outbox.prune(older_than=0, dedup_older_than=clock.now - 60)
    await outbox.enqueue([entry(1)])
    # Within the window still, but its key is gone: the repeat is sent.
    assert await event_ids(outbox) == ["e1"]


# -- reports ---------------------------------------------------------------------------------------
async def test_counts_and_open_counts(outbox: Outbox) -> None:
    await outbox.enqueue([entry(n) for n in range(5)] + [entry(9, destination="brand")]
                         + [entry(8, state="unrouted", note="no destination")])
    delivered, dead, _inflight = (await outbox.claim("main", 3)).rows
    await outbox.finish([delivered])
    await outbox.dead_letter([dead], "invalid", "refused", None)
    full = await outbox.counts()
    assert full == {("brand", "pending"): 1, ("main", "dead"): 1, ("main", "delivered"): 1,
                    ("main", "inflight"): 1, ("main", "pending"): 2, ("main", "unrouted"): 1}
    assert list(full) == sorted(full)
    assert await outbox.open_counts() == {key: n for key, n in full.items()
                                          if key[1] in OPEN_STATES}
    assert not set(FINISHED_STATES) & set(OPEN_STATES)


async def test_oldest_pending_and_next_due(outbox: Outbox, clock: Clock) -> None:
    assert await outbox.oldest_pending() == {}
    assert await outbox.next_due("main") is None
    start = clock.now
    await outbox.enqueue([entry(1)])
    clock.now += 5
    await outbox.enqueue([entry(2), entry(3, "other")])
    assert await outbox.oldest_pending() == {"main": start, "other": start + 5}
    assert await outbox.next_due("main") == start
    rows = (await outbox.claim("main", 10)).rows
    assert await outbox.next_due("main") == clock.now + 30  # the lease's end
    await outbox.finish(rows)
    assert await outbox.next_due("main") is None
    assert await outbox.oldest_pending() == {"other": start + 5}


async def test_queue_depth_grows_and_shrinks(outbox: Outbox) -> None:
    empty = await outbox.queue_depth()
    assert empty.rows == 0
    await outbox.enqueue([entry(n, payload=b'{"x":"%s"}' % (b"y" * 10_000)) for n in range(50)])
    rows, size, _ = await outbox.queue_depth()
    assert rows == 50 and size >= empty.bytes + 50 * 10_000
    claimed = (await outbox.claim("main", 20)).rows
    assert (await outbox.queue_depth()).rows == 50  # leased rows still wait to be sent
    await outbox.finish(claimed)
    assert (await outbox.queue_depth()).rows == 30


async def test_queue_depth_counts_up_to_a_bound_and_the_last_id_follows_rows_written(
    outbox: Outbox,
) -> None:
    """What bounded backpressure relies on: a count stops at its bound, and the last row id
    grows by the rows written (whatever their state), never by anything else."""
    before = await outbox.store_size()
    await outbox.enqueue([entry(n) for n in range(5)] + [entry(5, state="invalid", note="x")])
    assert (await outbox.queue_depth(at_most=3)).rows == 3  # three or more
    assert (await outbox.queue_depth(at_most=5)).rows == 5
    assert (await outbox.queue_depth(at_most=100)).rows == 5
    assert (await outbox.queue_depth(at_most=0)).rows == 0
    after = await outbox.store_size()
    assert after.last_id - before.last_id == 6
    depth = await outbox.queue_depth(at_most=3)
    assert (depth.bytes, depth.last_id) == after
    claimed = (await outbox.claim("main", 5)).rows
    await outbox.finish(claimed[:2])
    await outbox.dead_letter(claimed[2:], "invalid", "refused", None)
    await outbox.replay(DeadLetterFilter())
    assert (await outbox.store_size()).last_id == after.last_id  # no row written
    assert (await outbox.queue_depth(at_most=100)).rows == 3


async def test_rows_lists_the_store_for_people(outbox: Outbox, clock: Clock) -> None:
    await outbox.enqueue([entry(1), entry(2, state="invalid", note="bad value", rule_set="r1"),
                          entry(3)])
    everything = await outbox.rows()
    assert [r.event_id for r in everything] == ["e1", "e2", "e3"]
    first = everything[0]
    assert (first.destination, first.state, first.pixel_id, first.event_name,
            first.event_time, first.attempts, first.created_at, first.updated_at,
            first.available_at, first.payload) == (
        "main", "pending", "111", "PageView", 1_800_000_000, 0, clock.now, clock.now, clock.now,
        b'{"event_id":"e1"}')
    assert [r.event_id for r in await outbox.rows(limit=2, newest_first=True)] == ["e3", "e2"]
    [invalid] = await outbox.rows(state="invalid")
    assert (invalid.last_error, invalid.rule_set) == ("bad value", "r1")
    assert everything[0].as_dict()["state"] == "pending"


# -- drops -----------------------------------------------------------------------------------------
async def test_drops_are_counted_per_hour_and_ride_the_next_commit(
    outbox: Outbox, open_store: Opener, clock: Clock
) -> None:
    hour = int(clock.now // 3600 * 3600)
    for _ in range(500):
        outbox.count_drop("drop bots", "browser", "PageView")
    outbox.count_drop("drop bots", "server", "Lead")
    before = outbox.commits
    await outbox.enqueue([entry(1)])
    assert outbox.commits == before + 1  # the drops shared the event's commit
    reader = await open_store()  # another process's view: only what is committed
    assert await reader.drops() == [DropCount(hour, "drop bots", "browser", "PageView", 500),
                                    DropCount(hour, "drop bots", "server", "Lead", 1)]
    clock.now += 3600
    outbox.count_drop("drop bots", "browser", "PageView")
    await outbox.enqueue([entry(2)])
    assert [(d.hour, d.events) for d in await reader.drops()] == [
        (hour, 500), (hour, 1), (hour + 3600, 1)]
    assert [(d.hour, d.events) for d in await reader.drops(since=clock.now)] == [(hour + 3600, 1)]


async def test_drops_without_events_are_committed_by_close(
    outbox: Outbox, open_store: Opener, clock: Clock
) -> None:
    outbox.count_drop("staging hosts", "browser", "Purchase")
    outbox.count_drop("staging hosts", "browser", "Purchase")
    await outbox.close()
    assert [(d.rule, d.events) for d in await (await open_store()).drops()] == [
        ("staging hosts", 2)]


async def test_a_drop_count_the_store_refuses_never_sinks_event_commits(
    outbox: Outbox
) -> None:
    """Names no store can keep (a NUL, 10,000 characters): the events still go in, every time."""
    outbox.count_drop("drop bots", "server", "a\x00b")
    outbox.count_drop("drop bots", "server", "x" * 10_000)
    for n in range(3):
        await outbox.enqueue([entry(n)])
    assert await event_ids(outbox) == ["e0", "e1", "e2"]


async def test_texts_with_nul_are_kept_by_acknowledgements(outbox: Outbox) -> None:
    """A platform's error message may carry a NUL: the acknowledgement must still land (a
    failed one would leave the rows leased, to be sent again and again)."""
    await outbox.enqueue([entry(1), entry(2)])
    first, second = (await outbox.claim("main", 10)).rows
    assert await outbox.retry_later([first], 0, "bad\x00answer") == 1
    assert await outbox.dead_letter([second], "invalid", "refused\x00", "trace\x00") == 1
    [row] = [r for r in await outbox.rows(limit=10) if r.event_id == "e1"]
    assert row.state == "pending" and row.last_error and row.last_error.startswith("bad")


async def test_drop_counts_are_pruned_with_the_finished_rows(outbox: Outbox, clock: Clock) -> None:
    outbox.count_drop("drop bots", "browser", "PageView")
    await outbox.enqueue([entry(1)])
    clock.now += 1800
    assert await outbox.prune(older_than=clock.now) == 0
    assert len(await outbox.drops()) == 1  # its hour has not ended before the cut
    clock.now += 7200
    await outbox.prune(older_than=clock.now - 60)
    assert await outbox.drops() == []


# -- following -------------------------------------------------------------------------------------
async def test_changes_follow_new_rows_and_state_changes(outbox: Outbox, clock: Clock) -> None:
    await outbox.enqueue([entry(1), entry(2)])
    [seen] = await outbox.rows(limit=1, newest_first=True)
    start = clock.now
    clock.now += 1
    await outbox.enqueue([entry(3), entry(4, state="unrouted", note="no destination")])
    new = await outbox.changes(after_id=seen.id, since=clock.now, limit=100)
    assert [(r.event_id, r.state) for r in new] == [("e3", "pending"), ("e4", "unrouted")]
    clock.now += 1
    changed_at = clock.now
    first, second, _ = (await outbox.claim("main", 3)).rows
    clock.now += 1
    await outbox.finish([first])
    await outbox.dead_letter([second], "invalid", "refused", None)
    latest = max(r.id for r in new)
    changed = await outbox.changes(after_id=latest, since=changed_at + 1, limit=100)
    assert [(r.event_id, r.state, r.reason) for r in changed] == [
        ("e1", "delivered", None), ("e2", "dead", "invalid")]
    assert len(await outbox.changes(after_id=latest, since=start, limit=2)) == 2  # bounded
    assert await outbox.changes(after_id=latest, since=clock.now + 1, limit=100) == []


# -- crashes ---------------------------------------------------------------------------------------
CHILD = """
import asyncio, pickle, sys
from gateway.storage import OutboxEntry, open_outbox

storage, now = pickle.loads(bytes.fromhex(sys.argv[1])), float(sys.argv[2])

def entry(n):
    return OutboxEntry("main", "111", "", "PageView", f"e{n}", 1_800_000_000, b"{}")

async def main():
    outbox = await open_outbox(storage, clock=lambda: now)
    await outbox.enqueue([entry(n) for n in range(5)])
    claim = await outbox.claim("main", 5)
    print("claimed", *sorted(row.event_id for row in claim.rows), flush=True)
    n = 5
    while True:
        await outbox.enqueue([entry(n)])
        print("acked", f"e{n}", flush=True)
        n += 1

asyncio.run(main())
"""


async def test_a_killed_process_loses_no_acknowledged_row_and_its_leases_come_back(
    storage: StorageSettings, open_store: Opener, clock: Clock
) -> None:
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-c", CHILD, pickle.dumps(storage).hex(), str(clock.now),
        stdout=asyncio.subprocess.PIPE, env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert child.stdout is not None
    acked: list[str] = []
    try:
        async with asyncio.timeout(30):
            claimed = (await child.stdout.readline()).decode().split()
            assert claimed == ["claimed", "e0", "e1", "e2", "e3", "e4"]
            while len(acked) < 30:
                acked.append((await child.stdout.readline()).decode().split()[1])
    finally:
        child.kill()  # SIGKILL: no cleanup, mid-write for all we know
        await child.wait()
    outbox = await open_store()
    stored = {row.event_id for row in await outbox.rows()}
    assert set(acked) <= stored  # every acknowledged row survived
    rest = (await outbox.claim("main", 1000)).rows
    assert {r.event_id for r in rest} == stored - {f"e{n}" for n in range(5)}
    await outbox.finish(rest)
    clock.now += 31  # the killed process's lease runs out
    assert sorted(await event_ids(outbox)) == [f"e{n}" for n in range(5)]


# -- properties --------------------------------------------------------------------------------
Step = tuple[str, int]
STEPS = st.lists(st.one_of(
    st.tuples(st.just("enqueue"), st.integers(1, 4)),
    st.tuples(st.sampled_from(["claim"]), st.integers(1, 5)),
    st.tuples(st.sampled_from(["finish", "retry", "release", "forget"]), st.integers(0, 3)),
    st.tuples(st.just("wait"), st.integers(0, 40)),  # seconds
    st.tuples(st.just("restart"), st.just(0)),
), max_size=25)
_examples = itertools.count()


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=STEPS)
async def test_no_event_is_lost_or_stored_twice_across_retries_and_restarts(
    open_store: Opener, clock: Clock, steps: list[Step]
) -> None:
    # Each example has a destination of its own: a fresh queue in the test's store.
    name = f"d{next(_examples)}"
    outbox = await open_store()
    enqueued: list[str] = []
    held: list[list[ClaimedRow]] = []  # claims a worker holds, unacknowledged
    for action, n in steps:
        if action == "enqueue":
            ids = [f"{name}-{len(enqueued) + k}" for k in range(n)]
            await outbox.enqueue([entry(0, name, event_id=event_id) for event_id in ids])
            enqueued += ids
        elif action == "claim":
            rows = (await outbox.claim(name, n)).rows
            live = {r.event_id for claim in held for r in claim if r.lease > clock.now}
            assert not live & {r.event_id for r in rows}  # never leased twice at once
            held.append(rows)
        elif action == "wait":
            clock.now += n
        elif action == "restart":
            await outbox.close()
            outbox = await open_store()
        elif held:
            rows = held.pop(n % len(held))
            if action == "finish":
                await outbox.finish(rows)
            elif action == "retry":
                await outbox.retry_later(rows, delay=5, error="HTTP 503")
            elif action == "release":
                await outbox.release(rows)
            # "forget": the worker died holding them; only the lease brings them back
    clock.now += 60  # every lease and retry falls due
    while rows := (await outbox.claim(name, 100)).rows:
        assert await outbox.finish(rows) == len(rows)
    stored = [(r.event_id, r.state) for r in await outbox.rows() if r.destination == name]
    assert sorted(stored) == sorted((event_id, "delivered") for event_id in enqueued)
    await outbox.close()


# -- the whole gateway (process reports, watchers, live events) ---------------------------------
async def test_each_process_keeps_one_report_and_silent_ones_are_forgotten(
    outbox: Outbox, clock: Clock
) -> None:
    started = clock.now
    await outbox.put_report("a:1", started, b'{"n": 1}', forget_before=0)
    clock.now += 60
    await outbox.put_report("b:2", started + 1, b'{"n": 2}', forget_before=0)
    await outbox.put_report("b:2", started + 1, b'{"n": 3}', forget_before=0)
    assert [(r.process, r.started_at, r.seen_at, r.report) for r in await outbox.reports()] == [
        ("a:1", started, started, b'{"n": 1}'), ("b:2", started + 1, clock.now, b'{"n": 3}')]
    await outbox.put_report("b:2", started + 1, b'{"n": 4}', forget_before=clock.now - 30)
    assert [(r.process, r.report) for r in await outbox.reports()] == [("b:2", b'{"n": 4}')]


async def test_watchers_last_until_their_time_or_until_they_end(
    outbox: Outbox, clock: Clock
) -> None:
    assert await outbox.watchers() == {}
    await outbox.watch("a:1", clock.now + 10)
    await outbox.watch("b:2", clock.now + 5)
    assert await outbox.watchers() == {"a:1": clock.now + 10, "b:2": clock.now + 5}
    clock.now += 6
    assert await outbox.watchers() == {"a:1": clock.now + 4}
    await outbox.watch("a:1", clock.now)  # the last watcher went away
    assert await outbox.watchers() == {}


async def test_live_events_are_read_in_order_from_a_ring_that_is_trimmed(
    outbox: Outbox, open_store: Opener, clock: Clock
) -> None:
    assert await outbox.last_live_event() == 0 and await outbox.live_events(0, 10) == []
    woken = outbox.live_wakeup()
    woken.clear()
    await outbox.add_live_events("a:1", [b"1", b"2"], keep_rows=100, keep_seconds=60)
    assert woken.is_set()
    other = await open_store()  # another process on the same store
    await other.add_live_events("b:2", [b"3"], keep_rows=100, keep_seconds=60)
    events = await outbox.live_events(0, 10)
    assert [(e.process, e.event) for e in events] == [("a:1", b"1"), ("a:1", b"2"), ("b:2", b"3")]
    ids = [e.id for e in events]
    assert ids == sorted(ids) and await outbox.last_live_event() == ids[-1]
    assert await outbox.live_events(ids[0], 1) == events[1:2]
    # By rows: only the newest `keep_rows` stay.
    await outbox.add_live_events("a:1", [b"4", b"5"], keep_rows=2, keep_seconds=60)
    assert [e.event for e in await outbox.live_events(0, 10)] == [b"4", b"5"]
    # By age: only those added within `keep_seconds`; ids go on rising after the ring emptied.
    clock.now += 61
    await outbox.add_live_events("b:2", [b"6"], keep_rows=100, keep_seconds=60)
    [last] = await outbox.live_events(0, 10)
    assert last.event == b"6" and last.id > ids[-1] + 2
    assert await outbox.last_live_event() == last.id
