"""The command line as a person meets it: help, version, refused arguments, a busy port, a
closed pipe."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gateway.__main__ import main
from gateway.config import load_settings
from gateway.storage import STATES, OutboxEntry, open_outbox

from .conftest import destination_yaml, settings_yaml
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
