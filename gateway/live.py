"""The live configuration: one immutable snapshot of the settings and the destinations built
from them, swapped whole when a reload applies.

Everything that depends on destinations (the pipeline's routing and validation, the rules'
tests, the relay workers, /status and /metrics) reads `Live.current` when it needs it and keeps
no copy, so a reload can never leave one part on old settings. A hit reads the snapshot once,
so it is never split between two configurations. Listeners (the relay) hear of each swap and
start, stop or update their workers.

The destinations are config.yaml's and the console's (`set_console`): each swap keeps the other
source's, and a console destination whose name config.yaml now uses too waits unused (config
wins; the console shows it).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType

from .destinations import Destination, DestinationType, build
from .settings import DestinationSettings, Settings

__all__ = ["Live", "Snapshot"]


@dataclass(frozen=True)
class Snapshot:
    settings: Settings
    destinations: tuple[Destination, ...]
    by_name: Mapping[str, Destination] = field(repr=False)
    kinds: tuple[DestinationType, ...] = ()  # the types configured, each once
    kind_names: frozenset[str] = frozenset()
    cookie_names: frozenset[str] = frozenset()  # their first-party cookies to read from hits

    @classmethod
    def of(cls, settings: Settings) -> Snapshot:
        destinations = tuple(build(d) for d in settings.destinations)
        kinds = tuple({d.kind.name: d.kind for d in destinations}.values())
        return cls(settings, destinations,
                   MappingProxyType({d.name: d for d in destinations}), kinds,
                   frozenset(kind.name for kind in kinds),
                   frozenset().union(*(kind.cookie_names for kind in kinds)))


class Live:
    def __init__(self, settings: Settings) -> None:
        self.config = settings  # config.yaml's, with its own destinations only
        self.console: tuple[DestinationSettings, ...] = ()  # those added in the console
        self.current = Snapshot.of(settings)
        # Sections of the last config read that differ from what runs and need a restart.
        self.waiting_for_restart: tuple[str, ...] = ()
        self._listeners: list[Callable[[Snapshot, Snapshot], None]] = []

    def listen(self, listener: Callable[[Snapshot, Snapshot], None]) -> Callable[[], None]:
        """Call `listener(old, new)` after every swap; returns a function that stops it."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    def swap(self, settings: Settings) -> Snapshot:
        """Make config.yaml's `settings` current with the console's destinations (built whole
        first), then tell the listeners."""
        self.config = settings
        return self._swap()

    def set_console(self, destinations: tuple[DestinationSettings, ...]) -> Snapshot:
        """Make the console's destinations current beside config.yaml's."""
        self.console = destinations
        return self._swap()

    def _swap(self) -> Snapshot:
        taken = {d.name for d in self.config.destinations}
        added = tuple(d for d in self.console if d.name not in taken)
        settings = replace(self.config, destinations=self.config.destinations + added)
        old, self.current = self.current, Snapshot.of(settings)
        for listener in list(self._listeners):
            listener(old, self.current)
        return self.current
