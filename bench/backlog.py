"""Ingest throughput and memory with a large backlog queued for a paused destination.

    python bench/backlog.py [--backlog 1000000] [--duration 10] [--rounds 3]
                            [--engine sqlite|sqlite-log]

Runs of `python -m gateway serve` (pinned to core 0, as bench/ingest.py does) with the same
config: bench/ingest.py's rules (less its routing file, which names a second destination), the
MaxMind test database, and one destination whose token a local fake Graph API refuses (HTTP 401,
code 190) on every request, so the gateway pauses it and its events stay queued.
- A: an empty outbox (a new file each time);
- B: an outbox pre-filled with `--backlog` queued events for that destination, written with
  `Outbox.enqueue` (gateway.storage) in batches. The payloads are events the gateway itself
  stored in the first run A (its real pipeline output) with new event ids. Every run B uses
  the same file, so its queue also holds what the runs B before it stored.
Each round runs A and B back to back, A first in rounds 1, 3, 5 ... and B first in rounds 2, 4
... (the first round's A comes before the prefill); `--rounds` of them, and the medians are
compared: this machine's speed drifts by tens of percent within minutes, and one pair puts that
drift into the ratio. Each run: start, a warm-up with wrk (bench/ingest.py's hits and Lua
script; its Python client when wrk is missing), a check through `GET /status` that the
destination is paused, then the measured run. The gateway's RSS (VmRSS; VmHWM is the peak) at
start, after the warm-up and at the end, its CPU per hit answered over the measured run
(steadier than req/s when the machine drifts), and the outbox file's size. Targets: req/s B/A >=
0.9 ("within 10%", the ratio of the medians), and memory flat in every round: B's RSS close to
A's and not growing during B. Also checks that nothing was lost: the queue grew by exactly the
events the gateway committed, and those plus the dropped ones make the hits.

The paused destination's expiry sweep runs once at the pause and then every 60 s: a short
measured run may not include one (`--duration 70` does). At 1M events and 3 rounds: about
three minutes (the prefill ~40 s) and ~0.9 GB in a temp folder. Never part of pytest; every
process it starts is stopped on exit, error or Ctrl-C.
"""

from __future__ import annotations

import argparse
import gc
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import ingest  # bench/ingest.py, next to this script: hits, wrk, process handling
import orjson
from aiohttp import web

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

DESTINATION = "main"
TOKEN_ERROR = {"error": {
    "message": "Error validating access token: Session has expired on Friday, 10-Oct-25.",
    "type": "OAuthException", "code": 190, "error_subcode": 463, "fbtrace_id": "bench"}}
PAUSE_TIMEOUT = 15.0
WEEK = 7 * 86400
MIB = 2**20


# ---------------------------------------------------------------- the fake Graph API


def run_refusing_graph(port: int) -> None:
    """The Graph API stand-in: refuse every request's token, count the requests."""
    requests = 0

    async def events(request: web.Request) -> web.Response:
        nonlocal requests
        await request.read()
        requests += 1
        return web.json_response(TOKEN_ERROR, status=401)

    async def count(request: web.Request) -> web.Response:
        return web.json_response({"requests": requests})

    app = web.Application(client_max_size=64 * MIB)
    app.router.add_post("/{version}/{pixel}/events", events)
    app.router.add_get("/count", count)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None,
                loop=ingest.new_loop())


# ---------------------------------------------------------------- config and outbox


SKIPPED_RULES = (ingest.ROUTE_RULES,)  # they route to a second destination this bench has not


def write_config(folder: Path, port: int, graph_port: int, engine: str) -> Path:
    """bench/ingest.py's config with one destination whose token the fake Graph refuses."""
    return ingest.write_config(
        folder, port, graph_port,
        destinations=f"""
  - name: {DESTINATION}
    pixel_id: "{ingest.MAIN_PIXEL}"
    access_token: BENCH-REVOKED-TOKEN
    graph_url: http://127.0.0.1:{graph_port}
""",
        skip_rules=SKIPPED_RULES,
        engine=engine,
    )


def file_size(db: Path) -> int:
    """The outbox's bytes on disk: the database, its WAL and shared-memory files."""
    return sum(p.stat().st_size for p in (db, Path(f"{db}-wal"), Path(f"{db}-shm"))
               if p.exists())


