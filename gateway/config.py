"""Load and validate config.yaml into typed, frozen settings.

Every mistake is reported at once, located: `config.yaml:LINE:COL: key: what is wrong, the bad
value, what is valid`. Strings may use `${VAR}` / `${VAR:-default}` (see configreader). Relative
paths are resolved against the config file's folder, so the gateway behaves the same wherever it
is started from.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from urllib.parse import urlsplit

from .configreader import Problems, Reader
from .destinations import TYPES
from .errors import ConfigError
from .identity.consent import CONSENT_CATEGORIES
from .identity.proxypresets import PRESETS
from .identity.trustedproxies import is_loopback_host
from .model import ACCESS_KEY_NAME, PIXEL_ID
from .problems import Problem
from .settings import (
    AccessKey,
    CookieSettings,
    DestinationSettings,
    GeoSettings,
    IdentitySettings,
    ServerSettings,
    Settings,
    StorageSettings,
)
from .storage import ENGINES
from .yamlsource import KeyPath, Marks, YamlProblem, load_located

__all__ = ["load_settings", "parse_settings", "read_destination"]

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


def load_settings(path: str | os.PathLike[str], env: Mapping[str, str] | None = None) -> Settings:
    """Read and validate a config file; raise ConfigError listing every problem."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError([Problem(str(path), message="config file not found")]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([Problem(str(path), message=f"cannot read config file: {exc}")]
                          ) from None
    settings = parse_settings(text, filename=str(path), base_dir=path.parent, env=env)
    return replace(settings, path=path)


