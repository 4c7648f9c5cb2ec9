"""A gateway on PostgreSQL (`storage.engine: postgres`): a hit is stored and relayed to the fake
Graph API, the operator endpoints count from the shared database, the CLI reads it, and a
database that goes away and comes back costs 503s while it is away, nothing more.

Each test asks for its database before its gateway: fixtures end in reverse order, so the
gateway stops before its database is dropped (its pool would otherwise reconnect while the
drop terminates its connections)."""

from __future__ import annotations

import asyncio
import itertools
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from aiohttp import ClientResponse

from gateway.config import load_settings
from gateway.storage import OutboxEntry, open_outbox
from gateway.storage.postgres import PostgresOutbox

from ...conftest import (
    PIXEL_A,
    GatewayFactory,
    destination_yaml,
    settings_yaml,
    stored_rows,
    wait_until,
)
from ...fake_graph import FakeGraph
from ...pgcluster import PASSWORD, PgCluster

REPO = Path(__file__).resolve().parents[3]


def postgres_config(tmp_path: Path, graph_url: str, dsn: str, **options: object) -> Path:
    """A config file like the tests' usual one, on PostgreSQL; the DSN from the environment;
    `options` of the destination."""
    text = settings_yaml(tmp_path, destination_yaml("main", graph_url, pixel_id=PIXEL_A,
                                                    **options))
    sqlite = f"storage: {{path: {tmp_path / 'gateway.db'}, commit_interval_ms: 1}}"
    assert sqlite in text
    text = text.replace(sqlite, "storage: {engine: postgres, dsn: '${GATEWAY_DATABASE_URL}',"
                                " commit_interval_ms: 1, pool_size: 4}")
    config = tmp_path / "config.yaml"
    config.write_text(text)
    return config


def cli(config: Path, dsn: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway", *args, "--config", str(config)],
        capture_output=True, text=True, timeout=60, cwd=REPO, check=False,
        env={"PYTHONPATH": str(REPO), "GATEWAY_DATABASE_URL": dsn, "PATH": "/usr/bin:/bin"})


async def test_a_gateway_on_postgres_stores_relays_and_reports_a_hit(
    tmp_path: Path, fake_graph: FakeGraph, pg_cluster: PgCluster, pg_database: str,
    start_gateway: GatewayFactory,
) -> None:
    dsn = pg_cluster.dsn(pg_database)
    config = postgres_config(tmp_path, fake_graph.url, dsn)
    assert "no outbox yet" in cli(config, dsn, "outbox").stdout  # nothing created by a look
    settings = load_settings(config, env={"GATEWAY_DATABASE_URL": dsn})
    assert settings.storage.engine == "postgres"
    client = await start_gateway(settings)
    response = await client.get("/tr", params={"id": PIXEL_A, "ev": "PageView", "eid": "pg-1",
                                               "dl": "https://shop.example.com/"})
    assert response.status == 200, await response.text()
    [event] = await fake_graph.wait_for_events(1)
    assert event["event_id"] == "pg-1"
    await wait_until(lambda: [r.state for r in stored_rows(settings)] == ["delivered"])

    status = await (await client.get("/status")).json()
    assert status["outbox"] == {
        "store": f"postgresql://127.0.0.1:{pg_cluster.port}/{pg_database}", "counts": "store-wide"}
    assert PASSWORD not in str(status)
    metrics = await (await client.get("/metrics")).text()
    assert 'gateway_queue_depth{destination="main"} 0.0' in metrics and PASSWORD not in metrics

    shown = await asyncio.to_thread(cli, config, dsn, "outbox")
    assert shown.returncode == 0, shown.stderr
    assert f"outbox postgresql://127.0.0.1:{pg_cluster.port}/{pg_database}" in shown.stdout
    assert "main             delivered  1" in shown.stdout
    assert "event_id=pg-1" in shown.stdout
    listed = await asyncio.to_thread(cli, config, dsn, "dead-letters", "list")
    assert listed.returncode == 0 and PASSWORD not in listed.stdout + listed.stderr


async def test_the_cli_says_when_the_database_cannot_be_reached(
    tmp_path: Path, pg_cluster: PgCluster
) -> None:
    dsn = pg_cluster.dsn("postgres").replace(f":{pg_cluster.port}/", ":9/")
    config = postgres_config(tmp_path, "http://127.0.0.1:9", dsn)
    result = await asyncio.to_thread(cli, config, dsn, "outbox")
    assert result.returncode == 1
    assert "the outbox database cannot be reached" in result.stderr
    assert "Traceback" not in result.stderr and PASSWORD not in result.stderr


