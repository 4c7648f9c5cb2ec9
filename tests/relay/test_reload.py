"""Config reloads while serving: what applies at once, what waits for a restart (and says so),
and what the rest of the gateway sees of it."""

from __future__ import annotations

import logging
import re
import time
from pathlib import Path
from typing import Any

import pytest

from gateway import appkeys
from gateway.app import create_app
from gateway.config import load_settings

from ..conftest import (
    PIXEL_A,
    PIXEL_B,
    destination_yaml,
    operator_listener,
    settings_yaml,
    wait_until,
)
from ..conftest import outbox_rows as rows
from ..fake_graph import FakeGraph


async def hit(client: Any, pixel: str, **params: str) -> Any:
    params.setdefault("dl", "https://shop.example.com/")
    return await client.get("/tr", params={"id": pixel, "ev": "PageView", **params},
                            headers={"User-Agent": "Mozilla/5.0"})


async def test_a_paused_destination_removed_leaves_no_alerting_metrics(
    tmp_path: Path, fake_graph: FakeGraph, aiohttp_client: Any
) -> None:
    config = tmp_path / "config.yaml"
    main = destination_yaml("main", fake_graph.url, pixel_id=PIXEL_A)
    other = destination_yaml("other", fake_graph.url, pixel_id=PIXEL_B)
    config.write_text(settings_yaml(tmp_path, main, other))
    client = operator_listener(await aiohttp_client(create_app(load_settings(config, env={}))))
    fake_graph.fail_with(401, 190, "Session has expired")
    assert (await hit(client, PIXEL_A, eid="a1")).status == 200
    [worker] = [w for w in client.app[appkeys.RELAYS] if w.name == "main"]
    await wait_until(lambda: worker.state == "paused")
    metrics = await (await client.get("/metrics")).text()
    assert 'gateway_destination_token_invalid{destination="main"} 1.0' in metrics
    config.write_text(settings_yaml(tmp_path, other))
    assert await client.app[appkeys.RELOADER].reload()
    metrics = await (await client.get("/metrics")).text()
    assert 'destination="main"' not in "\n".join(
        line for line in metrics.splitlines()
        if line.startswith(("gateway_destination_", "gateway_queue_")))
    assert 'gateway_destination_token_invalid{destination="other"} 0.0' in metrics


async def test_a_live_destination_never_turns_dry_by_reload_and_the_log_says_why(
    tmp_path: Path, fake_graph: FakeGraph, aiohttp_client: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="gateway")
    config = tmp_path / "config.yaml"
    text = settings_yaml(tmp_path, destination_yaml("main", fake_graph.url, pixel_id=PIXEL_A))
    config.write_text(text)
    client = await aiohttp_client(create_app(load_settings(config, env={})))
    # An emptied token (an unset variable) and a new listen port arrive in one reload.
    config.write_text(text.replace("TEST-TOKEN-main", "").replace(
        "destinations:", "server: {port: 9999}\ndestinations:"))
    assert await client.app[appkeys.RELOADER].reload()
    assert ("config changes that need a restart to apply: server (other than allowed_origins), "
            "destinations[main] (live to dry run)") in caplog.text
    assert (await hit(client, PIXEL_A, eid="a1")).status == 200
    [request] = await fake_graph.wait_for_requests(1)
    assert request.query == {"access_token": "TEST-TOKEN-main"}  # still live, old token
    await wait_until(lambda: [r["state"] for r in rows(client.app[appkeys.SETTINGS])] == [
        "delivered"])


