"""Several gateway nodes on one PostgreSQL database, as processes of their own: relaying
nodes claim concurrently (no event sent twice), and one killed with SIGKILL mid-work loses
nothing: another node sends what it held once its lease runs out."""

from __future__ import annotations

import asyncio
import os
import pickle
import signal
import sys
import time
from dataclasses import replace
from pathlib import Path

from gateway.settings import StorageSettings
from gateway.storage import OutboxEntry, open_outbox

from ...pgcluster import PgCluster
from ..conftest import postgres_store

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
        async with asyncio.timeout(60):
            # Load: ingest keeps committing while both nodes relay.
            while len(victim.acked) < 100 or not victim.sent:
                await ingest.enqueue(entries(total, 50))
                total += 50
                await asyncio.sleep(0.01)
            await victim.stop()  # SIGKILL, maybe holding a claim
            await ingest.enqueue(entries(total, 200))
            total += 200
            while len(survivor.acked | victim.acked) < total:
                await asyncio.sleep(0.05)
        counts = await ingest.counts()
    finally:
        for node in (victim, survivor):
            await node.stop()
        await ingest.close()
    assert counts == {("main", "delivered"): total}  # every acknowledged event delivered
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
