"""The stores the conformance suite runs against: one fixture param per storage engine.

An engine's param yields settings naming a fresh, empty store of that engine; the suite opens it
through `gateway.storage.open_outbox` only. Adding an engine is one more param here (e.g.
"postgres": a DSN and a schema of its own per test)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from gateway.settings import StorageSettings
from gateway.storage import Outbox, open_outbox

from ..conftest import FakeClock

Opener = Callable[..., Awaitable[Outbox]]


def sqlite_store(tmp_path: Path) -> StorageSettings:
    return StorageSettings(path=tmp_path / "o.db")


ENGINES: dict[str, Callable[[Path], StorageSettings]] = {"sqlite": sqlite_store}


@pytest.fixture(params=sorted(ENGINES))
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> StorageSettings:
    """Settings naming a fresh store of one engine (a group-commit window and lease that the
    tests below count on)."""
    settings = ENGINES[request.param](tmp_path)
    return replace(settings, commit_interval_ms=5, lease_seconds=30)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def open_store(storage: StorageSettings, clock: FakeClock) -> AsyncIterator[Opener]:
    """Open the test's store (again), optionally with other settings; closed at the end."""
    opened: list[Outbox] = []

    async def open_(**changes: Any) -> Outbox:
        outbox = await open_outbox(replace(storage, **changes), clock=clock)
        opened.append(outbox)
        return outbox

    yield open_
    for outbox in opened:
        await outbox.close()


@pytest.fixture
async def outbox(open_store: Opener) -> Outbox:
    return await open_store()