@dataclass(frozen=True)
class Template:
    """A queued row the gateway wrote in run A, to copy with a new event id."""

    pixel_id: str
    test_event_code: str
    event_name: str
    event_id: str
    event_time: int
    request_fields: str
    rule_set: str
    payload: bytes


async def read_templates(db: Path, engine: str, limit: int = 5000) -> list[Template]:
    """Rows run A left queued (its destination is paused), read through the storage protocol."""
    from gateway.settings import StorageSettings
    from gateway.storage import open_existing

    outbox = await open_existing(StorageSettings(engine=engine, path=db), clock=time.time)
    if outbox is None:
        return []
    try:
        rows = await outbox.rows(state="pending", limit=limit)
    finally:
        await outbox.close()
    templates = [Template(r.pixel_id, r.test_event_code, r.event_name, r.event_id, r.event_time,
                          r.request_fields, r.rule_set, r.payload)
                 for r in rows if r.destination == DESTINATION and r.payload is not None]
    return [t for t in templates if t.payload.count(orjson.dumps(t.event_id)) == 1]


async def prefill(db: Path, engine: str, templates: list[Template], count: int,
                  batch: int) -> None:
    """`count` queued rows for the destination, `batch` per transaction, progress printed."""
    from gateway.settings import StorageSettings
    from gateway.storage import OutboxEntry, open_outbox

    outbox = await open_outbox(StorageSettings(engine=engine, path=db, synchronous="NORMAL"),
                               clock=time.time)
    started, now, step = time.perf_counter(), int(time.time()), max(count // 10, batch)
    try:
        for first in range(0, count, batch):
            entries = []
            for n in range(first, min(first + batch, count)):
                t = templates[n % len(templates)]
                event_id = f"backlog-{n}"
                payload = t.payload.replace(orjson.dumps(t.event_id), orjson.dumps(event_id))
                entries.append(OutboxEntry(
                    DESTINATION, t.pixel_id, t.test_event_code, t.event_name, event_id, now,
                    payload.replace(b'"event_time":%d' % t.event_time, b'"event_time":%d' % now),
                    expires_at=now + WEEK, rule_set=t.rule_set, request_fields=t.request_fields))
            await outbox.enqueue(entries)
            done = first + len(entries)
            if done % step < batch or done == count:
                seconds = time.perf_counter() - started
                print(f"  prefill: {done:>9,} / {count:,} rows, {seconds:5.1f} s", flush=True)
    finally:
        await outbox.close()


# ---------------------------------------------------------------- one run


@dataclass
class Run:
    name: str
    rss_kib: dict[str, int]
    peak_kib: int
    measured: ingest.Throughput
    cpu_ms: float  # the gateway's CPU per 1,000 hits answered 2xx in the measured run
    ok_hits: int  # 2xx answers seen by the load generator, warm-up included
    paused: bool
    still_paused: bool
    queued_before: int
    queued_after: int
    counters: dict[str, float]
    graph_requests: int
    outbox_bytes: int


def memory_kib(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) of a process, in KiB."""
    fields = dict(line.split(":", 1) for line in
                  Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return int(fields["VmRSS"].split()[0]), int(fields["VmHWM"].split()[0])


def destination_status(base: str) -> dict[str, object]:
    status = orjson.loads(ingest.fetch(ingest.operator_base(base) + "/status"))
    [found] = [d for d in status["destinations"] if d["name"] == DESTINATION]
    return dict(found)


def counters(base: str) -> dict[str, float]:
    """The gateway's own event counters (Prometheus text), summed over their labels."""
    text = ingest.fetch(ingest.operator_base(base) + "/metrics").decode()
    totals: dict[str, float] = {}
    for name in ("gateway_events_enqueued_total", "gateway_events_dropped_total",
                 "gateway_events_invalid_total", "gateway_events_unrouted_total",
                 "gateway_hits_total"):
        totals[name] = sum(float(v) for v in
                           re.findall(rf"^{name}(?:{{[^}}]*}})? (\S+)$", text, re.MULTILINE))
    return totals


def settled_counters(base: str) -> dict[str, float]:
    """The counters once the hits wrk left in flight at its deadline are all handled."""
    totals, deadline = counters(base), time.monotonic() + 5
    while time.monotonic() < deadline:
        time.sleep(0.3)
        totals, last = counters(base), totals
        if totals == last:
            break
    return totals


def wait_paused(base: str, processes: ingest.Processes) -> bool:
    deadline = time.monotonic() + PAUSE_TIMEOUT
    while time.monotonic() < deadline:
        processes.check_alive()
        if destination_status(base)["state"] == "paused":
            return True
        time.sleep(0.2)
    return False


class Load:
    """wrk with bench/ingest.py's Lua hits, or its Python client when wrk is missing."""

    def __init__(self, hits: list[ingest.Hit], script: Path | None, args: argparse.Namespace,
                 cpus: list[int]) -> None:
        self.hits, self.script, self.args, self.cpus = hits, script, args, cpus

    def __call__(self, base: str, seconds: float, label: str) -> ingest.Throughput:
        if self.script is not None:
            return ingest.run_wrk(base + "/tr", self.script, self.args, seconds, label, self.cpus)
        return ingest.run_async(lambda: ingest.closed_loop(
            base, self.hits, self.args.connections, seconds, label))


def run_gateway(name: str, folder: Path, load: Load, graph: str, servers: list[int]) -> Run:
    """Start the gateway on `folder`'s config, warm up, check the pause, measure, stop it."""
    args = load.args
    [port] = ingest.gateway_ports()
    config = write_config(folder, port, int(graph.rsplit(":", 1)[1]), args.engine)
    base = f"http://127.0.0.1:{port}"
    processes = ingest.Processes(folder)
    try:
        refused_before = int(orjson.loads(ingest.fetch(graph + "/count"))["requests"])
        processes.start("gateway", [sys.executable, "-m", "gateway", "serve", "--config",
                                    str(config)], servers)
        pid = processes.running[0][1].pid  # taskset execs the gateway: same pid
        ingest.wait_ready(base + "/readyz", processes)
        rss = {"start": memory_kib(pid)[0]}
        queued_before = int(destination_status(base)["queued"])  # type: ignore[call-overload]
        warm = load(base, args.warm_up, f"{name}w")
        paused = wait_paused(base, processes)
        if not paused:
            raise SystemExit(f"run {name}: the destination did not pause within "
                             f"{PAUSE_TIMEOUT:g} s: {destination_status(base)}")
        rss["warm"] = memory_kib(pid)[0]
        print(f"  run {name}: destination paused; measuring {args.duration:g} s", flush=True)
        cpu = ingest.cpu_seconds(processes.sessions("gateway"))
        measured = load(base, args.duration, name)
        cpu = ingest.cpu_seconds(processes.sessions("gateway")) - cpu
        processes.check_alive()
        rss["end"], peak = memory_kib(pid)
        totals = settled_counters(base)
        after = destination_status(base)
        refused = int(orjson.loads(ingest.fetch(graph + "/count"))["requests"]) - refused_before
    finally:
        processes.stop_all()
    answered = max(measured.requests - measured.non_2xx, 1)
    return Run(name, rss, peak, measured, cpu_ms=cpu * 1e6 / answered,
               ok_hits=(warm.requests - warm.non_2xx) + (measured.requests - measured.non_2xx),
               paused=paused, still_paused=after["state"] == "paused",
               queued_before=queued_before,
               queued_after=int(after["queued"]),  # type: ignore[call-overload]
               counters=totals, graph_requests=refused,
               outbox_bytes=file_size(folder / "outbox.db"))


# ---------------------------------------------------------------- report


def report_round(a: Run, b: Run, connections: int) -> bool:
    """One round's pair of runs; whether memory stayed flat in it."""
    for run in (a, b):
        t = run.measured
        print(f"run {run.name} ({run.queued_before:>9,} queued at start): {t.rps:9,.0f} req/s, "
              f"CPU {run.cpu_ms:.0f} ms per 1,000 hits  ({t.requests:,} requests; non-2xx "
              f"{t.non_2xx:,}; socket errors {t.errors})")
    print(f"ratio B/A: {b.measured.rps / a.measured.rps:.2f}; CPU per hit B/A "
          f"{b.cpu_ms / a.cpu_ms:.2f}")
    print("RSS (MiB)        start   warm-up     end    peak   growth   outbox file")
    for run in (a, b):
        r = run.rss_kib
        print(f"  run {run.name}       {r['start'] / 1024:6.1f}  {r['warm'] / 1024:8.1f}  "
              f"{r['end'] / 1024:6.1f}  {run.peak_kib / 1024:6.1f}  "
              f"{(r['end'] - r['start']) / 1024:+7.1f}   {run.outbox_bytes / MIB:8.1f} MiB")
    extra = (b.rss_kib["end"] - a.rss_kib["end"]) / 1024
    growth_b = (b.rss_kib["end"] - b.rss_kib["start"]) / 1024
    growth_a = (a.rss_kib["end"] - a.rss_kib["start"]) / 1024
    flat = extra <= max(16.0, 0.15 * a.rss_kib["end"] / 1024) and growth_b <= growth_a + 16
    print(f"memory: B ends {extra:+.1f} MiB vs A; B grew {growth_b:+.1f} MiB during its run "
          f"(A {growth_a:+.1f}); flat (B within 16 MiB or 15% of A, and no more growth than A "
          f"+ 16 MiB): {'yes' if flat else 'NO'}")
    for run in (a, b):
        c = run.counters
        grew = run.queued_after - run.queued_before
        enqueued = int(c["gateway_events_enqueued_total"])
        dropped = int(c["gateway_events_dropped_total"])
        others = int(c["gateway_events_invalid_total"] + c["gateway_events_unrouted_total"])
        handled = enqueued + dropped + others
        # wrk counts only answers it read before its deadline: up to one request per
        # connection per wrk run may be handled by the gateway yet not counted.
        lost = grew != enqueued or not 0 <= handled - run.ok_hits <= 2 * connections
        print(f"run {run.name}: paused {'before the measured run' if run.paused else 'NEVER'}, "
              f"{'still paused' if run.still_paused else 'NOT paused'} at the end "
              f"({run.graph_requests} requests refused by the fake Graph); queued "
              f"{run.queued_before:,} -> {run.queued_after:,} (+{grew:,}); the gateway committed "
              f"{enqueued:,}, dropped {dropped:,} by rules, {others:,} invalid/unrouted; "
              f"{run.ok_hits:,} hits answered 2xx: {'nothing lost' if not lost else 'MISMATCH'}")
    return flat


def summary(rounds: list[tuple[Run, Run]], flat: list[bool]) -> None:
    """The medians over the rounds, and the targets' verdicts."""
    rps = {name: [pair[k].measured.rps for pair in rounds] for k, name in enumerate("AB")}
    cpu = {name: [pair[k].cpu_ms for pair in rounds] for k, name in enumerate("AB")}
    # Each round ran both back to back: its ratio keeps the pairing that alternating was for
    # (printed beside the verdict, which is on the ratio of the medians as in bench/ingest.py).
    per_round = [b.measured.rps / a.measured.rps for a, b in rounds]
    for name in "AB":
        print(f"{name}: median {statistics.median(rps[name]):9,.0f} req/s (rounds "
              f"{', '.join(f'{x:,.0f}' for x in rps[name])}), CPU "
              f"{statistics.median(cpu[name]):.0f} ms per 1,000 hits (rounds "
              f"{', '.join(f'{x:.0f}' for x in cpu[name])})")
    ratio = statistics.median(rps["B"]) / statistics.median(rps["A"])
    print(f"ratio B/A (medians): {ratio:.2f}; per round "
          f"{', '.join(f'{r:.2f}' for r in per_round)}, median {statistics.median(per_round):.2f}"
          f"; CPU per hit B/A (medians) "
          f"{statistics.median(cpu['B']) / statistics.median(cpu['A']):.2f}   "
          f"target >= 0.9 (within 10%): {'met' if ratio >= 0.9 else 'NOT met'}")
    print(f"memory flat in every round: {'yes' if all(flat) else 'NO'} "
          f"({sum(flat)} of {len(flat)})")


# ---------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backlog", type=int, default=1_000_000,
                        help="events queued before run B")
    parser.add_argument("--batch", type=int, default=10_000, help="rows per prefill transaction")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per measurement")
    parser.add_argument("--rounds", type=int, default=3,
                        help="pairs of runs A and B, the order alternating")
    parser.add_argument("--warm-up", type=float, default=3.0)
    parser.add_argument("--hits", type=int, default=10000, help="distinct hits to cycle through")
    parser.add_argument("--engine", choices=("sqlite", "sqlite-log"), default="sqlite",
                        help="the outbox's SQLite engine")
    parser.add_argument("--python-load", action="store_true",
                        help="use the Python load client even when wrk is installed")
    parser.add_argument("--keep", action="store_true", help="keep the temp folder")
    parser.add_argument("--role", choices=("graph",), help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.role == "graph":
        return run_refusing_graph(args.port)

    signal.signal(signal.SIGTERM, ingest._terminate)
    signal.signal(signal.SIGHUP, ingest._terminate)
    folder = Path(tempfile.mkdtemp(prefix="bench-backlog-"))
    graph = ingest.Processes(folder)
    try:
        bench(args, folder, graph)
    except KeyboardInterrupt:
        raise SystemExit("interrupted: stopping every process this bench started") from None
    finally:
        graph.stop_all()
        if args.keep:
            print(f"kept {folder}")
        else:
            shutil.rmtree(folder, ignore_errors=True)


def bench(args: argparse.Namespace, folder: Path, graph_process: ingest.Processes) -> None:
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    servers, cpus, note = ingest.cpu_plan(1)
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, cpus)  # this script and the prefill off the gateway's core
    use_wrk = shutil.which("wrk") is not None and not args.python_load
    hits = ingest.make_hits(args.hits)
    gc.freeze()
    script = folder / "hits.lua" if use_wrk else None
    if script is not None:
        ingest.write_wrk_script(hits, script)
    load = Load(hits, script, args, cpus)
    graph_port = ingest.free_port()
    graph = f"http://127.0.0.1:{graph_port}"
    (folder / "b").mkdir()
    check = subprocess.run([sys.executable, "-m", "gateway", "check", "--config",
                            str(write_config(folder, ingest.free_port(), graph_port,
                                             args.engine))],
                           cwd=ROOT, capture_output=True, text=True, timeout=60)
    if check.returncode:
        raise SystemExit(f"the bench config does not validate:\n{check.stdout}{check.stderr}")

    print(ingest.machine_info())
    print(f"cores: gateway on {servers}, load generator + fake Graph + this script on {cpus}"
          f"{note}")
    rules = ingest.rule_count(SKIPPED_RULES)
    print(f"config: geo {ingest.GEO.name}; {rules} rules; 1 destination whose token the fake "
          f"Graph refuses (401, code 190); outbox {args.engine} synchronous=full on "
          f"{ingest.filesystem_of(folder)}; logging WARNING")
    print(f"load: {'wrk' if use_wrk else 'python aiohttp'}, {args.connections} connections, "
          f"{args.warm_up:g} s warm-up + {args.duration:g} s; {args.hits} distinct hits")
    graph_process.start("graph", [sys.executable, str(Path(__file__).resolve()), "--role",
                                  "graph", "--port", str(graph_port)], cpus)
    ingest.wait_ready(graph + "/count", graph_process)

    def run_a(round_: int) -> Run:
        """A on a new, empty outbox (its own folder)."""
        empty = folder / f"a{round_}"
        empty.mkdir()
        return run_gateway(f"A{round_ + 1}", empty, load, graph, servers)

    def run_b(round_: int) -> Run:
        return run_gateway(f"B{round_ + 1}", folder / "b", load, graph, servers)

    first = run_a(0)
    print(f"run A1: {first.measured.rps:,.0f} req/s", flush=True)
    templates = ingest.run_async(lambda: read_templates(folder / "a0" / "outbox.db",
                                                        args.engine))
    if not templates:
        raise SystemExit("run A left no queued rows to copy as the backlog's payloads")
    sizes = sorted(len(t.payload) for t in templates)
    print(f"prefill: {args.backlog:,} events for B, payloads copied from {len(templates):,} "
          f"events run A stored (sizes {sizes[0]}-{sizes[-1]} bytes, median "
          f"{sizes[len(sizes) // 2]}), {args.batch:,} per transaction", flush=True)
    started = time.perf_counter()
    ingest.run_async(lambda: prefill(folder / "b" / "outbox.db", args.engine, templates,
                                     args.backlog, args.batch))
    print(f"prefill took {time.perf_counter() - started:.1f} s; outbox file "
          f"{file_size(folder / 'b' / 'outbox.db') / MIB:,.0f} MiB", flush=True)

    rounds: list[tuple[Run, Run]] = [(first, run_b(0))]
    flat = [report_round(*rounds[0], args.connections)]
    for r in range(1, args.rounds):
        if r % 2:
            b = run_b(r)
            pair = (run_a(r), b)
        else:
            a = run_a(r)
            pair = (a, run_b(r))
        rounds.append(pair)
        flat.append(report_round(*pair, args.connections))
    summary(rounds, flat)
    if not use_wrk:
        print("  note: without wrk the Python load client may be the limit of both runs")


if __name__ == "__main__":
    main()
