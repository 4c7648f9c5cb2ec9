"""Relay cost per destination type: the same hits drained to Meta and to each other platform.

    python bench/destinations.py [--events 20000] [--rounds 3]

One local fake (a separate process) answers every platform's endpoint the way the platform
answers success and counts the events it receives. The gateway's own pipeline turns `--events`
browser hits (an e-mail, a ttclid, a _ga cookie each) into outbox rows for six destinations
(meta_capi, tiktok, ga4, snapchat, pinterest, webhook): one hit, six rows. Then each
destination's backlog is drained alone (a gateway configured with that destination only) and
timed; `--rounds` times, rotating the order, medians compared. Prints events/s per type, the
cost per event in microseconds, and each type's ratio to meta_capi measured in the same run
(meta_capi sends the stored JSON as it is; the others build their wire format per event).
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from multiprocessing.sharedctypes import Synchronized
from pathlib import Path
from typing import Any

import ingest  # bench/ingest.py, next to this script: ports, machine info
import orjson
from aiohttp import web

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PIXEL = "123456789012345"
TYPES = ("meta_capi", "tiktok", "ga4", "snapchat", "pinterest", "webhook")
Counters = dict[str, Synchronized]  # type: ignore[type-arg]


def fake_platforms(port: int, counters: Counters) -> None:
    """Every platform's endpoint, answering success in its own shape, counting events."""

    def counted(kind: str, count: Callable[[Any], int],
                answer: Callable[[int], web.Response]) -> Any:
        async def handle(request: web.Request) -> web.Response:
            body = await request.read()
            n = count(orjson.loads(body))
            with counters[kind].get_lock():
                counters[kind].value += n
            return answer(n)

        return handle

    app = web.Application(client_max_size=64 * 2**20)
    app.router.add_post("/{version}/{pixel}/events", counted(
        "meta_capi", lambda b: len(b["data"]),
        lambda n: web.json_response({"events_received": n, "fbtrace_id": "bench"})))
    app.router.add_post("/open_api/v1.3/event/track/", counted(
        "tiktok", lambda b: len(b["data"]),
        lambda n: web.json_response({"code": 0, "message": "OK", "request_id": "bench"})))
    app.router.add_post("/mp/collect", counted(
        "ga4", lambda b: len(b["events"]), lambda n: web.Response(status=204)))
    app.router.add_post("/v3/{pixel}/events", counted(
        "snapchat", lambda b: len(b["data"]),
        lambda n: web.json_response({"status": "VALID", "reason": ""})))
    app.router.add_post("/v5/ad_accounts/{account}/events", counted(
        "pinterest", lambda b: len(b["data"]),
        lambda n: web.json_response({"num_events_received": n, "num_events_processed": n,
                                     "events": [{"status": "processed"}] * n})))
    app.router.add_post("/hook", counted(
        "webhook", lambda b: len(b["events"]), lambda n: web.Response(status=204)))
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


def config(folder: Path, port: int, kinds: tuple[str, ...]) -> str:
    url = f"http://127.0.0.1:{port}"
    blocks = {
        "meta_capi": f'pixel_id: "{PIXEL}"\n    access_token: BENCH\n    graph_url: {url}',
        "tiktok": f"pixel_code: C0BENCH0PIXEL\n    access_token: BENCH\n    api_url: {url}",
        "ga4": f"measurement_id: G-BENCH1234\n    api_secret: BENCH\n    api_url: {url}",
        "snapchat": ("pixel_id: 0b3e6e5c-1f2a-4c3d-9e8f-0123456789ab\n    access_token: BENCH"
                     f"\n    api_url: {url}"),
        "pinterest": f'ad_account_id: "549755885175"\n    access_token: BENCH\n    api_url: {url}',
        "webhook": f"url: {url}/hook\n    secret: BENCH",
    }
    destinations = "".join(
        f"  - name: {kind}\n    type: {kind}\n    {blocks[kind]}\n    accepts: \"*\"\n"
        f"    max_in_flight: 4\n    linger_ms: 0\n    consent: none\n" for kind in kinds)
    return (f"version: 1\nstorage: {{path: {folder / 'outbox.db'}, synchronous: normal}}\n"
            f"rules: {{path: {folder / 'no-rules'}}}\nlogging: {{level: WARNING}}\n"
            f"destinations:\n{destinations}")


