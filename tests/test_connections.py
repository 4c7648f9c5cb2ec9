"""Connections a `serve` process accepts: idle ones closed after server.idle_timeout_seconds
(also before their first request, and while headers trickle in), at most
server.max_connections open, and the open-file limit raised at start."""

from __future__ import annotations

import asyncio
import logging
import resource
import time
from pathlib import Path

import aiohttp
import pytest

from gateway.config import parse_settings
from gateway.connections import raise_file_limit

from .conftest import PIXEL_A, destination_yaml, settings_yaml
from .fake_graph import FakeGraph
from .test_serve import free_port, start_serve


async def closed_by_server(reader: asyncio.StreamReader, within: float) -> float | None:
    """Seconds until the server closed the connection, or None if it did not `within`."""
    started = time.monotonic()
    try:
        async with asyncio.timeout(within):
            while await reader.read(1024):
                pass
    except TimeoutError:
        return None
    return time.monotonic() - started


async def test_idle_and_excess_connections_are_closed(tmp_path: Path, fake_graph: FakeGraph
                                                      ) -> None:
    port, admin = free_port(), free_port()
    config = tmp_path / "config.yaml"
    config.write_text(settings_yaml(
        tmp_path, destination_yaml("main", fake_graph.url, pixel_id=PIXEL_A),
        extra=f"server: {{port: {port}, idle_timeout_seconds: 1, max_connections: 16}}\n"
              f"admin: {{listen: '127.0.0.1:{admin}'}}\n"))
    process = await start_serve(config, port)
    try:
        # Idle before any request, and trickling headers (slowloris): closed after ~1 s.
        silent = await asyncio.open_connection("127.0.0.1", port)
        trickle = await asyncio.open_connection("127.0.0.1", port)
        trickle[1].write(b"GET /tr HTTP/1.1\r\nHost: x\r\n")
        for reader, writer in (silent, trickle):
            waited = await closed_by_server(reader, within=5)
            writer.close()
            assert waited is not None and waited < 3
        # 16 open: the 17th is closed at once; once they go, hits are answered again.
        held = [await asyncio.open_connection("127.0.0.1", port) for _ in range(16)]
        extra_reader, extra_writer = await asyncio.open_connection("127.0.0.1", port)
        waited = await closed_by_server(extra_reader, within=0.5)
        extra_writer.close()
        assert waited is not None
        async with aiohttp.ClientSession() as session:  # operators still get in
            async with session.get(f"http://127.0.0.1:{admin}/status") as response:
                assert response.status == 200
        for _, writer in held:
            writer.close()
        await asyncio.sleep(0.2)
        async with aiohttp.ClientSession() as session:
            async with session.get(f"http://127.0.0.1:{port}/healthz") as response:
                assert response.status == 200
    finally:
        process.terminate()
        await process.wait()


def test_the_open_file_limit_is_raised_and_a_low_one_reported(
    caplog: pytest.LogCaptureFixture
) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(1024, hard), hard))
        assert raise_file_limit(100) == hard or hard == resource.RLIM_INFINITY
        assert "open-file limit" not in caplog.text
        with caplog.at_level(logging.WARNING):
            raise_file_limit(10**9)
        assert "too low for server.max_connections 1000000000" in caplog.text
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


@pytest.mark.parametrize(("server", "idle"), [
    ("{}", 10.0), ("{trusted_proxies: [loopback]}", 75.0),
    ("{trusted_proxies: [loopback], idle_timeout_seconds: 30}", 30.0),
    ("{idle_timeout_seconds: auto}", 10.0),
])
def test_the_idle_timeout_suits_who_connects(tmp_path: Path, server: str, idle: float) -> None:
    settings = parse_settings(settings_yaml(
        tmp_path, destination_yaml("main", "http://127.0.0.1:9", pixel_id=PIXEL_A),
        extra=f"server: {server}\n"), env={})
    assert settings.server.idle_timeout == idle
