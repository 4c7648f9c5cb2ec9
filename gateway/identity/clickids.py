"""Click ids that ad platforms add to the landing page's URL when someone clicks an ad.

Each platform matches a conversion to its click by its own id: Meta `fbclid` (it also becomes the
`_fbc` cookie, see cookies.py), TikTok `ttclid`, Google `gclid` / `gbraid` / `wbraid`, Snapchat
`ScCid`, Pinterest `epik`, Reddit `rdt_cid`. They are read from the hit's page URL (else its
referrer), kept exactly as written (platforms compare them byte for byte), and stored with the
event for the destination types that send them.
"""

from __future__ import annotations

import re

__all__ = ["CLICK_ID_PARAMS", "MAX_CLICK_ID", "click_ids"]

CLICK_ID_PARAMS = ("fbclid", "ttclid", "gclid", "gbraid", "wbraid", "ScCid", "epik", "rdt_cid")
MAX_CLICK_ID = 500  # longer values are not click ids anyone minted
_PARAM = re.compile(r"[?&](" + "|".join(CLICK_ID_PARAMS) + r")=([^&#]+)")


def click_ids(*urls: str | None) -> dict[str, str]:
    """The click ids in the first URL that has any: {param: value}."""
    for url in urls:
        if not url or "=" not in url:
            continue
        found: dict[str, str] = {}
        for name, value in _PARAM.findall(url):
            if len(value) <= MAX_CLICK_ID:
                found.setdefault(name, value)
        if found:
            return found
    return {}
