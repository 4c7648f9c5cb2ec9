"""Several gateway nodes on one PostgreSQL database, as processes of their own: relaying
nodes claim concurrently (no event sent twice), and one killed with SIGKILL mid-work loses
nothing: another node sends what it held once its lease runs out. First bare relaying
processes on the storage protocol, then `tag-gateway serve` nodes taking hits. The helpers for
serve nodes under load (Load, SlowGraph, graph_for_nodes, serve) serve test_failures.py too."""

from __future__ import annotations

import asyncio
import itertools
import os
import pickle
import signal
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, NamedTuple

import aiohttp
import orjson
from aiohttp import web

from gateway.settings import StorageSettings
from gateway.storage import OutboxEntry, open_outbox

from ...conftest import PIXEL_A, graph_server
from ...pgcluster import PgCluster
from ...test_serve import free_port, wait_for_ready
from ..conftest import postgres_store
from .test_gateway import postgres_config

REPO = Path(__file__).resolve().parents[3]

# A relaying node: claims batches, "sends" them (says which ids), acknowledges them.
NODE = """
import asyncio, pickle, sys
from gateway.storage import open_outbox

storage = pickle.loads(bytes.fromhex(sys.argv[1]))

async def main():
    outbox = await open_outbox(storage, clock=__import__("time").time)
    woken = outbox.wakeup("main")
    while True:
        woken.clear()
        rows = (await outbox.claim("main", 25)).rows
        if not rows:
            await asyncio.wait([asyncio.ensure_future(woken.wait())], timeout=0.1)
            continue
        print("sent", *(row.event_id for row in rows), flush=True)
        await asyncio.sleep(0.01)  # the request to the platform
        await outbox.finish(rows)
        print("acked", *(row.event_id for row in rows), flush=True)

asyncio.run(main())
"""
LEASE = 2.0  # seconds: how long a dead node's rows wait for another
NODE_LEASE = 2.5  # the same for gateway nodes (more than twice the destination timeout)


def entries(start: int, count: int) -> list[OutboxEntry]:
    return [OutboxEntry("main", "111", "", "PageView", f"e{n}", 1_800_000_000, b"{}",
                        expires_at=time.time() + 3600) for n in range(start, start + count)]


class Node:
    """A relaying node's process and what it said."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.sent: list[list[str]] = []
        self.acked: set[str] = set()
        self.reader = asyncio.ensure_future(self._read())

    @classmethod
    async def start(cls, storage: StorageSettings) -> Node:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-c", NODE, pickle.dumps(storage).hex(),
            stdout=asyncio.subprocess.PIPE, env={**os.environ, "PYTHONPATH": str(REPO)})
        return cls(process)

    async def _read(self) -> None:
        assert self.process.stdout is not None
        while line := (await self.process.stdout.readline()).decode():
            word, *ids = line.split()
            if word == "sent":
                self.sent.append(ids)
            elif word == "acked":
                self.acked.update(ids)

    async def stop(self) -> None:
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGKILL)
        await self.process.wait()
        await self.reader


async def test_a_node_killed_under_load_loses_nothing_and_nothing_else_is_sent_twice(
    pg_cluster: PgCluster, pg_database: str
) -> None:
    storage = replace(postgres_store(pg_cluster, pg_database), lease_seconds=LEASE,
                      commit_interval_ms=2)
    ingest = await open_outbox(storage, clock=time.time)
    victim, survivor = await Node.start(storage), await Node.start(storage)
    total = 0
    try:
        async with asyncio.timeout(40):
            # Load: ingest keeps committing while both nodes relay.
            while len(victim.acked) < 100 or not victim.sent:
                await ingest.enqueue(entries(total, 50))
                total += 50
                await asyncio.sleep(0.01)
            await victim.stop()  # SIGKILL, maybe holding a claim
            await ingest.enqueue(entries(total, 200))
            total += 200
            # (Not the nodes' word: the victim may have died between its commit and saying so.)
            while await ingest.counts() != {("main", "delivered"): total}:
                await asyncio.sleep(0.05)
    finally:
        for node in (victim, survivor):
            await node.stop()
        await ingest.close()
    sent_twice = [event for event, times in _tally(victim, survivor).items() if times > 1]
    # Only what the killed node had sent without acknowledging may go out again.
    assert set(sent_twice) <= {e for batch in victim.sent for e in batch} - victim.acked
    assert len(survivor.sent) > 0 and len(victim.acked) >= 100


def _tally(*nodes: Node) -> dict[str, int]:
    times: dict[str, int] = {}
    for node in nodes:
        for batch in node.sent:
            for event in batch:
                times[event] = times.get(event, 0) + 1
    return times


class SlowGraph:
    """A Graph API that takes a while to answer, so that a node killed under load is likely
    killed mid-request; it records when it received each event, and from which node when each
    node's graph_url names it (`graph_for_nodes`)."""

    def __init__(self) -> None:
        self.received: list[tuple[float, str]] = []
        self.senders: dict[str, list[str]] = {}  # event id: the nodes that sent it, in order
        self.in_flight: dict[str, str] = {}  # event id: the node whose request holds it

    async def handle(self, request: web.Request) -> web.Response:
        node = request.match_info.get("node", "")
        events = [event["event_id"] for event in orjson.loads(await request.read())["data"]]
        self.received += [(time.monotonic(), event) for event in events]
        for event in events:
            self.senders.setdefault(event, []).append(node)
            self.in_flight[event] = node
        try:
            await asyncio.sleep(0.1)
        finally:
            for event in events:
                self.in_flight.pop(event, None)
        return web.json_response({"events_received": len(events), "messages": [],
                                  "fbtrace_id": "T"})

    def delivered(self) -> set[str]:
        return set(self.senders)

    def sent_twice(self) -> dict[str, list[float]]:
        """Events received more than once: when each time."""
        sendings: dict[str, list[float]] = {}
        for moment, event in self.received:
            sendings.setdefault(event, []).append(moment)
        return {event: times for event, times in sendings.items() if len(times) > 1}


