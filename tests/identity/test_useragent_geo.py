"""User agents through ua-parser's compiled resolver; geo from real MaxMind-format files."""

from __future__ import annotations

from pathlib import Path

import pytest
from mmdb_writer import MMDBWriter  # type: ignore[import-untyped]
from netaddr import IPSet  # type: ignore[import-untyped]

from gateway.identity.geo import GeoDatabaseError, GeoInfo, GeoLocator
from gateway.identity.useragent import shared_parser

DATA = Path(__file__).resolve().parent.parent / "data" / "maxmind"

IPHONE = ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 "
          "(KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1")
CHROME = ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
          "Chrome/131.0.0.0 Safari/537.36")


@pytest.mark.parametrize(("ua", "browser", "os", "device", "is_bot"), [
    (IPHONE, "Mobile Safari", "iOS", "iPhone", False),
    (CHROME, "Chrome", "Windows", "Other", False),
    ("Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
     "Googlebot", "Other", "Spider", True),
    ("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
     "HeadlessChrome/131.0.0.0 Safari/537.36", "HeadlessChrome", "Linux", "Other", True),
    ("facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)",
     "FacebookBot", "Other", "Spider", True),
    ("python-requests/2.32.3", "Python Requests", "Other", "Other", True),
    ("curl/8.5.0", "curl", "Other", "Other", True),
])
def test_user_agent_parsing(ua: str, browser: str, os: str, device: str, is_bot: bool) -> None:
    info = shared_parser().parse(ua)
    assert (info.browser, info.os, info.device, info.is_bot) == (browser, os, device, is_bot)


def test_missing_user_agent_counts_as_a_bot() -> None:
    assert shared_parser().parse(None).is_bot
    assert shared_parser().parse("").is_bot


def test_repeat_user_agents_come_from_the_cache() -> None:
    parser = shared_parser()
    parser.parse(CHROME)
    hits = parser.parse.cache_info().hits  # type: ignore[attr-defined]
    assert parser.parse(CHROME) is parser.parse(CHROME)
    assert parser.parse.cache_info().hits == hits + 2  # type: ignore[attr-defined]


@pytest.mark.parametrize(("ip", "expected"), [
    ("81.2.69.142", GeoInfo("GB", "ENG", "London", None)),
    ("2.125.160.216", GeoInfo("GB", "ENG", "Boxford", "OX1")),
    ("216.160.83.56", GeoInfo("US", "WA", "Milton", "98354")),
    ("89.160.20.128", GeoInfo("SE", "E", "Linköping", None)),
    ("8.8.8.8", None),
    ("2001:db8::1", None),
])
def test_geoip2_city_layout(ip: str, expected: GeoInfo | None) -> None:
    geo = GeoLocator([DATA / "GeoIP2-City-Test.mmdb"])
    try:
        assert geo.lookup(ip) == expected
    finally:
        geo.close()


def test_geolite2_city_layout() -> None:
    geo = GeoLocator([DATA / "GeoLite2-City-Test.mmdb"])
    try:
        info = geo.lookup("81.2.69.142")
        assert info is not None and info.country == "GB" and info.city == "London"
    finally:
        geo.close()


@pytest.fixture
def dbip_files(tmp_path: Path) -> list[Path]:
    """DB-IP city lite layout: flat keys, separate IPv4 and IPv6 files."""
    v4 = MMDBWriter(ip_version=4, database_type="DBIP-City-Lite", languages=["en"],
                    description="test")
    v4.insert_network(IPSet(["198.51.100.0/24"]), {
        "city": "San Jose", "country_code": "US", "postcode": "95113", "state1": "California",
        "state2": "Santa Clara", "latitude": 37.3, "longitude": -121.9,
        "timezone": "America/Los_Angeles",
    })
    v6 = MMDBWriter(ip_version=6, database_type="DBIP-City-Lite", languages=["en"],
                    description="test")
    v6.insert_network(IPSet(["2001:db8:100::/48"]), {
        "city": "Berlin", "country_code": "DE", "postcode": "10115", "state1": "Berlin",
        "state2": "", "latitude": 52.5, "longitude": 13.4, "timezone": "Europe/Berlin",
    })
    paths = [tmp_path / "dbip-city-ipv4.mmdb", tmp_path / "dbip-city-ipv6.mmdb"]
    v4.to_db_file(str(paths[0]))
    v6.to_db_file(str(paths[1]))
    return paths


def test_dbip_layout_across_ipv4_and_ipv6_files(dbip_files: list[Path]) -> None:
    geo = GeoLocator(dbip_files)
    try:
        assert geo.lookup("198.51.100.7") == GeoInfo("US", "California", "San Jose", "95113")
        # The IPv4 file raises for IPv6 addresses; the IPv6 file answers.
        assert geo.lookup("2001:db8:100::1") == GeoInfo("DE", "Berlin", "Berlin", "10115")
        assert geo.lookup("203.0.113.1") is None
    finally:
        geo.close()


def test_corrupt_database_is_a_clear_startup_error(tmp_path: Path) -> None:
    broken = tmp_path / "broken.mmdb"
    broken.write_bytes(b"this is not a maxmind database" * 10)
    with pytest.raises(GeoDatabaseError, match=r"broken\.mmdb: not a readable MaxMind database"):
        GeoLocator([broken])
