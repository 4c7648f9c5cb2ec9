"""`tag-gateway check --validate`: ask the platforms that offer a validation service about the
events the gateway stored for them (GA4's `/debug/mp/collect`: GA4 itself accepts anything with
a 2xx and drops what it does not like silently).

The newest stored events of each such destination are sent to the validation service only:
nothing is recorded by the platform. A destination type offers it with
`async validate_remotely(session, rows) -> [readable problems]`.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TextIO

import aiohttp

from .live import Snapshot
from .settings import Settings
from .storage import ClaimedRow, OutboxRow, describe, open_existing

__all__ = ["validate_remotely"]

SAMPLE = 200  # newest stored rows looked at (those of the destination are sent)
Validator = Callable[[aiohttp.ClientSession, Sequence[ClaimedRow]], Awaitable[list[str]]]


def _claimed(row: OutboxRow) -> ClaimedRow:
    return ClaimedRow(row.id, row.pixel_id, row.test_event_code, row.event_name, row.event_id,
                      row.attempts, 0.0, row.expires_at, row.request_fields, row.payload or b"",
                      row.context)


async def validate_remotely(settings: Settings, out: TextIO) -> int:
    """Print each validating destination's findings; exit code 1 if there are any."""
    validators: dict[str, Validator] = {
        d.name: check for d in Snapshot.of(settings).destinations
        if (check := getattr(d, "validate_remotely", None)) is not None}
    if not validators:
        print("no destination offers remote validation (GA4 does)", file=out)
        return 0
    outbox = await open_existing(settings.storage, clock=time.time)
    if outbox is None:
        print(f"{describe(settings.storage)}: no outbox yet; send a few events, then validate",
              file=out)
        return 0
    try:
        stored = await outbox.rows(limit=SAMPLE, newest_first=True)
    finally:
        await outbox.close()
    found = 0
    async with aiohttp.ClientSession(headers={"User-Agent": "tag-gateway"}) as session:
        for name, check in validators.items():
            rows = [_claimed(r) for r in stored if r.destination == name and r.payload]
            if not rows:
                print(f"destination {name}: no stored events to validate yet", file=out)
                continue
            try:
                messages = await check(session, rows)
            except Exception as exc:  # the service unreachable, refusing the credentials
                print(f"destination {name}: could not validate: {exc}", file=out)
                found += 1
                continue
            found += len(messages)
            print(f"destination {name}: {len(rows)} events validated, "
                  f"{len(messages) or 'no'} problem{'s' if len(messages) != 1 else ''}",
                  file=out)
            for message in messages:
                print(f"  {message}", file=out)
    return 1 if found else 0
