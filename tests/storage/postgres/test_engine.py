"""The PostgreSQL engine's own behaviour, on a real server (tests/pgcluster.py): migrations when
nodes open one database together, concurrent claimers, wake-ups across nodes, a server that
stops and comes back, and a DSN whose password is never shown."""

from __future__ import annotations

import asyncio
import itertools
import logging
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from gateway.errors import OutboxIncompatible, OutboxUnavailable
from gateway.settings import StorageSettings
from gateway.storage import (
    ClaimedRow,
    DeadLetterFilter,
    Outbox,
    describe,
    open_existing,
    open_outbox,
    start_outbox,
)
from gateway.storage.postgres.schema import (
    MIGRATIONS,
    ROW_DEDUP_KEY,
    SCHEMA_VERSION,
    dedup_key,
)
from gateway.storage.postgres.store import _CLAIM_DEDUP

from ...conftest import FakeClock as Clock
from ...pgcluster import PASSWORD, PgCluster
from ..conftest import Opener, postgres_store
from ..test_conformance import entry

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture
def storage(pg_cluster: PgCluster, pg_database: str) -> StorageSettings:
    return replace(postgres_store(pg_cluster, pg_database), commit_interval_ms=2)


@pytest.fixture
def open_node(open_store: Opener) -> Opener:
    """Open the database as one more gateway node would: each opening has a pool of its own
    (closed at the end)."""
    return open_store


async def sql(storage: StorageSettings, statement: str) -> Any:
    conn = await asyncpg.connect(storage.dsn)
    try:
        return await conn.fetchval(statement)
    finally:
        await conn.close()


async def until_writable(outbox: Outbox, timeout: float = 20.0) -> None:
    async with asyncio.timeout(timeout):
        while await outbox.write_problem() is not None:
            await asyncio.sleep(0.05)


def test_only_the_postgres_engine_imports_its_driver() -> None:
    # A gateway on SQLite needs no asyncpg installed: the engine is imported on first use.
    code = ("import sys, gateway.app, gateway.__main__, gateway.storage.sqlite;"
            " sys.exit('asyncpg' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], env={"PYTHONPATH": str(REPO)},
                          timeout=60, check=False).returncode == 0


async def until_listening(node: Outbox, other: Outbox, destination: str = "main") -> None:
    """Commit rows on `other` until `node` is woken by one (its listening connection opens in
    the background); the rows are e0, e1, ... of `destination`."""
    woken = node.wakeup(destination)
    async with asyncio.timeout(10):
        for n in itertools.count():
            await other.enqueue([entry(n, destination)])
            await asyncio.wait([asyncio.ensure_future(woken.wait())], timeout=0.2)
            if woken.is_set():
                return


# -- schema --------------------------------------------------------------------------------------
async def test_nodes_starting_together_migrate_the_database_once(
    open_node: Opener, storage: StorageSettings
) -> None:
    nodes = await asyncio.gather(*(open_node() for _ in range(6)))
    assert await sql(storage, "SELECT string_agg(version::text, ',') FROM outbox_schema") == (
        str(SCHEMA_VERSION))
    await nodes[0].enqueue([entry(1)])
    assert [r.event_id for r in (await nodes[5].claim("main", 10)).rows] == ["e1"]


async def test_a_database_of_the_first_version_is_migrated(
    open_node: Opener, storage: StorageSettings
) -> None:
    conn = await asyncpg.connect(storage.dsn)
    try:
        for statement in MIGRATIONS[1]:
            await conn.execute(statement)
        await conn.execute("UPDATE outbox_schema SET version = 1")
    finally:
        await conn.close()
    old = await open_node()  # migrates
    assert await sql(storage, "SELECT version FROM outbox_schema") == SCHEMA_VERSION
    assert await sql(storage, "SELECT string_agg(indexname, ',' ORDER BY indexname)"
                              " FROM pg_indexes WHERE indexname LIKE 'outbox_due%'") == (
        "outbox_due_ordered")
    await old.enqueue([entry(n) for n in range(3)])
    assert [r.event_id for r in (await old.claim("main", 2)).rows] == ["e0", "e1"]


