"""`ivr-server flows ...`: declarative flow files (flows/*.yaml)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from ivr_server.config import Settings

BAD_INPUT = 6  # cli.ExitCode.BAD_INPUT (cli imports this module)


def add_commands(commands: Any, epilog: str) -> None:
    flows = commands.add_parser("flows", help="declarative flow files", epilog=epilog)
    flow_commands = flows.add_subparsers(dest="flows_command", metavar="ACTION", required=True)
    validate = flow_commands.add_parser(
        "validate",
        help="check flow files; every problem with file:line:column",
        description="Check flow files: YAML syntax, every field's type, every name a flow uses "
        "(states, prompts, intents, slots, tools), and that every state the call can reach has a "
        "way out. Exit 0 when all are valid, 6 (unusable input) when any is not.",
    )
    validate.add_argument("files", nargs="+", type=Path, metavar="FILE")
    validate.add_argument("--json", action="store_true", help="one JSON object per file, one per line")
    validate.set_defaults(handler=cmd_flows_validate)

    test = flow_commands.add_parser(
        "test",
        help="run flow test files (scripted callers with expected states, slots, actions)",
        description="Run flow test files (flows/tests/*.yaml). Exit 0 when all pass, 1 if any fails.",
    )
    test.add_argument("files", nargs="+", type=Path, metavar="FILE")
    test.set_defaults(handler=cmd_flows_test)

    simulate = commands.add_parser(
        "simulate",
        help="run a flow in the terminal: type what the caller says, #digits for keys",
        description="Run a flow in the terminal. Type what the caller says; #123 presses keys; an "
        "empty line is silence; /quit hangs up. Tools call the services in the settings, or the "
        "demo bank in-process with --demo-bank.",
        epilog=epilog,
    )
    simulate.add_argument("flow", type=Path, metavar="FLOW")
    simulate.add_argument(
        "--demo-bank", action="store_true", help="run the demo bank in-process for the tools"
    )
    simulate.set_defaults(handler=cmd_simulate)

    bank = commands.add_parser(
        "demo-bank",
        help="run the demo back end of the banking and phone-tree flows",
        description="The demo bank HTTP service the example flows call (accounts 12345678 and "
        "87654321; card blocking it records; GET /_calls lists every call). Stop with Ctrl-C.",
        epilog=epilog,
    )
    bank.add_argument("--host", default="127.0.0.1")
    bank.add_argument("--port", type=int, default=8099)
    bank.set_defaults(handler=cmd_demo_bank)


def cmd_flows_validate(args: argparse.Namespace, _settings: Settings) -> int:
    from ivr_server.dialog.spec.loader import check_file

    bad = 0
    for path in args.files:
        flow, problems = check_file(path)
        bad += flow is None
        if args.json:
            summary: dict[str, Any] = {"file": str(path), "valid": flow is not None}
            summary["problems"] = [p.__dict__ for p in problems]
            if flow is not None:
                summary.update(flow=flow.name, **_counts(flow))
            print(json.dumps(summary))
        elif flow is not None:
            counts = ", ".join(f"{n} {k}" for k, n in _counts(flow).items())
            print(f"{path}: ok: flow '{flow.name}' ({counts})")
        else:
            for problem in problems:
                print(problem, file=sys.stderr)
            print(f"{path}: {len(problems)} problem(s)", file=sys.stderr)
    return BAD_INPUT if bad else 0


def _counts(flow: Any) -> dict[str, int]:
    return {k: len(getattr(flow, k)) for k in ("states", "intents", "slots", "tools", "prompts")}


def cmd_demo_bank(args: argparse.Namespace, _settings: Settings) -> int:
    import asyncio

    from ivr_server.tools.demo_bank import serve

    async def run() -> None:
        runner, port = await serve(args.host, args.port)
        print(f"demo bank listening on http://{args.host}:{port} (Ctrl-C stops it)", flush=True)
        try:
            await asyncio.Event().wait()
        finally:
            await runner.cleanup()

    try:
        asyncio.run(run())
    except OSError as err:
        print(
            f"ivr-server: error: demo bank cannot listen on {args.host}:{args.port}: {err.strerror}",
            file=sys.stderr,
        )
        return 1
    return 0


def cmd_flows_test(args: argparse.Namespace, settings: Settings) -> int:
    import asyncio

    from ivr_server.dialog.flowtest import run_file
    from ivr_server.tools.client import services_from

    failed = total = 0
    for path in args.files:
        for result in asyncio.run(run_file(path, services_from(settings.tools_services))):
            total += 1
            failed += not result.passed
            print(f"{'PASS' if result.passed else 'FAIL'} {path}: {result.name}")
            for failure in result.failures:
                print(f"     {failure}")
    print(f"{total - failed} passed, {failed} failed")
    return 1 if failed else 0


def cmd_simulate(args: argparse.Namespace, settings: Settings) -> int:
    import asyncio

    from ivr_server.dialog.engine import Engine
    from ivr_server.dialog.nlu.flow_model import model_for_flow
    from ivr_server.dialog.simulator import Hangup, TerminalPort
    from ivr_server.dialog.spec.loader import load_flow
    from ivr_server.tools.client import Service, ToolClient, services_from

    flow = load_flow(args.flow)

    async def run() -> None:
        runner = None
        services = services_from(settings.tools_services)
        if args.demo_bank:
            from ivr_server.tools.demo_bank import serve

            runner, port = await serve("127.0.0.1", 0)
            services = {name: Service(f"http://127.0.0.1:{port}") for name in services}
        tools = ToolClient(services)
        port_ = TerminalPort()
        engine = Engine(flow, port_, tools, model_for_flow(flow))
        port_.engine = engine
        print(
            f"flow '{flow.name}' version {flow.version}: type what the caller says, #digits for keys, /quit"
        )
        try:
            session = await engine.run()
            print(f"  [call over: {session.outcome}; states {' > '.join(session.visited)}]")
        except Hangup:
            print("  [the caller hung up]")
        finally:
            await tools.aclose()
            if runner is not None:
                await runner.cleanup()

    asyncio.run(run())
    return 0
