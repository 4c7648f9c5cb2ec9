"""`tag-gateway serve` as a real process: serves hits, relays them, drains on SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import signal
import socket
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from gateway import run
from gateway.config import parse_settings
from gateway.run import GC_YOUNG_THRESHOLD, tune_gc

from .conftest import PIXEL_A, destination_yaml, settings_yaml, stored_rows, wait_until
from .fake_graph import FakeGraph


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def wait_for_ready(url: str, process: asyncio.subprocess.Process,
                         seconds: float = 30.0) -> None:
    # Generous: a ready gateway answers at once, but `serve --workers 2` on a busy 2-core
    # machine took 10-21 s to start (each worker imports, opens the store, loads the rules).
    async with aiohttp.ClientSession() as session:
        for _ in range(int(seconds / 0.05)):
            if process.returncode is not None:
                raise AssertionError(f"gateway exited early with {process.returncode}")
            try:
                async with session.get(url) as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientConnectionError:
                pass
            await asyncio.sleep(0.05)
    raise AssertionError(f"gateway did not become ready in {seconds:g} s")


async def test_serve_relays_and_stops_cleanly_on_sigterm(
    tmp_path: Path, fake_graph: FakeGraph
) -> None:
    port = free_port()
    config = tmp_path / "config.yaml"
    config.write_text(settings_yaml(
        tmp_path,
        destination_yaml("main", fake_graph.url, pixel_id=PIXEL_A, access_token="SECRET-TKN"),
        extra=f"server: {{port: {port}}}\n",
    ))
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway", "serve", "--config", str(config),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        base = f"http://127.0.0.1:{port}"
        await wait_for_ready(f"{base}/readyz", process)
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{base}/tr", params={
                "id": PIXEL_A, "ev": "PageView", "eid": "s1", "ud[em]": "who@example.com",
                "dl": "https://shop.example.com/",
            }) as response:
                assert response.status == 200
        [event] = await fake_graph.wait_for_events(1)
        assert event["event_id"] == "s1"
        process.send_signal(signal.SIGTERM)
        output, _ = await asyncio.wait_for(process.communicate(), 20)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode == 0
    log = output.decode()
    assert "destination main: live via" in log
    assert "SECRET-TKN" not in log and "who@example.com" not in log


async def test_operator_endpoints_answer_on_the_admin_listener_not_the_public_port(
    tmp_path: Path, fake_graph: FakeGraph
) -> None:
    port, admin = free_port(), free_port()
    config = tmp_path / "config.yaml"
    config.write_text(settings_yaml(
        tmp_path, destination_yaml("main", fake_graph.url, pixel_id=PIXEL_A),
        extra=f"server: {{port: {port}}}\nadmin: {{listen: '127.0.0.1:{admin}'}}\n",
    ))
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway", "serve", "--config", str(config),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        await wait_for_ready(f"http://127.0.0.1:{port}/readyz", process)
        async with aiohttp.ClientSession() as session:
            async with session.get(f"http://127.0.0.1:{port}/status") as public:
                assert public.status == 403
            async with session.get(f"http://127.0.0.1:{admin}/status") as private:
                assert private.status == 200
                assert (await private.json())["destinations"][0]["name"] == "main"
        process.send_signal(signal.SIGTERM)
        output, _ = await asyncio.wait_for(process.communicate(), 20)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert (f"operator endpoints (/status, /metrics, /dead-letters) on http://127.0.0.1:{admin} "
            "(no key needed)") in output.decode()


async def test_outbox_command_shows_what_would_be_sent(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], aiohttp_client: Any
) -> None:
    from gateway.__main__ import main
    from gateway.app import create_app

    config = tmp_path / "config.yaml"
    config.write_text(settings_yaml(
        tmp_path, destination_yaml("main", "http://127.0.0.1:9", pixel_id=PIXEL_A,
                                   access_token="")))
    settings = parse_settings(config.read_text(), env={})
    client = await aiohttp_client(create_app(settings))
    response = await client.get("/tr", params={"id": PIXEL_A, "ev": "Lead", "eid": "o1",
                                                "dl": "https://a.example/"})
    assert response.status == 200

    def finished() -> bool:
        return [row.state for row in stored_rows(settings)] == ["dry_run"]

    await wait_until(finished)
    await client.close()
    # The CLI runs its own event loop, as it does in a process of its own.
    assert await asyncio.to_thread(main, ["outbox", "--config", str(config), "--payload"]) == 0
    out = capsys.readouterr().out
    assert "main             dry_run    1" in out
    assert f"main dry_run pixel={PIXEL_A} Lead event_id=o1 attempts=1" in out
    assert '"event_name":"Lead"' in out


async def start_serve(config: Path, port: int) -> asyncio.subprocess.Process:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway", "serve", "--config", str(config),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )
    await wait_for_ready(f"http://127.0.0.1:{port}/readyz", process)
    return process


async def test_kill_9_loses_no_acknowledged_hit(tmp_path: Path, fake_graph: FakeGraph) -> None:
    """Hits acknowledged before a kill -9 are delivered after a restart on the same file."""
    port = free_port()
    config = tmp_path / "config.yaml"
    config.write_text(settings_yaml(
        tmp_path,
        destination_yaml("main", fake_graph.url, pixel_id=PIXEL_A, retry_base_seconds=0.05,
                         retry_max_seconds=0.2, timeout=1),
        extra=f"server: {{port: {port}}}\n",
    ).replace("commit_interval_ms: 1}", "commit_interval_ms: 1, lease_seconds: 3}"))
    fake_graph.fail_with(503, 2, "down", times=10**6)  # nothing gets out before the crash
    process = await start_serve(config, port)
    acknowledged: list[str] = []
    try:
        async with aiohttp.ClientSession() as session:

            async def send(n: int) -> None:
                try:
                    async with session.get(f"http://127.0.0.1:{port}/tr", params={
                        "id": PIXEL_A, "ev": "PageView", "eid": f"k{n}",
                        "dl": "https://shop.example.com/",
                    }) as response:
                        if response.status == 200:
                            acknowledged.append(f"k{n}")
                except aiohttp.ClientError:
                    pass  # in flight when the process died: never acknowledged

            sending = [asyncio.create_task(send(n)) for n in range(300)]
            await wait_until(lambda: len(acknowledged) >= 100, timeout=20)
            process.kill()  # SIGKILL mid-load: no cleanup runs
            await process.wait()
            await asyncio.gather(*sending)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    fake_graph.recover()  # Graph is back
    process = await start_serve(config, port)
    try:
        # Rows leased by the dead process come back once storage.lease_seconds has passed;
        # un-leased rows go at once.
        await wait_until(
            lambda: set(acknowledged) <= {e["event_id"] for e in fake_graph.events}, timeout=20
        )
    finally:
        process.send_signal(signal.SIGTERM)
        await asyncio.wait_for(process.wait(), 20)
    # Rows leased when the process died may be sent twice (at least once; Meta deduplicates).


async def test_sighup_reloads_the_config(tmp_path: Path, fake_graph: FakeGraph) -> None:
    port, admin = free_port(), free_port()
    config = tmp_path / "config.yaml"
    text = settings_yaml(
        tmp_path, destination_yaml("main", fake_graph.url, pixel_id=PIXEL_A),
        extra=f"server: {{port: {port}}}\nadmin: {{listen: '127.0.0.1:{admin}'}}\n",
    ) + "    dry_run: true \n"
    config.write_text(text)
    stamp = config.stat()
    process = await start_serve(config, port)
    try:
        async with aiohttp.ClientSession() as session:
            status_url = f"http://127.0.0.1:{admin}/status"
            async with session.get(status_url) as response:
                before = await response.json()
            assert before["destinations"][0]["dry_run"] is True
            # Same size and modification time: only the signal can trigger the reload.
            config.write_text(text.replace("dry_run: true ", "dry_run: false"))
            os.utime(config, ns=(stamp.st_atime_ns, stamp.st_mtime_ns))
            process.send_signal(signal.SIGHUP)

            async def reloaded() -> bool:
                async with session.get(status_url) as response:
                    status = await response.json()
                return status["destinations"][0]["dry_run"] is False

            for _ in range(100):
                if await reloaded():
                    break
                await asyncio.sleep(0.05)
            else:
                raise AssertionError("SIGHUP did not reload the config")
    finally:
        process.send_signal(signal.SIGTERM)
        await asyncio.wait_for(process.wait(), 20)
    assert process.returncode == 0


@pytest.mark.timeout(120)
async def test_several_workers_share_the_port_and_relay_each_event_once(
    tmp_path: Path, fake_graph: FakeGraph
) -> None:
    port, admin = free_port(), free_port()
    config = tmp_path / "config.yaml"
    config.write_text(settings_yaml(
        tmp_path, destination_yaml("main", fake_graph.url, pixel_id=PIXEL_A),
        extra=f"server: {{port: {port}}}\nadmin: {{listen: '127.0.0.1:{admin}'}}\n",
    ))
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway", "serve", "--config", str(config), "--workers", "2",
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    workers_seen: set[int] = set()
    whole_seen_by: set[int] = set()  # workers whose /status showed both, and the relay state
    try:
        await wait_for_ready(f"{base}/readyz", process)
        # A new connection per request, so the kernel spreads them over both workers.
        connector = aiohttp.TCPConnector(force_close=True)
        async with aiohttp.ClientSession(connector=connector) as session:

            async def both_workers_answer() -> bool:
                # Both workers answer on the admin listener too (SO_REUSEPORT).
                async with session.get(f"http://127.0.0.1:{admin}/status") as response:
                    status = await response.json()
                index = status["worker"]["index"]
                workers_seen.add(index)
                # Each shows the whole gateway: both processes (from their reports) and the
                # relay state of worker 0, the one that relays.
                if (sorted((p["worker"], p["gone"]) for p in status["processes"])
                        == [(0, False), (1, False)]
                        and status["destinations"][0]["state"] == "active"):
                    whole_seen_by.add(index)
                return workers_seen == whole_seen_by == {0, 1}

            async with asyncio.timeout(30):  # the second worker may still be starting
                while not await both_workers_answer():
                    await asyncio.sleep(0.05)
            for n in range(40):
                async with session.get(f"{base}/tr", params={
                    "id": PIXEL_A, "ev": "PageView", "eid": f"w{n}",
                    "dl": "https://shop.example.com/"}) as response:
                    assert response.status == 200
        events = await fake_graph.wait_for_events(40, timeout=20)
    finally:
        process.send_signal(signal.SIGTERM)
        await asyncio.wait_for(process.wait(), 30)
    assert workers_seen == whole_seen_by == {0, 1}
    assert sorted(e["event_id"] for e in events) == sorted(f"w{n}" for n in range(40))
    assert process.returncode == 0


def test_serve_tunes_the_collector_once_start_up_is_done(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    served: list[web.Application] = []
    monkeypatch.setattr(run.web, "run_app", lambda app, **options: served.append(app))
    run.serve(parse_settings(settings_yaml(
        tmp_path, destination_yaml("main", "http://127.0.0.1:9", pixel_id=PIXEL_A),
        extra="admin: {listen: ''}\n"), env={}))
    [app] = served
    assert app.on_startup[-1] is tune_gc  # after the contexts that build the long-lived parts


async def test_start_up_objects_are_frozen_out_of_garbage_collection() -> None:
    before = gc.get_threshold()
    try:
        await tune_gc(web.Application())
        assert gc.get_freeze_count() > 1000  # everything imported and built so far
        assert gc.get_threshold() == (GC_YOUNG_THRESHOLD, before[1], before[2])
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)


def children_of(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rpartition(")")[2].split()[1]) == pid:
                found.append(int(entry.name))
    return found


@pytest.mark.timeout(60)
async def test_workers_stop_when_their_supervisor_is_killed(
    tmp_path: Path, fake_graph: FakeGraph
) -> None:
    port = free_port()
    config = tmp_path / "config.yaml"
    config.write_text(settings_yaml(
        tmp_path, destination_yaml("main", fake_graph.url, pixel_id=PIXEL_A),
        extra=f"server: {{port: {port}}}\n"))
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway", "serve", "--config", str(config), "--workers", "2",
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )
    workers: list[int] = []
    try:
        await wait_for_ready(f"http://127.0.0.1:{port}/readyz", process)
        await wait_until(lambda: len(children_of(process.pid)) == 2, timeout=20)
        workers = children_of(process.pid)
        process.kill()  # the supervisor, by kill -9: no chance to forward anything
        await process.wait()
        await wait_until(lambda: not any(Path(f"/proc/{pid}").exists() for pid in workers),
                         timeout=20)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        for pid in workers:  # orphans left by a failure
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
