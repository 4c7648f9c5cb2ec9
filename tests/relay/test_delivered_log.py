"""Each batch a platform accepts is one INFO line, shaped like the dry-run line, with the
platform's answer in words and nothing secret or personal."""

from __future__ import annotations

import logging

import pytest

from gateway.destinations.meta_capi.sender import answered
from gateway.settings import Settings

from ..conftest import GatewayFactory, wait_until
from ..fake_graph import FakeGraph
from ..test_rules_live import hit


async def test_a_delivered_batch_is_one_line_with_meta_s_answer(
    one_destination: Settings, fake_graph: FakeGraph, start_gateway: GatewayFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="gateway")
    client = await start_gateway(one_destination)
    await hit(client, eid="e1", **{"ud[em]": "jane.doe@example.com", "cd[value]": "4242.5"})
    await fake_graph.wait_for_events(1)

    def told() -> list[str]:
        return [r.getMessage() for r in caplog.records if r.getMessage().startswith("delivered")]

    await wait_until(lambda: len(told()) == 1)
    [line] = told()
    [request] = fake_graph.accepted
    assert line == (f"delivered: destination main sent POST 1 events (PageView x1) to "
                    f"{fake_graph.url}/{request.api_version}/{request.pixel_id}/events; Meta "
                    "answered events_received 1, fbtrace_id FakeTrace")
    assert not any(secret in line for secret in ("TEST-TOKEN", "jane", "4242", "e1"))


@pytest.mark.parametrize(("raw", "words"), [
    (b'{"events_received": 3, "messages": ["x@y.z"], "fbtrace_id": "AbC_1"}',
     "events_received 3, 1 message, fbtrace_id AbC_1"),
    (b'{"events_received": true, "fbtrace_id": "a b\\nforged line"}',
     "no events_received in the answer"),
    (b"<html>proxy</html>", "no events_received in the answer"),
])
def test_meta_s_answer_in_words_keeps_counts_and_trace_only(raw: bytes, words: str) -> None:
    assert answered(raw) == words