async def test_while_the_database_is_down_ingest_answers_503_and_everything_recovers(
    tmp_path: Path, fake_graph: FakeGraph, pg_cluster: PgCluster, pg_database: str,
    start_gateway: GatewayFactory,
) -> None:
    dsn = pg_cluster.dsn(pg_database)
    settings = load_settings(postgres_config(tmp_path, fake_graph.url, dsn),
                             env={"GATEWAY_DATABASE_URL": dsn})
    client = await start_gateway(settings)

    async def hit(event_id: str) -> ClientResponse:
        return await client.get("/tr", params={"id": PIXEL_A, "ev": "PageView", "eid": event_id,
                                               "dl": "https://shop.example.com/"})

    assert (await hit("before")).status == 200
    await fake_graph.wait_for_events(1)
    # Its delivery recorded too: stopping the server while that acknowledgement is on its way
    # leaves the row leased until the lease ends (at least once), outside this test's wait.
    await wait_until(lambda: [r.state for r in stored_rows(settings)] == ["delivered"])
    await asyncio.to_thread(pg_cluster.stop)  # a restart, or a node cut off from the database
    try:
        refused = await hit("while-down")
        assert refused.status == 503 and int(refused.headers["Retry-After"]) > 0
        ready = await client.get("/readyz")
        assert ready.status == 503 and PASSWORD not in await ready.text()
        [problem] = (await ready.json())["problems"]
        assert problem in ("outbox is not writable: the outbox database is unavailable",
                           "outbox is not writable: the outbox database cannot be reached")
    finally:
        await asyncio.to_thread(pg_cluster.start)
    async with asyncio.timeout(20):  # the same gateway, reconnecting by itself
        while (await client.get("/readyz")).status != 200:
            await asyncio.sleep(0.05)
    assert (await hit("after")).status == 200
    await fake_graph.wait_for_events(2)
    assert [e["event_id"] for e in fake_graph.events] == ["before", "after"]
    await wait_until(lambda: [r.state for r in stored_rows(settings)] == ["delivered"] * 2)


async def test_a_backlog_is_claimed_two_batches_at_a_time_and_sent_once(
    tmp_path: Path, fake_graph: FakeGraph, pg_cluster: PgCluster, pg_database: str,
    start_gateway: GatewayFactory, monkeypatch: pytest.MonkeyPatch,
) -> None:
    # One claim at a time, a drain went at one batch per claim's round trip: on PostgreSQL the
    # worker claims the next batch while another claim runs (SQLite keeps one at a time).
    claims: list[tuple[float, float]] = []  # (started, returned)
    real_claim = PostgresOutbox.claim

    async def timed_claim(self: PostgresOutbox, *args: Any, **kwargs: Any) -> Any:
        started = time.monotonic()
        try:
            return await real_claim(self, *args, **kwargs)
        finally:
            claims.append((started, time.monotonic()))

    monkeypatch.setattr(PostgresOutbox, "claim", timed_claim)
    dsn = pg_cluster.dsn(pg_database)
    settings = load_settings(postgres_config(tmp_path, fake_graph.url, dsn, batch_size=10,
                                             max_in_flight=4),
                             env={"GATEWAY_DATABASE_URL": dsn})
    outbox = await open_outbox(settings.storage, clock=time.time)
    try:  # a backlog of 10 batches, committed before the gateway starts
        await outbox.enqueue([OutboxEntry(
            "main", PIXEL_A, "", "PageView", f"e{n}", int(time.time()),
            b'{"event_name":"PageView","event_id":"e%d"}' % n, expires_at=time.time() + 3600)
            for n in range(100)])
    finally:
        await outbox.close()
    await start_gateway(settings)
    events = await fake_graph.wait_for_events(100)
    assert sorted(e["event_id"] for e in events) == sorted(f"e{n}" for n in range(100))
    await wait_until(lambda: [r.state for r in stored_rows(settings)] == ["delivered"] * 100)
    claims.sort()
    assert any(later[0] < earlier[1] for earlier, later in itertools.pairwise(claims))
