"""Destination types, registered by their config `type`.

Adding one (say `tiktok`): a module or package here with its options dataclass, a type object
(`name`, `vendor`, `credentials_name`, `secret_option`, `account_option`, `max_batch_size`,
`read_options`, `validate`, `expires`, `build`) and its `Destination` (kind, address,
batch_key, send, endpoint, target, describe_batch), both following the protocols in base.py;
one line in `TYPES` below; tests against a local fake of the platform's API.
docs/architecture.md has the whole checklist.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .base import (
    Destination,
    DestinationBase,
    DestinationOptions,
    DestinationType,
    summarize,
)
from .ga4 import GA4
from .meta_capi import META_CAPI
from .pinterest import PINTEREST
from .snapchat import SNAPCHAT
from .tiktok import TIKTOK
from .webhook import WEBHOOK

if TYPE_CHECKING:
    from ..settings import DestinationSettings

__all__ = ["TYPES", "Destination", "DestinationBase", "DestinationOptions", "DestinationType",
           "build", "summarize"]

TYPES: dict[str, DestinationType] = {
    kind.name: kind for kind in (META_CAPI, TIKTOK, GA4, SNAPCHAT, PINTEREST, WEBHOOK)
}


def build(settings: DestinationSettings) -> Destination:
    """The run-time destination for validated settings."""
    return TYPES[settings.type].build(settings)
