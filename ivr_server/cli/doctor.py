"""`ivr-server doctor`: check a deployment from the outside and say how to fix what is wrong.
The checks are ivr_server/ops/doctor*.py's; this module parses, prints and picks the exit code."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shlex
import sys
from typing import Any

from ivr_server.cli.common import ExitCode
from ivr_server.config import Settings
from ivr_server.ops.doctor import DoctorOptions, Finding, Status, exit_ok, run_checks

_DESCRIPTION = """\
Check what the server needs, from the outside (it may run while the server is stopped):
ARI credentials and the Stasis app, Asterisk's modules and the endpoints' codecs, the
dialplan (with --asterisk-cli), the RTP port range, the speech engines and models, the
flow files, the store's schema, the clocks of this host, Asterisk and PostgreSQL, and disk
space. One line per finding, with a fix under each that is not ok. Exit 0 when nothing
FAILs (warnings allowed unless --strict), 1 otherwise."""

_EXAMPLES = """\
examples:
  ivr-server doctor
  ivr-server doctor --asterisk-cli "asterisk -rx" --strict
  ivr-server doctor --json | jq '.findings[] | select(.status != "ok")'

"""

_COLOURS = {Status.OK: "\033[32m", Status.WARN: "\033[33m", Status.FAIL: "\033[31;1m"}
_LABELS = {Status.OK: "ok", Status.WARN: "WARN", Status.FAIL: "FAIL"}


def add_commands(commands: Any, epilog: str) -> None:
    doctor = commands.add_parser(
        "doctor",
        help="check the deployment (Asterisk, ports, models, store, clocks, disk) and say what to fix",
        description=_DESCRIPTION,
        epilog=_EXAMPLES + epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    doctor.add_argument("--json", action="store_true", help="one JSON object")
    doctor.add_argument("--strict", action="store_true", help="warnings fail too")
    doctor.add_argument(
        "--timeout", type=float, default=10.0, metavar="S", help="deadline of each check (default 10)"
    )
    doctor.add_argument(
        "--asterisk-cli",
        metavar="CMD",
        help='a command that runs one Asterisk CLI command given after it, e.g. "asterisk -rx": '
        "then the dialplan's routes into the Stasis app are read too",
    )
    doctor.set_defaults(handler=cmd_doctor)


def cmd_doctor(args: argparse.Namespace, settings: Settings) -> int:
    if args.timeout <= 0:
        print("ivr-server doctor: --timeout must be > 0", file=sys.stderr)
        return int(ExitCode.USAGE)
    options = DoctorOptions(
        timeout_s=args.timeout, asterisk_cli=shlex.split(args.asterisk_cli) if args.asterisk_cli else None
    )
    findings = asyncio.run(run_checks(settings, options))
    ok = exit_ok(findings, args.strict)
    if args.json:
        print(
            json.dumps(
                {"ok": ok, "strict": args.strict, "findings": [f.as_dict() for f in findings]}, indent=2
            )
        )
    else:
        colour = sys.stdout.isatty() and not os.environ.get("NO_COLOR")
        for line in render(findings, colour):
            print(line)
    return int(ExitCode.OK if ok else ExitCode.FAILURE)


def render(findings: list[Finding], colour: bool) -> list[str]:
    width = max(len(f.check) for f in findings)
    lines = []
    for f in findings:
        label = _LABELS[f.status].ljust(4)
        if colour:
            label = f"{_COLOURS[f.status]}{label}\033[0m"
        lines.append(f"{label}  {f.check.ljust(width)}  {f.finding}")
        if f.fix and f.status != Status.OK:
            lines.append(f"{'':4}  {'':{width}}  fix: {f.fix}")
    counts = {s: sum(f.status == s for f in findings) for s in Status}
    lines.append(f"{counts[Status.OK]} ok, {counts[Status.WARN]} warnings, {counts[Status.FAIL]} failed")
    return lines
