"""The console's records, part of the storage conformance suite: what every engine keeps for
destinations, access keys and sessions made in the console, and the versions processes poll to
notice another process's changes. Runs once per engine (see conftest.py)."""

from __future__ import annotations

from gateway.storage import Outbox

from ..conftest import FakeClock as Clock
from .conftest import Opener


async def test_records_are_added_once_read_back_and_durable(
    outbox: Outbox, open_store: Opener, clock: Clock
) -> None:
    assert await outbox.console_records("destination") == []
    assert await outbox.add_console_record("destination", "b", '{"n": 2}', b"\x00sealed")
    assert await outbox.add_console_record("destination", "a", '{"n": 1}')
    assert await outbox.add_console_record("access_key", "a", '{"scope": "server"}')
    # The name is taken within its kind: nothing changes.
    assert not await outbox.add_console_record("destination", "a", '{"n": 9}', b"other")
    await outbox.close()

    reopened = await open_store()
    records = await reopened.console_records("destination")
    assert [(r.name, r.body, r.secret) for r in records] == [
        ("a", '{"n": 1}', None), ("b", '{"n": 2}', b"\x00sealed")]
    assert records[0].created_at == records[0].updated_at == clock()
    record = await reopened.console_record("access_key", "a")
    assert record is not None and record.body == '{"scope": "server"}'
    assert await reopened.console_record("access_key", "b") is None


async def test_updates_keep_what_they_do_not_name(outbox: Outbox, clock: Clock) -> None:
    await outbox.add_console_record("destination", "a", "{}", b"token")
    clock.now += 5
    assert await outbox.update_console_record("destination", "a", '{"x": 1}')
    record = await outbox.console_record("destination", "a")
    assert record is not None
    assert (record.body, record.secret) == ('{"x": 1}', b"token")
    assert record.updated_at == record.created_at + 5

    assert await outbox.set_console_secret("destination", "a", b"new")
    record = await outbox.console_record("destination", "a")
    assert record is not None and (record.body, record.secret) == ('{"x": 1}', b"new")
    assert await outbox.set_console_secret("destination", "a", None)
    record = await outbox.console_record("destination", "a")
    assert record is not None and record.secret is None

    assert not await outbox.update_console_record("destination", "missing", "{}")
    assert not await outbox.set_console_secret("destination", "missing", b"x")
    assert not await outbox.set_console_secret("access_key", "a", b"x")  # kinds apart


async def test_deletes_and_prunes_only_their_kind(outbox: Outbox, clock: Clock) -> None:
    await outbox.add_console_record("session", "old", "{}")
    await outbox.add_console_record("destination", "old", "{}")
    clock.now += 100
    await outbox.add_console_record("session", "new", "{}")
    assert await outbox.prune_console_records("session", clock() - 50) == 1
    assert [r.name for r in await outbox.console_records("session")] == ["new"]
    assert [r.name for r in await outbox.console_records("destination")] == ["old"]

    assert await outbox.delete_console_record("destination", "old")
    assert not await outbox.delete_console_record("destination", "old")
    assert await outbox.console_records("destination") == []


async def test_every_change_moves_its_kind_version_and_only_that(
    outbox: Outbox, open_store: Opener
) -> None:
    assert await outbox.console_versions() == {}
    other = await open_store()  # another process on the same store
    await outbox.add_console_record("destination", "a", "{}")
    first = await other.console_versions()
    assert set(first) == {"destination"}

    changes = [
        other.update_console_record("destination", "a", '{"x": 1}'),
        other.set_console_secret("destination", "a", b"s"),
        other.delete_console_record("destination", "a"),
    ]
    seen = first["destination"]
    for change in changes:
        assert await change
        now = (await outbox.console_versions())["destination"]
        assert now > seen
        seen = now

    # What changes nothing moves nothing.
    assert not await outbox.delete_console_record("destination", "a")
    assert await outbox.add_console_record("destination", "b", "{}")
    await outbox.add_console_record("access_key", "k", "{}")
    versions = await outbox.console_versions()
    assert versions["destination"] == seen + 1  # the add of "b" above
    assert set(versions) == {"destination", "access_key"}
    assert await outbox.prune_console_records("session", 1e12) == 0
    assert "session" not in await outbox.console_versions()
