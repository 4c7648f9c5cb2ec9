"""Isolation: a destination that times out must not slow the healthy one, nor ingest.

    python bench/isolation.py [--rate 200] [--duration 20] [--rounds 3]

A gateway (`python -m gateway serve`, its own core, durable outbox, default relay settings) has
two destinations that receive every hit: `healthy`, whose fake Graph API answers at once, and
`other`. In the baseline `other` answers at once too; in the outage `other`'s pixel never answers
(the gateway gives up after its 1.5 s `timeout`, as with a platform that hangs). Realistic pixel
hits (bench/ingest.py's) arrive at `--rate` per second from an open-loop client for
`--duration` seconds after a warm-up; each hit's event id names its scheduled send time, and the
fake Graph API (its own process) notes when each event reaches the healthy pixel. Prints, per
scenario, p50/p99 of ingest (hit answered) and of the healthy destination (hit sent -> event
received upstream), and each p99's ratio to the baseline: `--rounds` rounds, each running both
scenarios back to back in alternating order on a fresh outbox; medians compared, and the median
of the per-round ratios. Target: outage p99 within 1.5x of the baseline's. Never part of pytest.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import ingest  # bench/ingest.py, next to this script: hits, processes, machine info
import orjson
from aiohttp import ClientError, web

HEALTHY, OTHER, HANGING = "111111111111111", "222222222222222", "333333333333333"
WARM_UP = 2.0
DRAIN = 3.0  # after the load, for the last events to reach the healthy pixel


def run_graph(port: int) -> None:
    """The fake Graph API: the healthy pixels answer at once, HANGING never in time; GET
    /arrivals hands over (and forgets) when each event reached HEALTHY."""
    arrivals: dict[str, float] = {}

    async def events(request: web.Request) -> web.Response:
        if request.match_info["pixel"] == HANGING:
            await asyncio.sleep(30)  # the gateway gave up long ago
        data = orjson.loads(await request.read())["data"]
        if request.match_info["pixel"] == HEALTHY:
            now = time.time()
            for event in data:
                arrivals[event["event_id"]] = now
        return web.json_response({"events_received": len(data), "fbtrace_id": "bench"})

    async def handover(request: web.Request) -> web.Response:
        taken = dict(arrivals)
        arrivals.clear()
        return web.Response(body=orjson.dumps(taken), content_type="application/json")

    app = web.Application(client_max_size=64 * 2**20)
    app.router.add_post("/{version}/{pixel}/events", events)
    app.router.add_get("/arrivals", handover)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


def write_config(folder: Path, port: int, graph_port: int, other_pixel: str) -> Path:
    (folder / "no-rules").mkdir(parents=True, exist_ok=True)
    destinations = "".join(f"""
  - name: {name}
    pixel_id: "{pixel}"
    accepts: "*"
    access_token: BENCH-{name.upper()}
    graph_url: http://127.0.0.1:{graph_port}
""" for name, pixel in (("healthy", HEALTHY), ("other", other_pixel)))
    config = folder / "config.yaml"
    config.write_text(f"""version: 1
server:
  host: 127.0.0.1
  port: {port}
  trusted_proxies: [private]
  shutdown_timeout: 2
storage:
  path: {folder / "outbox.db"}
rules:
  path: {folder / "no-rules"}
logging:
  level: WARNING
admin:
  listen: 127.0.0.1:{port + 1}
destinations:{destinations}""")
    return config


@dataclass
class Run:
    ingest_p50: float
    ingest_p99: float
    healthy_p50: float
    healthy_p99: float
    late: int  # measured events that had not reached the healthy pixel after the drain
    errors: int


def percentiles(values: list[float]) -> tuple[float, float]:
    if len(values) < 100:
        return math.nan, math.nan
    cuts = statistics.quantiles(values, n=100)
    return cuts[49], cuts[98]


async def load(base: str, hits: list[ingest.Hit], rate: float, seconds: float, tag: str
               ) -> tuple[dict[str, float], list[float], int]:
    """Open loop at `rate`: (scheduled wall time per measured event id, ingest latencies in ms,
    errors). Latency counts from each hit's scheduled send time, whatever the answers do."""
    clock = time.perf_counter
    total, skip = int(rate * (seconds + WARM_UP)), int(rate * WARM_UP)
    sent: dict[str, float] = {}
    latencies: list[float] = []
    errors = 0
    pending: set[asyncio.Task[None]] = set()
    start, wall = clock() + 0.05, time.time() + 0.05

    async def one(n: int) -> None:
        nonlocal errors
        hit, due = hits[n % len(hits)], start + n / rate
        event_id = f"{tag}-{n}"
        try:
            async with session.get(ingest.request_url(base, hit, event_id),
                                   headers=hit.headers) as answer:
                await answer.read()
        except (ClientError, TimeoutError):
            errors += 1
            return
        if n >= skip and answer.status == 200:
            latencies.append((clock() - due) * 1000)
            sent[event_id] = wall + n / rate

    async with ingest.session_for(1024) as session:
        n = 0
        while n < total:
            due_now = min(total, max(0, math.floor((clock() - start) * rate) + 1))
            while n < due_now:
                task = asyncio.create_task(one(n))
                pending.add(task)
                task.add_done_callback(pending.discard)
                n += 1
            if n < total:
                await asyncio.sleep(max(0.0002, start + n / rate - clock()))
        if pending:
            await asyncio.wait(pending, timeout=10)
    return sent, latencies, errors


