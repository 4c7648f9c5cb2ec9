"""Destinations added in the console: kept in the store (console records of kind `destination`),
live at once on every worker and node, their token write-only and sealed at rest (secretbox.py).

A record's body is `{"destination": <the entry as config.yaml would hold it, without its secret>,
"token_check": {"ok", "message", "checked_at", "secret_sha256"} | null, "hold_for_token": bool}`;
its secret is the value of the type's `secret_option` (Meta's `access_token`, GA4's `api_secret`
...), sealed for that record. A type whose other options may carry credentials (a webhook's url
and headers: `console_refused_options`) is refused: it belongs in config.yaml. The verdict of a
token check names the sealed secret it checked (`secret_sha256`): one about another secret (two
overlapping saves) is neither kept nor shown. Every process hears of a change through the
RecordWatch, opens the secrets, reads each entry with config.yaml's own code
(`read_destination`) and hands the result to `Live.set_console`: the relay, the routing and the
rules follow as for a config reload.

A secret that no longer opens (another `GATEWAY_SECRET_KEY`, or none) holds its destination:
its events stay queued and nothing is sent until the key is back or the token is set again. A
removed token makes the destination a dry run, as a config destination without one, unless
events of its name are queued then (`hold_for_token`, also when it is added without a token):
they answered 2xx and wait to be delivered, so it holds them until a token is set, as config.yaml
refuses "live to dry run" (app.apply_settings).

Routes (under `{prefix}/admin/api/`, through the guard): `GET destination-types` (what the add
form offers), `POST destinations`,
`DELETE destinations/{name}`, `PUT|DELETE destinations/{name}/token`,
`POST destinations/{name}/test-event`. Nothing here answers or logs a secret.
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass, replace
from typing import Any

import orjson
from aiohttp import web

from .. import appkeys
from ..admin import iso
from ..config import read_destination
from ..destinations import TYPES, build
from ..destinations.base import CannotTest, DestinationType
from ..errors import ConfigError, RelayError
from ..live import Live
from ..secretbox import KEY_ENV, MAKE_A_KEY, SecretBox, Unreadable
from ..settings import DestinationSettings
from ..storage import ConsoleRecord
from .guard import refuse

__all__ = ["CONSOLE_DESTINATIONS", "KIND", "ConsoleDestination", "ConsoleDestinations",
           "add", "clear_token", "follow_console_destinations", "listing", "remove",
           "set_token", "test_event", "types"]

log = logging.getLogger(__name__)

KIND = "destination"  # the console records' kind
_SOURCE = "the console"  # what a problem of a stored entry is located in


@dataclass(frozen=True)
class ConsoleDestination:
    """What this process made of one record."""

    name: str
    type: str
    settings: DestinationSettings | None  # None: the entry does not read (`problem`)
    token_set: bool
    unreadable: str = ""  # why its token cannot be read, or ""
    token_needed: str = ""  # why it holds its queued events until a token is set, or ""
    problem: str = ""  # why the entry does not read, or ""
    token_check: dict[str, Any] | None = None


class ConsoleDestinations:
    """The console's destinations as this process read them last, and the key that seals
    their tokens."""

    def __init__(self, live: Live, box: SecretBox, lease_seconds: float) -> None:
        self.live = live
        self.box = box
        self.lease_seconds = lease_seconds
        self.by_name: dict[str, ConsoleDestination] = {}

    def apply(self, records: list[ConsoleRecord]) -> None:
        """The RecordWatch listener: read every record, make them live."""
        self.by_name = {record.name: self._read(record) for record in records}
        for destination in self.by_name.values():
            if destination.problem:
                log.warning("console destination %s is not used: %s", destination.name,
                            destination.problem)
            elif destination.unreadable or destination.token_needed:
                log.warning("console destination %s holds its events: %s", destination.name,
                            destination.unreadable or destination.token_needed)
            if destination.type in TYPES and _refused_options(TYPES[destination.type]):
                # Added before the console refused them: its credentials may be in plaintext.
                log.warning("console destination %s: a %s is no longer taken by the console, "
                            "as its %s may carry credentials stored unsealed: move it to "
                            "config.yaml and delete it here", destination.name, destination.type,
                            " and ".join(_refused_options(TYPES[destination.type])))
        self.live.set_console(tuple(d.settings for d in self.by_name.values()
                                    if d.settings is not None))

    def read(self, entry: dict[str, Any], secret: str | None = None) -> DestinationSettings:
        """An entry (and its secret) read as config.yaml's; ConfigError when it does not."""
        data = dict(entry)
        if secret is not None:
            data[TYPES[str(data["type"])].secret_option] = secret
        return read_destination(data, source=_SOURCE, lease_seconds=self.lease_seconds)

    def _read(self, record: ConsoleRecord) -> ConsoleDestination:
        body = _body(record)
        entry = body.get("destination")
        entry = entry if isinstance(entry, dict) else {}
        kind = str(entry.get("type", ""))
        base = ConsoleDestination(record.name, kind, None, record.secret is not None,
                                  token_check=_shown_check(body, record.secret))
        if kind not in TYPES:
            return replace(base, problem=f"unknown type {kind!r} (a newer version's?)")
        secret, unreadable = None, ""
        if record.secret is not None:
            try:
                secret = self.box.open(record.secret, KIND, record.name)
            except Unreadable as exc:
                unreadable = str(exc)
        try:
            settings = self.read(entry, secret)
        except ConfigError as exc:
            return replace(base, problem="; ".join(f"{p.subject}: {p.message}"
                                                   for p in exc.problems))
        if record.secret is not None:
            settings = replace(settings, sealed_token=True)
        if unreadable:
            settings = replace(settings, held=unreadable)
        elif (record.secret is None and body.get("hold_for_token") is True
              and settings.is_dry_run and not settings.dry_run):
            needed = (f"its {TYPES[kind].credentials_name} was cleared (or not given) while "
                      "events of its name were queued: they wait until one is set")
            return replace(base, settings=replace(settings, held=needed), token_needed=needed)
        return replace(base, settings=settings, unreadable=unreadable)


