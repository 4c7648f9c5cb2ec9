"""Hostile bodies: browser hits and the gateway's memory while unauthenticated 8 MB server-event
bodies pour in (issue 19).

    python bench/hostile.py [--attackers-from one-ip|many-ips|rotating] [--rounds 3]
                            [--duration 10] [--rate 100]

Starts, on loopback only, each in its own process: `python -m gateway serve` (pinned to core 0,
as bench/ingest.py does) with bench/ingest.py's config less its routing rules (geo test
database, its other rules, one live destination with a token pointed at its fake Graph API, durable
outbox, logging WARNING), plus one `access_keys` entry (the SHA-256 of a key only the sanity
check uses) and `trusted_proxies: [loopback]`; bench/ingest.py's fake Graph API. One valid
request (from a documentation address, so loopback is never trusted by the throttle) checks
that the key works before anything is measured.

Each round has two phases, their order alternating from round to round (the machine's speed
drifts): (a) baseline: bench/ingest.py's open-loop latency client sends its realistic `/tr`
hits (browser query strings, user agents, cookies) at `--rate` req/s for `--duration` s, latency
counted from each request's scheduled send time; (b) under attack: the same while an attacker
process (its own event loop and process, niced, so it neither shares the latency client's loop
nor outranks it) runs 8 concurrent clients, each POSTing ~8 MB JSON bodies in a loop to
`/capi/<pixel>/events` and `/v26.0/<pixel>/events`, cycling through a wrong key in the body (at
its end: `accessKey` for the CAPI route, `access_token` for the Graph one), no key at all, and
invalid JSON (truncated, no key). `--attackers-from` says where the attack comes from:
`one-ip` (every request from 127.0.0.1: the throttle answers 429 after 5 failures), `many-ips`
(each client its own documentation address in `X-Forwarded-For`, which the gateway believes
from a loopback proxy: each is throttled after its 5), `rotating` (a new address on every
request: the throttle never sees an address twice, so every body is read and scanned).

The gateway's RSS (/proc/<pid>/status VmRSS) is sampled every 50 ms during each phase, and its
CPU time read before and after. Printed per round and as medians: `/tr` p50/p99/max, non-2xx
and errors; RSS before any attack vs the peak under attack; the attack's requests per status
code (or client error). Targets: under attack `/tr` p99 < 100 ms (median of the rounds) and the
gateway's RSS at most +50 MB (MiB here) over its RSS before the first attack. Takes about
`rounds x (2 x duration + 6)` s plus start-up; never part of pytest; every process it starts is
stopped on exit, error or Ctrl-C (and gets SIGTERM if this script is killed).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import hashlib
import os
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import ingest  # bench/ingest.py, next to this script: hits, config, processes, latency client
import orjson
from aiohttp import ClientError, ClientSession, ClientTimeout, TCPConnector

PIXEL = ingest.MAIN_PIXEL
ROUTES = (f"/capi/{PIXEL}/events", f"/v26.0/{PIXEL}/events")
ACCESS_KEY = "bench-hostile-key-0f3a9c2e7b8d41a6"  # only the sanity check sends it
BODY_BYTES = 8_000_000  # ~8 MB: under the default server.max_server_body_bytes (8 MiB)
ATTACKERS = 8
MODES = ("one-ip", "many-ips", "rotating")
RAMP_SECONDS = 1.0  # the attack runs this long before the latency client starts
SETTLE_SECONDS = 2.0  # after an attack, before the next phase
RSS_EVERY = 0.05
TARGET_P99_MS, TARGET_RSS_MIB = 100.0, 50.0
MIB = 2**20


# ---------------------------------------------------------------- config and hits


def write_config(folder: Path, port: int, graph_port: int) -> Path:
    """bench/ingest.py's config with one destination, trusting only a loopback proxy, and one
    access key (configured as its SHA-256, as docs/server-events.md shows)."""
    config = ingest.write_config(folder, port, graph_port,
                                 destinations=ingest.live_destinations(1, graph_port),
                                 skip_rules=(ingest.ROUTE_RULES,))
    text = config.read_text()
    proxies = "trusted_proxies: [private]"
    if proxies not in text:
        raise SystemExit("bench/ingest.py's config changed: no trusted_proxies line to replace")
    config.write_text(text.replace(proxies, "trusted_proxies: [loopback]") + f"""access_keys:
  - name: backend
    sha256: {hashlib.sha256(ACCESS_KEY.encode()).hexdigest()}
    pixels: ["{PIXEL}"]
