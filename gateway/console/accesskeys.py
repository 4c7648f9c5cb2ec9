"""Server ingress access keys made in the console: `POST admin/api/access-keys` (the new key in
its answer, once), `GET admin/api/access-keys` (config.yaml's, read-only, and the console's, by
name and scope), `DELETE admin/api/access-keys/{name}`.

The store keeps each console key's SHA-256 and scope (kind `access_key`), never the key. Every
process reads them into the keys the ingress accepts (`KeysInForce.console`) when they change:
at once on the process that made the change, within about a second elsewhere. They stay in
force through config reloads and while the console is off. Names are unique across config.yaml
and the console.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Sequence
from typing import Any

import orjson
from aiohttp import web

from .. import admin, appkeys
from ..accesskeys import key_sha256, new_key
from ..errors import OutboxUnavailable
from ..model import ACCESS_KEY_NAME, PIXEL_ID
from ..settings import AccessKey
from ..storage import ConsoleRecord
from .guard import console_api, refuse

__all__ = ["KIND", "add_access_key_routes", "console_keys"]

log = logging.getLogger(__name__)

KIND = "access_key"  # the store's record kind
FIELDS = ("name", "pixels")  # as an access_keys entry of config.yaml, less the digest


def add_access_key_routes(app: web.Application, base: str) -> None:
    app.router.add_get(f"{base}/api/access-keys", console_api(listed))
    app.router.add_post(f"{base}/api/access-keys", console_api(create, write=True))
    app.router.add_delete(f"{base}/api/access-keys/{{name}}", console_api(revoke, write=True))
    app.cleanup_ctx.append(_follow_keys)


async def _follow_keys(app: web.Application) -> AsyncIterator[None]:
    """Keep the ingress's console keys as the store has them (whether the console is on)."""
    keys, records = app[appkeys.ACCESS_KEYS], app[appkeys.RECORDS]

    def heard(found: list[ConsoleRecord]) -> None:
        keys.console = console_keys(found)

    records.on(KIND, heard)
    with contextlib.suppress(OutboxUnavailable):  # the store opens later: the watch reads them
        await records.refresh()
    yield


def console_keys(records: Sequence[ConsoleRecord]) -> tuple[AccessKey, ...]:
    """The access keys of stored records (a record that does not read as one is skipped)."""
    keys = []
    for record in records:
        try:
            body = orjson.loads(record.body)
            pixels = body["pixels"]
            keys.append(AccessKey(name=record.name, sha256=str(body["sha256"]),
                                  pixels=None if pixels == "*" else frozenset(map(str, pixels))))
        except (orjson.JSONDecodeError, KeyError, TypeError):
            log.warning("console: access key record %r is not readable; it is not in force",
                        record.name)
    return tuple(keys)


def _scope(pixels: frozenset[str] | None) -> list[str] | str:
    return "*" if pixels is None else sorted(pixels)


def _configured(app: web.Application) -> Sequence[AccessKey]:
    return app[appkeys.LIVE].current.settings.access_keys


async def listed(request: web.Request) -> web.Response:
    """Every access key by name and scope: config.yaml's, then the console's; never a key or
    its digest."""
    app = request.app
    answer: list[dict[str, Any]] = [
        {"name": key.name, "source": "config", "pixels": _scope(key.pixels)}
        for key in sorted(_configured(app), key=lambda key: key.name)]
    stored = await app[appkeys.OUTBOX].console_records(KIND)
    by_name = {key.name: key for key in console_keys(stored)}
    answer += [{"name": record.name, "source": "console",
                "pixels": _scope(by_name[record.name].pixels),
                "created_at": admin.iso(record.created_at)}
               for record in stored if record.name in by_name]
    return web.json_response(answer)


def _read(body: Any) -> tuple[str, frozenset[str] | None] | str:
    """The name and scope of a new key's request, or what is wrong with it."""
    if not isinstance(body, dict):
        return 'the body must be a JSON object: {"name": ..., "pixels": [ids] or "*"}'
    unknown = sorted(set(body) - set(FIELDS))
    if unknown:
        return (f"unknown field {unknown[0]!r}: an access key has only name and pixels (the "
                "gateway makes the key itself)")
    name = body.get("name")
    if not isinstance(name, str) or not ACCESS_KEY_NAME.fullmatch(name):
        return "name must be 1-64 letters, digits, '.', '_' or '-'"
    pixels = body.get("pixels")
    if pixels == "*":
        return name, None
    if (not isinstance(pixels, list) or not pixels
            or not all(isinstance(p, str) and PIXEL_ID.fullmatch(p) for p in pixels)):
        return ('pixels must list the pixel ids this key may send events for, as strings of '
                'digits (e.g. ["123456789012345"]), or be "*" for every pixel')
    return name, frozenset(pixels)


async def create(request: web.Request) -> web.Response:
    """A new key for the server ingress: 201 with the key, the only time it is shown."""
    app = request.app
    try:
        body = orjson.loads(await request.read())
    except orjson.JSONDecodeError:
        return refuse(400, "the body is not JSON: send {\"name\": ..., \"pixels\": [ids] or "
                           "\"*\"}")
    read = _read(body)
    if isinstance(read, str):
        return refuse(400, read)
    name, pixels = read
    if any(key.name == name for key in _configured(app)):
        return refuse(409, f"the name {name!r} is taken by an access key of config.yaml")
    key, now = new_key(), app[appkeys.CLOCK]()
    stored = orjson.dumps({"sha256": key_sha256(key), "pixels": _scope(pixels)}).decode()
    if not await app[appkeys.OUTBOX].add_console_record(KIND, name, stored):
        return refuse(409, f"the name {name!r} is taken by another access key of the console")
    await _apply(app)
    log.info("console: access key %r made for %s", name,
             "every pixel" if pixels is None else "pixels " + ", ".join(sorted(pixels)))
    return web.json_response({"name": name, "source": "console", "pixels": _scope(pixels),
                              "created_at": admin.iso(now), "key": key}, status=201)


async def _apply(app: web.Application) -> None:
    """Put a change in force here now (elsewhere: within a second). The change is stored
    already: should the store not answer this read, the next poll applies it."""
    with contextlib.suppress(OutboxUnavailable):
        await app[appkeys.RECORDS].refresh()


async def revoke(request: web.Request) -> web.StreamResponse:
    """Revoke a console key (204): refused at once here, within a second elsewhere."""
    app = request.app
    name = request.match_info["name"]
    if await app[appkeys.OUTBOX].delete_console_record(KIND, name):
        await _apply(app)
        log.info("console: access key %r revoked", name)
        return web.Response(status=204)
    if any(key.name == name for key in _configured(app)):
        return refuse(409, f"{name!r} is an access key of config.yaml: remove it there (the "
                           "gateway applies the change when it reloads the file)")
    return refuse(404, "there is no access key of that name")
