"""config.yaml: env expansion, typed settings, and located, readable messages for mistakes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from gateway.config import load_settings, parse_settings
from gateway.destinations import TYPES
from gateway.errors import ConfigError
from gateway.storage import ENGINES

KNOWN_TYPES = ", ".join(TYPES)  # every registered type, in registration order

REPO = Path(__file__).resolve().parent.parent

GOOD = """\
version: 1
server:
  port: 9000
destinations:
  - name: main
    pixel_id: "123"
    access_token: "${TOKEN:-}"
"""


def problems(text: str, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_settings(text, filename="config.yaml", env=env or {})
    return [str(problem) for problem in caught.value.problems]


def test_the_shipped_config_is_valid_with_an_empty_environment() -> None:
    settings = load_settings(REPO / "config.yaml", env={})
    [main] = settings.destinations
    assert main.is_dry_run and main.options.pixel_id == "" and main.accepts is None
    assert settings.server.host == "127.0.0.1" and settings.server.port == 8080
    assert settings.storage.path == REPO / "var" / "gateway.db"


def test_the_shipped_postgres_example_reads_its_dsn_from_the_environment() -> None:
    text = (REPO / "config.yaml").read_text()
    text = text.replace("  engine: sqlite ", "  # engine: sqlite ")
    for key in ("engine: postgres", "dsn: ", "pool_size: "):
        text = text.replace(f"  # {key}", f"  {key}")
    dsn = "postgresql://gw:SECRET-PW@db.internal:5433/events"
    storage = parse_settings(text, env={"GATEWAY_DATABASE_URL": dsn}).storage
    assert (storage.engine, storage.dsn, storage.pool_size) == ("postgres", dsn, 10)
    assert "SECRET-PW" not in repr(storage)  # settings may be logged or shown whole
    [unset] = problems(text)
    assert "storage.dsn: environment variable GATEWAY_DATABASE_URL is not set" in unset


def test_environment_fills_in_a_live_destination() -> None:
    settings = load_settings(REPO / "config.yaml", env={
        "META_PIXEL_ID": "987654321", "META_ACCESS_TOKEN": "EAAB123", "GATEWAY_PORT": "9090",
        "GATEWAY_DB": "/data/gw.db",
    })
    [main] = settings.destinations
    assert not main.is_dry_run
    assert main.options.pixel_id == "987654321" and main.accepts == frozenset({"987654321"})
    assert settings.server.port == 9090
    assert settings.storage.path == Path("/data/gw.db")


def test_env_expansion_forms() -> None:
    settings = parse_settings(
        GOOD.replace('"${TOKEN:-}"', '"${TOKEN}"').replace("9000", '"${PORT:-9001}"'),
        env={"TOKEN": "EAAB-abc"},
    )
    assert settings.destinations[0].options.access_token == "EAAB-abc"
    assert settings.server.port == 9001


def test_dollar_dollar_is_a_literal_dollar() -> None:
    text = GOOD + "storage: {path: \"/tmp/$${HOME}.db\"}\n"
    assert parse_settings(text, env={"HOME": "/root"}).storage.path == Path("/tmp/${HOME}.db")


MISTAKES = [
    (GOOD.replace("port: 9000", "port: abc"),
     "config.yaml:3:9: server.port: must be a whole number between 1 and 65535, got 'abc'"),
    (GOOD.replace("port: 9000", "port: 70000"),
     "config.yaml:3:9: server.port: must be a whole number between 1 and 65535, got 70000"),
    (GOOD.replace("  port: 9000", "  prot: 9000"),
     "config.yaml:3:3: server.prot: unknown key (did you mean 'port'?); valid keys here: "
     "allowed_origins, client_ip_headers, demo, forwarding_header, host, idle_timeout_seconds, "
     "max_body_bytes, max_connections, max_server_body_bytes, path_prefix, port, script_name, "
     "shutdown_timeout, trusted_proxies"),
    (GOOD.replace('"${TOKEN:-}"', '"${TOKEN}"'),
     "config.yaml:7:19: destinations[0].access_token: environment variable TOKEN is not set; "
     "set it, or give a default with ${TOKEN:-default}"),
    (GOOD + "    type: meta\n",
     "config.yaml:8:11: destinations[0].type: must be one of " + ", ".join(TYPES) + " (did "
     "you mean 'meta_capi'?), got 'meta'"),
    (GOOD + "    batch_size: 5000\n",
     "config.yaml:8:17: destinations[0].batch_size: must be a whole number between 1 and 1000 "
     "events (Meta's limit is 1000), got 5000"),
    (GOOD.replace('pixel_id: "123"', "pixel_id: 12ab"),
     "config.yaml:6:15: destinations[0].pixel_id: must be the pixel's numeric id (or empty: "
     "relay to the pixel each hit names), got '12ab'"),
    (GOOD.replace("  - name: main\n    pixel_id", "  - pixel_id"),
     "config.yaml:5:5: destinations[0].name: is required"),
    (GOOD + "  - name: main\n",
     "config.yaml:8:11: destinations[1].name: is used by another destination; names must be "
     "unique, got 'main'"),
    ("version: 1\ndestinations: []\n",
     "config.yaml:2:15: destinations: at least one destination is required"),
    ("version: 1\ndestinations:\n",
     "config.yaml:2:14: destinations: at least one destination is required"),
    (GOOD + "    accepts: []\n",
     "config.yaml:8:14: destinations[0].accepts: must list at least one pixel id, or be \"*\"; "
     "a destination that accepts nothing receives nothing"),
    (GOOD + "    timeout: .nan\n",
     "config.yaml:8:14: destinations[0].timeout: must be a number between 0.1 and 120 seconds, "
     "got nan"),
    (GOOD + "storage: {engine: postgress}\n",
     "config.yaml:8:19: storage.engine: must be one of " + ", ".join(sorted(ENGINES)) + " (did "
     "you mean 'postgres'?), got 'postgress'"),
    (GOOD + "storage: {engine: postgres}\n",
     "config.yaml:8:10: storage.dsn: is required with storage.engine: postgres (a postgresql:// "
     "URL, e.g. ${GATEWAY_DATABASE_URL})"),
    (GOOD + "storage: {engine: postgres, dsn: 'mysql://u:SECRET@db/x'}\n",
     "config.yaml:8:34: storage.dsn: must be a postgresql:// URL "
     "(postgresql://user:password@host:5432/database), got (hidden)"),
    (GOOD + "storage: {engine: postgres, dsn: 'postgresql://u:SECRET@db:5432x/x'}\n",
     "config.yaml:8:34: storage.dsn: must be a readable URL: host, a numeric port, [brackets] "
     "around an IPv6 address, special characters in the password %-encoded, got (hidden)"),
    (GOOD + "storage: {dsn: 'postgresql://u:SECRET@db/x'}\n",
     "config.yaml:8:16: storage.dsn: is only used with storage.engine: postgres (the engine is "
     "sqlite)"),
    (GOOD + "storage: {engine: postgres, dsn: 'postgresql://db/x', pool_size: 0}\n",
     "config.yaml:8:66: storage.pool_size: must be a whole number between 1 and 1000 "
     "connections, got 0"),
    (GOOD + "storage: {retention_hours: .inf}\n",
     "config.yaml:8:28: storage.retention_hours: must be a number of at least 0 hours, got inf"),
    (GOOD + "    retry_base_seconds: 10\n    retry_max_seconds: 5\n",
     "config.yaml:8:25: destinations[0].retry_base_seconds: must not exceed retry_max_seconds "
     "(5), got 10.0"),
    (GOOD + "    timeout: 20\n",
     "config.yaml:1:1: storage.lease_seconds: must be more than twice the longest destination "
     "timeout (20s), got 30"),
    (GOOD + "    graph_url: https://graph.example/?access_token=EAABsecret\n",
     "config.yaml:8:16: destinations[0].graph_url: must be an http(s) base URL such as "
     "https://graph.facebook.com, got 'https://graph.example/?access_token=(hidden)'"),
    (GOOD.replace("  port: 9000", "  host: 'bad host'"),
     "config.yaml:3:9: server.host: must be an IP address or host name such as 127.0.0.1 or "
     "0.0.0.0, got 'bad host'"),
    (GOOD + "cookies: {domain: 'not a domain'}\n",
     "config.yaml:8:19: cookies.domain: must be \"auto\", \"\" (host-only) or a domain such as "
     "example.com, got 'not a domain'"),
    (GOOD + "identity: {default_country: USA}\n",
     "config.yaml:8:29: identity.default_country: must be an ISO 3166-1 alpha-2 code such as "
     "US or GB, got 'USA'"),
    (GOOD.replace("  port: 9000", "  port: 9000\n  client_ip_headers: ['X Real IP']"),
     "config.yaml:4:23: server.client_ip_headers[0]: must be an HTTP header name such as "
     "CF-Connecting-IP, got 'X Real IP'"),
    ("version: 2\n" + GOOD.split("\n", 1)[1],
     "config.yaml:1:10: version: must be 1 (the only config format so far), got 2"),
    (GOOD + "server: {}\n",
     "config.yaml:8:1: server: this key appears twice in the same block; keep one"),
    (GOOD.replace("  port: 9000", "  port: 9000\n  trusted_proxies: [10.0.0.0/33]"),
     "config.yaml:4:21: server.trusted_proxies[0]: must be an IP address, a CIDR such as "
     "173.245.48.0/20, or one of cloudflare, loopback, private, got '10.0.0.0/33'"),
    (GOOD + "geo: {database: missing.mmdb}\n",
     "config.yaml:8:17: geo.database: file not found (a GeoIP2/GeoLite2 City or DB-IP city "
     ".mmdb), got '/nowhere/missing.mmdb'"),
    (GOOD + "geo: {database: [a.mmdb]}\n",
     "config.yaml:8:18: geo.database[0]: file not found (a GeoIP2/GeoLite2 City or DB-IP city "
     ".mmdb), got '/nowhere/a.mmdb'"),
    (GOOD + "    accepts: all\n",
     "config.yaml:8:14: destinations[0].accepts: must be \"*\" (every pixel) or a list of "
     "pixel ids, got 'all'"),
    (GOOD.replace("server:\n  port: 9000", "server: [8080]"),
     "config.yaml:2:9: server: must be a mapping of keys to values, got [8080]"),
    (GOOD.replace('"${TOKEN:-}"', "!env TOKEN"),
     "config.yaml:7:19: YAML error: could not determine a constructor for the tag '!env'"),
    (GOOD + "    test_event_code: 2024-02-30\n",
     "config.yaml:8:22: destinations[0].test_event_code: day is out of range for month; "
     "quote the value to keep it as text"),
    ("version: 1\ndestinations:\n  - name: main\n    pixel_id: [oops\n",
     "config.yaml:5:1: YAML syntax error: expected ',' or ']', but got '<stream end>'"),
]


@pytest.mark.parametrize(("text", "message"), MISTAKES)
def test_each_mistake_is_located_and_explained(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_settings(text, filename="config.yaml", base_dir=Path("/nowhere"), env={})
    assert [str(problem) for problem in caught.value.problems] == [message]


def test_secrets_are_never_echoed() -> None:
    [message] = problems(GOOD.replace('"${TOKEN:-}"', '"EAAB secret token"'))
    assert message == (
        "config.yaml:7:19: destinations[0].access_token: must be a Meta access token, got (hidden)"
    )


def test_all_mistakes_are_reported_at_once() -> None:
    text = GOOD.replace("port: 9000", "port: -1") + "    max_in_flight: 0\n    colour: red\n"
    found = problems(text)
    assert len(found) == 3
    assert [m.split(": ")[1] for m in found] == [
        "server.port", "destinations[0].max_in_flight", "destinations[0].colour"
    ]


def test_check_command_reports_and_exits_non_zero(tmp_path: Path) -> None:
    bad = tmp_path / "config.yaml"
    bad.write_text(GOOD.replace("port: 9000", "port: abc"))
    result = subprocess.run(
        [sys.executable, "-m", "gateway", "check", "--config", str(bad)],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 2
    assert f"{bad}:3:9: server.port: must be a whole number" in result.stderr
    assert "1 problem in" in result.stderr


def test_check_command_accepts_the_shipped_config() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "gateway", "check", "--config", str(REPO / "config.yaml")],
        capture_output=True, text=True, timeout=60, env={"PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 0, result.stderr
    assert "destination main: DRY RUN (no access_token)" in result.stdout


def test_missing_config_file_is_reported(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(tmp_path / "nope.yaml")
    assert [str(problem) for problem in caught.value.problems] == [
        f"{tmp_path / 'nope.yaml'}: config file not found"]


def test_unquoted_numbers_that_are_ids_keep_their_text() -> None:
    # YAML reads an unquoted 0123 as octal 83; a pixel id is text.
    settings = parse_settings(GOOD.replace(
        'pixel_id: "123"', "pixel_id: 0123\n    accepts: [0123, 0456]"), env={})
    assert settings.destinations[0].options.pixel_id == "0123"
    assert settings.destinations[0].accepts == frozenset({"0123", "0456"})  # list items too


def test_pixel_ids_in_lists_are_ascii_digits() -> None:
    found = problems(GOOD.replace('pixel_id: "123"', 'pixel_id: "123"\n    accepts: ["12²"]'))
    assert len(found) == 1 and "must be a numeric pixel id" in found[0], found
    key = "  - {name: backend, sha256: " + "a" * 64 + ', pixels: ["12²"]}\n'
    found = problems(GOOD + "access_keys:\n" + key)
    assert len(found) == 1 and "must be a numeric pixel id" in found[0], found


def test_identity_sections_and_proxy_presets() -> None:
    settings = parse_settings(
        GOOD.replace("  port: 9000", "  port: 9000\n  trusted_proxies: [loopback, 10.0.0.0/8]\n"
                     "  client_ip_headers: [X-Real-IP]")
        + "identity: {truncate_ip: true, default_country: GB}\n"
        + "cookies: {enabled: false, domain: .example.com}\n",
        env={},
    )
    assert settings.server.trusted_proxies == ("127.0.0.0/8", "::1/128", "10.0.0.0/8")
    assert settings.server.client_ip_headers == ("X-Real-IP",)
    assert settings.identity.truncate_ip and settings.identity.default_country == "gb"
    assert not settings.cookies.enabled and settings.cookies.domain == "example.com"


def test_check_command_opens_the_geo_database(tmp_path: Path) -> None:
    broken = tmp_path / "city.mmdb"
    broken.write_bytes(b"\0" * 100)
    config = tmp_path / "config.yaml"
    config.write_text(GOOD + "geo: {database: city.mmdb}\n")
    result = subprocess.run(
        [sys.executable, "-m", "gateway", "check", "--config", str(config)],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 2
    assert f"{config}: geo.database: {broken}: not a readable MaxMind database" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_raw_key_pasted_where_its_sha256_belongs_is_never_echoed() -> None:
    raw = "sk-live-0123456789abcdef-THE-RAW-KEY"
    text = (GOOD + f"admin: {{key_sha256: {raw}}}\n"
            f"access_keys:\n  - {{name: backend, sha256: {raw}, pixels: [\"123\"]}}\n")
    with pytest.raises(ConfigError) as caught:
        parse_settings(text, filename="config.yaml", env={})
    problems = [str(p) for p in caught.value.problems]
    assert len(problems) == 2 and all("got (hidden)" in p for p in problems)
    assert raw not in str(caught.value)


@pytest.mark.parametrize(("admin", "problem"), [
    ("admin: {listen: '0.0.0.0:9901'}", "must be a loopback address"),
    ("admin: {listen: '192.0.2.1:9901'}", "must be a loopback address"),
    ("admin: {listen: '9901'}", "host:port"),
    ("admin: {listen: '0.0.0.0:9901', key_sha256: " + "a" * 64 + "}", None),
    ("admin: {listen: 'localhost:9901'}", None),
    ("admin: {listen: '[::1]:9901'}", None),
    ("admin: {listen: ''}", None),
])
def test_the_admin_listener_without_a_key_must_be_loopback(admin: str, problem: str | None
                                                            ) -> None:
    webhook = "{name: main, type: webhook, url: 'https://example.com/h', secret: ''}"
    text = f"version: 1\n{admin}\ndestinations: [{webhook}]\n"
    if problem is None:
        assert parse_settings(text, env={}).admin_listen == admin.split("'")[1]
        return
    with pytest.raises(ConfigError) as caught:
        parse_settings(text, env={})
    assert problem in str(caught.value) and "admin.listen" in str(caught.value)
