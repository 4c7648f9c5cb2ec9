"""Command line: `tag-gateway serve | check` (also `python -m gateway`)."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from .config import Settings, load_settings
from .errors import ConfigError

EXIT_CONFIG = 2


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="tag-gateway", description="First-party server-side tag gateway."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    default_config = os.environ.get("GATEWAY_CONFIG", "config.yaml")
    for name, help_text in (
        ("serve", "run the gateway"),
        ("check", "validate the configuration without serving"),
        ("outbox", "show what the outbox holds (counts, newest rows)"),
    ):
        command = commands.add_parser(name, help=help_text)
        command.add_argument("--config", default=default_config,
                             help="config file (default: $GATEWAY_CONFIG or config.yaml)")
        if name == "outbox":
            command.add_argument("--state", help="only rows in this state (pending, delivered, "
                                 "dry_run, unrouted, invalid, inflight)")
            command.add_argument("--limit", type=int, default=20, help="rows to show")
            command.add_argument("--payload", action="store_true",
                                 help="also print each event as (or as it would be) sent")
    args = parser.parse_args(argv)

    settings = _load(args.config)
    if settings is None:
        return EXIT_CONFIG
    if args.command == "check":
        from .server import describe

        print(f"{args.config}: OK")
        for line in describe(settings):
            print(f"  {line}")
        return 0
    if args.command == "outbox":
        from .inspect_outbox import print_outbox

        return print_outbox(settings.storage.path, sys.stdout, state=args.state,
                            limit=args.limit, payload=args.payload)
    from .server import serve

    serve(settings)
    return 0


def _load(path: str) -> Settings | None:
    """Validated settings whose files also open (geo databases), or None after printing why."""
    try:
        settings = load_settings(path)
        _open_geo(settings)
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        count = len(exc.problems)
        print(f"{count} problem{'s' if count != 1 else ''} in {path}", file=sys.stderr)
        return None
    return settings


def _open_geo(settings: Settings) -> None:
    from .identity.geo import GeoDatabaseError, GeoLocator

    if not settings.geo.databases:
        return
    try:
        GeoLocator(settings.geo.databases).close()
    except GeoDatabaseError as exc:
        raise ConfigError([f"{settings.source}: geo.database: {exc}"]) from None


if __name__ == "__main__":
    sys.exit(main())
