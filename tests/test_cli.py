"""The command line as a person meets it: help, version, refused arguments, a busy port, a
closed pipe, following a running gateway's outbox."""

from __future__ import annotations

import asyncio
import contextlib
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from gateway.__main__ import main
from gateway.config import load_settings
from gateway.storage import STATES, OutboxEntry, open_outbox

from .conftest import (
    PIXEL_A,
    GatewayFactory,
    destination_yaml,
    settings_yaml,
    stored_rows,
    wait_until,
)
from .fake_graph import FakeGraph
from .test_rules_live import hit
from .test_serve import free_port


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gateway", *args], capture_output=True,
                          text=True, timeout=60, cwd=cwd, check=False)


def test_bare_command_prints_help_and_version_is_known(
    capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([]) == 2
    out = capsys.readouterr().out
    assert out.startswith("usage: tag-gateway") and "serve" in out and "dead-letters" in out
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0
    assert capsys.readouterr().out.startswith("tag-gateway ")


def test_an_unknown_state_is_refused_with_the_valid_ones(
    capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as done:
        main(["outbox", "--state", "bogus"])
    assert done.value.code == 2
    err = capsys.readouterr().err
    assert "invalid choice: 'bogus'" in err and all(state in err for state in STATES)


def test_a_busy_port_is_one_line_and_exit_2(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = tmp_path / "config.yaml"
        config.write_text(settings_yaml(tmp_path, destination_yaml(
            "main", "http://127.0.0.1:9", pixel_id="1"), extra=f"server: {{port: {port}}}\n"))
        result = run("serve", "--config", str(config))
    assert result.returncode == 2
    assert (f"port {port} on 127.0.0.1 is already in use (another tag-gateway?); choose "
            "another with server.port in the config or GATEWAY_PORT") in result.stderr
    assert "Traceback" not in result.stderr


def test_a_busy_admin_port_is_one_line_and_exit_2(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = tmp_path / "config.yaml"
        config.write_text(settings_yaml(tmp_path, destination_yaml(
            "main", "http://127.0.0.1:9", pixel_id="1"),
            extra=f"admin: {{listen: '127.0.0.1:{port}'}}\nserver: {{port: {free_port()}}}\n"))
        result = run("serve", "--config", str(config))
    assert result.returncode == 2
    assert (f"127.0.0.1:{port} is already in use (another tag-gateway?); choose another with "
            "admin.listen in the config") in result.stderr
    assert "Traceback" not in result.stderr


async def test_a_file_of_the_other_sqlite_engine_is_refused_in_one_message(
    tmp_path: Path
) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(settings_yaml(tmp_path, destination_yaml(
        "main", "http://127.0.0.1:9", pixel_id="1"), extra=f"server: {{port: {free_port()}}}\n"))
    settings = load_settings(config, env={})
    await (await open_outbox(settings.storage, clock=time.time)).close()  # the sqlite engine's
    config.write_text(config.read_text().replace("storage: {", "storage: {engine: sqlite-log, "))
    for command in ("serve", "outbox"):
        result = await asyncio.to_thread(run, command, "--config", str(config))
        assert result.returncode == 1
        assert ("tag-gateway: the outbox file was written by another storage engine (sqlite, "
                "or another program): sqlite-log does not convert it.") in result.stderr
        assert "Traceback" not in result.stderr


async def test_a_reader_that_stops_early_is_no_crash(tmp_path: Path) -> None:
    # `tag-gateway outbox | head`: the pipe closes while rows are still being printed.
    config = tmp_path / "config.yaml"
    config.write_text(settings_yaml(tmp_path, destination_yaml(
        "main", "http://127.0.0.1:9", pixel_id="1")))
    settings = load_settings(config, env={})
    outbox = await open_outbox(settings.storage, clock=time.time)
    await outbox.enqueue([OutboxEntry("main", "1", "", "PageView", f"event-{n}", 1, b"{}")
                          for n in range(3000)])
    await outbox.close()
    reader = subprocess.Popen(["head", "-c", "100"], stdin=subprocess.PIPE,
                              stdout=subprocess.DEVNULL)
    writer = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "gateway", "outbox", "--config", str(config),
                         "--limit", "3000"],
        stdout=reader.stdin, stderr=subprocess.PIPE, text=True, timeout=60, check=False)
    assert reader.stdin is not None
    reader.stdin.close()
    reader.wait(timeout=10)
    assert writer.returncode == 0 and "Traceback" not in writer.stderr


@pytest.mark.parametrize("command", [["serve"], ["check"], ["test"], ["outbox"], ["dead-letters"],
                                     ["dead-letters", "list"], ["dead-letters", "replay"],
                                     ["keys"], ["keys", "new"]])
def test_every_subcommand_says_what_it_does(
    command: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        main([*command, "--help"])
    usage, _, rest = capsys.readouterr().out.partition("\n\n")
    assert usage.startswith("usage: tag-gateway") and rest.split("\n")[0][:1].isupper()


def gateway_with_rules(tmp_path: Path, graph_url: str) -> Path:
    """A config file whose rules drop bots, for one destination on `graph_url`."""
    folder = tmp_path / "rules"
    folder.mkdir()
    (folder / "10-bots.yaml").write_text(
        "version: 1\nrules:\n  - name: drop bots\n    when: {context.ua.is_bot: true}\n"
        "    drop: true\n")
    config = tmp_path / "config.yaml"
    config.write_text(settings_yaml(tmp_path, destination_yaml("main", graph_url,
                                                               pixel_id=PIXEL_A),
                                    extra=f"rules: {{path: {folder}}}\n"))
    return config


def _as_from_a_terminal() -> None:
    # A shell without job control starts background jobs with SIGINT ignored, and a child
    # inherits that: Ctrl-C at a terminal reaches a process whose SIGINT is the default.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


async def follow(config: Path, *more: str, **streams: Any) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway", "outbox", "--follow", "--config", str(config), *more,
        preexec_fn=_as_from_a_terminal,
        **{"stdout": asyncio.subprocess.PIPE, "stderr": asyncio.subprocess.PIPE, **streams})


async def lines_until(process: asyncio.subprocess.Process, text: str, seen: list[str]) -> None:
    assert process.stdout is not None
    async with asyncio.timeout(15):
        while not any(text in line for line in seen):
            line = (await process.stdout.readline()).decode()
            assert line, f"--follow ended early: {seen}"
            seen.append(line)


async def test_follow_tells_a_running_gateway_s_rows_changes_and_drops_until_ctrl_c(
    tmp_path: Path, fake_graph: FakeGraph, start_gateway: GatewayFactory
) -> None:
    config = gateway_with_rules(tmp_path, fake_graph.url)
    settings = load_settings(config, env={})
    client = await start_gateway(settings)
    await hit(client, eid="before")  # already there: listed first, not followed
    await wait_until(lambda: [r.state for r in stored_rows(settings)] == ["delivered"])
    process = await follow(config)
    seen: list[str] = []
    try:
        await lines_until(process, "following", seen)
        assert any("event_id=before" in line for line in seen)
        fake_graph.fail_with(400, 100, "Invalid parameter")
        await hit(client, eid="refused", **{"ud[em]": "jane.doe@example.com"})
        await fake_graph.wait_for_requests(2)
        await hit(client, ua="Googlebot/2.1 (+http://www.google.com/bot.html)", eid="bot")
        await hit(client, eid="sent", **{"ud[em]": "jane.doe@example.com"})
        await lines_until(process, "event_id=sent attempts=1", seen)
        await lines_until(process, "by rule 'drop bots'", seen)
    finally:
        process.send_signal(signal.SIGINT)
        try:
            _, err = await asyncio.wait_for(process.communicate(), 30)
        except TimeoutError:
            process.kill()
            _, err = await process.communicate()
            raise AssertionError(f"--follow ignored Ctrl-C; its stderr: {err.decode()!r}, "
                                 f"stdout: {seen}") from None
    followed = "".join(seen[seen.index(next(s for s in seen if "following" in s)):])
    assert re.search(r"stored  #2 main pending pixel=1+ PageView event_id=refused", followed)
    assert re.search(r"changed #2 main dead \(invalid\) .*event_id=refused attempts=1 "
                     r"last_error='.*Invalid parameter", followed)
    assert re.search(r"stored  #3 main pending .*event_id=sent", followed)
    assert re.search(r"changed #3 main delivered .*event_id=sent attempts=1", followed)
    assert "dropped 1 'PageView' (browser) by rule 'drop bots'" in followed
    assert "before" not in followed and "inflight" not in followed
    assert "jane" not in followed  # user_data is never shown without --payload
    assert process.returncode == 0 and b"Traceback" not in err, err


async def test_follow_into_a_pipe_that_closes_ends_quietly(
    tmp_path: Path, fake_graph: FakeGraph, start_gateway: GatewayFactory
) -> None:
    # `tag-gateway outbox --follow | head -n 1`: the next line written after head is gone ends it.
    config = gateway_with_rules(tmp_path, fake_graph.url)
    client = await start_gateway(load_settings(config, env={}))
    reader = subprocess.Popen(["head", "-n", "1"], stdin=subprocess.PIPE,
                              stdout=subprocess.DEVNULL)
    assert reader.stdin is not None
    process = await follow(config, stdout=reader.stdin)
    reader.stdin.close()
    await asyncio.to_thread(reader.wait, 15)
    async with asyncio.timeout(15):
        while process.returncode is None:
            await hit(client)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(process.wait(), 0.5)
    assert process.stderr is not None
    err = await process.stderr.read()
    assert process.returncode == 0 and b"Traceback" not in err, err
