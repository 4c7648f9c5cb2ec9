"""Command line: `tag-gateway serve | check | test | outbox | dead-letters | keys`
(also `python -m gateway`)."""

from __future__ import annotations

import argparse
import asyncio
import errno
import json
import os
import sys
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path

from .config import load_settings
from .errors import ConfigError, OutboxIncompatible, OutboxUnavailable
from .mintkeys import add_keys_parser, run_keys
from .problems import Problem
from .rules import RuleError, format_results, load_rule_set, run_rule_tests
from .settings import Settings
from .storage import DEAD_REASONS, STATES, DeadLetterFilter

EXIT_CONFIG = 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tag-gateway", description="First-party server-side tag gateway: pixel hits and "
        "server events in, every ad platform out.")
    parser.add_argument("--version", action="version",
                        version=f"%(prog)s {metadata.version('tag-gateway')}")
    commands = parser.add_subparsers(dest="command", metavar="command")
    config = argparse.ArgumentParser(add_help=False)
    config.add_argument("--config", default=os.environ.get("GATEWAY_CONFIG", "config.yaml"),
                        help="config file (default: $GATEWAY_CONFIG or config.yaml)")
    serve = commands.add_parser("serve", parents=[config], help="run the gateway",
                                description="Serve hits and server events and relay them to "
                                "every configured destination until SIGTERM.")
    serve.add_argument("--workers", type=int, default=1,
                       help="processes sharing the port and the outbox (default 1)")
    serve.add_argument("--worker", type=int, default=None, help=argparse.SUPPRESS)
    check = commands.add_parser("check", parents=[config],
                                help="validate the configuration and the rule files",
                                description="Validate config.yaml and every rule file; print "
                                "each problem as file:line:col: key: message (exit 2).")
    check.add_argument("--format", choices=("text", "json"), default="text",
                       help="json: one object with every problem as fields, for tools")
    check.add_argument("--validate", action="store_true",
                       help="also ask platforms with a validation service (GA4) about the "
                            "newest stored events")
    commands.add_parser("test", parents=[config],
                        help="run the rule tests in rules/tests/*.yaml",
                        description="Run the rule tests in rules/tests/*.yaml with the same "
                        "enrichment as production (exit 1 on a failure).")
    outbox = commands.add_parser("outbox", parents=[config],
                                 help="show what the outbox holds (counts, newest rows)",
                                 description="Rows per destination and state, events dropped by "
                                 "rules, then the newest rows; safe while the gateway runs.")
    outbox.add_argument("--state", choices=STATES, metavar="STATE",
                        help=f"only rows in this state ({', '.join(STATES)})")
    outbox.add_argument("--limit", type=int, default=20, help="rows to show")
    outbox.add_argument("--payload", action="store_true",
                        help="also print each event as (or as it would be) sent")
    outbox.add_argument("--follow", action="store_true",
                        help="then tell each new row, change of state and drop as it happens, "
                             "until Ctrl-C (--state: only rows entering that state)")
    dead = commands.add_parser("dead-letters", help="events that could not be delivered",
                               description="List or replay the events a destination refused, "
                               "that expired, or that waited out a refused token.")
    actions = dead.add_subparsers(dest="action", required=True)
    for action, help_text in (("list", "newest first, with reason and Meta's message"),
                              ("replay", "re-queue them (e.g. after fixing a token)")):
        sub = actions.add_parser(action, parents=[config], help=help_text,
                                 description=help_text[0].upper() + help_text[1:] + ".")
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
    try:
        return _main(argv)
    except BrokenPipeError:
        # `tag-gateway outbox | head`: the reader has what it wanted; say nothing more.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OutboxUnavailable as exc:  # e.g. the PostgreSQL server is down: say so, no traceback
        print(f"tag-gateway: {exc}; try again later", file=sys.stderr)
        return 1
    except OutboxIncompatible as exc:  # a store this gateway must not open: say why, no traceback
        print(f"tag-gateway: {exc}", file=sys.stderr)
        return 1