async def test_a_database_of_version_4_keeps_its_rows_and_dedup_keys_when_migrated(
    open_node: Opener, storage: StorageSettings, clock: Clock
) -> None:
    """Version 5 makes each dedup key one uuid of its four parts: the keys of a running
    gateway's database still suppress the repeats they did, a test send's key still apart.
    Version 6 stores each new row's key: a row queued before has none, and its key, made at
    its claim, is still the key of its copies written after."""
    conn = await asyncpg.connect(storage.dsn)
    try:
        for version in range(1, 5):
            for statement in MIGRATIONS[version]:
                await conn.execute(statement)
        await conn.execute("UPDATE outbox_schema SET version = 4")
        # What a version-4 gateway left: e1 delivered, e2 sent as a test event, e3 queued.
        for row_id, test_code, state in ((1, "", "delivered"), (2, "TEST9", "delivered"),
                                         (3, "", "pending")):
            await conn.execute(
                "INSERT INTO outbox (id, destination, pixel_id, test_event_code, event_name,"
                " event_id, event_time, expires_at, state, created_at, available_at, updated_at)"
                " VALUES ($1, 'main', '111', $2, 'PageView', $3, 0, $4, $5, $6, $6, $6)",
                row_id, test_code, f"e{row_id}", clock.now + 3600, state, clock.now)
            await conn.execute("INSERT INTO payloads (id, payload) VALUES ($1, '{}')", row_id)
        await conn.execute("SELECT setval('outbox_id_seq', 3)")
        await conn.execute(
            "INSERT INTO dedup (destination, pixel_id, event_name, event_id, row_id, seen_at)"
            " VALUES ('main', '111', 'PageView', 'e1', 1, $1),"
            " ('main', '111|TEST9', 'PageView', 'e2', 2, $1)", clock.now)
    finally:
        await conn.close()
    node = await open_node()  # migrates
    assert await sql(storage, "SELECT version FROM outbox_schema") == SCHEMA_VERSION
    assert await sql(storage, "SELECT count(*) FROM dedup") == 2
    assert "fillfactor=50" in await sql(
        storage, "SELECT array_to_string(reloptions, ',') FROM pg_class WHERE relname = 'outbox'")
    await node.enqueue([entry(1), entry(2), entry(2, test_event_code="TEST9"), entry(3)])
    assert await sql(storage, "SELECT count(*) FROM outbox WHERE dedup_key IS NULL") == 3
    claim = await node.claim("main", 10, dedup_seconds=3600)
    # e1 repeats a delivered event; the real e2 is not suppressed by the test send's key, whose
    # repeat is; e3 was queued before the upgrade, and its copy after it is the repeat.
    assert sorted((r.event_id, r.test_event_code, r.id) for r in claim.rows) == [
        ("e2", "", 5), ("e3", "", 3)]
    assert claim.duplicates == 3


async def test_the_gateway_makes_each_rows_dedup_key_as_the_database_does(
    open_node: Opener, storage: StorageSettings
) -> None:
    """New rows carry a key the gateway made; rows queued before version 6, and the keys in
    `dedup`, were made by the database: a repeat must find the same key either way."""
    await open_node()  # creates the schema, with the key's SQL function
    rows = [("main", "111", "", "PageView", "e1"), ("main", "111", "TEST9", "PageView", "e1"),
            ("m\u00e9ta", "1", "", "Achat \u20ac", "id:3"), ("", "", "", "", ""),
            ("\u540d", "22", "x|y", "\U0001d518nicode", ""), ("a:1", "2", "", "3:", "4")]
    conn = await asyncpg.connect(storage.dsn)
    try:
        made = [(await conn.fetchval(
            f"SELECT {ROW_DEDUP_KEY} FROM (VALUES ($1, $2, $3, $4, $5)) AS row(destination,"
            " pixel_id, test_event_code, event_name, event_id)", *row)).hex for row in rows]
    finally:
        await conn.close()
    assert [dedup_key(*row) for row in rows] == made
    assert len(set(made)) == len(rows)  # the test code and the length prefixes keep them apart


