"""`ivr-server redact [FILE]`: the server's own redaction over a file or stdin, so an admin can
check an exported transcript or log before it leaves the building."""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ivr_server.cli.common import ExitCode
from ivr_server.config import Settings

NOT_FOUND, FOUND = int(ExitCode.NOT_FOUND), int(ExitCode.FAILURE)  # FOUND: --check found something


def add_commands(commands: Any, epilog: str) -> None:
    redact = commands.add_parser(
        "redact",
        help="mask personal data in a file or stdin (cards, ids, phones, e-mail, IBANs, ...)",
        description="Write FILE (default: stdin) to stdout with personal data masked as the server "
        "masks it in logs, the store and webhooks: card numbers (written or spoken), social "
        "security and national insurance numbers, phone numbers, e-mail addresses (written or "
        "spoken), IBANs, UK sort codes and dates of birth. A line that is a JSON object (a log "
        "line) is redacted value by value, keeping identifiers (ids, timestamps) as they are. "
        "Bytes that are not UTF-8 are written as U+FFFD.",
        epilog=epilog,
    )
    redact.add_argument("file", nargs="?", type=Path, metavar="FILE", help="input (default: stdin)")
    redact.add_argument(
        "--check", action="store_true", help="write nothing; exit 1 if anything would be masked"
    )
    redact.add_argument("--summary", action="store_true", help="counts of what was masked, on stderr")
    redact.set_defaults(handler=cmd_redact)


def cmd_redact(args: argparse.Namespace, _settings: Settings) -> int:
    if args.file is not None and not args.file.is_file():
        print(f"ivr-server: error: no file {args.file}", file=sys.stderr)
        return NOT_FOUND
    found: Counter[str] = Counter()
    name = args.file if args.file is not None else sys.stdin.fileno()
    with open(name, encoding="utf-8", errors="replace", newline="", closefd=args.file is not None) as source:
        for line in redact_lines(source, found):
            if not args.check:
                sys.stdout.write(line)
    if args.summary or args.check:
        counts = ", ".join(f"{kind} {n}" for kind, n in sorted(found.items())) or "nothing"
        print(f"ivr-server redact: masked {counts}", file=sys.stderr)
    return FOUND if args.check and found else 0


def redact_lines(lines: Iterable[str], found: Counter[str]) -> Iterable[str]:
    """Each line redacted (a JSON object value by value), its line ending kept."""
    from ivr_server.privacy.redact import Redactor

    redactor = Redactor()
    for line in lines:
        body = line.rstrip("\r\n")
        ending = line[len(body) :]
        yield _redact_line(redactor, body, found) + ending


def _redact_line(redactor: Any, body: str, found: Counter[str]) -> str:
    if body.startswith("{"):
        try:
            data = json.loads(body)
        except (ValueError, RecursionError):
            data = None
        if isinstance(data, dict):
            return json.dumps(redactor.value(data, found), ensure_ascii=False)
    done = redactor.text(body)
    found.update(done.found)
    return str(done.text)