async def test_a_config_reload_retests_the_rules_against_the_new_destinations(
    tmp_path: Path, fake_graph: FakeGraph, aiohttp_client: Any
) -> None:
    # A rule naming a destination the config does not have yet is refused; once the config
    # adds it, the rules are tested again at once and go live.
    folder = tmp_path / "rules"
    folder.mkdir()
    config = tmp_path / "config.yaml"
    main = destination_yaml("main", fake_graph.url, pixel_id=PIXEL_A)
    config.write_text(settings_yaml(tmp_path, main, extra="rules: {path: rules}\n"))
    client = operator_listener(await aiohttp_client(create_app(load_settings(config, env={}))))
    rules = client.app[appkeys.RULES]
    (folder / "10-route.yaml").write_text(
        "version: 1\nrules:\n  - name: leads to extra\n    when: {event_name: Lead}\n"
        "    send_to_destination_only: [extra]\n")
    assert not await rules.reload()
    assert "no destination named 'extra'" in (rules.last_error or "")
    extra = destination_yaml("extra", fake_graph.url, pixel_id=PIXEL_A)
    config.write_text(settings_yaml(tmp_path, main, extra, extra="rules: {path: rules}\n"))
    assert await client.app[appkeys.RELOADER].reload()
    await wait_until(lambda: rules.last_error is None and len(rules.current.rules) == 1)
    assert (await hit(client, PIXEL_A, ev="Lead", eid="l1")).status == 200
    await wait_until(lambda: [(r["destination"], r["state"]) for r in rows(
        client.app[appkeys.SETTINGS])] == [("extra", "delivered")])
    # Removing it again: the rules that name it are refused and /status says why.
    config.write_text(settings_yaml(tmp_path, main, extra="rules: {path: rules}\n"))
    assert await client.app[appkeys.RELOADER].reload()
    await wait_until(lambda: rules.last_error is not None)
    status = await (await client.get("/status")).json()
    assert "no destination named 'extra'" in status["rules"]["last_error"]
    for section in ("config", "rules"):  # times for people: ISO 8601, UTC
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", status[section]["loaded_at"])


async def test_allowed_origins_and_access_keys_apply_on_reload_and_the_rest_is_listed(
    tmp_path: Path, fake_graph: FakeGraph, aiohttp_client: Any
) -> None:
    """A page's origin and a backend's key work as soon as the config is reloaded; changes
    that need a restart are named on /status."""
    import hashlib

    config = tmp_path / "config.yaml"
    main = destination_yaml("main", fake_graph.url, pixel_id=PIXEL_A)

    def write(origins: str, key: str, port: int = 8080) -> None:
        digest = hashlib.sha256(key.encode()).hexdigest()
        config.write_text(settings_yaml(tmp_path, main, extra=(
            f"server: {{port: {port}, allowed_origins: [{origins}]}}\n"
            f"access_keys: [{{name: backend, sha256: {digest}, pixels: ['{PIXEL_A}']}}]\n")))

    write("'https://old.example.com'", "old-key-0123456789")
    client = operator_listener(await aiohttp_client(create_app(load_settings(config, env={}))))
    page = {"Origin": "https://shop.example.com", "User-Agent": "Mozilla/5.0"}

    async def from_page() -> int:
        response = await client.get("/tr", params={
            "id": PIXEL_A, "ev": "PageView", "dl": "https://shop.example.com/"}, headers=page)
        return int(response.status)

    async def with_key(key: str) -> int:
        response = await client.post(f"/capi/{PIXEL_A}/events", json={
            "accessKey": key, "data": [{
                "event_name": "Lead", "event_time": int(time.time()), "action_source": "website",
                "event_source_url": "https://shop.example.com/",
                "user_data": {"client_user_agent": "Mozilla/5.0",
                              "client_ip_address": "203.0.113.9"}}]})
        return int(response.status)

    assert await from_page() == 403
    assert await with_key("new-key-0123456789") == 401
    write("'https://shop.example.com'", "new-key-0123456789", port=8081)
    assert await client.app[appkeys.RELOADER].reload()
    assert await from_page() == 200
    assert await with_key("new-key-0123456789") == 202
    assert await with_key("old-key-0123456789") == 401
    status = await (await client.get("/status")).json()
    assert status["config"]["waiting_for_restart"] == ["server (other than allowed_origins)"]
