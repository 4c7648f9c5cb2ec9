"""Failures across several `tag-gateway serve` nodes under load, on one PostgreSQL server: the
server restarted (every node answers 503 with Retry-After meanwhile and reconnects by itself),
one node cut off from the database while the others keep it (a partition through a link the
test cuts: link.py), and nodes claiming concurrently (nothing sent twice while no lease ran
out). In every case each event a node answered 2xx for is delivered.

The fake Graph API records which node sent each event (graph_for_nodes)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from gateway.errors import OutboxUnavailable
from gateway.storage import open_outbox
from gateway.storage.postgres.connection import (
    COMMAND_TIMEOUT,
    CONNECT_TIMEOUT,
    IDLE_IN_TRANSACTION,
    Pool,
)

from ...pgcluster import PgCluster
from ..conftest import postgres_store
from .link import Link
from .test_nodes import (
    Answer,
    Load,
    SlowGraph,
    entries,
    graph_for_nodes,
    nothing_left_open,
    serve,
)

Starter = Callable[..., Awaitable[dict[str, str]]]

# The nodes' lease, and their destination's timeout: a send that outlives its timeout on a busy
# machine is retried, and would count as a duplicate that no lease explains.
LEASE = 6.0
TIMEOUT = 2.5


@pytest.fixture
async def start_nodes(tmp_path: Path) -> AsyncIterator[Starter]:
    """Start `serve` nodes named by `dsns`' keys, each with its graph_url under its name;
    their base URLs. Their processes are killed at the end of the test."""
    processes: list[Any] = []

    async def start(graph_url: str, dsns: dict[str, str], **options: Any) -> dict[str, str]:
        for name in dsns:
            (tmp_path / name).mkdir()
        options = {"lease": LEASE, "timeout": TIMEOUT, **options}
        started = await asyncio.gather(*(serve(tmp_path / name, f"{graph_url}/{name}", dsn,
                                               **options) for name, dsn in dsns.items()))
        processes.extend(process for _, process in started)
        return {name: base for name, (base, _) in zip(dsns, started, strict=True)}

    yield start
    for process in processes:
        if process.returncode is None:
            process.kill()
        await process.wait()


async def ready(session: aiohttp.ClientSession, base: str) -> int:
    async with session.get(f"{base}/readyz") as response:
        return response.status


def not_refused_for_now(answers: list[Answer]) -> list[Answer]:
    """The answers that are not a 503 telling the sender when to come back."""
    return [a for a in answers
            if not (a.status == 503 and a.retry_after and int(a.retry_after) > 0)]


async def all_delivered(load: Load, graph: SlowGraph, cluster: PgCluster, database: str) -> None:
    """Wait until every 2xx'd event reached the fake and no row waits or is leased."""
    while (not set(load.accepted) <= graph.delivered()
           or not await nothing_left_open(cluster, database)):
        await asyncio.sleep(0.05)


def assert_sent_again_only_after_a_lease(graph: SlowGraph, lease: float) -> None:
    """An event went out twice only when the claim that sent it first lost its lease (half
    the lease: the first send follows its claim by a moment on a loaded machine)."""
    again = graph.sent_twice()
    assert all(len(times) == 2 and times[1] - times[0] >= lease / 2
               for times in again.values()), again


async def test_postgres_restarted_under_load_costs_503s_and_no_2xx_event(
    aiohttp_server: Any, pg_cluster: PgCluster, pg_database: str, start_nodes: Starter
) -> None:
    graph = SlowGraph()
    graph_url = await graph_for_nodes(aiohttp_server, graph)
    dsn = pg_cluster.dsn(pg_database)
    bases = list((await start_nodes(graph_url, {"a": dsn, "b": dsn, "c": dsn})).values())
    async with aiohttp.ClientSession() as session, asyncio.timeout(60):
        load = Load(session)
        running = asyncio.ensure_future(load.run(*bases))
        while len(graph.received) < 60:
            await asyncio.sleep(0.05)
        await asyncio.to_thread(pg_cluster.stop)
        down = time.monotonic()
        try:
            # Each node has answered hits sent while the server is down.
            while not all(load.between(base, down) for base in bases):
                await asyncio.sleep(0.05)
            readiness = [await ready(session, base) for base in bases]
        finally:
            up = time.monotonic()  # the server may answer from here on
            await asyncio.to_thread(pg_cluster.start)
        # The same processes reconnect by themselves: each takes hits again.
        while not all(any(a.status == 200 for a in load.between(base, up)) for base in bases):
            await asyncio.sleep(0.05)
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
        await all_delivered(load, graph, pg_cluster, pg_database)
    while_down = [a for base in bases for a in load.between(base, down, up)]
    assert while_down and not not_refused_for_now(while_down)
    assert readiness == [503, 503, 503]
    assert set(load.accepted) <= graph.delivered()
    assert_sent_again_only_after_a_lease(graph, LEASE)