def run_once(args: argparse.Namespace, hits: list[ingest.Hit], graph: str, graph_port: int,
             other_pixel: str, tag: str, processes: ingest.Processes, servers: list[int]) -> Run:
    folder = Path(tempfile.mkdtemp(prefix="bench-isolation-"))
    [port] = ingest.gateway_ports()
    config = write_config(folder, port, graph_port, other_pixel)
    processes.start(f"gateway-{tag}", [sys.executable, "-m", "gateway", "serve", "--config",
                                       str(config)], servers)
    try:
        ingest.wait_ready(f"http://127.0.0.1:{port}/readyz", processes)
        ingest.fetch(graph + "/arrivals")  # forget earlier runs' stragglers
        sent, latencies, errors = ingest.run_async(
            lambda: load(f"http://127.0.0.1:{port}", hits, args.rate, args.duration, tag))
        time.sleep(DRAIN)
        arrivals: dict[str, float] = orjson.loads(ingest.fetch(graph + "/arrivals"))
    finally:
        _, gateway = processes.running.pop()
        gateway.send_signal(signal.SIGTERM)
        try:
            gateway.wait(ingest.STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            gateway.kill()
            gateway.wait()
        shutil.rmtree(folder, ignore_errors=True)
    delivery = [(arrivals[eid] - at) * 1000 for eid, at in sent.items() if eid in arrivals]
    ingest_p50, ingest_p99 = percentiles(latencies)
    healthy_p50, healthy_p99 = percentiles(delivery)
    return Run(ingest_p50, ingest_p99, healthy_p50, healthy_p99,
               late=sum(eid not in arrivals for eid in sent), errors=errors)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=200.0, help="hits per second")
    parser.add_argument("--duration", type=float, default=20.0, help="measured seconds per run")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--role", choices=["graph"], help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.role == "graph":
        run_graph(args.port)
        return
    servers, load_cores, note = ingest.cpu_plan(1)
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, load_cores)
    hits = ingest.make_hits(2000)
    folder = Path(tempfile.mkdtemp(prefix="bench-isolation-logs-"))
    processes = ingest.Processes(folder)
    signal.signal(signal.SIGTERM, ingest._terminate)
    graph_port = ingest.free_port()
    graph = f"http://127.0.0.1:{graph_port}"
    runs: dict[str, list[Run]] = {"baseline": [], "outage": []}
    try:
        processes.start("graph", [sys.executable, str(Path(__file__).resolve()), "--role",
                                  "graph", "--port", str(graph_port)], load_cores)
        ingest.wait_ready(graph + "/arrivals", processes)
        for r in range(args.rounds):
            order = ["baseline", "outage"] if r % 2 == 0 else ["outage", "baseline"]
            for scenario in order:
                other = OTHER if scenario == "baseline" else HANGING
                runs[scenario].append(run_once(args, hits, graph, graph_port, other,
                                               f"{scenario}{r}", processes, servers))
    finally:
        processes.stop_all()
        shutil.rmtree(folder, ignore_errors=True)
    print(f"{ingest.machine_info()}; gateway on core(s) {servers}, load and fake Graph on "
          f"{load_cores}{note}")
    print(f"{args.rate:g} hits/s for {args.duration:g} s after a {WARM_UP:g} s warm-up, two "
          f"destinations each; {args.rounds} rounds, scenarios alternating; times in ms")
    # A run whose hits failed (the gateway did not start, a port taken meanwhile) measures
    # nothing: it is shown and left out, with its round's other run.
    broken = {r for results in runs.values() for r, run in enumerate(results)
              if math.isnan(run.ingest_p99) or run.errors > 0.01 * args.rate * args.duration}
    for r in sorted(broken):
        print(f"round {r + 1} left out: " + "; ".join(
            f"{scenario} {results[r].errors} failed hits" for scenario, results in runs.items()))
    runs = {scenario: [run for r, run in enumerate(results) if r not in broken]
            for scenario, results in runs.items()}
    if not runs["baseline"]:
        raise SystemExit("no round measured anything")
    base = runs["baseline"]
    for scenario, results in runs.items():
        print(f"{scenario:<9} ingest p50 {med(results, 'ingest_p50'):7.1f} p99 "
              f"{med(results, 'ingest_p99'):7.1f}   healthy destination p50 "
              f"{med(results, 'healthy_p50'):7.1f} p99 {med(results, 'healthy_p99'):7.1f}   "
              f"late {sum(r.late for r in results)}  errors {sum(r.errors for r in results)}")
        print(f"          rounds: ingest p99 {fmt(results, 'ingest_p99')}; healthy p99 "
              f"{fmt(results, 'healthy_p99')}")
    outage = runs["outage"]
    for metric, label in (("ingest_p99", "ingest p99"), ("healthy_p99", "healthy p99")):
        ratio = med(outage, metric) / med(base, metric)
        per_round = [getattr(o, metric) / getattr(b, metric) for o, b in zip(outage, base,
                                                                             strict=True)]
        print(f"{label}: outage/baseline {ratio:.2f}x (per round "
              f"{', '.join(f'{x:.2f}' for x in per_round)}; their median "
              f"{statistics.median(per_round):.2f}x)  target <= 1.5x: "
              f"{'met' if statistics.median(per_round) <= 1.5 else 'NOT met'}")


def med(runs: list[Run], metric: str) -> float:
    return statistics.median(getattr(run, metric) for run in runs)


def fmt(runs: list[Run], metric: str) -> str:
    return ", ".join(f"{getattr(run, metric):.1f}" for run in runs)


if __name__ == "__main__":
    main()
