"""A newcomer whose events a rule drops can tell: one log line per rule at most every minute,
with the count since the last one, naming the rule, the event and its source and nothing the
visitor sent; /status counts them per rule."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestServer

from gateway.app import create_app
from gateway.drops import LOG_INTERVAL

from ..conftest import FakeClock, operator_listener, wait_until
from ..fake_graph import FakeGraph
from ..test_rules_live import hit, with_rules

BOT = "Googlebot/2.1 (+http://www.google.com/bot.html)"
PERSONAL = {"ud[em]": "jane.doe@example.com", "ud[ph]": "+33612345678",
            "cd[value]": "4242.5", "dl": "https://shop.example.com/?email=jane.doe@example.com"}


async def test_drops_are_told_once_per_rule_per_interval_with_the_count(
    tmp_path: Path, fake_graph: FakeGraph, aiohttp_client: Any, caplog: pytest.LogCaptureFixture
) -> None:
    clock = FakeClock()
    client = operator_listener(await aiohttp_client(TestServer(create_app(
        with_rules(tmp_path, fake_graph.url), clock=clock))))
    caplog.set_level(logging.INFO)

    def told() -> list[str]:
        return [r.getMessage() for r in caplog.records if r.name == "gateway.drops"]

    for n in range(3):
        assert (await hit(client, ua=BOT, eid=f"bot-{n}", **PERSONAL)).status == 200
    [first] = told()
    assert first.startswith("rule 'drop bots' dropped event 'PageView' (browser): nothing is "
                            "stored or sent; `tag-gateway outbox` counts drops per rule")
    clock.now += LOG_INTERVAL - 1
    assert (await hit(client, ua=BOT, ev="Lead", **PERSONAL)).status == 200
    assert len(told()) == 1  # still within the interval: counted, not told
    clock.now += 1
    assert (await hit(client, ua=BOT, ev="Purchase", **PERSONAL)).status == 200
    await wait_until(lambda: len(told()) == 2)
    assert told()[1] == ("rule 'drop bots' dropped 4 events in the last 60s, the latest "
                         "'Purchase' (browser)")
    assert (await hit(client, eid="kept")).status == 200  # its commit carries the drop counts
    status = await (await client.get("/status")).json()
    assert status["rules"]["dropped_last_24h"] == {"drop bots": 5}
    # The gateway's own lines (aiohttp's test server keeps an access log the gateway turns off)
    logged = " ".join(r.getMessage() for r in caplog.records if r.name.startswith("gateway"))
    assert not any(value in logged for value in ("jane", "33612345678", "4242", "bot-"))
