"""Country, region, city and postal code for an IP address from MaxMind-format databases.

Two layouts are read: GeoIP2 / GeoLite2 City (`country.iso_code`, `subdivisions[].iso_code`,
`city.names.en`, `postal.code`) and DB-IP city lite (flat `country_code`, `state1`, `city`,
`postcode`). DB-IP ships IPv4 and IPv6 as separate files, so several files can be open at once;
each lookup tries them in order. A missing or corrupt file is a start-up error.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import maxminddb

from ..errors import GatewayError

__all__ = ["GeoDatabaseError", "GeoInfo", "GeoLocator"]


class GeoDatabaseError(GatewayError):
    """A geo database cannot be opened or read."""


@dataclass(frozen=True)
class GeoInfo:
    country: str | None = None  # ISO alpha-2, uppercase as MaxMind writes it
    region: str | None = None  # subdivision code (GeoIP2) or name (DB-IP)
    city: str | None = None
    postal: str | None = None


def _from_record(record: Any) -> GeoInfo | None:
    if not isinstance(record, dict):
        return None
    if "country_code" in record or "state1" in record:  # DB-IP city lite
        return GeoInfo(
            country=record.get("country_code") or None,
            region=record.get("state1") or None,
            city=record.get("city") or None,
            postal=record.get("postcode") or None,
        )
    country = (record.get("country") or record.get("registered_country") or {}).get("iso_code")
    subdivisions = record.get("subdivisions") or [{}]
    return GeoInfo(
        country=country,
        region=subdivisions[0].get("iso_code"),
        city=((record.get("city") or {}).get("names") or {}).get("en"),
        postal=(record.get("postal") or {}).get("code"),
    )


class GeoLocator:
    def __init__(self, paths: Sequence[Path], cache_size: int = 16384) -> None:
        self._readers = []
        for path in paths:
            try:
                self._readers.append(maxminddb.open_database(str(path)))
            except (OSError, ValueError, maxminddb.InvalidDatabaseError) as exc:
                self.close()
                raise GeoDatabaseError(f"{path}: not a readable MaxMind database ({exc})") from None
        self.lookup = lru_cache(maxsize=cache_size)(self._lookup)

    def _lookup(self, ip: str | None) -> GeoInfo | None:
        if not ip:
            return None
        for reader in self._readers:
            try:
                info = _from_record(reader.get(ip))
            except (ValueError, maxminddb.InvalidDatabaseError):
                continue  # e.g. an IPv6 address in an IPv4-only file
            if info is not None:
                return info
        return None

    def close(self) -> None:
        for reader in self._readers:
            reader.close()
        self._readers = []