""")
    return config


def browser_hits(count: int) -> list[ingest.Hit]:
    """bench/ingest.py's hits, each naming only its visitor in X-Forwarded-For: with only
    loopback trusted, the internal hop they also name would be taken for the visitor."""
    return [ingest.Hit(hit.target, {**hit.headers, "X-Forwarded-For":
                                    hit.headers["X-Forwarded-For"].split(",")[0]})
            for hit in ingest.make_hits(count)]


# ---------------------------------------------------------------- the attacker (child process)


def attack_bodies() -> dict[str, bytes]:
    """~8 MB each: a CAPI batch with a wrong key at its end (one per route's field name), the
    same with no key, and invalid JSON (the keyless batch cut short)."""
    rng = random.Random(19)
    contents = [{"id": f"sku-{rng.randrange(10**6)}", "quantity": rng.randrange(1, 4),
                 "item_price": rng.randrange(100, 20000) / 100, "delivery_category": "home"}
                for _ in range(80)]
    event = {"event_name": "Purchase", "event_time": 1_765_000_000, "action_source": "website",
             "event_source_url": f"https://{ingest.HOST}/checkout/thanks",
             "user_data": {"em": [hashlib.sha256(b"visitor@example.com").hexdigest()],
                           "client_ip_address": "203.0.113.9",
                           "client_user_agent": "Mozilla/5.0 (X11; Linux x86_64)"},
             "custom_data": {"currency": "GBP", "value": 123.45, "contents": contents}}
    size = len(orjson.dumps({**event, "event_id": "atk-000000"}))
    data = [{**event, "event_id": f"atk-{n:06d}"} for n in range(BODY_BYTES // (size + 1))]
    batch = orjson.dumps({"data": data})
    return {"wrong accessKey": batch[:-1] + b',"accessKey":"wrong-key-7d1e"}',
            "wrong access_token": batch[:-1] + b',"access_token":"wrong-key-7d1e"}',
            "no key": batch,
            "invalid JSON": batch[:-3]}


def attack_request(client: int, n: int, mode: str) -> tuple[str, str, dict[str, str]]:
    """(route, body kind, headers) of a client's n-th request: the clients cycle through
    both routes and the three kinds of body, out of step with each other."""
    turn = client + n
    route = ROUTES[(turn // 3) % 2]
    kind = ("wrong", "no key", "invalid JSON")[turn % 3]
    if kind == "wrong":
        kind = "wrong accessKey" if route.startswith("/capi/") else "wrong access_token"
    headers = {"Content-Type": "application/json"}
    if mode == "many-ips":
        headers["X-Forwarded-For"] = f"192.0.2.{10 + client}"
    elif mode == "rotating":  # documentation IPv6 addresses: never the same one twice
        headers["X-Forwarded-For"] = f"2001:db8:{client:x}::{n + 1:x}"
    return route, kind, headers


@dataclass
class Attack:
    """What the attacker process reports (as JSON)."""

    outcomes: dict[str, int]  # status code or client error -> requests
    seconds: float
    bytes: int
    body_bytes: list[int]


async def attack(base: str, mode: str, seconds: float) -> Attack:
    bodies = attack_bodies()
    outcomes: Counter[str] = Counter()
    posted = 0

    async def client(k: int) -> None:
        nonlocal posted
        n = 0
        while True:
            route, kind, headers = attack_request(k, n, mode)
            n += 1
            try:
                async with session.post(base + route, data=bodies[kind],
                                        headers=headers) as answer:
                    await answer.read()
                    outcomes[str(answer.status)] += 1
            except (ClientError, TimeoutError) as exc:
                outcomes[type(exc).__name__] += 1
            posted += len(bodies[kind])

    async with ClientSession(connector=TCPConnector(limit=ATTACKERS),
                             timeout=ClientTimeout(total=30)) as session:
        start = time.perf_counter()
        tasks = [asyncio.create_task(client(k)) for k in range(ATTACKERS)]
        await asyncio.wait(tasks, timeout=seconds)  # the clients loop until cancelled
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        elapsed = time.perf_counter() - start
    return Attack(dict(outcomes), elapsed, posted, sorted({len(b) for b in bodies.values()}))


def run_attacker(port: int, mode: str, seconds: float, out: Path) -> None:
    os.nice(10)  # the latency client, on the same core, comes first
    result = ingest.run_async(lambda: attack(f"http://127.0.0.1:{port}", mode, seconds))
    out.write_bytes(orjson.dumps(result))


# ---------------------------------------------------------------- the gateway process


class Gateway:
    """The gateway's memory (VmRSS) and CPU time, from /proc."""

    def __init__(self, pid: int) -> None:
        self.pid = pid

    def mib(self, name: str = "VmRSS") -> float:
        text = Path(f"/proc/{self.pid}/status").read_text()
        found = re.search(rf"^{name}:\s+(\d+) kB", text, re.MULTILINE)
        return int(found.group(1)) / 1024 if found else 0.0

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.pid}/stat").read_text().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def waited_seconds(self) -> float:
        """How long the main thread (the event loop) was ready to run but waited for a CPU:
        on a shared machine, what the others' work cost it."""
        return int(Path(f"/proc/{self.pid}/schedstat").read_text().split()[1]) / 1e9

    def times(self) -> tuple[float, float, float]:
        return time.perf_counter(), self.cpu_seconds(), self.waited_seconds()

    def shares(self, since: tuple[float, float, float]) -> tuple[float, float]:
        """(CPU used, CPU waited for) since `since`, in cores."""
        now = self.times()
        elapsed = now[0] - since[0]
        return (now[1] - since[1]) / elapsed, (now[2] - since[2]) / elapsed

    @contextlib.contextmanager
    def sampled(self) -> Iterator[list[float]]:
        """RSS samples (MiB) every RSS_EVERY s on a thread, while the block runs."""
        samples = [self.mib()]
        stop = threading.Event()

        def sample() -> None:
            while not stop.wait(RSS_EVERY):
                with contextlib.suppress(OSError):
                    samples.append(self.mib())

        thread = threading.Thread(target=sample, daemon=True)
        thread.start()
        try:
            yield samples
        finally:
            stop.set()
            thread.join()
            samples.append(self.mib())


