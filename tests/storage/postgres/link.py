"""A TCP link between one gateway node and the PostgreSQL server that a test can cut: a small
loopback proxy, so that one node loses the database while the others keep it (stopping the
server would cut every node).

`cut()` makes the link behave like a network partition: the packets of its open connections
stop arriving (nothing is forwarded, nothing is closed: the node hears nothing back) and new
connections are accepted but never reach the server. `restore()` lets new connections through
again; the connections open during the cut stay dead (their peers gave up on them meanwhile),
as after a real partition.
"""

from __future__ import annotations

import asyncio
import contextlib

__all__ = ["Link"]


class Link:
    def __init__(self, target_port: int) -> None:
        self._target = target_port
        self._server: asyncio.Server | None = None
        self._up = asyncio.Event()
        self._up.set()
        self._generation = 0  # connections of an earlier generation were open at a cut
        self._tasks: set[asyncio.Task[None]] = set()
        self.port = 0

    async def start(self) -> Link:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self

    def dsn(self, dsn: str) -> str:
        """`dsn` (a DSN of the target server) through this link."""
        return dsn.replace(f":{self._target}/", f":{self.port}/", 1)

    def cut(self) -> None:
        self._up.clear()
        self._generation += 1

    def restore(self) -> None:
        self._up.set()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _accept(self, client_r: asyncio.StreamReader,
                      client_w: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            await self._up.wait()  # during a cut: connected, and never answered
            server_r, server_w = await asyncio.open_connection("127.0.0.1", self._target)
            generation = self._generation
            try:
                await asyncio.gather(self._pipe(client_r, server_w, generation),
                                     self._pipe(server_r, client_w, generation))
            finally:
                server_w.close()
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            client_w.close()
            self._tasks.discard(task)

    async def _pipe(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter,
                    generation: int) -> None:
        while data := await source.read(65536):
            if self._generation != generation:
                # Cut: what this connection sends is lost, and it never hears back. It stays
                # open (a partition closes nothing) until the test ends.
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.Event().wait()
                return
            sink.write(data)
            await sink.drain()