async def test_a_serializable_default_does_not_reach_the_gateway(
    open_node: Opener, storage: StorageSettings, pg_database: str
) -> None:
    """Under repeatable read or serializable, a migration would re-read the version in a
    snapshot taken before its lock, and claims would fail with serialization errors."""
    await sql(storage, f"ALTER DATABASE {pg_database} SET default_transaction_isolation "
                       "= 'serializable'")
    nodes = await asyncio.gather(*(open_node() for _ in range(4)))
    await nodes[0].enqueue([entry(1)])
    claims = await asyncio.gather(*(node.claim("main", 10) for node in nodes))
    assert sorted(r.event_id for claim in claims for r in claim.rows) == ["e1"]


async def test_a_database_from_a_newer_gateway_is_refused(
    open_node: Opener, storage: StorageSettings, clock: Clock
) -> None:
    await (await open_node()).close()
    await sql(storage, "UPDATE outbox_schema SET version = 99")
    with pytest.raises(OutboxIncompatible, match="newer"):
        await open_outbox(storage, clock=clock)
    with pytest.raises(OutboxIncompatible, match="newer"):
        await open_existing(storage, clock=clock)


async def test_inspecting_an_empty_database_creates_nothing(
    storage: StorageSettings, clock: Clock
) -> None:
    assert await open_existing(storage, clock=clock) is None
    assert await sql(storage, "SELECT to_regclass('outbox')") is None


# -- several nodes on one database ---------------------------------------------------------------
async def test_concurrent_claimers_never_get_the_same_row(open_node: Opener) -> None:
    first, second = await open_node(), await open_node()
    await first.enqueue([entry(n) for n in range(1500)])
    claims: list[tuple[str, list[int]]] = []

    async def drain(name: str, node: Outbox) -> None:
        while rows := (await node.claim("main", 40)).rows:
            claims.append((name, [r.id for r in rows]))
            await node.finish(rows)

    await asyncio.gather(drain("a", first), drain("a", first), drain("b", second),
                         drain("b", second))
    ids = [row_id for _, rows in claims for row_id in rows]
    assert len(ids) == len(set(ids)) == 1500  # every row once, none twice
    assert {name for name, _ in claims} == {"a", "b"}  # both nodes had a share
    assert all(len(rows) == 40 for _, rows in claims[:-4])  # whole batches, not stragglers
    assert await first.counts() == {("main", "delivered"): 1500}


async def test_a_node_whose_clock_is_ahead_by_more_than_the_lease_takes_no_leased_rows(
    storage: StorageSettings
) -> None:
    """Leases are in the database's clock: a node whose clock runs ahead (running clocks here:
    a test's clock held still is taken as it is) sees another node's lease as the database
    does, and takes its rows only once that lease has really run out."""
    lease, skew = 1.0, 5.0
    storage = replace(storage, lease_seconds=lease)
    behind = await open_outbox(storage, clock=time.time)
    ahead = await open_outbox(storage, clock=lambda: time.time() + skew)
    try:
        await behind.enqueue([entry(n) for n in range(5)])
        held = (await behind.claim("main", 10)).rows
        assert len(held) == 5
        assert (await ahead.claim("main", 10)).rows == []
        # When they fall due, in the ahead node's own clock (what its relay waits for).
        assert await ahead.next_due("main") == pytest.approx(held[0].lease + skew, abs=0.5)
        taken: list[ClaimedRow] = []
        async with asyncio.timeout(10):
            while not taken:  # the lease runs out in real time
                await asyncio.sleep(0.05)
                taken = (await ahead.claim("main", 10)).rows
        assert sorted(r.event_id for r in taken) == [f"e{n}" for n in range(5)]
        assert await behind.finish(held) == 0  # fenced: its lease had run out
        assert await ahead.finish(taken) == 5
    finally:
        await ahead.close()
        await behind.close()


