"""`tag-gateway keys new --name NAME --pixels ID[,ID] | --all-pixels`: mint a server ingress key;
`tag-gateway keys admin`: mint the admin key (the console's sign-in, operator endpoints);
`tag-gateway keys secret`: mint the key that seals the tokens set in the console
(`GATEWAY_SECRET_KEY`, secretbox.py).

Each prints the key once (it is stored nowhere) and the entry to paste into config.yaml, which
holds only the key's SHA-256. Needs no config file.
"""

from __future__ import annotations

import argparse
import sys

from .accesskeys import key_sha256, new_key
from .model import ACCESS_KEY_NAME, PIXEL_ID
from .secretbox import KEY_ENV

__all__ = ["add_keys_parser", "run_keys"]


def _name(text: str) -> str:
    if not ACCESS_KEY_NAME.fullmatch(text):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a valid name: use 1-64 letters, digits, '.', '_' or '-'")
    return text


def _pixels(text: str) -> list[str]:
    pixels = [item.strip() for item in text.split(",") if item.strip()]
    bad = [item for item in pixels if not PIXEL_ID.fullmatch(item)]
    if bad or not pixels:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a list of numeric pixel ids (e.g. 123456789012345,222222222222222)")
    return list(dict.fromkeys(pixels))


def add_keys_parser(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add `keys new` and `keys admin` to the CLI's subcommands."""
    keys = commands.add_parser("keys", help="access keys for the server ingress",
                               description="Access keys for backends sending server events; "
                               "the gateway stores only their SHA-256.")
    actions = keys.add_subparsers(dest="keys_action", required=True)
    new = actions.add_parser(
        "new", help="print a new random key once, and the config entry (its SHA-256) to paste",
        description="Print a new random key once, and the access_keys entry (its SHA-256) to "
        "paste into config.yaml.")
    new.add_argument("--name", required=True, type=_name,
                     help="a label for the key, e.g. the backend that will use it")
    scope = new.add_mutually_exclusive_group(required=True)
    scope.add_argument("--pixels", type=_pixels, metavar="ID[,ID]",
                       help="the pixel ids this key may send events for")
    scope.add_argument("--all-pixels", action="store_true",
                       help="allow every pixel (pixels: \"*\")")
    actions.add_parser(
        "admin", help="print a new admin key once, and its config line (its SHA-256)",
        description="Print a new random admin key once, and the admin.key_sha256 line to paste "
        "into config.yaml: it turns the console on ({path_prefix}/admin/) and is the bearer "
        "key of the operator endpoints.")
    actions.add_parser(
        "secret", help=f"print a new {KEY_ENV} once: the key that seals console tokens",
        description=f"Print a new random {KEY_ENV} once: the key that seals the tokens set "
        "in the console (AES-256-GCM). Set it in the environment of every gateway process.")


def run_keys(args: argparse.Namespace) -> int:
    """Run `keys new` or `keys admin`; exit code 0."""
    if args.keys_action == "secret":
        sys.stdout.write(
            f"New {KEY_ENV}. It is shown only this once: keep it in a password manager "
            "now. Without it the tokens set in the console cannot be read (set them again).\n\n"
            f"    {KEY_ENV}={new_key()}\n\n"
            "Set it in the environment of every gateway process (all workers and nodes share "
            "one key), then restart them.\n"
        )
        return 0
    key = new_key()
    if args.keys_action == "admin":
        sys.stdout.write(
            "New admin key. It is shown only this once: keep it in a password manager now.\n\n"
            f"    {key}\n\n"
            "Add this to config.yaml (only the key's SHA-256 is kept there; merge it into an "
            "existing `admin:` section), then restart the gateway:\n\n"
            "admin:\n"
            f"  key_sha256: {key_sha256(key)}\n\n"
            "Then sign in with the key at {path_prefix}/admin/ on the gateway. Operator "
            "endpoints (/status, /metrics, /dead-letters) take it as "
            "`Authorization: Bearer <key>` on any listener.\n"
        )
        return 0
    pixels = '"*"' if args.all_pixels else "[" + ", ".join(f'"{p}"' for p in args.pixels) + "]"
    sys.stdout.write(
        f"New access key for {args.name!r}. It is shown only this once: store it in the "
        "backend's secrets now.\n\n"
        f"    {key}\n\n"
        "Add this entry to config.yaml (only the key's SHA-256 is kept there); the gateway "
        "applies it when it reloads the file (at once on SIGHUP), no restart needed:\n\n"
        "access_keys:\n"
        f"  - name: \"{args.name}\"\n"
        f"    sha256: {key_sha256(key)}\n"
        f"    pixels: {pixels}\n"
    )
    return 0