def parse_settings(
    text: str,
    *,
    filename: str = "config.yaml",
    base_dir: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> Settings:
    """Validate config text; relative paths resolve against `base_dir` (default: cwd)."""
    try:
        data, marks = load_located(text, filename)
    except YamlProblem as exc:
        raise ConfigError([exc.problem]) from None
    problems = Problems(marks)
    top = Reader(data, (), problems, os.environ if env is None else env)
    base = base_dir or Path.cwd()
    version = top.raw("version", 1)
    if version != 1:
        top.fail("version", "must be 1 (the only config format so far)", version)
    admin_key, admin_listen = _admin(top.child("admin"))
    settings = Settings(
        server=_server(top.child("server")),
        storage=_storage(top.child("storage"), base),
        geo=_geo(top.child("geo"), base),
        identity=_identity(top.child("identity")),
        cookies=_cookies(top.child("cookies")),
        rules_path=_resolve(base, _rules_path(top.child("rules"))),
        destinations=_destinations(top),
        access_keys=_access_keys(top),
        alert_webhook_url=_alerts(top.child("alerts")),
        admin_key_sha256=admin_key,
        admin_listen=admin_listen,
        log_level=_logging(top.child("logging")),
        source=filename,
    )
    top.finish()
    _check_lease(top, settings)
    if problems.found:
        raise ConfigError(problems.found)
    return settings


def read_destination(data: object, *, source: str, lease_seconds: float
                     ) -> DestinationSettings:
    """One `destinations` entry given as plain data (the console's, from JSON), read and
    checked by the same code as an entry of config.yaml. Its strings are taken as written: no
    `${VAR}` is expanded, so a value typed in the console never reads the gateway's
    environment. ConfigError lists every problem, each with its key as `subject`."""
    problems = Problems(Marks(source))
    r = Reader(data, (), problems, None)
    destination = _destination(r, _destination_name(r)) if r.ok else None
    if destination is not None and not _lease_outlives(lease_seconds, destination.timeout):
        r.fail("timeout", "must be less than half of storage.lease_seconds "
               f"({lease_seconds:g}s)", destination.timeout)
    if problems.found or destination is None:
        raise ConfigError(problems.found)
    return destination


def _lease_outlives(lease_seconds: float, timeout: float) -> bool:
    return lease_seconds > 2 * timeout


def _check_lease(top: Reader, settings: Settings) -> None:
    """A claim must outlive its request, or a slow answer lets a second attempt start."""
    longest = max((d.timeout for d in settings.destinations), default=0.0)
    if not _lease_outlives(settings.storage.lease_seconds, longest):
        top.problems.add(
            ("storage", "lease_seconds"),
            f"must be more than twice the longest destination timeout ({longest:g}s), got "
            f"{settings.storage.lease_seconds:g}",
        )


def _resolve(base: Path, path: str) -> Path:
    candidate = Path(path).expanduser()
    return candidate if candidate.is_absolute() else base / candidate


def _server(r: Reader) -> ServerSettings:
    d = ServerSettings()
    prefix = r.string(
        "path_prefix", d.path_prefix, pattern=r"(/[A-Za-z0-9._~-]+)*",
        hint="empty or a path like /metrics-gw (leading slash, no trailing slash)",
    )
    proxies: list[str] = []
    for path, item in r.string_list("trusted_proxies"):
        if item in PRESETS:
            proxies.extend(PRESETS[item])
            continue
        try:
            proxies.append(str(ipaddress.ip_network(item, strict=False)))
        except ValueError:
            r.problems.add(
                path, "must be an IP address, a CIDR such as 173.245.48.0/20, or one of "
                f"{', '.join(sorted(PRESETS))}, got {item!r}"
            )
    headers = tuple(
        item for path, item in r.string_list("client_ip_headers") if _header_name(r, path, item)
    )
    origins = []
    for path, item in r.string_list("allowed_origins"):
        if not item.startswith(("http://", "https://")) or item.rstrip("/").count("/") > 2:
            r.problems.add(
                path, f"must be an origin such as https://www.example.com, got {item!r}"
            )
        origins.append(item.rstrip("/"))
    settings = ServerSettings(
        host=r.string("host", d.host, pattern=r"[A-Za-z0-9.:_-]+|\[[0-9A-Fa-f:.]+\]",
                      hint="an IP address or host name such as 127.0.0.1 or 0.0.0.0"),
        port=r.number("port", d.port, kind=int, low=1, high=65535),
        path_prefix=prefix,
        trusted_proxies=tuple(proxies),
        client_ip_headers=headers,
        forwarding_header=r.string("forwarding_header", d.forwarding_header,
                                   choices=("x-forwarded-for", "forwarded")),
        allowed_origins=tuple(origins),
        max_body_bytes=r.number("max_body_bytes", d.max_body_bytes, kind=int, low=1024,
                                high=16 * 2**20, unit="bytes"),
        script_name=r.string("script_name", d.script_name, pattern=r"[A-Za-z0-9_.-]+\.js",
                             hint="a file name ending in .js, e.g. gw.js or site-helper.js"),
        max_server_body_bytes=r.number("max_server_body_bytes", d.max_server_body_bytes, kind=int,
                                       low=64 * 1024, high=256 * 2**20, unit="bytes"),
        shutdown_timeout=r.number("shutdown_timeout", d.shutdown_timeout, kind=float, low=0,
                                  high=600, unit="seconds"),
        demo=_demo(r, d.demo),
        idle_timeout_seconds=_auto_number(r, "idle_timeout_seconds", low=1, high=3600),
        max_connections=r.number("max_connections", d.max_connections, kind=int, low=16,
                                 high=1_000_000),
    )
    r.finish()
    return settings


def _auto_number(r: Reader, key: str, *, low: float, high: float) -> float | None:
    """A number of seconds, or auto (also when absent): None."""
    value = r.raw(key, "auto")
    if isinstance(value, str) and value.strip().lower() in ("auto", ""):
        return None
    return r.number(key, 0.0, kind=float, low=low, high=high, unit="seconds")


def _demo(r: Reader, default: bool | None) -> bool | None:
    """`server.demo`: true, false, or auto (also when absent): on while listening on loopback."""
    value = r.raw("demo", "auto")
    if isinstance(value, str) and value.strip().lower() in ("auto", ""):
        return default
    return r.boolean("demo", False)


def _header_name(r: Reader, path: KeyPath, name: str) -> bool:
    if re.fullmatch(r"[A-Za-z0-9-]+", name):
        return True
    r.problems.add(path, f"must be an HTTP header name such as CF-Connecting-IP, got {name!r}")
    return False


def _storage(r: Reader, base: Path) -> StorageSettings:
    d = StorageSettings()
    engine = r.string("engine", d.engine, choices=tuple(sorted(ENGINES))) or d.engine
    path = r.string("path", str(d.path)) or str(d.path)
    # secret: a DSN may hold a password; a wrong one is reported without its value.
    reported = len(r.problems.found)  # "required" only when no other problem named the DSN
    # (e.g. its ${VARIABLE} is not set)
    dsn = r.string("dsn", "", secret=True, pattern=r"(postgres(ql)?://.*)?",
                   hint="a postgresql:// URL (postgresql://user:password@host:5432/database)")
    if engine == "postgres" and not dsn and len(r.problems.found) == reported:
        r.fail("dsn", "is required with storage.engine: postgres (a postgresql:// URL, e.g. "
               "${GATEWAY_DATABASE_URL})")
    elif engine != "postgres" and dsn:
        r.fail("dsn", f"is only used with storage.engine: postgres (the engine is {engine})")
    elif dsn and not _readable_url(dsn):
        r.fail("dsn", "must be a readable URL: host, a numeric port, [brackets] around an IPv6 "
               "address, special characters in the password %-encoded", dsn, secret=True)
    settings = StorageSettings(
        engine=engine,
        path=_resolve(base, path),
        dsn=dsn,
        pool_size=r.number("pool_size", d.pool_size, kind=int, low=1, high=1000,
                           unit="connections"),
        commit_interval_ms=r.number("commit_interval_ms", d.commit_interval_ms, kind=float, low=0,
                                    high=1000, unit="ms"),
        retention_hours=r.number("retention_hours", d.retention_hours, kind=float, low=0,
                                 unit="hours"),
        dedup_hours=r.number("dedup_hours", d.dedup_hours, kind=float, low=0, high=24 * 62,
                             unit="hours"),
        max_queue_rows=r.number("max_queue_rows", d.max_queue_rows, kind=int, low=1, unit="rows"),
        max_queue_mb=r.number("max_queue_mb", d.max_queue_mb, kind=int, low=1, unit="MiB"),
        lease_seconds=r.number("lease_seconds", d.lease_seconds, kind=float, low=1, high=3600,
                               unit="seconds"),
        synchronous=r.string("synchronous", d.synchronous.lower(),
                             choices=("full", "normal")).upper(),
    )
    r.finish()
    return settings


def _readable_url(url: str) -> bool:
    """A URL whose parts parse; a `/` or `@` in the database name means an unencoded `/` in
    the password split it there (the password would then show wherever the DSN is described)."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - parsing the port is the check
    except ValueError:
        return False
    return not any(mark in parts.path.lstrip("/") for mark in "/@")


def _geo(r: Reader, base: Path) -> GeoSettings:
    if isinstance(r.data.get("database"), list):
        names = [(path, item) for path, item in r.string_list("database") if item]
    else:
        single = r.string("database", "")
        names = [((*r.path, "database"), single)] if single else []
    paths = []
    for where, name in names:
        path = _resolve(base, name)
        if not path.is_file():
            r.problems.add(where, "file not found (a GeoIP2/GeoLite2 City or DB-IP city .mmdb),"
                           f" got {str(path)!r}")
        paths.append(path)
    settings = GeoSettings(databases=tuple(paths),
                           fill_user_data=r.boolean("fill_user_data",
                                                    GeoSettings().fill_user_data))
    r.finish()
    return settings


def _admin(r: Reader) -> tuple[str, str]:
    """The admin key's digest and the admin listener's address."""
    # secret=True: a raw key pasted here by mistake must not be echoed.
    digest = r.string("key_sha256", "", secret=True, pattern=r"([0-9a-f]{64})?",
                      hint="the SHA-256 of the admin key, 64 lowercase hex characters")
    listen = r.string("listen", Settings().admin_listen, pattern=r"(.+:[0-9]{1,5})?",
                      hint="host:port such as 127.0.0.1:9901, or empty for none")
    if listen and not digest and not is_loopback_host(listen):
        r.problems.add((*r.path, "listen"),
                       "without admin.key_sha256 the admin listener answers without a key, "
                       f"so it must be a loopback address such as 127.0.0.1:9901, got {listen!r}")
    r.finish()
    return digest, listen


def _alerts(r: Reader) -> str:
    url = r.string("webhook_url", "", pattern=r"(https?://[^\s]+)?",
                   hint="an http(s) URL that accepts a JSON POST (e.g. a Slack webhook)")
    r.finish()
    return url


def _identity(r: Reader) -> IdentitySettings:
    country = r.string("default_country", "", pattern=r"([A-Za-z]{2})?",
                       hint="an ISO 3166-1 alpha-2 code such as US or GB")
    settings = IdentitySettings(
        truncate_ip=r.boolean("truncate_ip", IdentitySettings().truncate_ip),
        default_country=country.lower())
    r.finish()
    return settings


def _cookies(r: Reader) -> CookieSettings:
    d = CookieSettings()
    domain = r.string("domain", d.domain, pattern=r"auto|(\.?[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+)?",
                      hint='"auto", "" (host-only) or a domain such as example.com')
    settings = CookieSettings(enabled=r.boolean("enabled", d.enabled), domain=domain.lstrip("."))
    r.finish()
    return settings


def _rules_path(r: Reader) -> str:
    default = str(Settings().rules_path)
    path = r.string("path", default) or default
    r.finish()
    return path


def _logging(r: Reader) -> str:
    level = r.string("level", Settings().log_level).upper()
    if level not in LOG_LEVELS:
        r.fail("level", f"must be one of {', '.join(LOG_LEVELS)}", level)
        level = "INFO"
    r.finish()
    return level


def _destinations(top: Reader) -> tuple[DestinationSettings, ...]:
    readers = top.children("destinations")
    if not readers:
        top.fail("destinations", "at least one destination is required")
        return ()
    result: list[DestinationSettings] = []
    seen: set[str] = set()
    for r in readers:
        if not r.ok:
            continue
        name = _destination_name(r)
        if name in seen:
            r.fail("name", "is used by another destination; names must be unique", name)
        seen.add(name)
        destination = _destination(r, name)
        if destination is not None:
            result.append(destination)
    return tuple(result)


def _destination_name(r: Reader) -> str:
    return r.string("name", pattern=r"[a-z0-9][a-z0-9_-]{0,62}",
                    hint="lowercase letters, digits, '-' or '_' (e.g. main)")


def _destination(r: Reader, name: str) -> DestinationSettings | None:
    """The envelope's keys, and the type's own through its `read_options`."""
    kind = r.string("type", "meta_capi", choices=tuple(TYPES))
    if kind not in TYPES:
        return None  # its other keys mean nothing without a known type
    destination_type = TYPES[kind]
    options = destination_type.read_options(r)
    limit = destination_type.max_batch_size
    d = DestinationSettings(name=name, options=options)
    settings = DestinationSettings(
        name=name,
        type=kind,
        options=options,
        accepts=_accepts(r, options.default_accepts),
        batch_size=r.number("batch_size", limit, kind=int, low=1, high=limit,
                            unit=f"events ({destination_type.vendor}'s limit is {limit})"),
        max_in_flight=r.number("max_in_flight", d.max_in_flight, kind=int, low=1, high=64,
                               unit="requests"),
        linger_ms=r.number("linger_ms", d.linger_ms, kind=float, low=0, high=60000, unit="ms"),
        timeout=r.number("timeout", d.timeout, kind=float, low=0.1, high=120, unit="seconds"),
        retry_base_seconds=r.number("retry_base_seconds", d.retry_base_seconds, kind=float,
                                    low=0.01, high=3600, unit="seconds"),
        retry_max_seconds=r.number("retry_max_seconds", d.retry_max_seconds, kind=float,
                                   low=0.01, high=86400, unit="seconds"),
        dry_run=r.boolean("dry_run", d.dry_run),
        consent=r.string("consent", destination_type.default_consent, choices=CONSENT_CATEGORIES),
    )
    if settings.retry_base_seconds > settings.retry_max_seconds:
        r.fail("retry_base_seconds", "must not exceed retry_max_seconds "
               f"({settings.retry_max_seconds:g})", settings.retry_base_seconds)
    r.finish()
    return settings


def _accepts(r: Reader, default: frozenset[str] | None) -> frozenset[str] | None:
    """`accepts`: "*" or a list of pixel ids; absent = the type's default (a Meta
    destination's own pixel, or all)."""
    raw = r.data.get("accepts")
    if raw is None:
        r.known.append("accepts")
        return default
    if isinstance(raw, str):
        value = r.raw("accepts")
        if value == "*":
            return None
        r.fail("accepts", 'must be "*" (every pixel) or a list of pixel ids', value)
        return None
    ids = set()
    for path, item in r.string_list("accepts"):
        if item == "*":
            return None
        if not PIXEL_ID.fullmatch(item):
            r.problems.add(path, f"must be a numeric pixel id or \"*\", got {item!r}")
        ids.add(item)
    if not ids and isinstance(raw, list):
        r.fail("accepts", 'must list at least one pixel id, or be "*"; a destination that '
               "accepts nothing receives nothing")
    return frozenset(ids)


def _access_keys(top: Reader) -> tuple[AccessKey, ...]:
    keys = []
    for r in top.children("access_keys"):
        if not r.ok:
            continue
        name = r.string("name", pattern=ACCESS_KEY_NAME.pattern, hint="a short label")
        digest = r.string("sha256", secret=True, pattern=r"[0-9a-f]{64}",
                          hint="the SHA-256 of the key, 64 lowercase hex characters")
        pixels: frozenset[str] | None
        if r.data.get("pixels") == "*":
            r.known.append("pixels")
            pixels = None
        else:
            pixel_list = r.string_list("pixels")
            for where, item in pixel_list:
                if not PIXEL_ID.fullmatch(item):
                    r.problems.add(where, f"must be a numeric pixel id, got {item!r}")
            pixels = frozenset(item for _, item in pixel_list)
            if not pixels:
                r.fail("pixels", 'must list the pixel ids this key may send to, or be "*"')
        keys.append(AccessKey(name=name, sha256=digest, pixels=pixels))
        r.finish()
    return tuple(keys)
