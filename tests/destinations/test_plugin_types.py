"""The destinations seam: a type is one module registered by its config `type`; the config
reads its options with located errors, the pipeline validates each event per destination type,
and the relay sends through the type with everything generic (batching, retries, pauses, dry
run) done once."""

from __future__ import annotations

import asyncio
import hashlib
import logging
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from gateway import appkeys
from gateway.__main__ import main
from gateway.app import create_app
from gateway.config import load_settings, parse_settings
from gateway.destinations import TYPES
from gateway.errors import ConfigError

from ..conftest import (
    PIXEL_A,
    PIXEL_B,
    GatewayFactory,
    destination_yaml,
    graph_server,
    settings_yaml,
    type_yaml,
    wait_until,
)
from ..conftest import outbox_rows as rows
from ..fake_graph import FakeGraph
from .echo_type import ECHO


@pytest.fixture
def echo_type(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(TYPES, "echo", ECHO)


class EchoServer:
    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.secrets: list[str] = []
        self.statuses: list[int] = []  # scripted answers, then 200
        self.app = web.Application()
        self.app.router.add_post("/echo", self.echo)

    async def echo(self, request: web.Request) -> web.Response:
        self.bodies.append(await request.json())
        self.secrets.append(request.headers.get("X-Secret", ""))
        return web.json_response({}, status=self.statuses.pop(0) if self.statuses else 200)


@pytest.fixture
async def echo_server(aiohttp_server: Any) -> tuple[EchoServer, str]:
    server = EchoServer()
    running = await aiohttp_server(server.app)
    return server, str(running.make_url("/echo"))


def echo_yaml(name: str, url: str, **fields: Any) -> str:
    return type_yaml(name, **{"type": "echo", "url": url, "secret": "S3CRET-" + name,
                              **fields})


def test_an_unknown_type_is_a_located_error_naming_the_known_types(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(settings_yaml(tmp_path, "  - name: main\n    type: nosuch\n"
                                              "    pixel_id: '1'"))
    assert main(["check", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert ("config.yaml:6:11: destinations[0].type: must be one of " + ", ".join(TYPES)
            + ", got 'nosuch'") in err
    assert "pixel_id" not in err  # the type's keys mean nothing without a known type


def test_every_problem_is_reported_even_beside_an_unknown_type(tmp_path: Path) -> None:
    text = settings_yaml(tmp_path, "  - name: main\n    type: meta_capi",
                         "  - name: main\n    type: nosuch")
    with pytest.raises(ConfigError) as caught:
        parse_settings(text, filename="config.yaml", env={})
    assert [str(p) for p in caught.value.problems] == [
        "config.yaml:7:11: destinations[1].name: is used by another destination; names must be "
        "unique, got 'main'",
        "config.yaml:8:11: destinations[1].type: must be one of " + ", ".join(TYPES)
        + ", got 'nosuch'"]


def test_a_types_options_are_read_by_the_type(tmp_path: Path, echo_type: None) -> None:
    good = settings_yaml(tmp_path, echo_yaml("hook", "https://echo.example/in"))
    [destination] = parse_settings(good, env={}).destinations
    assert destination.type == "echo" and destination.options.url == "https://echo.example/in"
    assert destination.batch_size == ECHO.max_batch_size  # the type's limit is the default
    assert "S3CRET" not in repr(destination)
    bad = settings_yaml(tmp_path, echo_yaml("hook", "ftp://x", secret="no way!", pixel_id="1",
                                            batch_size=51))
    with pytest.raises(ConfigError) as caught:
        parse_settings(bad, filename="config.yaml", env={})
    problems = [str(p) for p in caught.value.problems]
    assert any("destinations[0].url: must be an http(s) URL, got 'ftp://x'" in p
               for p in problems)
    assert any("destinations[0].secret: must be letters, digits and '-', got (hidden)" in p
               for p in problems)
    assert any("destinations[0].batch_size: must be a whole number between 1 and 50 events "
               "(Echo's limit is 50), got 51" in p for p in problems)
    assert any("destinations[0].pixel_id: unknown key" in p and "valid keys here:" in p
               and "secret" in p and "url" in p for p in problems)
    assert "no way" not in "\n".join(problems)


async def test_an_event_meta_refuses_still_reaches_another_type(
    tmp_path: Path, echo_type: None, echo_server: tuple[EchoServer, str],
    fake_graph: FakeGraph, start_gateway: GatewayFactory,
) -> None:
    server, url = echo_server
    settings = parse_settings(settings_yaml(
        tmp_path, destination_yaml("meta", fake_graph.url, pixel_id=PIXEL_A),
        echo_yaml("hook", url, accepts=[PIXEL_A])), env={})
    client = await start_gateway(settings)
    # No page URL: Meta refuses website events without one; the echo type does not care.
    response = await client.get("/tr", params={"id": PIXEL_A, "ev": "Lead", "eid": "l1"},
                                headers={"User-Agent": "Mozilla/5.0"})
    assert response.status == 200
    await wait_until(lambda: len(server.bodies) == 1)
    assert [e["event_id"] for e in server.bodies[0]["events"]] == ["l1"]
    assert server.secrets == ["S3CRET-hook"]
    await wait_until(lambda: sorted((r["destination"], r["state"]) for r in rows(settings)) == [
        ("hook", "delivered"), ("meta", "invalid")])
    [meta_row] = [r for r in rows(settings) if r["destination"] == "meta"]
    assert "website events need event_source_url" in meta_row["last_error"]
    assert fake_graph.requests == []


async def test_an_event_every_type_refuses_is_invalid_and_refused(
    tmp_path: Path, echo_type: None, echo_server: tuple[EchoServer, str],
    fake_graph: FakeGraph, start_gateway: GatewayFactory,
) -> None:
    # No destination accepts PIXEL_B; both configured types would refuse the event anyway.
    _, url = echo_server
    settings = parse_settings(settings_yaml(
        tmp_path, destination_yaml("meta", fake_graph.url, pixel_id=PIXEL_A),
        echo_yaml("hook", url, accepts=[PIXEL_A])), env={})
    client = await start_gateway(settings)
    response = await client.get("/tr", params={"id": PIXEL_B, "ev": "Refused"},
                                headers={"User-Agent": "Mozilla/5.0"})
    assert response.status == 400
    reasons = (await response.json())["reasons"]
    assert "website events need event_source_url" in reasons
    assert "echo refuses events named Refused" in reasons
    [row] = rows(settings)
    assert (row["destination"], row["state"]) == ("", "invalid")
    # One type taking it is enough for it to be merely unrouted.
    response = await client.get("/tr", params={"id": PIXEL_B, "ev": "Lead"},
                                headers={"User-Agent": "Mozilla/5.0"})
    assert response.status == 200
    assert [(r["destination"], r["state"]) for r in rows(settings)][1] == ("", "unrouted")


async def test_a_worker_restarted_for_a_new_type_finishes_its_batch_with_the_old_one(
    tmp_path: Path, echo_type: None, echo_server: tuple[EchoServer, str],
    aiohttp_server: Any, aiohttp_client: Any,
) -> None:
    server, url = echo_server
    answer = asyncio.Event()
    graph_requests: list[str] = []

    async def graph(request: web.Request) -> web.Response:
        graph_requests.append(request.query["access_token"])
        await answer.wait()  # the batch is in flight while the type changes
        return web.json_response({"events_received": 1})

    graph_url = await graph_server(aiohttp_server, graph)
    config = tmp_path / "config.yaml"
    config.write_text(settings_yaml(tmp_path, destination_yaml(
        "main", graph_url, pixel_id=PIXEL_A, timeout=10)))
    client = await aiohttp_client(create_app(load_settings(config, env={})))
    assert (await client.get("/tr", params={"id": PIXEL_A, "ev": "Lead", "eid": "old",
                                            "dl": "https://shop.example/"},
                             headers={"User-Agent": "Mozilla/5.0"})).status == 200
    await wait_until(lambda: len(graph_requests) == 1)
    [old_worker] = client.app[appkeys.RELAYS]
    config.write_text(settings_yaml(tmp_path, echo_yaml("main", url, accepts=[PIXEL_A])))
    assert await client.app[appkeys.RELOADER].reload()
    [new_worker] = client.app[appkeys.RELAYS]
    assert new_worker is not old_worker and old_worker.destination.settings.type == "meta_capi"
    answer.set()
    await wait_until(lambda: not old_worker.running)
    assert (await client.get("/tr", params={"id": PIXEL_A, "ev": "Lead", "eid": "new"},
                             headers={"User-Agent": "Mozilla/5.0"})).status == 200
    await wait_until(lambda: len(server.bodies) == 1)
    assert [e["event_id"] for e in server.bodies[0]["events"]] == ["new"]
    assert graph_requests == ["TEST-TOKEN-main"]
    await wait_until(lambda: [(r["event_id"], r["state"]) for r in rows(
        load_settings(config, env={}))] == [("old", "delivered"), ("new", "delivered")])


async def test_the_type_gets_the_hits_click_ids_at_send_time(
    tmp_path: Path, echo_type: None, echo_server: tuple[EchoServer, str],
    start_gateway: GatewayFactory,
) -> None:
    server, url = echo_server
    settings = parse_settings(settings_yaml(tmp_path, echo_yaml("hook", url)), env={})
    client = await start_gateway(settings)
    page = "https://shop.example.com/?utm_source=tt&ttclid=E.C.P.abc&gclid=Cj0-x_1"
    assert (await client.get("/tr", params={"id": PIXEL_A, "ev": "PageView", "dl": page},
                             headers={"User-Agent": "Mozilla/5.0"})).status == 200
    await wait_until(lambda: len(server.bodies) == 1)
    assert server.bodies[0]["click_ids"] == [{"ttclid": "E.C.P.abc", "gclid": "Cj0-x_1"}]


async def test_a_type_reads_sets_and_mints_its_cookies_and_hashes_its_own_way(
    tmp_path: Path, echo_type: None, echo_server: tuple[EchoServer, str],
    start_gateway: GatewayFactory,
) -> None:
    server, url = echo_server
    settings = parse_settings(settings_yaml(tmp_path, echo_yaml("hook", url)), env={})
    client = await start_gateway(settings)
    returning = await client.get(
        "/tr", params={"id": PIXEL_A, "ev": "Lead", "ud[em]": " Joe@Example.com"},
        headers={"User-Agent": "Mozilla/5.0", "Host": "www.shop.example",
                 "Cookie": "session=x; _echo=e1.1.abc123; other=y"})
    assert returning.status == 200
    assert returning.cookies["_echo"].value == "e1.1.abc123"  # set again: renewed
    assert returning.cookies["_echo"]["domain"] == "shop.example"
    new = await client.get("/tr", params={"id": PIXEL_A, "ev": "Lead"},
                           headers={"User-Agent": "Mozilla/5.0", "Host": "www.shop.example",
                                    "Cookie": "_echo=not-ours"})
    minted = new.cookies["_echo"].value
    assert minted.startswith("e1.1.") and minted != "not-ours"
    await wait_until(lambda: sum(len(body["events"]) for body in server.bodies) == 2)
    cookies = [c for body in server.bodies for c in body["cookies"]]
    identities = [i for body in server.bodies for i in body["identities"]]
    assert cookies == [{"_echo": "e1.1.abc123"}, {"_echo": minted}]
    assert identities == [{"email": hashlib.sha256(b"JOE@EXAMPLE.COM").hexdigest()}, {}]
    stored = " ".join(str(r["context"]) + str(r["payload"]) for r in rows(settings))
    assert "Joe@Example" not in stored and "joe@example" not in stored  # never raw


async def test_without_such_a_type_no_platform_cookie_is_read_or_set(
    tmp_path: Path, fake_graph: FakeGraph, start_gateway: GatewayFactory,
) -> None:
    settings = parse_settings(settings_yaml(
        tmp_path, destination_yaml("meta", fake_graph.url, pixel_id=PIXEL_A)), env={})
    client = await start_gateway(settings)
    response = await client.get("/tr", params={"id": PIXEL_A, "ev": "Lead",
                                               "dl": "https://shop.example/"},
                                headers={"User-Agent": "Mozilla/5.0",
                                         "Cookie": "_echo=e1.1.abc123"})
    assert response.status == 200
    assert "_echo" not in response.cookies and "_fbp" in response.cookies
    [row] = rows(settings)
    assert row["context"] == b""


async def test_consent_sends_each_event_only_where_it_is_allowed(
    tmp_path: Path, echo_type: None, echo_server: tuple[EchoServer, str],
    fake_graph: FakeGraph, start_gateway: GatewayFactory,
) -> None:
    server, url = echo_server
    settings = parse_settings(settings_yaml(
        tmp_path, destination_yaml("meta", fake_graph.url, pixel_id=PIXEL_A),
        echo_yaml("stats", url, consent="analytics")), env={})
    client = await start_gateway(settings)
    page = {"id": PIXEL_A, "ev": "Lead", "dl": "https://shop.example/"}
    # Ads denied, analytics granted: the analytics destination only; no ad cookie.
    response = await client.get("/tr", params={**page, "eid": "e1", "cs": "01--"},
                                headers={"User-Agent": "Mozilla/5.0"})
    assert response.status == 200
    assert "_fbp" not in response.cookies and "_echo" in response.cookies
    await wait_until(lambda: len(server.bodies) == 1)
    await wait_until(lambda: [(r["destination"], r["state"]) for r in rows(settings)] == [
        ("stats", "delivered")])  # nothing stored for meta
    assert rows(settings)[0]["context"] and b'"ad_storage":"denied"' in rows(settings)[0][
        "context"]
    # Everything denied: nothing stored at all, the hit still answered.
    response = await client.get("/tr", params={**page, "eid": "e2", "cs": "0000"},
                                headers={"User-Agent": "Mozilla/5.0"})
    assert response.status == 200 and not response.cookies
    # No signal: both.
    assert (await client.get("/tr", params={**page, "eid": "e3"},
                             headers={"User-Agent": "Mozilla/5.0"})).status == 200
    await fake_graph.wait_for_events(1)
    assert [e["event_id"] for e in fake_graph.events] == ["e3"]
    metrics = await (await client.get("/metrics")).text()
    assert 'gateway_events_withheld_total{destination="meta"} 2.0' in metrics
    assert 'gateway_events_withheld_total{destination="stats"} 1.0' in metrics
    assert len(rows(settings)) == 3  # e1 stats, e3 meta and stats


async def test_the_relay_is_the_same_for_every_type(
    tmp_path: Path, echo_type: None, echo_server: tuple[EchoServer, str],
    start_gateway: GatewayFactory,
) -> None:
    # A refused credential pauses the destination until its secret changes.
    server, url = echo_server
    config = tmp_path / "config.yaml"
    text = settings_yaml(tmp_path, echo_yaml("hook", url))
    config.write_text(text)
    settings = load_settings(config, env={})
    client = await start_gateway(settings)
    server.statuses = [401]
    assert (await client.get("/tr", params={"id": PIXEL_A, "ev": "Lead"})).status == 200
    [worker] = client.server.app[appkeys.RELAYS]
    await wait_until(lambda: worker.state == "paused")
    config.write_text(text.replace("S3CRET-hook", "NEW-SECRET"))
    assert await client.server.app[appkeys.RELOADER].reload()
    await wait_until(lambda: worker.state == "active" and len(server.bodies) == 2)
    assert server.secrets == ["S3CRET-hook", "NEW-SECRET"]
    await wait_until(lambda: [r["state"] for r in rows(settings)] == ["delivered"])


async def test_a_type_without_credentials_runs_dry(
    tmp_path: Path, echo_type: None, echo_server: tuple[EchoServer, str],
    start_gateway: GatewayFactory, caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    server, url = echo_server
    settings = parse_settings(settings_yaml(tmp_path, echo_yaml("hook", url, secret="")),
                              env={})
    client = await start_gateway(settings)
    assert (await client.get("/tr", params={"id": PIXEL_A, "ev": "Lead"})).status == 200
    await wait_until(lambda: [r["state"] for r in rows(settings)] == ["dry_run"])
    assert f"dry run (no secret): destination hook would POST 1 events (Lead x1) to {url}" \
        in caplog.text
    assert server.bodies == []
