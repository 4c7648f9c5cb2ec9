"""The typed, frozen settings the gateway runs on (built and validated by config.py)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from .identity.trustedproxies import is_loopback_host

if TYPE_CHECKING:
    from .destinations import DestinationOptions

__all__ = [
    "AccessKey",
    "CookieSettings",
    "DestinationSettings",
    "GeoSettings",
    "IdentitySettings",
    "ServerSettings",
    "Settings",
    "StorageSettings",
]


BEACON_IDLE_SECONDS = 10.0
PROXY_IDLE_SECONDS = 75.0  # above the 60 s of AWS ALB's and nginx's defaults


@dataclass(frozen=True)
class ServerSettings:
    host: str = "127.0.0.1"
    port: int = 8080
    path_prefix: str = ""
    trusted_proxies: tuple[str, ...] = ()  # CIDRs (presets already expanded)
    client_ip_headers: tuple[str, ...] = ()  # single-address headers the edge always sets
    forwarding_header: str = "x-forwarded-for"  # the chain our proxies append to (or forwarded)
    allowed_origins: tuple[str, ...] = ()
    max_body_bytes: int = 65536  # browser hits
    max_server_body_bytes: int = 8 * 2**20  # server events: up to 1000 per request
    script_name: str = "gw.js"  # the first-party script's file name (avoid blocked names)
    shutdown_timeout: float = 10.0
    # The /demo page; None (auto): on while listening on loopback with no proxy trusted.
    demo: bool | None = None
    # Idle connections are closed after this; None (auto): BEACON_IDLE_SECONDS for browsers
    # connecting directly, PROXY_IDLE_SECONDS behind trusted proxies (their pooled connections
    # must outlive the proxy's own idle timeout, or it reuses one the gateway just closed).
    idle_timeout_seconds: float | None = None
    max_connections: int = 10_000  # past this, new connections are closed at once

    @property
    def idle_timeout(self) -> float:
        if self.idle_timeout_seconds is not None:
            return self.idle_timeout_seconds
        return PROXY_IDLE_SECONDS if self.trusted_proxies else BEACON_IDLE_SECONDS

    @property
    def serves_demo(self) -> bool:
        """`demo` as set; by default only a gateway that listens on loopback with no proxy
        trusted (nothing then forwards visitors to it) serves the demo page."""
        if self.demo is not None:
            return self.demo
        if self.trusted_proxies:  # a proxy in front may make it public (nginx on the host)
            return False
        return is_loopback_host(self.host)


@dataclass(frozen=True)
class StorageSettings:
    engine: str = "sqlite"  # sqlite | postgres (gateway/storage: ENGINES)
    path: Path = Path("var/gateway.db")  # sqlite
    # postgres: a postgresql:// URL; may hold a password, so never shown (see describe()).
    dsn: str = field(default="", repr=False)
    pool_size: int = 10  # postgres: connections per gateway process
    commit_interval_ms: float = 0.0  # extra wait to gather a group commit (see README)
    retention_hours: float = 72.0
    dedup_hours: float = 48.0  # suppress repeats of (pixel, event_name, event_id); 0 = off
    max_queue_rows: int = 5_000_000  # backpressure: past this, ingest answers 503
    max_queue_mb: int = 4096  # backpressure: the store's size (SQLite file, PostgreSQL tables)
    lease_seconds: float = 30.0
    synchronous: str = "FULL"  # SQLite: FULL survives power loss; NORMAL survives crashes only


@dataclass(frozen=True)
class GeoSettings:
    databases: tuple[Path, ...] = ()  # GeoIP2/GeoLite2 City or DB-IP city files, tried in order
    fill_user_data: bool = True  # fill country/st/ct/zp (hashed) when the event has none


@dataclass(frozen=True)
class IdentitySettings:
    truncate_ip: bool = False  # keep /24 (IPv4) or /48 (IPv6) only, before anything is stored
    default_country: str = ""  # for phone numbers without a country code when geo has none


@dataclass(frozen=True)
class CookieSettings:
    enabled: bool = True  # set/refresh _fbp and _fbc with Set-Cookie
    domain: str = "auto"  # auto = registrable domain; "" = host-only; or a fixed domain


@dataclass(frozen=True)
class DestinationSettings:
    """The envelope every destination has, whatever its type, plus the type's own options."""

    name: str
    options: DestinationOptions  # the type's (destinations/<type>)
    type: str = "meta_capi"
    accepts: frozenset[str] | None = None  # incoming pixel ids it receives; None = every one
    batch_size: int = 1000  # at most the type's limit per request
    max_in_flight: int = 4
    linger_ms: float = 20.0
    timeout: float = 1.5
    retry_base_seconds: float = 1.0
    retry_max_seconds: float = 300.0
    dry_run: bool = False
    consent: str = "ads"  # what the visitor must have granted: ads | analytics | none
    # Why delivery must wait with the events kept queued (a console token that cannot be
    # read, or was cleared while events waited), or "": its relay worker stays paused while
    # this is set.
    held: str = ""
    # A token is stored for it in the console (sealed; perhaps one this key cannot open).
    sealed_token: bool = False

    @property
    def is_dry_run(self) -> bool:
        """No credentials (or dry_run: true): record what would be sent, send nothing. A held
        destination is not a dry run: its credentials exist but cannot be read."""
        return not self.held and (self.dry_run or bool(self.options.missing_credentials))

    @property
    def dry_run_reason(self) -> str:
        return "dry_run: true" if self.dry_run else self.options.missing_credentials

    def accepts_pixel(self, pixel_id: str) -> bool:
        return self.accepts is None or pixel_id in self.accepts


@dataclass(frozen=True)
class AccessKey:
    name: str
    sha256: str = field(repr=False)
    pixels: frozenset[str] | None  # None = every pixel


@dataclass(frozen=True)
class Settings:
    server: ServerSettings = ServerSettings()
    storage: StorageSettings = StorageSettings()
    geo: GeoSettings = GeoSettings()
    identity: IdentitySettings = IdentitySettings()
    cookies: CookieSettings = CookieSettings()
    rules_path: Path = Path("rules")
    destinations: tuple[DestinationSettings, ...] = ()
    access_keys: tuple[AccessKey, ...] = ()
    alert_webhook_url: str = ""
    admin_key_sha256: str = field(default="", repr=False)  # bearer key for /status etc.
    # Operator endpoints without a key answer only here ("" = no such listener).
    admin_listen: str = "127.0.0.1:9901"
    log_level: str = "INFO"
    path: Path | None = None  # the file these settings came from (enables reload)
    source: str = "config.yaml"
