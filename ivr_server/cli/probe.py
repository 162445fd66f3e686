"""`ivr-server probe`: a synthetic call for cron or a monitor. The call is ivr_server/ops/probe.py's;
this module parses, prints (text, JSON, a Prometheus textfile) and picks the exit code."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from ivr_server.cli.common import ExitCode
from ivr_server.config import Settings

_DESCRIPTION = """\
Place a real SIP call (SIPp) through Asterisk to EXTEN with a scripted caller: wait for the
greeting, then each --say (spoken in the server's TTS voice) and --keys (RFC 4733 DTMF) in
the order given, then listen and hang up. It succeeds when the call is answered, the caller
hears speech and a reply after its last input (from a tcpdump capture: needs root or
CAP_NET_RAW, else the store's figures stand in), and the server's store (IVR_DATABASE_URL)
shows the call served, by --expect-flow if given, not handed back to the dialplan.
Exit 0 on success, 1 with the reason otherwise."""

_EXAMPLES = """\
examples:
  ivr-server probe --exten 400 --keys 1 --keys 12345678 --expect-flow banking
  ivr-server probe --exten 400 --say "what's my balance" --json
  ivr-server probe --exten 400 --keys 1 --metrics-file /var/lib/node_exporter/textfile/ivr_probe.prom

"""


class _Step(argparse.Action):
    """--say and --keys share one list, so the caller's script keeps the order given."""

    def __call__(self, parser: Any, namespace: argparse.Namespace, values: Any, option: Any = None) -> None:
        steps = list(getattr(namespace, "steps", None) or [])
        steps.append((self.const, str(values)))
        namespace.steps = steps


def add_commands(commands: Any, epilog: str) -> None:
    probe = commands.add_parser(
        "probe",
        help="place a test call through Asterisk with a scripted caller; report success and latency",
        description=_DESCRIPTION,
        epilog=_EXAMPLES + epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    probe.add_argument("--exten", required=True, help="the extension to dial (in the SIP endpoint's context)")
    probe.add_argument("--say", action=_Step, const="say", dest="steps", metavar="TEXT", help="say TEXT")
    probe.add_argument("--keys", action=_Step, const="keys", dest="steps", metavar="KEYS", help="key DTMF")
    probe.add_argument("--expect-flow", metavar="FLOW", help="the flow the store must show for the call")
    probe.add_argument("--sip", default="127.0.0.1:5060", metavar="HOST:PORT", help="Asterisk's SIP address")
    probe.add_argument("--timeout", type=float, default=60.0, metavar="S", help="the whole call (default 60)")
    probe.add_argument("--greeting", type=float, default=8.0, metavar="S", help="wait before the first step")
    probe.add_argument("--gap", type=float, default=4.0, metavar="S", help="wait between steps (default 4)")
    probe.add_argument(
        "--listen", type=float, default=6.0, metavar="S", help="wait after the last (default 6)"
    )
    probe.add_argument("--json", action="store_true", help="one JSON object")
    probe.add_argument(
        "--keep-files",
        type=Path,
        metavar="DIR",
        help="keep the scenario, the caller's audio and the capture here",
    )
    probe.add_argument("--metrics-file", type=Path, metavar="FILE", help="write Prometheus text format here")
    probe.set_defaults(handler=cmd_probe, steps=[])


def cmd_probe(args: argparse.Namespace, settings: Settings) -> int:
    from ivr_server.ops.probe import ProbeSpec, run_probe
    from ivr_server.ops.probe_report import prometheus_text, write_atomically
    from ivr_server.ops.sipp import DTMF_KEYS

    bad = [keys for kind, keys in args.steps if kind == "keys" and (not keys or set(keys) - DTMF_KEYS)]
    if bad or min(args.timeout, args.greeting + 1, args.gap + 1, args.listen + 1) <= 0:
        print(
            f"ivr-server probe: --keys takes 0-9 * # A-D, times are > 0: {bad[0] if bad else ''}",
            file=sys.stderr,
        )
        return int(ExitCode.USAGE)
    spec = ProbeSpec(args.exten, list(args.steps), args.expect_flow, args.sip, greeting_s=args.greeting,
                     gap_s=args.gap, listen_s=args.listen, timeout_s=args.timeout)  # fmt: skip
    if args.keep_files is not None:
        args.keep_files.mkdir(parents=True, exist_ok=True)
        result = asyncio.run(run_probe(settings, spec, args.keep_files))
    else:
        with tempfile.TemporaryDirectory(prefix="ivr-probe-") as workdir:
            result = asyncio.run(run_probe(settings, spec, Path(workdir)))
    if args.metrics_file is not None:
        write_atomically(args.metrics_file, prometheus_text(result, time.time()))
    if args.json:
        print(json.dumps(result.as_dict(), indent=2))
    else:
        print("\n".join(result.text()))
    if not result.success:
        print(f"ivr-server probe: {result.reason}", file=sys.stderr)
    return int(ExitCode.OK if result.success else ExitCode.FAILURE)
