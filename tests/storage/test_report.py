"""`tag-gateway outbox` and `tag-gateway dead-letters` read the store through the protocol and
never create one."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from gateway.__main__ import main
from gateway.config import parse_settings
from gateway.storage import OutboxEntry, open_outbox

from ..conftest import PIXEL_A, FakeClock, destination_yaml, settings_yaml


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(settings_yaml(tmp_path, destination_yaml("main", "http://127.0.0.1:9",
                                                             pixel_id=PIXEL_A)))
    return path


@pytest.mark.parametrize(("command", "message"), [
    (["outbox"], "no outbox yet (the gateway creates it on first start)"),
    (["dead-letters", "list"], "no outbox yet"),
    (["dead-letters", "replay"], "no outbox yet"),
])
def test_commands_on_a_missing_store_say_so_and_create_nothing(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], command: list[str],
    message: str,
) -> None:
    assert main([*command, "--config", str(config)]) == 1
    assert capsys.readouterr().out == f"{tmp_path / 'gateway.db'}: {message}\n"
    assert not (tmp_path / "gateway.db").exists()


def fill(config: Path) -> None:
    """Two rows of `main`: one delivered, one refused by Meta; three events dropped by rules."""
    storage = parse_settings(config.read_text(), env={}).storage

    async def run() -> None:
        outbox = await open_outbox(storage, clock=FakeClock())
        try:
            for rule, source, name in [("drop bots", "browser", "PageView")] * 2 + [
                    ("staging hosts", "server", "Purchase")]:
                outbox.count_drop(rule, source, name)
            await outbox.enqueue([OutboxEntry("main", PIXEL_A, "", "Lead", f"e{n}", 1, b"{}")
                                  for n in (1, 2)])
            delivered, refused = (await outbox.claim("main", 10)).rows
            await outbox.finish([delivered])
            await outbox.dead_letter([refused], "invalid", "HTTP 400: bad value", "TRACE")
        finally:
            await outbox.close()

    asyncio.run(run())


def test_outbox_prints_counts_drops_per_rule_and_newest_rows(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fill(config)
    assert main(["outbox", "--config", str(config), "--state", "dead", "--payload"]) == 0
    assert capsys.readouterr().out == (
        f"outbox {tmp_path / 'gateway.db'}\n"
        "  main             dead       1\n"
        "  main             delivered  1\n"
        "\ndropped by rules since 2027-01-15T08:00:00Z (not stored, not sent):\n"
        "  'drop bots'              browser  'PageView'           2\n"
        "  'staging hosts'          server   'Purchase'           1\n"
        "\nnewest 1 rows in state dead:\n"
        f"  #2 main dead (invalid) pixel={PIXEL_A} Lead event_id=e2 attempts=1 "
        "last_error='HTTP 400: bad value'\n"
        "    {}\n"
    )


def test_dead_letters_are_listed_and_replayed(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fill(config)
    assert main(["dead-letters", "list", "--config", str(config), "--format", "json"]) == 0
    [letter] = json.loads(capsys.readouterr().out)
    assert (letter["event_id"], letter["reason"], letter["fbtrace_id"]) == ("e2", "invalid",
                                                                            "TRACE")
    assert main(["dead-letters", "replay", "--config", str(config)]) == 0
    assert capsys.readouterr().out == "re-queued 1 dead letter\n"
    assert main(["dead-letters", "list", "--config", str(config)]) == 0
    assert capsys.readouterr().out == "no dead letters\n"