def pid_of(processes: ingest.Processes, name: str) -> int:
    # taskset execs the command: the child's pid is the gateway's
    return next(process.pid for started, process in processes.running if started == name)


def sanity_check(base: str) -> int:
    """One valid event with the key (from a documentation address behind the trusted loopback
    proxy, so 127.0.0.1 is never the address that proved a key: the throttle trusts such an
    address for a while, and the one-ip attack comes from there)."""
    body = orjson.dumps({"accessKey": ACCESS_KEY, "data": [{
        "event_name": "Lead", "event_time": int(time.time()), "action_source": "website",
        "event_source_url": f"https://{ingest.HOST}/contact",
        "user_data": {"client_ip_address": "203.0.113.9", "client_user_agent": "bench"}}]})
    request = urllib.request.Request(base + ROUTES[0], data=body, method="POST", headers={
        "Content-Type": "application/json", "X-Forwarded-For": "198.51.100.77"})
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as exc:
        raise SystemExit(f"the valid request was refused ({exc.code}): "
                         f"{exc.read()[:300]!r}") from None


def denied_metrics(base: str) -> dict[str, float]:
    text = ingest.fetch(ingest.operator_base(base) + "/metrics").decode()
    return {m.group(1): float(m.group(2)) for m in re.finditer(
        r'^gateway_access_denied_total\{reason="(\w+)"\} (\S+)$', text, re.MULTILINE)}


# ---------------------------------------------------------------- the run


@dataclass
class Phase:
    latency: ingest.Latency
    rss: list[float]
    cpu: float  # the gateway's CPU, in cores
    waited: float  # its event loop waiting for a CPU, in cores
    attack: Attack | None = None


@dataclass
class Run:
    baseline: list[Phase] = field(default_factory=list)
    attacked: list[Phase] = field(default_factory=list)
    rss_before_attack: float = 0.0


def measure_phase(gateway: Gateway, base: str, hits: list[ingest.Hit], args: argparse.Namespace,
                  label: str) -> Phase:
    since = gateway.times()
    with gateway.sampled() as rss:
        latency = ingest.run_async(lambda: ingest.open_loop(base, hits, args.rate,
                                                            args.duration, label))
    return Phase(latency, rss, *gateway.shares(since))


