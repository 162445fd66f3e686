"""`ivr-server flows ...`: declarative flow files (flows/*.yaml)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from ivr_server.cli.common import ExitCode, opened_store, print_table
from ivr_server.config import Settings

BAD_INPUT = int(ExitCode.BAD_INPUT)


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

    deploy = flow_commands.add_parser(
        "deploy",
        help="store a new version of a flow: active at once, or a canary for a share of new calls",
        description="Validate FILE and store it as the flow's next version (content hash, version "
        "number, who, when). Without --canary it serves every new call at once; with --canary P it "
        "is the candidate for P%% of new calls until `flows promote` or `flows rollback`. Running "
        "servers pick it up within IVR_FLOWS_POLL_S; calls in progress keep their version. Exit 6 "
        "for an invalid file, 1 when the content is already active.",
        epilog=epilog,
    )
    deploy.add_argument("file", type=Path, metavar="FILE")
    deploy.add_argument("--canary", type=_percent, metavar="PERCENT", help="1-99: share of new calls")
    deploy.set_defaults(handler=cmd_flows_deploy)
    listing = flow_commands.add_parser("list", help="deployed versions, with status and canary share")
    listing.add_argument("--flow", help="only this flow")
    listing.add_argument("--json", action="store_true", help="one JSON array")
    listing.set_defaults(handler=cmd_flows_list)
    for name, helptext in (
        ("promote", "the candidate becomes the version every new call gets"),
        ("rollback", "withdraw the candidate; without one, put the previous active version back"),
    ):
        sub = flow_commands.add_parser(name, help=helptext, description=helptext + ".", epilog=epilog)
        sub.add_argument("flow", metavar="FLOW", help="the flow's name")
        sub.set_defaults(handler=cmd_flows_change, change=name)

    stats = flow_commands.add_parser(
        "stats",
        help="per flow version: calls, containment, transfer rate, average turns, errors",
        description="How calls went per flow version (content hash; version number when deployed): "
        "containment (calls not transferred to a person), transfer rate, abandoned calls, average "
        "caller turns, errors (flow errors, set-up failures, loops) and failed tool calls.",
        epilog=epilog,
    )
    stats.add_argument("--flow", help="only this flow")
    stats.add_argument("--since", type=float, metavar="DAYS", help="only calls of the last DAYS days")
    stats.add_argument("--json", action="store_true", help="one JSON array")
    stats.set_defaults(handler=cmd_flows_stats)
    replay = flow_commands.add_parser(
        "replay",
        help="re-decide the last N calls' decisions with a candidate; list what would change",
        description="Take the decisions of the last N stored calls of the flow (from the audit "
        "trail: state, redacted words, keys) and decide each again with CANDIDATE, a flow file or "
        "the name of a flow with a deployed candidate. Lists every call whose decisions would "
        "change. Exit 0 when none would, 1 when some would (the regression check before "
        "`flows promote`), 6 when CANDIDATE is unusable.",
        epilog=epilog,
    )
    replay.add_argument("candidate", metavar="CANDIDATE", help="a flow file, or a flow name (its candidate)")
    replay.add_argument("--last", type=int, default=100, metavar="N", help="how many calls (default 100)")
    replay.add_argument("--json", action="store_true", help="one JSON object")
    replay.set_defaults(handler=cmd_flows_replay)

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


def _percent(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 99:
        raise argparse.ArgumentTypeError(f"must be a whole percentage from 1 to 99, not {text!r}")
    return int(text)


def cmd_flows_deploy(args: argparse.Namespace, settings: Settings) -> int:
    import asyncio

    from ivr_server.dialog.spec.loader import check_file
    from ivr_server.store.deployments import DeploymentError, deploy

    flow, problems = check_file(args.file)
    if flow is None:
        for problem in problems:
            print(problem, file=sys.stderr)
        return BAD_INPUT
    source = args.file.read_text(encoding="utf-8")

    async def run() -> int:
        try:
            async with opened_store(settings) as engine:
                done = await deploy(
                    engine, flow.name, flow.version, source, args.canary, settings.audit_key_bytes
                )
        except DeploymentError as err:
            print(f"ivr-server: {err}", file=sys.stderr)
            return 1
        share = f", canary {done.canary_percent}% of new calls" if done.status == "candidate" else ""
        print(f"deployed {done.flow} v{done.version_number} ({done.content_hash}) as {done.status}{share}")
        return 0

    return asyncio.run(run())


def cmd_flows_list(args: argparse.Namespace, settings: Settings) -> int:
    import asyncio

    from ivr_server.store.deployments import list_deployments

    async def run() -> int:
        async with opened_store(settings) as engine:
            versions = await list_deployments(engine, args.flow)
        if args.json:
            print(json.dumps([v.as_dict() for v in versions], indent=1))
            return 0
        if not versions:
            print("(no flow deployed into the store: the servers run the flow files)")
        for v in versions:
            share = f" {v.canary_percent}%" if v.status == "candidate" else ""
            print(f"{v.flow:<16} v{v.version_number:<4} {v.status + share:<14} {v.content_hash}  "
                  f"{v.deployed_at:%Y-%m-%d %H:%M:%S}  {v.deployed_by}")  # fmt: skip
        return 0

    return asyncio.run(run())


def cmd_flows_change(args: argparse.Namespace, settings: Settings) -> int:
    import asyncio

    from ivr_server.store.deployments import DeploymentError, promote, rollback

    async def run() -> int:
        try:
            async with opened_store(settings) as engine:
                if args.change == "promote":
                    done = await promote(engine, args.flow, settings.audit_key_bytes)
                    print(f"{done.flow} v{done.version_number} is now active for every new call")
                else:
                    now = await rollback(engine, args.flow, settings.audit_key_bytes)
                    serving = f"v{now.version_number}" if now is not None else "the flow file"
                    print(f"rolled back: new {args.flow} calls get {serving}")
        except DeploymentError as err:
            print(f"ivr-server: {err}", file=sys.stderr)
            return 1
        return 0

    return asyncio.run(run())


def cmd_flows_stats(args: argparse.Namespace, settings: Settings) -> int:
    import asyncio
    from datetime import UTC, datetime, timedelta

    from ivr_server.store.flow_stats import flow_stats

    since = datetime.now(UTC) - timedelta(days=args.since) if args.since else None

    async def run() -> int:
        async with opened_store(settings) as engine:
            table = [s.as_dict() for s in await flow_stats(engine, args.flow, since)]
        if args.json:
            print(json.dumps(table, indent=1))
            return 0
        if not table:
            print("(no calls ran a flow yet)")
            return 0
        rows = [
            [
                "FLOW",
                "VERSION",
                "CALLS",
                "CONTAINED",
                "TRANSFERRED",
                "ABANDONED",
                "AVG TURNS",
                "ERRORS",
                "TOOL FAILS",
                "REPAIRS",
            ]
        ]
        for r in table:
            version = f"v{r['version_number']} " if r["version_number"] else "file "
            rates = [f"{r['containment']:.0%}", f"{r['transfer_rate']:.0%}", str(r["abandoned"])]
            repairs = ",".join(f"{k}:{n}" for k, n in r["repairs"].items()) or "-"
            counts = [f"{r['avg_turns']:.1f}", str(r["errors"]), str(r["tool_failures"]), repairs]
            rows.append([r["flow"], version + r["version"], str(r["calls"]), *rates, *counts])
        print_table(rows)
        return 0

    return asyncio.run(run())


def cmd_flows_replay(args: argparse.Namespace, settings: Settings) -> int:
    import asyncio

    from ivr_server.dialog.nlu.flow_model import model_for_flow
    from ivr_server.dialog.replay import replay
    from ivr_server.dialog.spec.loader import check_file, check_text
    from ivr_server.store.audit_trail import last_decisions
    from ivr_server.store.deployments import list_deployments

    from_file = Path(args.candidate).is_file()

    async def run() -> int:
        async with opened_store(settings) as engine:
            if from_file:
                spec, problems = check_file(Path(args.candidate))
                where = args.candidate
            else:
                found = [d for d in await list_deployments(engine, args.candidate) if d.status == "candidate"]
                if not found:
                    print(f"ivr-server: {args.candidate}: no such file, nor a flow with a deployed candidate",
                          file=sys.stderr)  # fmt: skip
                    return BAD_INPUT
                where = f"{args.candidate} v{found[0].version_number}"
                spec, problems = check_text(found[0].source, where)
            if spec is None:
                for problem in problems:
                    print(problem, file=sys.stderr)
                return BAD_INPUT
            calls, decisions = await last_decisions(engine, spec.name, max(1, args.last))
        model = model_for_flow(spec, cache_dir=settings.data_dir / "nlu-cache")
        changed = replay(spec, model, decisions)
        changed_calls = sorted({c.decision.call_id for c in changed})
        if args.json:
            print(json.dumps({"candidate": where, "flow_version": spec.version, "calls": len(calls),
                              "decisions": len(decisions), "changed_calls": changed_calls,
                              "changes": [c.as_dict() for c in changed]}))  # fmt: skip
        else:
            for c in changed:
                d = c.decision
                said = f'"{d.said}"' if d.said else f"keys {d.keyed}"
                before, after = f"{d.kind} {d.intent or '-'}", f"{c.kind} {c.intent or '-'}"
                print(f"{d.call_id}  {d.state}: {said}: {before} -> {after}")
            print(f"{where} ({spec.version}): {len(calls)} calls, {len(decisions)} decisions replayed; "
                  f"{len(changed_calls)} calls would change")  # fmt: skip
        return 1 if changed else 0

    return asyncio.run(run())