async def graph_for_nodes(aiohttp_server: Any, graph: SlowGraph) -> str:
    """`graph` served under /{node}/...: a node's graph_url is this URL + "/" + its name."""
    app = web.Application()
    app.router.add_post("/{node}/{version}/{pixel}/events", graph.handle)
    server = await aiohttp_server(app)
    return str(server.make_url("")).rstrip("/")


class Answer(NamedTuple):
    sent: float  # time.monotonic() when the request left
    answered: float
    base: str  # the node's base URL
    status: int
    retry_after: str | None


class Load:
    """Hits sent to gateway nodes; the ids of those answered 2xx, and every answer."""

    def __init__(self, session: aiohttp.ClientSession) -> None:
        self.session = session
        self.accepted: list[str] = []
        self.answers: list[Answer] = []
        self._numbers = itertools.count()

    async def hit(self, base: str) -> int | None:
        """One hit; its status (None: the node died under it, so not acknowledged)."""
        event_id = f"h{next(self._numbers)}"
        params = {"id": PIXEL_A, "ev": "PageView", "eid": event_id,
                  "dl": "https://shop.example.com/"}
        sent = time.monotonic()
        try:
            async with self.session.get(f"{base}/tr", params=params) as response:
                if response.status == 200:
                    self.accepted.append(event_id)
                self.answers.append(Answer(sent, time.monotonic(), base, response.status,
                                           response.headers.get("Retry-After")))
                return response.status
        except aiohttp.ClientError:
            return None

    async def round(self, *bases: str, each: int = 5) -> None:
        await asyncio.gather(*(self.hit(base) for base in bases for _ in range(each)))

    async def run(self, *bases: str) -> None:
        """Rounds to each node until cancelled, each node at its own pace (one that hangs
        holds back no other)."""

        async def rounds(base: str) -> None:
            while True:
                await self.round(base)
                await asyncio.sleep(0.01)

        await asyncio.gather(*(rounds(base) for base in bases))

    def between(self, base: str, start: float, end: float = float("inf")) -> list[Answer]:
        """What `base` answered to hits sent after `start` and answered before `end`."""
        return [answer for answer in self.answers if answer.base == base
                and answer.sent > start and answer.answered < end]


async def nothing_left_open(cluster: PgCluster, database: str) -> bool:
    """True when no row waits or is leased (a dead node's lease ran out and another node took
    its rows over)."""
    store = await open_outbox(postgres_store(cluster, database), clock=time.time)
    try:
        return not await store.open_counts()
    finally:
        await store.close()


async def serve(tmp_path: Path, graph_url: str, dsn: str, *, lease: float = NODE_LEASE,
                timeout: float = 1.0, destination: str = "") -> tuple[str, Any]:
    """A `tag-gateway serve` node on the database; its base URL and process. `timeout`: the
    destination's (keep the lease above twice it); `destination`: more lines of its settings."""
    port = free_port()
    config = postgres_config(tmp_path, graph_url, dsn)
    text = config.read_text().replace("destinations:\n", f"server: {{port: {port}}}\n"
                                      "destinations:\n", 1)
    text = text.replace("commit_interval_ms: 1,",
                        f"commit_interval_ms: 1, lease_seconds: {lease},")
    config.write_text(text.replace("    linger_ms: 0",
                                   f"    timeout: {timeout}\n{destination}    linger_ms: 0"))
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway", "serve", "--config", str(config),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
        env={**os.environ, "PYTHONPATH": str(REPO), "GATEWAY_DATABASE_URL": dsn})
    base = f"http://127.0.0.1:{port}"
    # Several nodes start at once on a machine that may be busy: more than one's 10 s.
    await wait_for_ready(f"{base}/readyz", process, seconds=30)
    return base, process


async def test_gateway_nodes_share_the_work_and_one_killed_under_load_loses_no_2xx_event(
    tmp_path: Path, aiohttp_server: Any, pg_cluster: PgCluster, pg_database: str
) -> None:
    graph = SlowGraph()
    graph_url = await graph_server(aiohttp_server, graph.handle)
    dsn = pg_cluster.dsn(pg_database)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    victim, survivor = await asyncio.gather(serve(tmp_path / "a", graph_url, dsn),
                                            serve(tmp_path / "b", graph_url, dsn))
    try:
        async with aiohttp.ClientSession() as session, asyncio.timeout(40):
            load = Load(session)
            while len(graph.received) < 100 or not graph.in_flight:
                await load.round(victim[0], survivor[0])
            victim[1].kill()  # SIGKILL, in the middle of the load
            await victim[1].wait()
            await load.round(survivor[0], each=100)
            # ... and nothing is left leased by the dead node: its lease ran out and the
            # survivor took its rows over.
            while (not set(load.accepted) <= graph.delivered()
                   or not await nothing_left_open(pg_cluster, pg_database)):
                await asyncio.sleep(0.05)
    finally:
        for _, process in (victim, survivor):
            if process.returncode is None:
                process.kill()
            await process.wait()
    assert set(load.accepted) <= graph.delivered()  # every 2xx'd event delivered
    # An event is sent again only once the lease of the claim that sent it ran out (the dead
    # node's), never by two live claims at once. (The first send follows its claim by a few
    # milliseconds: half the lease leaves room for a loaded machine.)
    again = graph.sent_twice()
    assert all(len(times) == 2 and times[1] - times[0] >= NODE_LEASE / 2
               for times in again.values()), again
