"""The stores the conformance suite runs against: one fixture param per storage engine.

An engine's param yields settings naming a fresh, empty store of that engine; the suite opens it
through `gateway.storage.open_outbox` only. Adding an engine is one more param here. PostgreSQL:
one throwaway cluster per test session (tests/pgcluster.py), a database of its own per test;
skipped, saying why, where PostgreSQL is not installed."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from gateway.settings import StorageSettings
from gateway.storage import Outbox, open_outbox

from ..conftest import FakeClock
from ..pgcluster import PgCluster, missing_reason

Opener = Callable[..., Awaitable[Outbox]]


def sqlite_store(tmp_path: Path) -> StorageSettings:
    return StorageSettings(path=tmp_path / "o.db")


ENGINES = ("postgres", "sqlite", "sqlite-log")


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PgCluster]:
    """The session's PostgreSQL server, started on first use, removed at the end."""
    reason = missing_reason()
    if reason is not None:
        pytest.skip(reason)
    cluster = PgCluster()
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.remove()


@pytest.fixture
def pg_database(pg_cluster: PgCluster) -> Iterator[str]:
    """A fresh, empty database on the session's server (its name), dropped after the test."""
    name = pg_cluster.create_database()
    yield name
    pg_cluster.drop_database(name)


def postgres_store(cluster: PgCluster, database: str) -> StorageSettings:
    return StorageSettings(engine="postgres", dsn=cluster.dsn(database), pool_size=4)


@pytest.fixture(params=ENGINES)
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> StorageSettings:
    """Settings naming a fresh store of one engine (a group-commit window and lease that the
    tests below count on)."""
    if request.param == "postgres":
        settings = postgres_store(request.getfixturevalue("pg_cluster"),
                                  request.getfixturevalue("pg_database"))
    elif request.param == "sqlite-log":
        settings = replace(sqlite_store(tmp_path), engine="sqlite-log")
    else:
        settings = sqlite_store(tmp_path)
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


def query(path: Path, sql: str) -> list[Any]:
    """Rows of `sql` read straight from a SQLite engine's file."""
    with contextlib.closing(sqlite3.connect(path)) as db:
        return db.execute(sql).fetchall()
