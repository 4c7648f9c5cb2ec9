"""Command line: `tag-gateway serve | check | outbox | dead-letters` (also `python -m gateway`)."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from .config import Settings, load_settings
from .errors import ConfigError
from .keycli import add_keys_parser, run_keys
from .outbox.deadletters import DeadLetterFilter
from .outbox.schema import DEAD_REASONS

EXIT_CONFIG = 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tag-gateway", description="First-party server-side tag gateway."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    config = argparse.ArgumentParser(add_help=False)
    config.add_argument("--config", default=os.environ.get("GATEWAY_CONFIG", "config.yaml"),
                        help="config file (default: $GATEWAY_CONFIG or config.yaml)")
    commands.add_parser("serve", parents=[config], help="run the gateway")
    commands.add_parser("check", parents=[config],
                        help="validate the configuration without serving")
    outbox = commands.add_parser("outbox", parents=[config],
                                 help="show what the outbox holds (counts, newest rows)")
    outbox.add_argument("--state", help="only rows in this state (pending, inflight, delivered, "
                        "dry_run, duplicate, dead, unrouted, invalid)")
    outbox.add_argument("--limit", type=int, default=20, help="rows to show")
    outbox.add_argument("--payload", action="store_true",
                        help="also print each event as (or as it would be) sent")
    dead = commands.add_parser("dead-letters", help="events that could not be delivered")
    actions = dead.add_subparsers(dest="action", required=True)
    for action, help_text in (("list", "newest first, with reason and Meta's message"),
                              ("replay", "re-queue them (e.g. after fixing a token)")):
        sub = actions.add_parser(action, parents=[config], help=help_text)
        sub.add_argument("--destination", help="only this destination")
        sub.add_argument("--reason", choices=DEAD_REASONS, help="only this reason")
        sub.add_argument("--id", type=int, action="append", default=[], dest="ids",
                         help="only this row (repeatable)")
        if action == "list":
            sub.add_argument("--limit", type=int, default=50)
            sub.add_argument("--format", choices=("text", "json"), default="text")
    add_keys_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "keys":  # needs no config file
        return run_keys(args)
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
    if args.command == "dead-letters":
        return _dead_letters(args, settings)
    from .server import serve

    serve(settings)
    return 0


def _dead_letters(args: argparse.Namespace, settings: Settings) -> int:
    from .inspect_outbox import print_dead_letters, replay_dead_letters

    selection = DeadLetterFilter(destination=args.destination, reason=args.reason,
                                 ids=tuple(args.ids))
    if args.action == "list":
        return print_dead_letters(settings.storage.path, sys.stdout, selection,
                                  limit=args.limit, as_json=args.format == "json")
    return replay_dead_letters(settings.storage.path, sys.stdout, selection)


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