async def test_a_node_cut_off_from_the_database_refuses_while_the_others_serve(
    aiohttp_server: Any, pg_cluster: PgCluster, pg_database: str, start_nodes: Starter
) -> None:
    graph = SlowGraph()
    graph_url = await graph_for_nodes(aiohttp_server, graph)
    dsn = pg_cluster.dsn(pg_database)
    link = await Link(pg_cluster.port).start()
    try:
        nodes = await start_nodes(graph_url, {"a": link.dsn(dsn), "b": dsn, "c": dsn})
        cut_off, others = nodes["a"], [nodes["b"], nodes["c"]]
        async with aiohttp.ClientSession() as session, asyncio.timeout(60):
            load = Load(session)
            running = asyncio.ensure_future(load.run(*nodes.values()))
            # Cut while node a has a request in flight: it cannot record the outcome.
            while len(graph.received) < 60 or "a" not in graph.in_flight.values():
                await asyncio.sleep(0.005)
            link.cut()
            cut = time.monotonic()
            held = {event for event, node in graph.in_flight.items() if node == "a"}
            # Node a refuses, the others take hits and relay them; what a held goes out from
            # another node once its lease ran out.
            while (not load.between(cut_off, cut)
                   or not all(any(a.status == 200 for a in load.between(base, cut))
                              for base in others)
                   or not all(set(graph.senders[event]) - {"a"} for event in held)):
                await asyncio.sleep(0.05)
            readiness = await ready(session, cut_off)
            link.restore()
            restored = time.monotonic()
            while not any(a.status == 200 for a in load.between(cut_off, restored)):
                await asyncio.sleep(0.05)
            running.cancel()
            await asyncio.gather(running, return_exceptions=True)
            await all_delivered(load, graph, pg_cluster, pg_database)
            assert await ready(session, cut_off) == 200
    finally:
        await link.close()
    while_cut = load.between(cut_off, cut, restored)
    assert while_cut and not not_refused_for_now(while_cut)
    # ... within seconds (a statement's timeout, then at most a connection attempt's; plus
    # the scheduling of a busy machine), not after a hang.
    assert max(a.answered - a.sent for a in while_cut) < COMMAND_TIMEOUT + CONNECT_TIMEOUT + 2
    assert readiness == 503
    others_while_cut = [a for base in others for a in load.between(base, cut, restored)]
    assert others_while_cut and all(a.status == 200 for a in others_while_cut)
    assert held and all(set(graph.senders[event]) - {"a"} for event in held)
    assert set(load.accepted) <= graph.delivered()
    assert_sent_again_only_after_a_lease(graph, LEASE)
    # ... and only what the cut-off node had sent first (in flight, or claimed, at the cut).
    assert all(graph.senders[event][0] == "a" for event in graph.sent_twice())


async def test_nodes_claiming_concurrently_send_nothing_twice(
    aiohttp_server: Any, pg_cluster: PgCluster, pg_database: str, start_nodes: Starter
) -> None:
    graph = SlowGraph()
    graph_url = await graph_for_nodes(aiohttp_server, graph)
    dsn = pg_cluster.dsn(pg_database)
    # Small batches, several in flight per node, and a lease no batch outlives here: every
    # claim races the other nodes' for the same rows, and no lease runs out.
    nodes = await start_nodes(graph_url, {"a": dsn, "b": dsn, "c": dsn}, lease=120,
                              timeout=30, destination="    batch_size: 5\n    max_in_flight: 4\n")
    async with aiohttp.ClientSession() as session, asyncio.timeout(60):
        load = Load(session)
        for _ in range(8):
            await load.round(*nodes.values(), each=25)
        await all_delivered(load, graph, pg_cluster, pg_database)
    assert len(load.accepted) == 600
    assert graph.sent_twice() == {}
    assert {node for senders in graph.senders.values() for node in senders} == {"a", "b", "c"}


async def test_rows_a_node_locked_when_it_was_cut_off_mid_transaction_are_freed(
    pg_cluster: PgCluster, pg_database: str
) -> None:
    """The server never hears the COMMIT or ROLLBACK of a node cut off in the middle of a
    transaction; it ends the transaction itself, so the rows it locked do not stay skipped by
    every other node's claims."""
    storage = postgres_store(pg_cluster, pg_database)
    other = await open_outbox(storage, clock=time.time)
    link = await Link(pg_cluster.port).start()
    pool = await Pool.open(link.dsn(storage.dsn), 1)
    try:
        await other.enqueue(entries(0, 3))
        started = time.monotonic()
        with pytest.raises(OutboxUnavailable, match="did not answer in time"):
            async with pool.transaction() as conn:
                await conn.execute("SELECT id FROM outbox FOR UPDATE")  # as a claim locks
                link.cut()
                await conn.execute("SELECT 1")  # lost, as the COMMIT would be
        assert time.monotonic() - started < COMMAND_TIMEOUT + 2  # no rollback waited for
        assert (await other.claim("main", 10)).rows == []  # still locked by the lost node
        async with asyncio.timeout(int(IDLE_IN_TRANSACTION.rstrip("s")) + 5):
            while not (claimed := (await other.claim("main", 10)).rows):
                await asyncio.sleep(0.2)
        assert len(claimed) == 3
    finally:
        await pool.close()
        await link.close()
        await other.close()
