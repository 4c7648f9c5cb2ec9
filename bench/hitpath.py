"""Where a hit's CPU goes in the gateway's own code: each step of `/tr`, in microseconds.

    python bench/hitpath.py [--hits 10000] [--rounds 5] [--floor]

Builds the gateway's app from bench/ingest.py's config (the target's: GeoIP2 test database,
20 rules, two destinations; `--floor`: no rules, no geo) with dry-run destinations, starts its
resources (identity data, outbox, rules) and feeds it bench/ingest.py's realistic hits as
aiohttp requests made in memory, timing each step of gateway/ingest/browser.py's handler on its
own with the output of the step before: parameters, cookies, ids, client IP, the event, the
pipeline's prepare (enrich, rules, route, validate) and decide (JSON, rows), the response with
its cookies; then the commit of each hit's rows alone (`Outbox.enqueue`, durable), and the
whole handler (which includes the commit), the way a request runs it.

No HTTP server, load generator or relay: this measures the Python steps that `bench/ingest.py`'s
throughput is made of, each `--rounds` times over the same hits, and prints medians per hit
(microseconds of this thread's CPU; the commit and the whole handler, which wait for the
outbox's writer thread and its fsync, in wall time). Never part of
pytest.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import platform
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from unittest import mock

import ingest  # bench/ingest.py, next to this script: the hits and the config
from aiohttp import hdrs, web
from aiohttp.test_utils import make_mocked_request
from multidict import CIMultiDict

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gateway import appkeys  # noqa: E402
from gateway.app import create_app  # noqa: E402
from gateway.config import load_settings  # noqa: E402
from gateway.identity.cookies import OWNER, browser_cookies  # noqa: E402
from gateway.ingest import browser  # noqa: E402
from gateway.ingest.hitevent import build_hit_event  # noqa: E402
from gateway.ingest.hitparams import read_hit_params  # noqa: E402
from gateway.run import tune_gc  # noqa: E402

PEER = "10.0.0.2"  # the trusted proxy the hits come through (X-Forwarded-For names the client)
STEPS = ("parameters", "cookies", "ids", "client ip", "event", "prepare", "decide",
         "response", "commit", "whole handler")


def requests(app: web.Application, hits: list[ingest.Hit]) -> list[web.Request]:
    transport = mock.Mock()
    transport.get_extra_info.side_effect = lambda name, default=None: (
        (PEER, 40000) if name == "peername" else default)
    return [make_mocked_request("GET", hit.target.replace(ingest.EID, f"e{n}"),
                                headers=CIMultiDict(hit.headers), app=app, transport=transport)
            for n, hit in enumerate(hits)]


def clock_cost(clock: Callable[[], float]) -> float:
    """What reading `clock` adds to an interval measured with it."""
    samples = []
    for _ in range(2000):
        start = clock()
        samples.append(clock() - start)
    return statistics.median(samples)


async def one_round(app: web.Application, reqs: list[web.Request]) -> dict[str, float]:
    """Seconds spent in each step over all the hits."""
    spent: dict[str, float] = defaultdict(float)
    # The steps on this thread's CPU clock (other processes on the core do not count); the
    # commit and the whole handler in wall time (they wait for the outbox's writer thread).
    clock, wall = time.thread_time, time.perf_counter
    tick = clock_cost(clock)  # a system call here (~1.4 us): not the step's
    snapshot = app[appkeys.LIVE].current
    proxies, pipeline = app[appkeys.PROXIES], app[appkeys.PIPELINE]
    outbox = app[appkeys.OUTBOX]
    now = time.time()
    for request in reqs:
        t0 = clock()
        params = await read_hit_params(request)
        t1 = clock()
        found = browser_cookies(request.headers.get(hdrs.COOKIE), snapshot.cookie_names)
        t2 = clock()
        ids = browser._browser_ids(request, params, found, now)
        t3 = clock()
        ip = proxies.client_ip(request.remote, request.headers)
        t4 = clock()
        event = build_hit_event(params, ip=ip,
                                user_agent=browser.clean_text(request.headers.get(hdrs.USER_AGENT)),
                                fbp=ids.fbp, fbc=ids.fbc, now=now,
                                page_url=browser.clean_text(request.headers.get(hdrs.REFERER)))
        t5 = clock()
        pipeline.prepare(event)
        t6 = clock()
        _submission, rows = pipeline._decide(event)
        t7 = clock()
        response = web.Response(body=browser.PIXEL_GIF, content_type="image/gif",
                                headers=browser.NO_STORE)
        if OWNER in snapshot.kind_names:
            browser._set_cookies(response, ids)
        t8 = clock()
        for step, spent_here in zip(STEPS, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4,
                                            t6 - t5, t7 - t6, t8 - t7), strict=False):
            spent[step] += spent_here - tick
        if rows:
            t9 = wall()
            await outbox.enqueue(rows)
            spent["commit"] += wall() - t9
    for request in reqs:
        t0 = wall()
        await browser.handle_hit(request)
        spent["whole handler"] += wall() - t0
    return spent


async def run(args: argparse.Namespace, folder: Path) -> dict[str, list[float]]:
    destinations = "".join(f"""
  - name: {name}
    pixel_id: "{pixel}"
    accepts: ["{ingest.MAIN_PIXEL}"]
""" for name, pixel in (("main", ingest.MAIN_PIXEL), ("brand", ingest.BRAND_PIXEL)))
    skip = tuple(ingest.RULES) if args.floor else ()
    config = ingest.write_config(folder, ingest.free_port(), ingest.free_port(),
                                 destinations=destinations, skip_rules=skip, geo=not args.floor)
    settings = load_settings(config)
    app = create_app(settings)
    app.on_startup.append(tune_gc)  # the collector as `tag-gateway serve` sets it
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    try:
        hits = ingest.make_hits(args.hits)
        per_hit: dict[str, list[float]] = defaultdict(list)
        gc.freeze()  # the hits too, as the start-up's objects: they live through every round
        for _ in range(args.rounds):
            spent = await one_round(app, requests(app, hits))
            for step in STEPS:
                per_hit[step].append(spent[step] / len(hits) * 1e6)
        return per_hit
    finally:
        await runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hits", type=int, default=10000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--floor", action="store_true", help="no rules, no geo database")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-hitpath-") as folder:
        per_hit = asyncio.run(run(args, Path(folder)))
    print(f"machine: {platform.machine()} python={platform.python_version()}; "
          f"{args.hits:,} hits x {args.rounds} rounds; "
          f"{'floor (no rules, no geo)' if args.floor else 'target config (geo, 20 rules)'}, "
          "two dry-run destinations; microseconds per hit, median of rounds (min-max)")
    steps = 0.0
    for step in STEPS:
        values = per_hit[step]
        median = statistics.median(values)
        if step not in ("commit", "whole handler"):
            steps += median
        print(f"  {step:14s} {median:8.1f}   ({min(values):.1f}-{max(values):.1f})")
        if step == "response":
            print(f"  {'= the steps':14s} {steps:8.1f}")


if __name__ == "__main__":
    main()
