"""Counters for /metrics (Prometheus text format) and the health/readiness probes."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping

__all__ = ["Labels", "Metrics"]

Labels = tuple[tuple[str, str], ...]

_HELP = {
    "gateway_hits_total": "Browser hits received, by result (accepted, rejected).",
    "gateway_events_enqueued_total": "Event rows committed to the outbox, by destination.",
    "gateway_events_unrouted_total": "Events no destination accepts (kept as 'unrouted' rows).",
    "gateway_events_invalid_total": "Events Meta would refuse (kept as 'invalid' rows), by source.",
    "gateway_relay_requests_total": "Upstream requests, by destination and outcome.",
    "gateway_relay_events_total": "Events relayed, by destination and outcome.",
    "gateway_outbox_rows": "Outbox rows, by destination and state.",
}


class Metrics:
    """A tiny in-process registry: monotonically increasing counters with labels."""

    def __init__(self) -> None:
        self._counters: dict[str, dict[Labels, float]] = defaultdict(lambda: defaultdict(float))

    def inc(self, name: str, amount: float = 1.0, **labels: str) -> None:
        self._counters[name][tuple(sorted(labels.items()))] += amount

    def value(self, name: str, **labels: str) -> float:
        return self._counters.get(name, {}).get(tuple(sorted(labels.items())), 0.0)

    def render(self, gauges: Mapping[str, Mapping[Labels, float]] | None = None) -> str:
        """Prometheus exposition text of the counters plus the given gauges."""
        lines: list[str] = []
        families: tuple[tuple[str, Mapping[str, Mapping[Labels, float]]], ...] = (
            ("counter", self._counters), ("gauge", gauges or {})
        )
        for kind, family in families:
            for name in sorted(family):
                lines.append(f"# HELP {name} {_HELP.get(name, name)}")
                lines.append(f"# TYPE {name} {kind}")
                for labels, value in sorted(family[name].items()):
                    lines.append(f"{name}{_format_labels(labels)} {value:g}")
        return "\n".join(lines) + "\n"


def _format_labels(labels: Labels) -> str:
    if not labels:
        return ""
    escaped = (
        f'{key}="{value.replace(chr(92), chr(92) * 2).replace(chr(34), chr(92) + chr(34))}"'
        for key, value in labels
    )
    return "{" + ",".join(escaped) + "}"
