"""Scaling out: 1, 2 and 3 gateway nodes on one PostgreSQL database, on this machine.

    python bench/scale.py [--nodes 1,2,3] [--rounds 2] [--duration 5] [--connections 64]

For each node count N, a fresh database on one throwaway durable PostgreSQL server
(bench/pgserver.py) and N `tag-gateway serve` processes on it, each with the config of
bench/ingest.py (2 destinations relaying to one local fake Graph, 20 rules, geo). The load is
N `wrk` runs at once, one per node, with the connections split between them (no proxy in
between: its cost would be measured too). Per N: total max hits/s after a warm-up, then p99 at
half that rate (the open-loop client of bench/ingest.py, one per node at once; the p99 shown
is the worst node's), then the relay's drain. The node counts take turns (1, 2, 3 then 3, 2, 1,
...) and medians over `--rounds` are printed with the ratio to one node's: the machine's speed
drifts within minutes, and its other users come and go.

What each hit cost: the database's statements, commits, rows inserted and WAL bytes per hit
answered 2xx and per event delivered to the fake Graph (pg_stat_statements, pg_stat_database,
pg_current_wal_lsn, from the first measurement to the end of the drain), and the CPU seconds of
the PostgreSQL server's processes and of the gateway nodes during the max-rate runs (from
/proc), as cores busy: hits/s per core of each, the figures that extrapolate to a bigger
machine. Nothing is pinned to a core: the server, the nodes, the load and the fake Graph all
share the machine's cores, so more nodes mostly share the same CPU more ways.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import sys
import tempfile
import time
from argparse import Namespace
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import ingest  # bench/ingest.py, next to this script: config, load, processes
import pgserver  # bench/pgserver.py: the PostgreSQL server
import procstat  # bench/procstat.py: CPU time from /proc


def cpu_seconds(pids: list[int]) -> float:
    """CPU seconds used so far by these processes."""
    return procstat.cpu_seconds(lambda pid, _fields: pid in pids)


@dataclass
class Run:
    """One node count, one round."""

    nodes: int
    rps: float = 0.0
    p99_ms: float = 0.0
    hits_ok: int = 0
    delivered: int = 0
    pg_cores: float = 0.0
    gw_cores: float = 0.0
    cost_per_hit: str = ""
    cost_per_event: str = ""
    notes: list[str] = field(default_factory=list)


def run_nodes(args: Namespace, cluster: pgserver.DurableCluster, nodes: int, round_: int,
              hits: list[ingest.Hit], script: Path) -> Run:
    folder = Path(tempfile.mkdtemp(prefix=f"bench-scale-{nodes}-"))
    processes = ingest.Processes(folder)
    database = cluster.fresh_database()
    run = Run(nodes)
    try:
        graph_port = ingest.free_port()
        graph = f"http://127.0.0.1:{graph_port}"
        me = [sys.executable, str(Path(ingest.__file__).resolve())]
        processes.start("graph", [*me, "--role", "graph", "--port", str(graph_port)], None)
        urls, configs = [], []
        for k, port in enumerate(ingest.gateway_ports(nodes, avoid={graph_port})):
            config = ingest.write_config(
                folder / f"node{k}", port, graph_port,
                destinations=ingest.live_destinations(2, graph_port), dsn=cluster.dsn(database))
            processes.start(f"node{k}", [sys.executable, "-m", "gateway", "serve", "--config",
                                         str(config)], None)
            urls.append(f"http://127.0.0.1:{port}")
            configs.append(config)
        ingest.wait_ready(graph + "/count", processes)
        for url in urls:
            ingest.wait_ready(url + "/readyz", processes)
        node_pids = [process.pid for name, process in processes.running if name != "graph"]
        before = pgserver.counters(cluster, database)

        # Max rate: one wrk per node at once, the connections split between them.
        per_node = Namespace(connections=max(1, args.connections // nodes))
        label = f"n{nodes}r{round_}"

        def load(seconds: float, tag: str) -> list[ingest.Throughput]:
            with ThreadPoolExecutor(nodes) as pool:
                return list(pool.map(
                    lambda k: ingest.run_wrk(urls[k] + "/tr", script, per_node, seconds,
                                             f"{label}{tag}{k}", list(range(os.cpu_count() or 1))),
                    range(nodes)))

        warm = load(args.warm_up, "w")
        pg_cpu, gw_cpu = cluster.cpu_seconds(), cpu_seconds(node_pids)
        start = time.perf_counter()
        measured = load(args.duration, "m")
        elapsed = time.perf_counter() - start
        run.pg_cores = (cluster.cpu_seconds() - pg_cpu) / elapsed
        run.gw_cores = (cpu_seconds(node_pids) - gw_cpu) / elapsed
        run.rps = sum(t.rps for t in measured)
        run.hits_ok = sum(t.requests - t.non_2xx for t in [*warm, *measured])
        if any(t.non_2xx for t in measured):
            run.notes.append(f"non-2xx {sum(t.non_2xx for t in measured):,}")
        drain_all(graph, configs[0], run)

        # Latency at half the max rate, split evenly between the nodes.
        async def latencies() -> list[ingest.Latency]:
            import asyncio

            return list(await asyncio.gather(*(
                ingest.open_loop(url, hits, run.rps / 2 / nodes, args.duration,
                                 f"{label}lat{k}") for k, url in enumerate(urls))))

        lats = ingest.run_async(latencies)
        run.p99_ms = max(lat.p99_ms for lat in lats)
        run.hits_ok += sum(n for lat in lats for s, n in lat.statuses.items() if 200 <= s < 300)
        if any(lat.send_lag_p99_ms > 2 for lat in lats):
            run.notes.append("latency client lagged (>2 ms)")
        drain_all(graph, configs[0], run)
        run.delivered = ingest.received(graph)
        processes.stop_all()  # the nodes' connections end: their statistics are counted
        time.sleep(1.0)
        after = pgserver.counters(cluster, database)
        run.cost_per_hit = before.per_event(after, run.hits_ok, "hit")
        run.cost_per_event = before.per_event(after, run.delivered, "delivered event")
    finally:
        processes.stop_all()
        cluster.drop_database(database)
        shutil.rmtree(folder, ignore_errors=True)
    return run


def drain_all(graph: str, config: Path, run: Run) -> None:
    expected = ingest.deliverable(ingest.outbox_rows(config))
    events, waited = ingest.drain(graph, expected)
    if events < expected:
        run.notes.append(f"relay {expected - events:,} behind after {waited:.0f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", default="1,2,3", help="node counts, comma-separated")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per measurement")
    parser.add_argument("--warm-up", type=float, default=2.0)
    parser.add_argument("--connections", type=int, default=64, help="in all, split per node")
    args = parser.parse_args()
    counts = [int(n) for n in args.nodes.split(",")]
    if args.rounds < 1 or not counts or min(counts) < 1:
        parser.error("--rounds and every node count must be at least 1")
    if not shutil.which("wrk"):
        raise SystemExit("bench/scale.py needs wrk (Debian package wrk)")
    signal.signal(signal.SIGTERM, ingest._terminate)
    folder = Path(tempfile.mkdtemp(prefix="bench-scale-"))
    try:
        with pgserver.running() as cluster:
            bench(args, counts, cluster, folder)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def bench(args: Namespace, counts: list[int], cluster: pgserver.DurableCluster,
          folder: Path) -> None:
    hits = ingest.make_hits(10_000)
    script = folder / "hits.lua"
    ingest.write_wrk_script(hits, script)
    print(ingest.machine_info())
    print(f"outbox on {cluster.describe()}; nothing pinned: server, nodes, wrk and the fake "
          f"Graph share the cores")
    print(f"each node: bench/ingest.py's config (2 destinations, 20 rules, geo); load: wrk, "
          f"{args.connections} connections split between the nodes, {args.warm_up:g} s warm-up "
          f"+ {args.duration:g} s; p99 at half the max rate; {args.rounds} rounds, node counts "
          f"alternating")
    print(f"load average before: {os.getloadavg()[0]:.2f}")
    runs: dict[int, list[Run]] = {n: [] for n in counts}
    for r in range(args.rounds):
        for nodes in counts if r % 2 == 0 else list(reversed(counts)):
            run = run_nodes(args, cluster, nodes, r, hits, script)
            runs[nodes].append(run)
            print(f"  round {r + 1}, {nodes} node(s): {run.rps:,.0f} hits/s, p99 "
                  f"{run.p99_ms:.1f} ms, PostgreSQL {run.pg_cores:.2f} cores, nodes "
                  f"{run.gw_cores:.2f} cores{'; ' + '; '.join(run.notes) if run.notes else ''}",
                  flush=True)
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    one = statistics.median(run.rps for run in runs[counts[0]])
    print(f"{'nodes':>5}  {'hits/s':>8}  {'vs ' + str(counts[0]):>6}  {'p99 ms':>7}  "
          f"{'PG cores':>8}  {'node cores':>10}  {'hits/s per PG core':>18}  "
          f"{'hits/s per node core':>20}")
    for nodes in counts:
        rps = statistics.median(run.rps for run in runs[nodes])
        pg = statistics.median(run.pg_cores for run in runs[nodes])
        gw = statistics.median(run.gw_cores for run in runs[nodes])
        print(f"{nodes:>5}  {rps:>8,.0f}  {rps / one:>5.2f}x  "
              f"{statistics.median(run.p99_ms for run in runs[nodes]):>7.1f}  {pg:>8.2f}  "
              f"{gw:>10.2f}  {rps / pg:>18,.0f}  {rps / gw:>20,.0f}")
    for nodes in counts:
        last = runs[nodes][-1]
        print(f"database cost, {nodes} node(s), last round: per hit {last.cost_per_hit}; "
              f"per delivered event {last.cost_per_event}")


if __name__ == "__main__":
    main()