async def fill(folder: Path, port: int, count: int) -> None:
    """`count` hits through the real pipeline: one row per destination each."""
    from gateway import appkeys
    from gateway.app import create_app
    from gateway.config import parse_settings
    from gateway.ingest.hitevent import build_hit_event

    settings = parse_settings(config(folder, port, TYPES), env={})
    runner = web.AppRunner(create_app(settings, worker=1))  # routes and stores, relays nothing
    await runner.setup()
    pipeline = runner.app[appkeys.PIPELINE]
    now = time.time()
    for first in range(0, count, 1000):
        events = []
        for n in range(first, min(first + 1000, count)):
            event = build_hit_event(
                {"id": PIXEL, "ev": "Purchase", "eid": f"order-{n}",
                 "dl": f"https://www.shop.example/p/{n}?ttclid=E.C.P.{n}",
                 "ud[em]": f"visitor{n}@example.com", "cd[value]": "19.90",
                 "cd[currency]": "EUR", "cd[content_ids]": '["sku-1"]'},
                ip="203.0.113.9", user_agent="Mozilla/5.0 (X11; Linux x86_64) Chrome/131.0",
                fbp=f"fb.1.1700000000000.{n}", fbc=None, now=now)
            event.context.cookies = {"_ga": f"GA1.1.{100000 + n}.1700000000"}
            events.append(event)
        await pipeline.submit_many(events)
    await runner.cleanup()


async def drain(folder: Path, port: int, kind: str, count: int,
                received: Synchronized) -> float:  # type: ignore[type-arg]
    from gateway.app import create_app
    from gateway.config import parse_settings
    from gateway.identity.useragent import shared_parser

    settings = parse_settings(config(folder, port, (kind,)), env={})
    shared_parser()  # the user-agent rules load at start-up, not in the drain
    received.value = 0
    runner = web.AppRunner(create_app(settings))
    start = time.perf_counter()
    await runner.setup()  # starts the relay worker on the backlog
    while received.value < count:
        if time.perf_counter() - start > 600:
            raise SystemExit(f"{kind}: {received.value} of {count} events after 600 s")
        await asyncio.sleep(0.005)
    elapsed = time.perf_counter() - start
    await runner.cleanup()
    return count / elapsed


def round_trip(port: int, count: int, counters: Counters, order: list[str]) -> dict[str, float]:
    folder = Path(tempfile.mkdtemp(prefix="bench-destinations-"))

    async def run() -> dict[str, float]:
        await fill(folder, port, count)
        return {kind: await drain(folder, port, kind, count, counters[kind]) for kind in order}

    try:
        try:
            import uvloop

            return uvloop.run(run())
        except ImportError:
            return asyncio.run(run())
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    port = ingest.free_port()
    counters: Counters = {kind: multiprocessing.Value("q", 0) for kind in TYPES}
    server = multiprocessing.Process(target=fake_platforms, args=(port, counters), daemon=True)
    server.start()
    time.sleep(1.0)
    runs: dict[str, list[float]] = {kind: [] for kind in TYPES}
    try:
        for r in range(args.rounds):
            order = list(TYPES[r % len(TYPES):] + TYPES[:r % len(TYPES)])
            for kind, rate in round_trip(port, args.events, counters, order).items():
                runs[kind].append(rate)
    finally:
        server.terminate()
    meta = statistics.median(runs["meta_capi"])
    print(f"{ingest.machine_info()}; fake platforms in their own process")
    print(f"events: {args.events} hits, each one row per destination; each destination's "
          f"backlog drained alone; medians of {args.rounds} rounds, rotating the order")
    for kind in TYPES:
        rate = statistics.median(runs[kind])
        per_round = [r / m for r, m in zip(runs[kind], runs["meta_capi"], strict=True)]
        print(f"{kind:<10} {rate:10,.0f} events/s  {1e6 / rate:6.1f} us/event  "
              f"vs meta_capi {rate / meta:.2f}x (per round "
              f"{', '.join(f'{x:.2f}' for x in per_round)})  rounds: "
              f"{', '.join(f'{x:,.0f}' for x in runs[kind])}")


if __name__ == "__main__":
    main()