CONSOLE_DESTINATIONS = web.AppKey("console_destinations", ConsoleDestinations)


def follow_console_destinations(app: web.Application) -> None:
    """Make the console's destinations live in this process, now and whenever they change
    (whether or not the console itself is on)."""
    box = SecretBox.from_env()
    if not box.can_seal and os.environ.get(KEY_ENV):
        log.warning("%s is not a key (32 bytes in URL-safe base64; `tag-gateway keys secret` "
                    "makes one): tokens cannot be set in the console, and those set there "
                    "before cannot be read", KEY_ENV)
    elif not box.can_seal and app[appkeys.SETTINGS].admin_key_sha256:  # the console is on
        log.info("%s is not set: tokens cannot be set in the console, and "
                 "those set there before cannot be read", KEY_ENV)
    destinations = ConsoleDestinations(app[appkeys.LIVE], box,
                                       app[appkeys.SETTINGS].storage.lease_seconds)
    app[CONSOLE_DESTINATIONS] = destinations
    app[appkeys.RECORDS].on(KIND, destinations.apply)


def _body(record: ConsoleRecord) -> dict[str, Any]:
    try:
        body = orjson.loads(record.body)
    except orjson.JSONDecodeError:
        return {}
    return body if isinstance(body, dict) else {}


def _secret_sha256(sealed: bytes | None) -> str | None:
    """What names a sealed secret in its check's verdict (the nonce makes each seal unique)."""
    return hashlib.sha256(sealed).hexdigest() if sealed is not None else None


def _shown_check(body: dict[str, Any], sealed: bytes | None) -> dict[str, Any] | None:
    """The stored verdict if it is about the secret the record holds now, else None."""
    check = body.get("token_check")
    if not isinstance(check, dict) or check.get("secret_sha256") != _secret_sha256(sealed):
        return None
    return {k: v for k, v in check.items() if k != "secret_sha256"}


