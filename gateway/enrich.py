"""Enrich an event and make its user_data Meta-ready: UA and geo into the context, each
configured platform's own identifiers from the raw values (destination types' `identities`),
then normalize + hash user_data, then fill country/st/ct/zp from geo where the event has none.

The context keeps clear values (browser, country, city) for rules; only hashes go upstream.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from .hashing import hash_user_data, hash_value
from .identity.geo import GeoInfo, GeoLocator
from .identity.useragent import UserAgentParser, shared_parser
from .model import Event
from .settings import Settings

if TYPE_CHECKING:
    from .destinations import DestinationType

__all__ = ["Enricher"]

log = logging.getLogger(__name__)

_GEO_FIELDS = (("country", "country"), ("st", "region"), ("ct", "city"), ("zp", "postal"))


class Enricher:
    def __init__(
        self,
        user_agents: UserAgentParser,
        geo: GeoLocator | None = None,
        *,
        fill_from_geo: bool = True,
        default_country: str = "",
        kinds: Callable[[], Iterable[DestinationType]] = tuple,
    ) -> None:
        self._kinds = kinds  # the destination types configured now
        self._user_agents = user_agents
        self._geo = geo
        self._fill_from_geo = fill_from_geo
        self._default_country = default_country.lower() or None

    @classmethod
    def from_settings(
        cls, settings: Settings, kinds: Callable[[], Iterable[DestinationType]] = tuple
    ) -> Enricher:
        """Load the user-agent rules and open the geo databases (blocking: seconds)."""
        geo = GeoLocator(settings.geo.databases) if settings.geo.databases else None
        return cls(shared_parser(), geo, fill_from_geo=settings.geo.fill_user_data,
                   default_country=settings.identity.default_country, kinds=kinds)

    def close(self) -> None:
        if self._geo is not None:
            self._geo.close()

    def enrich(self, event: Event) -> None:
        context = event.context
        context.ua = self._user_agents.parse(context.user_agent)
        context.geo = self._geo.lookup(context.ip) if self._geo is not None else None
        user_data = event.data.get("user_data")
        if not isinstance(user_data, dict):
            return
        geo_country = context.geo.country.lower() if context.geo and context.geo.country else None
        country = geo_country or self._default_country
        for kind in self._kinds():
            try:
                found = kind.identities(user_data, country)
            except Exception:  # one type's bug must not cost the event its other destinations
                log.exception("destination type %s: hashing its identifiers failed", kind.name)
                continue
            if found:
                context.identities = {**(context.identities or {}), kind.name: found}
        hashed, problems = hash_user_data(user_data, default_country=country)
        if self._fill_from_geo and context.geo is not None:
            _fill(hashed, context.geo)
        event.data["user_data"] = hashed
        context.warnings.extend(problems)


def _fill(user_data: dict[str, Any], geo: GeoInfo) -> None:
    for key, digest in _geo_hashes(geo):
        user_data.setdefault(key, digest)


@lru_cache(maxsize=16384)
def _geo_hashes(geo: GeoInfo) -> tuple[tuple[str, str], ...]:
    """(key, hash) pairs for a place, computed once per place rather than once per hit."""
    pairs = []
    for key, attribute in _GEO_FIELDS:
        value = getattr(geo, attribute)
        digest = hash_value(key, value, None) if value else None
        if digest:
            pairs.append((key, digest))
    return tuple(pairs)