def attacked_phase(gateway: Gateway, base: str, hits: list[ingest.Hit], args: argparse.Namespace,
                   label: str, processes: ingest.Processes, folder: Path,
                   load: list[int]) -> Phase:
    """The latency phase while the attacker process runs (started RAMP_SECONDS before)."""
    out = folder / f"{label}.json"
    # ramp + the latency client's 1 s warm-up + the measurement: the attack covers it all
    seconds = RAMP_SECONDS + 1.0 + args.duration + 0.5
    port = base.rpartition(":")[2]
    processes.start(label, [sys.executable, str(Path(__file__).resolve()), "--role", "attacker",
                            "--port", port, "--attackers-from", args.attackers_from,
                            "--seconds", f"{seconds:g}", "--out", str(out)], load)
    attacker = processes.running[-1]
    since = gateway.times()
    with gateway.sampled() as rss:
        time.sleep(RAMP_SECONDS)
        latency = ingest.run_async(lambda: ingest.open_loop(base, hits, args.rate,
                                                            args.duration, label))
        cpu, waited = gateway.shares(since)
        try:
            attacker[1].wait(seconds + 60)
        except subprocess.TimeoutExpired:
            raise SystemExit("the attacker did not stop") from None
    processes.running.remove(attacker)  # done: check_alive must not count it as a death
    if attacker[1].returncode:
        log = (folder / f"{label}.log").read_text(errors="replace")[-2000:]
        raise SystemExit(f"the attacker exited with {attacker[1].returncode}:\n{log}")
    return Phase(latency, rss, cpu, waited, Attack(**orjson.loads(out.read_bytes())))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--attackers-from", choices=MODES, default="one-ip",
                        help="one client address, one per attacking client, or a new one per "
                             "request")
    parser.add_argument("--rounds", type=int, default=3,
                        help="baseline and attacked phases, alternating; medians are reported")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per phase")
    parser.add_argument("--rate", type=float, default=100.0, help="/tr hits per second")
    parser.add_argument("--keep", action="store_true", help="keep the temp folder (logs)")
    parser.add_argument("--role", choices=("attacker",), help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--seconds", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.role == "attacker":
        return run_attacker(args.port, args.attackers_from, args.seconds, args.out)
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")

    signal.signal(signal.SIGTERM, ingest._terminate)
    signal.signal(signal.SIGHUP, ingest._terminate)
    folder = Path(tempfile.mkdtemp(prefix="bench-hostile-"))
    processes = ingest.Processes(folder)
    try:
        bench(args, folder, processes)
    except KeyboardInterrupt:
        raise SystemExit("interrupted: stopping every process this bench started") from None
    finally:
        processes.stop_all()
        if args.keep:
            print(f"kept {folder}")
        else:
            shutil.rmtree(folder, ignore_errors=True)


def bench(args: argparse.Namespace, folder: Path, processes: ingest.Processes) -> None:
    servers, load, note = ingest.cpu_plan(1)
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, load)
    hits = browser_hits(5000)
    gc.freeze()
    graph_port = ingest.free_port()
    [port] = ingest.gateway_ports(avoid={graph_port})
    base, graph = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{graph_port}"
    config = write_config(folder, port, graph_port)
    check = subprocess.run([sys.executable, "-m", "gateway", "check", "--config", str(config)],
                           cwd=ingest.ROOT, capture_output=True, text=True, timeout=60)
    if check.returncode:
        raise SystemExit(f"the bench config does not validate:\n{check.stdout}{check.stderr}")
    processes.start("graph", [sys.executable, str(Path(ingest.__file__).resolve()), "--role",
                              "graph", "--port", str(graph_port)], load)
    processes.start("gateway", [sys.executable, "-m", "gateway", "serve", "--config",
                                str(config)], servers)
    ingest.wait_ready(graph + "/count", processes)
    ingest.wait_ready(base + "/readyz", processes)
    gateway = Gateway(pid_of(processes, "gateway"))
    sane = sanity_check(base)

    print(ingest.machine_info())
    print(f"NOTE: load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores at the start: "
          "other work on the machine (on the project's box, other engineers' runs share the "
          "cores) inflates latencies; each phase prints how long the gateway's loop waited for "
          "a CPU")
    print(f"cores: gateway on {servers}, latency client + attacker (nice 10) + fake Graph + "
          f"this script on {load}{note}")
    print(f"config: bench/ingest.py's (geo, {ingest.rule_count((ingest.ROUTE_RULES,))} rules, "
          "1 destination -> local fake Graph, synchronous full), trusted_proxies [loopback], "
          f"1 access key (a valid request answered {sane}); logging WARNING")
    print(f"phases: /tr at {args.rate:g} req/s open loop, 1 s warm-up + {args.duration:g} s; "
          f"attack: {ATTACKERS} clients, ~{BODY_BYTES / 1e6:g} MB bodies (wrong key / no key / "
          f"invalid JSON) to {' and '.join(ROUTES)}, from {args.attackers_from}")

    run = Run()
    for r in range(args.rounds):
        order = ("baseline", "attack") if r % 2 == 0 else ("attack", "baseline")
        for which in order:
            label = f"{which}{r}"
            if which == "baseline":
                phase = measure_phase(gateway, base, hits, args, label)
                run.baseline.append(phase)
                if r == 0:
                    run.rss_before_attack = statistics.median(phase.rss)
            else:
                phase = attacked_phase(gateway, base, hits, args, label, processes, folder,
                                       load)
                run.attacked.append(phase)
                time.sleep(SETTLE_SECONDS)
            print_phase(r, which, phase, run.rss_before_attack)
            processes.check_alive()
    report(run, gateway, denied_metrics(base))


