"""Place names to the codes Meta expects: ISO 3166-1 alpha-2 countries, US/Canadian regions.

Countries come from the `iso3166` package (names, alpha-3 codes) plus the everyday names people
type; US states and Canadian provinces are listed here (they change about once a century).
Keys are "squashed": lowercase letters only, so `New York`, `new-york` and `NEW YORK` agree.
"""

from __future__ import annotations

import re
import unicodedata

import iso3166

__all__ = ["country_code", "region_code", "squash"]

US_STATES = {
    "alabama": "al", "alaska": "ak", "arizona": "az", "arkansas": "ar", "california": "ca",
    "colorado": "co", "connecticut": "ct", "delaware": "de", "districtofcolumbia": "dc",
    "washingtondc": "dc",
    "florida": "fl", "georgia": "ga", "hawaii": "hi", "idaho": "id", "illinois": "il",
    "indiana": "in", "iowa": "ia", "kansas": "ks", "kentucky": "ky", "louisiana": "la",
    "maine": "me", "maryland": "md", "massachusetts": "ma", "michigan": "mi", "minnesota": "mn",
    "mississippi": "ms", "missouri": "mo", "montana": "mt", "nebraska": "ne", "nevada": "nv",
    "newhampshire": "nh", "newjersey": "nj", "newmexico": "nm", "newyork": "ny",
    "northcarolina": "nc", "northdakota": "nd", "ohio": "oh", "oklahoma": "ok", "oregon": "or",
    "pennsylvania": "pa", "rhodeisland": "ri", "southcarolina": "sc", "southdakota": "sd",
    "tennessee": "tn", "texas": "tx", "utah": "ut", "vermont": "vt", "virginia": "va",
    "washington": "wa", "westvirginia": "wv", "wisconsin": "wi", "wyoming": "wy",
    "puertorico": "pr", "guam": "gu", "americansamoa": "as", "virginislands": "vi",
    "northernmarianaislands": "mp",
}
CA_PROVINCES = {
    "alberta": "ab", "britishcolumbia": "bc", "manitoba": "mb", "newbrunswick": "nb",
    "newfoundlandandlabrador": "nl", "newfoundland": "nl", "novascotia": "ns", "ontario": "on",
    "princeedwardisland": "pe", "quebec": "qc", "saskatchewan": "sk",
    "northwestterritories": "nt", "nunavut": "nu", "yukon": "yt",
}
_REGIONS = {**CA_PROVINCES, **US_STATES}

# Names people write that are not ISO's official short names.
_COUNTRY_ALIASES = {
    "usa": "us", "unitedstates": "us", "america": "us", "us": "us", "uk": "gb",
    "unitedkingdom": "gb", "greatbritain": "gb", "britain": "gb", "england": "gb",
    "scotland": "gb", "wales": "gb", "northernireland": "gb", "russia": "ru",
    "southkorea": "kr", "korea": "kr", "northkorea": "kp", "vietnam": "vn", "laos": "la",
    "iran": "ir", "syria": "sy", "bolivia": "bo", "venezuela": "ve", "tanzania": "tz",
    "moldova": "md", "taiwan": "tw", "czechia": "cz", "czechrepublic": "cz",
    "ivorycoast": "ci", "cotedivoire": "ci", "holland": "nl", "thenetherlands": "nl",
    "macedonia": "mk", "northmacedonia": "mk", "turkey": "tr", "turkiye": "tr",
    "brunei": "bn", "micronesia": "fm", "palestine": "ps", "vatican": "va",
    "uae": "ae", "swaziland": "sz", "eswatini": "sz", "burma": "mm", "capeverde": "cv",
    "easttimor": "tl", "drc": "cd", "democraticrepublicofthecongo": "cd",
}
_NON_LETTERS = re.compile(r"[^a-z]")


def squash(text: str) -> str:
    """ASCII letters only, lowercase: `Côte d'Ivoire` -> `cotedivoire`."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    return _NON_LETTERS.sub("", ascii_text.lower())


def _countries() -> dict[str, str]:
    table: dict[str, str] = {}
    for country in iso3166.countries:
        code = country.alpha2.lower()
        table[code] = code
        table[country.alpha3.lower()] = code
        table[squash(country.name)] = code
        table[squash(country.apolitical_name)] = code
        # "Bolivia (Plurinational State of)" -> also "bolivia"
        short = country.name.split("(")[0].split(",")[0]
        table.setdefault(squash(short), code)
    table.update(_COUNTRY_ALIASES)
    return table


_COUNTRIES = _countries()


def country_code(text: str) -> str | None:
    """ISO alpha-2, lowercase, for a code or a name; None when unknown."""
    return _COUNTRIES.get(squash(text))


def region_code(text: str) -> str | None:
    """Two-letter code for a US state or Canadian province name or code; None when unknown."""
    key = squash(text)
    if len(key) == 2 and key in _REGIONS.values():
        return key
    return _REGIONS.get(key)