async def test_a_commit_on_one_node_wakes_the_relay_of_another(open_node: Opener) -> None:
    relay, ingest, operator = await open_node(), await open_node(), await open_node()
    await until_listening(relay, ingest)  # commits on `ingest` woke `relay`
    rows = (await relay.claim("main", 100)).rows
    woken = relay.wakeup("main")
    await relay.dead_letter(rows, "invalid", "refused", None)
    woken.clear()
    assert await operator.replay(DeadLetterFilter(destination="main")) == len(rows)
    async with asyncio.timeout(10):
        await woken.wait()  # the replay on the operator's node woke this one


async def test_live_events_added_on_one_node_wake_the_readers_of_another(
    open_node: Opener
) -> None:
    reader, writer = await open_node(), await open_node()
    await until_listening(reader, writer)  # its listening connection is open
    woken = reader.live_wakeup()
    woken.clear()
    await writer.add_live_events("b:2", [b'{"kind":"incoming"}'], keep_rows=100,
                                 keep_seconds=60)
    async with asyncio.timeout(10):
        await woken.wait()
    [event] = await reader.live_events(0, 10)
    assert event.process == "b:2"


async def test_retry_now_makes_waiting_retries_due_and_wakes_other_nodes(
    open_node: Opener, clock: Clock
) -> None:
    # Outbox.retry_now (the relay calls it when a platform answers again after an outage).
    outbox, other_node = await open_node(), await open_node()
    await outbox.enqueue([entry(1), entry(2), entry(3, destination="other")])
    waiting, leased = (await outbox.claim("main", 2)).rows
    [other] = (await outbox.claim("other", 10)).rows
    await outbox.retry_later([waiting], delay=600, error="HTTP 503")
    await outbox.retry_later([other], delay=600, error="HTTP 503")
    await until_listening(other_node, outbox, "hello")
    woken = other_node.wakeup("main")
    woken.clear()
    assert await outbox.retry_now("main") == 1  # type: ignore[attr-defined]
    async with asyncio.timeout(10):
        await woken.wait()
    assert await outbox.next_due("main") == pytest.approx(clock.now)
    assert await outbox.next_due("other") == pytest.approx(clock.now + 600)
    [again] = (await other_node.claim("main", 10)).rows
    assert (again.event_id, again.attempts) == ("e1", 1)  # the failed attempt still counts
    assert await outbox.finish([leased]) == 1  # its lease was left alone
    assert await outbox.retry_now("main") == 0  # type: ignore[attr-defined]


async def test_prune_removes_the_events_of_the_rows_it_deletes(
    open_node: Opener, storage: StorageSettings, clock: Clock
) -> None:
    outbox = await open_node()
    await outbox.enqueue([entry(n) for n in range(30)])
    await outbox.finish((await outbox.claim("main", 20)).rows)
    clock.now += 60
    assert await outbox.prune(older_than=clock.now, chunk=7) == 20
    assert await sql(storage, "SELECT COUNT(*) FROM payloads") == 10
    assert await sql(storage, "SELECT COUNT(*) FROM outbox") == 10


# -- the server going away -------------------------------------------------------------------------
async def test_a_stopped_server_is_unavailable_then_the_store_recovers_by_itself(
    open_node: Opener, pg_cluster: PgCluster
) -> None:
    outbox = await open_node()
    await outbox.enqueue([entry(1)])
    await asyncio.to_thread(pg_cluster.stop)
    try:
        with pytest.raises(OutboxUnavailable):
            await outbox.enqueue([entry(2)])
        with pytest.raises(OutboxUnavailable):
            await outbox.claim("main", 10)
        with pytest.raises(OutboxUnavailable):
            await outbox.counts()
        problem = await outbox.write_problem()
        assert problem is not None and PASSWORD not in problem
    finally:
        await asyncio.to_thread(pg_cluster.start)
    await until_writable(outbox)  # the same store, not reopened
    await outbox.enqueue([entry(3)])
    assert [r.event_id for r in (await outbox.claim("main", 10)).rows] == ["e1", "e3"]