def lat_text(lat: ingest.Latency) -> str:
    bad = sum(n for status, n in lat.statuses.items() if not 200 <= status < 300)
    return (f"/tr p50 {lat.p50_ms:6.1f}  p99 {lat.p99_ms:6.1f}  max {lat.max_ms:6.1f} ms  "
            f"non-2xx {bad}, errors {lat.errors}")


def outcome_text(outcomes: dict[str, int]) -> str:
    return ", ".join(f"{k} {n:,}" for k, n in sorted(outcomes.items(), key=lambda kv: -kv[1]))


def print_phase(r: int, which: str, phase: Phase, rss_before: float) -> None:
    rss = (f"RSS median {statistics.median(phase.rss):.1f} MiB" if which == "baseline" else
           f"RSS peak {max(phase.rss):.1f} MiB (+{max(phase.rss) - rss_before:.1f})")
    print(f"round {r + 1} {which:<8}  {lat_text(phase.latency)};  {rss}; gateway CPU "
          f"{phase.cpu:.0%}, its loop waited for a CPU {phase.waited:.0%}")
    if phase.attack:
        done, seconds = sum(phase.attack.outcomes.values()), phase.attack.seconds
        print(f"    attack: {done:,} requests in {seconds:.1f} s ({done / seconds:.1f}/s, "
              f"{phase.attack.bytes / MIB / seconds:.0f} MiB/s posted): "
              f"{outcome_text(phase.attack.outcomes)}")


def report(run: Run, gateway: Gateway, denied: dict[str, float]) -> None:
    print("medians of the rounds:")
    for name, phases in (("baseline", run.baseline), ("attacked", run.attacked)):
        lats = [p.latency for p in phases]
        bad = sum(n for lat in lats for s, n in lat.statuses.items() if not 200 <= s < 300)
        print(f"  {name}  /tr p50 {statistics.median(x.p50_ms for x in lats):6.1f} ms  "
              f"p99 {statistics.median(x.p99_ms for x in lats):6.1f} ms (rounds: "
              f"{', '.join(f'{x.p99_ms:.1f}' for x in lats)})  max "
              f"{max(x.max_ms for x in lats):.1f} ms  non-2xx {bad}, errors "
              f"{sum(x.errors for x in lats)}; gateway CPU "
              f"{statistics.median(p.cpu for p in phases):.0%}, waited "
              f"{statistics.median(p.waited for p in phases):.0%}")
    total: Counter[str] = Counter()
    for phase in run.attacked:
        if phase.attack:
            total.update(phase.attack.outcomes)
    print(f"  attack requests, all rounds: {outcome_text(dict(total))}; the gateway counted "
          f"refusals {', '.join(f'{k} {v:,.0f}' for k, v in sorted(denied.items()))}")
    peak = max(max(p.rss) for p in run.attacked)
    growth = peak - run.rss_before_attack
    print(f"  gateway RSS: {run.rss_before_attack:.1f} MiB before the first attack, peak "
          f"{peak:.1f} MiB under attack (+{growth:.1f}; per round "
          f"{', '.join(f'+{max(p.rss) - run.rss_before_attack:.1f}' for p in run.attacked)}), "
          f"{gateway.mib():.1f} MiB now; VmHWM {gateway.mib('VmHWM'):.1f} MiB")
    p99 = statistics.median(p.latency.p99_ms for p in run.attacked)
    print(f"target /tr p99 < {TARGET_P99_MS:g} ms under attack: "
          f"{'met' if p99 < TARGET_P99_MS else 'NOT met'} ({p99:.1f} ms); gateway memory "
          f"+{TARGET_RSS_MIB:g} MiB at most: {'met' if growth <= TARGET_RSS_MIB else 'NOT met'} "
          f"(+{growth:.1f} MiB)")
    lats = [p.latency for p in run.baseline + run.attacked]
    if any(x.errors for x in lats):
        print("  NOTE: /tr errors are mostly hits unanswered within the client's 5 s timeout; "
              "they are left out of p50/p99, which therefore understate those phases")
    if any(x.sent_rate < 0.97 * x.rate or x.send_lag_p99_ms > 2 for x in lats):
        print(f"  WARNING: the latency client sent late in a phase (send lag p99 up to "
              f"{max(x.send_lag_p99_ms for x in lats):.1f} ms): its figures include "
              "client-side delay")


if __name__ == "__main__":
    main()
