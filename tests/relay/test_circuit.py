"""The destination-wide circuit breaker: during an outage a destination sends one probe at a
time, at most one a second, logs its state changes rather than every failure, and once the
platform answers again sends everything waiting at once."""

from __future__ import annotations

import asyncio
import itertools
import logging
import re
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web

from gateway.config import parse_settings
from gateway.relay import circuit
from gateway.relay.circuit import Circuit

from ..conftest import (
    PIXEL_A,
    FakeClock,
    GatewayFactory,
    destination_yaml,
    graph_server,
    settings_yaml,
    wait_until,
)
from ..conftest import (
    outbox_rows as rows,
)


class Upstream:
    """A Graph API that answers 503 while `down`, and records when each request came."""

    def __init__(self) -> None:
        self.down = True
        self.requests: list[tuple[float, int]] = []  # (monotonic time, events)
        self.delivered: list[str] = []

    async def handle(self, request: web.Request) -> web.Response:
        events = orjson.loads(await request.read())["data"]
        self.requests.append((time.monotonic(), len(events)))
        if self.down:
            return web.json_response({"error": {
                "message": "Service temporarily unavailable", "type": "OAuthException",
                "code": 2, "is_transient": True, "fbtrace_id": "Down"}}, status=503)
        self.delivered.extend(e["event_id"] for e in events)
        return web.json_response({"events_received": len(events)})


async def hit(client: Any, eid: str) -> None:
    response = await client.get("/tr", params={"id": PIXEL_A, "ev": "PageView", "eid": eid,
                                               "dl": "https://shop.example.com/"})
    assert response.status == 200, await response.text()


def relay_lines(caplog: pytest.LogCaptureFixture, level: int) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.name == "gateway.relay.worker" and r.levelno == level]


async def test_an_outage_opens_the_circuit_probes_once_a_second_and_logs_state_changes(
    tmp_path: Path, aiohttp_server: Any, start_gateway: GatewayFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="gateway")
    upstream = Upstream()
    url = await graph_server(aiohttp_server, upstream.handle)
    # Quick retries of each row (the test default): without a circuit the relay would send
    # dozens of requests a second.
    settings = parse_settings(settings_yaml(tmp_path, destination_yaml(
        "main", url, pixel_id=PIXEL_A, max_in_flight=4)), env={})
    client = await start_gateway(settings)
    for n in range(20):
        await hit(client, f"e{n}")
    probes = 2
    await wait_until(lambda: len(upstream.requests) >= circuit.THRESHOLD + probes, timeout=10)
    status = await (await client.get("/status")).json()
    [main] = status["destinations"]
    assert main["state"] == "backoff" and main["circuit"]["state"] == "open"
    assert main["circuit"]["requests_while_open"] >= probes - 1

    # After the failures that opened it, one small probe at a time, at least a second apart.
    times = [at for at, _ in upstream.requests]
    opened = next(i for i, (a, b) in enumerate(itertools.pairwise(times)) if b - a >= 0.9)
    probes_sent = upstream.requests[opened + 1:]
    assert len(probes_sent) >= probes - 1
    assert all(b - a >= circuit.PROBE_MIN_SECONDS - 0.05
               for a, b in itertools.pairwise(times[opened:])), times
    assert all(size == circuit.PROBE_BATCH_SIZE for _, size in probes_sent)
    assert len(upstream.requests) <= circuit.THRESHOLD + 4 + probes + 1  # 4: in flight at once
    warnings = relay_lines(caplog, logging.WARNING)
    assert len(warnings) <= circuit.THRESHOLD, warnings  # not one per failed request
    assert sum("circuit open" in line for line in warnings) == 1

    upstream.down = False
    await wait_until(lambda: sorted(upstream.delivered) == sorted(f"e{n}" for n in range(20)),
                     timeout=circuit.PROBE_MAX_SECONDS + 5)
    await wait_until(lambda: {r["state"] for r in rows(settings)} == {"delivered"})
    [closed] = [line for line in relay_lines(caplog, logging.INFO) if "circuit closed" in line]
    # The requests while open: the failed probes (and any batch in flight when it opened), and
    # the one that got through.
    found = re.search(r"after [0-9.]+s and ([0-9]+) requests", closed)
    assert found is not None, closed
    assert len(probes_sent) + 1 <= int(found[1]) <= len(upstream.requests) - circuit.THRESHOLD + 1
    status = await (await client.get("/status")).json()
    [main] = status["destinations"]
    assert main["state"] == "active" and main["circuit"]["state"] == "closed"


async def test_rows_that_failed_during_an_outage_go_out_as_soon_as_it_ends(
    tmp_path: Path, aiohttp_server: Any, start_gateway: GatewayFactory,
) -> None:
    upstream = Upstream()
    url = await graph_server(aiohttp_server, upstream.handle)
    # Each failed row would wait up to ten minutes of its own backoff.
    settings = parse_settings(settings_yaml(tmp_path, destination_yaml(
        "main", url, pixel_id=PIXEL_A, retry_base_seconds=600, retry_max_seconds=600)), env={})
    client = await start_gateway(settings)
    for n in range(circuit.THRESHOLD):  # one failed request each: the circuit opens
        await hit(client, f"before{n}")
        await wait_until(lambda n=n: len(upstream.requests) > n)
    # Traffic goes on at 20 events/s during the outage; a probe carries one event at a time.
    for n in range(30):
        await hit(client, f"during{n}")
        await asyncio.sleep(0.05)
    probes = [at for at, _ in upstream.requests[circuit.THRESHOLD - 1:]]
    assert all(b - a >= circuit.PROBE_MIN_SECONDS - 0.05 for a, b in itertools.pairwise(probes))
    upstream.down = False
    recovered = time.monotonic()
    expected = sorted([f"before{n}" for n in range(circuit.THRESHOLD)]
                      + [f"during{n}" for n in range(30)])
    await wait_until(lambda: sorted(upstream.delivered) == expected,
                     timeout=circuit.PROBE_MAX_SECONDS + 5)
    assert time.monotonic() - recovered < 10
    await wait_until(lambda: {r["state"] for r in rows(settings)} == {"delivered"})
    stored = rows(settings)
    # Attempts count the requests really made: the rows that failed once say so.
    assert {r["attempts"] for r in stored if r["event_id"].startswith("before")} >= {2}


def test_the_circuit_opens_after_failures_in_a_row_and_backs_off_with_a_cap() -> None:
    clock = FakeClock()
    breaker = Circuit(clock, rng=lambda: 1.0)  # the longest waits
    for _ in range(circuit.THRESHOLD - 1):
        assert not breaker.failed()
    assert breaker.answered() is None  # an answer resets the count
    for _ in range(circuit.THRESHOLD - 1):
        assert not breaker.failed()
    assert breaker.failed() and breaker.is_open
    waits = [breaker.wait()]
    for _ in range(6):
        breaker.failed()
        waits.append(breaker.wait())
    assert waits == [1.0, 2.0, 4.0, 5.0, 5.0, 5.0, 5.0]  # doubling, capped
    clock.now += 30
    assert breaker.wait() == 0
    assert breaker.answered() == (30.0, 7)  # six failed probes and the one that got through
    assert not breaker.is_open and breaker.wait() == 0


def test_probes_never_come_more_than_once_a_second() -> None:
    breaker = Circuit(FakeClock(), rng=lambda: 0.0)  # the shortest waits
    for _ in range(circuit.THRESHOLD):
        breaker.failed()
    for _ in range(5):
        assert breaker.wait() == circuit.PROBE_MIN_SECONDS
        breaker.failed()
