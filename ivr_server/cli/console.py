"""``ivr-server console hash-token``: a console user's token and the hash the settings keep."""

from __future__ import annotations

import argparse
import getpass
import sys
from typing import Any

from ivr_server.cli.common import ExitCode
from ivr_server.config import Settings
from ivr_server.console.auth import hash_token, new_token

_DESCRIPTION = (
    "Print a new random token (give it to the user) and the hash to put in the settings, e.g.\n"
    '  [console_users.alice]\n  role = "supervisor"   # or "viewer"\n  token_hash = "sha256:..."\n'
    "  expires = 2027-06-30     # optional\n"
    "With --password, hash a password read from the terminal (or stdin) with scrypt instead."
)


def add_commands(commands: Any, epilog: str) -> None:
    console = commands.add_parser("console", help="the live operators' console (/console/)")
    sub = console.add_subparsers(dest="console_command", metavar="COMMAND", required=True)
    make = sub.add_parser(
        "hash-token",
        help="a new token and its hash for console_users",
        description=_DESCRIPTION,
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    make.add_argument("--password", action="store_true", help="hash a password of your own (scrypt)")
    make.set_defaults(handler=cmd_hash_token)


def cmd_hash_token(args: argparse.Namespace, settings: Settings) -> int:
    if not args.password:
        token = new_token()
        print(f"token:      {token}\ntoken_hash: {hash_token(token)}")
        return int(ExitCode.OK)
    secret = getpass.getpass("password: ") if sys.stdin.isatty() else sys.stdin.readline().rstrip("\n")
    if len(secret) < 12:
        print("ivr-server console: a password needs at least 12 characters", file=sys.stderr)
        return int(ExitCode.USAGE)
    print(f"token_hash: {hash_token(secret, slow=True)}")
    return int(ExitCode.OK)
