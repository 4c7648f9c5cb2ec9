"""Shared fixtures: a fake Graph API server and gateways built from real YAML settings."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from gateway.admin import serve_operators_on
from gateway.app import create_app
from gateway.config import parse_settings
from gateway.settings import Settings
from gateway.storage import OutboxRow, open_existing

from .fake_graph import FakeGraph


class FakeClock:
    """A clock tests move by hand (no test sleeps for wall-clock time)."""

    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


PIXEL_A = "111111111111111"
PIXEL_B = "222222222222222"


async def _stored_rows(settings: Settings) -> list[OutboxRow]:
    outbox = await open_existing(settings.storage, clock=time.time)
    if outbox is None:
        return []
    try:
        return await outbox.rows()
    finally:
        await outbox.close()


def stored_rows(settings: Settings) -> list[OutboxRow]:
    """Every outbox row of a gateway's store with its event, oldest first, read through the
    storage protocol on a store of its own (what a 2xx promised is durable). Synchronous, for
    `wait_until` conditions: it runs on a loop of its own in a helper thread."""
    with ThreadPoolExecutor(max_workers=1) as thread:
        return thread.submit(asyncio.run, _stored_rows(settings)).result()


def outbox_rows(settings: Settings) -> list[dict[str, Any]]:
    """`stored_rows` as dicts keyed by column (id, destination, state, last_error, ...)."""
    return [row.as_dict() for row in stored_rows(settings)]


async def wait_until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    """Poll a cheap condition (bounded): for outcomes that leave no request to wait on."""
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.01)


async def graph_server(aiohttp_server: Any, handler: Any) -> str:
    """A scripted Graph API for one test: `handler` answers POST /{version}/{pixel}/events;
    returns the base URL to use as a destination's graph_url."""
    app = web.Application()
    app.router.add_post("/{version}/{pixel}/events", handler)
    server = await aiohttp_server(app)
    return str(server.make_url("")).rstrip("/")


def destination_yaml(name: str, graph_url: str, **fields: Any) -> str:
    """One meta_capi destination block with test-friendly timings."""
    return type_yaml(name, **{"type": "meta_capi", "graph_url": graph_url,
                              "access_token": "TEST-TOKEN-" + name, **fields})


def type_yaml(name: str, **fields: Any) -> str:
    """One destination block of any type with test-friendly timings (no linger, fast
    retries); `fields` are its keys, a mapping becomes a nested block."""
    quick = {"linger_ms": 0, "retry_base_seconds": 0.01, "retry_max_seconds": 0.05}
    values: dict[str, Any] = {**fields, **{k: v for k, v in quick.items() if k not in fields}}
    lines = [f"  - name: {name}"]
    for key, value in values.items():
        if isinstance(value, dict):
            lines.append(f"    {key}:")
            lines += [f"      {k}: {_yaml(v)}" for k, v in value.items()]
        else:
            lines.append(f"    {key}: {_yaml(value)}")
    return "\n".join(lines)


def _yaml(value: Any) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(_yaml(item) for item in value) + "]"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return orjson.dumps(value).decode()  # a JSON string is a YAML string, escapes and all
    return str(value)


def settings_yaml(tmp_path: Path, *destinations: str, extra: str = "") -> str:
    """Settings on a fresh outbox, with no rules (the shipped example rules drop loopback
    traffic and test clients' user agents; a test that wants rules sets `rules:` in extra), and
    an admin listener on a free port (unless extra has `admin:`)."""
    rules = "" if "rules:" in extra else f"rules: {{path: {tmp_path / 'no-rules'}}}\n"
    # A `serve` process's admin listener on a free port, not the default 9901 every test
    # process on the machine would share.
    admin = "" if "admin:" in extra else "admin: {listen: '127.0.0.1:0'}\n"
    return (
        "version: 1\n"
        f"storage: {{path: {tmp_path / 'gateway.db'}, commit_interval_ms: 1}}\n"
        f"{rules}{extra}"
        "destinations:\n" + "\n".join(destinations) + "\n" + admin  # last: keeps line numbers
    )


@pytest.fixture
async def fake_graph(aiohttp_server: Any) -> FakeGraph:
    graph = FakeGraph()
    graph.server = await aiohttp_server(graph.app)  # type: ignore[attr-defined]
    graph.url = str(graph.server.make_url("")).rstrip("/")  # type: ignore[attr-defined]
    return graph


GatewayFactory = Callable[[Settings], Awaitable[TestClient[Any, Any]]]


def operator_listener(client: TestClient[Any, Any]) -> TestClient[Any, Any]:
    """Let the test server's one listener be the admin listener too (operator endpoints answer
    there without a key), as `tag-gateway serve` marks the socket of `admin.listen`."""
    [address] = client.server.runner.addresses
    serve_operators_on(client.server.app, address)
    return client


@pytest.fixture
def start_gateway(aiohttp_client: Any) -> GatewayFactory:
    """Start a gateway (real server on loopback) from validated settings; its listener also
    answers operator endpoints without a key (operator_listener)."""

    async def start(settings: Settings) -> TestClient[Any, Any]:
        return operator_listener(await aiohttp_client(TestServer(create_app(settings))))

    return start


@pytest.fixture
def one_destination(tmp_path: Path, fake_graph: FakeGraph) -> Settings:
    """One live destination for PIXEL_A pointed at the fake Graph."""
    return parse_settings(
        settings_yaml(tmp_path, destination_yaml("main", fake_graph.url, pixel_id=PIXEL_A)),
        env={},
    )