async def test_a_gateway_starts_while_the_server_is_down_and_opens_it_later(
    storage: StorageSettings, pg_cluster: PgCluster, clock: Clock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    await asyncio.to_thread(pg_cluster.stop)
    try:
        with caplog.at_level(logging.DEBUG):
            outbox = await start_outbox(storage, clock=clock)  # no raise: retried meanwhile
        try:
            with pytest.raises(OutboxUnavailable, match="cannot be reached"):
                await outbox.enqueue([entry(1)])
        finally:
            await asyncio.to_thread(pg_cluster.start)
        await until_writable(outbox)
        await outbox.enqueue([entry(1)])
        await outbox.close()
    finally:
        if not (pg_cluster.data / "postmaster.pid").exists():
            await asyncio.to_thread(pg_cluster.start)
    assert PASSWORD not in caplog.text and "cannot be reached" in caplog.text


async def test_no_connection_slot_left_is_unavailable_not_an_error(
    storage: StorageSettings, pg_database: str, clock: Clock
) -> None:
    # A role of its own with one connection (limits do not bind the cluster's superuser).
    role = f"node_{pg_database}"
    await sql(storage, f"CREATE ROLE {role} LOGIN PASSWORD '{PASSWORD}' CONNECTION LIMIT 1")
    await sql(storage, f"ALTER DATABASE {pg_database} OWNER TO {role}")
    limited = replace(storage, dsn=storage.dsn.replace("gateway:", f"{role}:", 1))
    holder = await asyncpg.connect(limited.dsn)  # another client has the only slot
    try:
        with pytest.raises(OutboxUnavailable, match="too many connections"):
            await open_outbox(limited, clock=clock)
    finally:
        await holder.close()
    await (await open_outbox(replace(limited, pool_size=1), clock=clock)).close()


# -- secrets ---------------------------------------------------------------------------------------
async def test_the_dsn_password_is_never_shown(
    storage: StorageSettings, pg_cluster: PgCluster, clock: Clock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    database = storage.dsn.rsplit("/", 1)[1]
    assert describe(storage) == f"postgresql://127.0.0.1:{pg_cluster.port}/{database}"
    wrong_password = replace(storage, dsn=pg_cluster.dsn("postgres", password="Wrong-" + PASSWORD))
    nothing_there = replace(storage, dsn=storage.dsn.replace(f":{pg_cluster.port}/", ":9/"))
    with caplog.at_level(logging.DEBUG):
        for settings in (wrong_password, nothing_there):
            with pytest.raises(OutboxUnavailable) as refused:
                await open_outbox(settings, clock=clock)
            message = str(refused.value)
            assert PASSWORD not in message and "Wrong-" not in message
            assert PASSWORD not in repr(settings)
    assert PASSWORD not in caplog.text


async def test_a_copy_claimed_while_its_twin_is_being_claimed_is_a_duplicate(
    open_node: Opener, storage: StorageSettings, clock: Clock
) -> None:
    # Two claims of one destination at once (two nodes, or one node's two during a backlog),
    # each with one copy of an event: the second waits for the first's dedup key, then must
    # see the owner as leased (its newest version), not as the pending row of its snapshot.
    node = await open_node()
    await node.enqueue([entry(1)])
    await node.enqueue([entry(1)])
    conn = await asyncpg.connect(storage.dsn)
    try:
        first = conn.transaction()
        await first.start()
        now = clock.now  # the first claim, held open before its commit
        [owner] = await conn.fetch(_CLAIM_DEDUP, "main", now, 1, now + 30, now - 3600)
        assert owner[-1]  # it owns the key
        second = asyncio.ensure_future(node.claim("main", 10, dedup_seconds=3600))
        async with asyncio.timeout(10):  # until the second waits for the first's key
            while not await sql(storage, "SELECT count(*) FROM pg_stat_activity"
                                         " WHERE wait_event_type = 'Lock'"):
                await asyncio.sleep(0.01)
        await first.commit()
        claim = await second
    finally:
        await conn.close()
    assert claim.rows == [] and claim.duplicates == 1