def listing(app: web.Application, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The console's rows of `GET destinations`: each live destination's `source` (and, for
    the console's, whether a token is set, its last check, and `token_unreadable`), then the
    console's entries that are not live (their problem, or a name config.yaml took)."""
    console = app[CONSOLE_DESTINATIONS].by_name
    from_config = {d.name for d in app[appkeys.LIVE].config.destinations}
    answer = []
    for row in rows:
        mine = console.get(row["name"]) if row["name"] not in from_config else None
        if mine is None:
            answer.append({**row, "source": "config", "token_check": None})
            continue
        row = {**row, "source": "console", "token_set": mine.token_set,
               "token_check": mine.token_check, "token_problem": mine.unreadable or None}
        if mine.unreadable:
            row["state"] = "token_unreadable"
        elif mine.token_needed:
            row["state"], row["token_problem"] = "token_needed", mine.token_needed
        answer.append(row)
    for name, mine in console.items():
        if mine.settings is None or name in from_config:
            problem = mine.problem or "config.yaml has a destination of this name: it is used"
            answer.append({"name": name, "type": mine.type, "source": "console",
                           "state": "not_used", "problem": problem,
                           "token_set": mine.token_set, "token_check": mine.token_check,
                           "queued": None, "dead": None, "last_error": None})
    return answer


# -- routes -----------------------------------------------------------------------------------
async def types(_request: web.Request) -> web.Response:
    """The destination types the console can add, with the options the add form asks for by
    name."""
    return web.json_response([
        {"type": kind.name, "vendor": kind.vendor, "account_option": kind.account_option,
         "secret_option": kind.secret_option, "credentials_name": kind.credentials_name}
        for kind in TYPES.values() if not _refused_options(kind)])


async def add(request: web.Request) -> web.Response:
    """Create a console destination from its entry as JSON (a secret in it is sealed)."""
    app = request.app
    destinations = app[CONSOLE_DESTINATIONS]
    entry = await _json_object(request)
    if isinstance(entry, web.Response):
        return entry
    try:
        settings = read_destination(entry, source=_SOURCE,
                                    lease_seconds=destinations.lease_seconds)
    except ConfigError as exc:
        return _invalid(exc)
    name = settings.name
    if _from_config(app, name):
        return refuse(409, f"config.yaml has a destination named {name!r}: choose another name")
    kind = TYPES[settings.type]
    refused = [o for o in _refused_options(kind) if o in entry]
    if refused:
        return refuse(400, f"a {kind.name} destination's {' and '.join(refused)} may carry "
                           "credentials, which the console does not store: put this "
                           "destination in config.yaml (values may come from ${VAR})")
    option = kind.secret_option
    secret = entry.pop(option, None)
    secret = str(secret) if secret not in (None, "") else None
    if secret is not None and not destinations.box.can_seal:
        return refuse(409, f"the {option} cannot be stored: {MAKE_A_KEY}")
    entry["type"] = settings.type  # the default type is written down
    sealed = destinations.box.seal(secret, KIND, name) if secret is not None else None
    # Events of its name still queued (it was removed, or came from config.yaml): without a
    # token it holds them rather than mark them sent.
    hold = secret is None and await _queued(app, name) > 0
    body = orjson.dumps({"destination": entry, "token_check": None,
                         "hold_for_token": hold}).decode()
    if not await app[appkeys.OUTBOX].add_console_record(KIND, name, body, sealed):
        return refuse(409, f"the console has a destination named {name!r} already")
    log.info("console: destination %s (%s) added", name, settings.type)
    await app[appkeys.RECORDS].refresh()
    if sealed is not None:
        await _check_and_keep(app, name, settings, sealed)
    return web.json_response({"name": name, "type": settings.type, "source": "console",
                              "token_set": secret is not None}, status=201)


async def remove(request: web.Request) -> web.Response:
    """Delete a console destination; its queued events stay, as for one removed from
    config.yaml."""
    app = request.app
    name = request.match_info["name"]
    # The console's record first: one that config.yaml's took the name of can still go.
    if not await app[appkeys.OUTBOX].delete_console_record(KIND, name):
        if _from_config(app, name):
            return refuse(409, f"{name!r} comes from config.yaml: remove it there")
        return refuse(404, f"the console has no destination named {name!r}")
    log.info("console: destination %s removed; its queued events stay", name)
    await app[appkeys.RECORDS].refresh()
    return web.Response(status=204)


async def set_token(request: web.Request) -> web.Response:
    """`{"token": "..."}`: seal and store it, then check it against the platform."""
    app = request.app
    destinations = app[CONSOLE_DESTINATIONS]
    found = await _console_entry(request)
    if isinstance(found, web.Response):
        return found
    name, entry = found
    given = await _json_object(request)
    if isinstance(given, web.Response):
        return given
    token = given.get("token")
    if set(given) != {"token"} or not isinstance(token, str) or not token:
        return refuse(400, 'the body must be {"token": "<the token>"} with a non-empty token')
    if not destinations.box.can_seal:
        return refuse(409, f"the token cannot be stored: {MAKE_A_KEY}")
    try:
        settings = destinations.read(entry, token)
    except ConfigError as exc:
        return _invalid(exc)
    sealed = destinations.box.seal(token, KIND, name)
    if not await app[appkeys.OUTBOX].set_console_secret(KIND, name, sealed):
        return refuse(404, f"the console has no destination named {name!r}")
    log.info("console: destination %s: token set", name)
    await _check_and_keep(app, name, settings, sealed)
    return web.Response(status=204)


async def clear_token(request: web.Request) -> web.Response:
    """Remove the token: the destination runs dry, as a config one without a token; or, while
    events of its name are queued, holds them until a token is set."""
    app = request.app
    found = await _console_entry(request)
    if isinstance(found, web.Response):
        return found
    name, _ = found
    outbox = app[appkeys.OUTBOX]
    # The hold is written before the token goes: no process ever reads it tokenless and
    # unheld with events queued (they would be marked sent).
    hold = await _queued(app, name) > 0
    await _change_body(app, name, token_check=None, hold_for_token=hold)
    if not await outbox.set_console_secret(KIND, name, None):
        return refuse(404, f"the console has no destination named {name!r}")
    log.info("console: destination %s: token cleared (%s)", name,
             "its queued events wait for a new one" if hold else "it runs dry")
    await app[appkeys.RECORDS].refresh()
    return web.Response(status=204)


async def test_event(request: web.Request) -> web.Response:
    """Send one test event through the destination's type; answer the platform's verdict."""
    app = request.app
    name = request.match_info["name"]
    destination = app[appkeys.LIVE].current.by_name.get(name)
    if destination is None:
        return refuse(404, f"no live destination named {name!r}")
    settings, kind = destination.settings, destination.kind
    if settings.held:
        return refuse(409, f"nothing sent: {settings.held}")
    if settings.is_dry_run:
        return refuse(409, f"nothing sent: {name} runs dry ({settings.dry_run_reason})")
    send = getattr(destination, "send_test_event", None)
    if send is None:
        return refuse(409, f"{kind.vendor} destinations cannot send a test event from the "
                           "console in this version")
    try:
        message = await send(app[appkeys.HTTP_SESSION])
    except CannotTest as exc:
        return refuse(409, f"nothing sent: {exc}")
    except RelayError as exc:
        return web.json_response({"ok": False, "message": exc.reason})
    log.info("console: destination %s: test event sent (%s)", name, message)
    return web.json_response({"ok": True, "message": message})


async def _check_and_keep(app: web.Application, name: str, settings: DestinationSettings,
                          sealed: bytes) -> None:
    """Check the credentials (`sealed`, as stored) against the platform (nothing recorded),
    keep the verdict on the record if it still holds that secret, and make the change live
    here at once."""
    destination = build(settings)
    check = getattr(destination, "check_token", None)
    if check is None:
        ok, message = None, (f"{destination.kind.vendor} offers no check of its "
                             f"{destination.kind.credentials_name} here: send a test event, "
                             "or watch the first deliveries")
    else:
        try:
            ok, message = True, await check(app[appkeys.HTTP_SESSION])
        except CannotTest as exc:
            ok, message = None, str(exc)
        except RelayError as exc:
            ok, message = False, exc.reason
    digest = _secret_sha256(sealed)
    await _change_body(app, name, if_secret=digest, token_check={
        "ok": ok, "message": message, "checked_at": iso(app[appkeys.CLOCK]()),
        "secret_sha256": digest})
    await app[appkeys.RECORDS].refresh()


async def _change_body(app: web.Application, name: str, if_secret: str | None = None,
                       **changes: Any) -> None:
    """Set keys of the record's body; with `if_secret`, only while its sealed secret is that
    one (a check that outlived its token is dropped)."""
    outbox = app[appkeys.OUTBOX]
    record = await outbox.console_record(KIND, name)
    if record is None:
        return
    if if_secret is not None and _secret_sha256(record.secret) != if_secret:
        log.info("console: destination %s: a token check outlived its token; dropped", name)
        return
    await outbox.update_console_record(KIND, name,
                                       orjson.dumps({**_body(record), **changes}).decode())


async def _queued(app: web.Application, name: str) -> int:
    counts = await app[appkeys.OUTBOX].open_counts()
    return counts.get((name, "pending"), 0) + counts.get((name, "inflight"), 0)


async def _console_entry(request: web.Request) -> tuple[str, dict[str, Any]] | web.Response:
    """The name and stored entry of the console destination the path names, or a refusal."""
    app = request.app
    name = request.match_info["name"]
    if _from_config(app, name):
        return refuse(409, f"{name!r} comes from config.yaml: its token is set there")
    record = await app[appkeys.OUTBOX].console_record(KIND, name)
    entry = _body(record).get("destination") if record is not None else None
    if not isinstance(entry, dict) or str(entry.get("type")) not in TYPES:
        return refuse(404, f"the console has no destination named {name!r}")
    return name, entry


def _refused_options(kind: DestinationType) -> tuple[str, ...]:
    """The type's options that may carry credentials besides its `secret_option`."""
    return tuple(getattr(kind, "console_refused_options", ()))


def _from_config(app: web.Application, name: str) -> bool:
    return any(d.name == name for d in app[appkeys.LIVE].config.destinations)


async def _json_object(request: web.Request) -> dict[str, Any] | web.Response:
    try:
        data = orjson.loads(await request.read())
    except orjson.JSONDecodeError:
        return refuse(400, "the body must be a JSON object")
    if not isinstance(data, dict):
        return refuse(400, "the body must be a JSON object")
    return data


def _invalid(exc: ConfigError) -> web.Response:
    problems = [{"where": p.subject, "message": p.message} for p in exc.problems]
    first = problems[0] if problems else {"where": "", "message": "not valid"}
    return web.json_response(
        {"error": f"the destination is not valid: {first['where']}: {first['message']}",
         "problems": problems}, status=400)