def _main(argv: Sequence[str] | None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:  # bare `tag-gateway`: say what it can do
        parser.print_help()
        return EXIT_CONFIG
    if args.command == "keys":  # needs no config file
        return run_keys(args)
    if args.command == "check":
        code = _check(args.config, args.format)
        if code or not args.validate:
            return code
        from .remotecheck import validate_remotely

        return asyncio.run(validate_remotely(load_settings(args.config), sys.stdout))
    settings = _load(args.config)
    if settings is None:
        return EXIT_CONFIG
    if args.command == "test":
        return _test(settings)
    if args.command == "outbox":
        return _outbox(args, settings)
    if args.command == "dead-letters":
        return _dead_letters(args, settings)
    if args.workers > 1 and args.worker is None:
        from .ingest.basecode import start_text
        from .workers import supervise

        return supervise(Path(args.config), args.workers, settings.server.shutdown_timeout,
                         announce=start_text(settings))
    return _serve(args, settings)


def _serve(args: argparse.Namespace, settings: Settings) -> int:
    from .run import PortInUse, serve
    from .workers import die_with_supervisor

    if args.worker is not None:
        die_with_supervisor()

    try:
        serve(settings, worker=args.worker)
    except PortInUse as exc:
        print(f"{exc.address} is already in use (another tag-gateway?); choose another with "
              f"{exc.setting} in the config", file=sys.stderr)
        return EXIT_CONFIG
    except RuleError as exc:  # the rule set failed to load or its tests failed at start-up
        _print_problems(exc.problems, str(settings.rules_path))
        return EXIT_CONFIG
    except OSError as exc:
        if exc.errno != errno.EADDRINUSE:
            raise
        server = settings.server
        print(f"port {server.port} on {server.host} is already in use (another tag-gateway?); "
              "choose another with server.port in the config or GATEWAY_PORT", file=sys.stderr)
        return EXIT_CONFIG
    return 0


def _check(path: str, output: str) -> int:
    """Config and rules, every problem at once; JSON for tools."""
    problems: list[Problem] = []
    settings = None
    try:
        settings = load_settings(path)
        _open_geo(settings)
    except ConfigError as exc:
        problems += exc.problems
    if settings is not None and not problems:
        problems += _rule_problems(settings)
    elif settings is not None:  # the geo database does not open: the rule files, untested
        try:
            load_rule_set(settings.rules_path, [d.name for d in settings.destinations])
        except RuleError as exc:
            problems += exc.problems
    if output == "json":
        print(json.dumps({"ok": not problems, "problems": [p.as_dict() for p in problems]},
                         indent=2))
    elif problems:
        _print_problems(problems, path)
    elif settings is not None:
        from .run import describe

        print(f"{path}: OK; rules in {settings.rules_path}: OK")
        for line in describe(settings):
            print(f"  {line}")
    return EXIT_CONFIG if problems else 0


def _rule_problems(settings: Settings) -> list[Problem]:
    """The rule files' problems and their failing tests, as the server would refuse them."""
    from .enrich import Enricher
    from .live import Snapshot
    from .liverules import build_rule_set

    kinds = Snapshot.of(settings).kinds
    enricher = Enricher.from_settings(settings, lambda: kinds)
    try:
        build_rule_set(settings.rules_path, settings.destinations, enricher.enrich)
    except RuleError as exc:
        return exc.problems
    finally:
        enricher.close()
    return []


def _test(settings: Settings) -> int:
    """`tag-gateway test`: run the rule tests with the same enrichment as production."""
    from .enrich import Enricher

    try:
        rule_set = load_rule_set(settings.rules_path, [d.name for d in settings.destinations])
        enricher = Enricher.from_settings(settings)
        try:
            results = run_rule_tests(rule_set, settings.rules_path / "tests",
                                     settings.destinations, enricher.enrich)
        finally:
            enricher.close()
    except RuleError as exc:
        _print_problems(exc.problems, str(settings.rules_path))
        return EXIT_CONFIG
    print(format_results(results))
    return 0 if all(result.passed for result in results) else 1


def _print_problems(problems: list[Problem], where: str) -> None:
    for problem in problems:
        print(problem, file=sys.stderr)
    count = len(problems)
    print(f"{count} problem{'s' if count != 1 else ''} in {where}", file=sys.stderr)


def _outbox(args: argparse.Namespace, settings: Settings) -> int:
    from .storage.report import follow_outbox, print_outbox

    try:
        code = asyncio.run(print_outbox(settings.storage, sys.stdout, state=args.state,
                                        limit=args.limit, payload=args.payload))
        if code or not args.follow:
            return code
        return asyncio.run(follow_outbox(settings.storage, sys.stdout, state=args.state,
                                         payload=args.payload))
    except KeyboardInterrupt:
        if not args.follow:
            raise
        return 0  # Ctrl-C is how following ends


def _dead_letters(args: argparse.Namespace, settings: Settings) -> int:
    from .storage.report import print_dead_letters, replay_dead_letters

    selection = DeadLetterFilter(destination=args.destination, reason=args.reason,
                                 ids=tuple(args.ids))
    if args.action == "list":
        return asyncio.run(print_dead_letters(settings.storage, sys.stdout, selection,
                                              limit=args.limit, as_json=args.format == "json"))
    return asyncio.run(replay_dead_letters(settings.storage, sys.stdout, selection))


def _load(path: str) -> Settings | None:
    """Validated settings whose files also open (geo databases), or None after printing why."""
    try:
        settings = load_settings(path)
        _open_geo(settings)
    except ConfigError as exc:
        _print_problems(exc.problems, path)
        return None
    return settings


def _open_geo(settings: Settings) -> None:
    from .identity.geo import GeoDatabaseError, GeoLocator

    if not settings.geo.databases:
        return
    try:
        GeoLocator(settings.geo.databases).close()
    except GeoDatabaseError as exc:
        raise ConfigError([Problem(settings.source, subject="geo.database", message=str(exc))]
                          ) from None


if __name__ == "__main__":
    sys.exit(main())
