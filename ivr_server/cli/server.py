"""`ivr-server run`, `db`, `calls` and `config`: serving calls, the schema, the calls in the
store, the effective settings."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from typing import Any

from ivr_server.cli.common import ExitCode, opened_store, print_table
from ivr_server.config import Settings, config_file_path, effective_settings, mask_url, unknown_env_vars
from ivr_server.errors import AriAuthError, ConfigError, IvrError, StoreError

PAYLOAD_WIDTH = 140


def add_commands(commands: Any, EPILOG: str) -> None:
    run = commands.add_parser(
        "run",
        help="answer calls: connect to Asterisk and serve the flows",
        description="Connect to Asterisk over ARI and serve calls until "
        "SIGTERM/SIGINT. SIGHUP reads the flow files again (a file that has turned invalid keeps "
        "its last good version). Refuses an un-migrated database.",
        epilog=EPILOG,
    )
    run.set_defaults(handler=cmd_run)

    db = commands.add_parser("db", help="database schema", epilog=EPILOG)
    db_commands = db.add_subparsers(dest="db_command", metavar="ACTION", required=True)
    upgrade = db_commands.add_parser(
        "upgrade",
        help="apply migrations up to the code's schema",
        description="Create or migrate the database's tables (Alembic).",
    )
    upgrade.add_argument("--revision", default="head", help="target revision (default: head)")
    upgrade.set_defaults(handler=cmd_db_upgrade)
    current = db_commands.add_parser("current", help="show the database's and the code's revision")
    current.set_defaults(handler=cmd_db_current)

    calls = commands.add_parser("calls", help="calls in the store", epilog=EPILOG)
    calls_commands = calls.add_subparsers(dest="calls_command", metavar="ACTION", required=True)
    listing = calls_commands.add_parser("list", help="the most recent calls, newest first")
    listing.add_argument("--limit", type=int, default=20, help="how many (default 20)")
    listing.add_argument("--json", action="store_true", help="one JSON array")
    listing.set_defaults(handler=cmd_calls_list)
    show = calls_commands.add_parser("show", help="one call, its turns and all its events")
    show.add_argument("call_id", metavar="ID", help="call id, or a unique prefix of it")
    show.add_argument("--json", action="store_true", help="one JSON object")
    show.set_defaults(handler=cmd_calls_show)

    config = commands.add_parser("config", help="settings", epilog=EPILOG)
    config_commands = config.add_subparsers(dest="config_command", metavar="ACTION", required=True)
    config_show = config_commands.add_parser("show", help="effective settings, secrets masked")
    config_show.add_argument("--json", action="store_true", help="one JSON object")
    config_show.set_defaults(handler=cmd_config_show)


def cmd_run(_args: argparse.Namespace, settings: Settings) -> int:
    import structlog

    from ivr_server.app import IvrServer
    from ivr_server.observability.logging import configure_logging

    configure_logging(settings.log_format, settings.log_level)
    log = structlog.get_logger("ivr_server")
    for name in unknown_env_vars(os.environ):
        log.warning("config.unknown_variable", variable=name, hint="not a setting; typo?")
    try:
        asyncio.run(IvrServer(settings).run())
    except (ConfigError, AriAuthError) as err:
        log.error("server.config_error", code=err.code, error=str(err))
        return int(ExitCode.CONFIG)
    except StoreError as err:
        log.error("server.store_error", code=err.code, error=str(err))
        return int(ExitCode.DATABASE)
    except IvrError as err:
        log.error("server.failed", code=err.code, error=str(err))
        return int(ExitCode.FAILURE)
    return int(ExitCode.OK)


def cmd_db_upgrade(args: argparse.Namespace, settings: Settings) -> int:
    from ivr_server.store.database import current_revision, upgrade

    url = settings.effective_database_url
    upgrade(url, args.revision)

    async def show() -> int:
        async with opened_store(settings, require_schema=False) as engine:
            print(f"database {mask_url(url)} is at revision {await current_revision(engine)}")
        return 0

    return asyncio.run(show())


def cmd_db_current(_args: argparse.Namespace, settings: Settings) -> int:
    from ivr_server.store.database import current_revision, head_revision

    async def show() -> int:
        async with opened_store(settings, require_schema=False) as engine:
            current, head = await current_revision(engine), head_revision()
        print(f"database: {current or 'empty'}\ncode:     {head}")
        if current != head:
            print("not current; run: ivr-server db upgrade")
            return int(ExitCode.DATABASE)
        return 0

    return asyncio.run(show())


def cmd_calls_list(args: argparse.Namespace, settings: Settings) -> int:
    from ivr_server.store.queries import list_calls

    async def show() -> int:
        async with opened_store(settings) as engine:
            records = await list_calls(engine, max(1, args.limit))
        if args.json:
            print(json.dumps([r.as_dict() for r in records], indent=1))
            return 0
        rows = [["CALL ID", "STARTED (UTC)", "CALLER", "DIALED", "FLOW", "SECONDS", "END REASON", "EVENTS"]]
        for r in records:
            rows.append(
                [
                    r.id,
                    r.started_at.strftime("%Y-%m-%d %H:%M:%S"),
                    r.caller_number or "-",
                    r.dialed_number or "-",
                    r.flow,
                    "-" if r.duration_s is None else f"{r.duration_s:.1f}",
                    r.end_reason or "(in progress)",
                    str(r.event_count),
                ]
            )
        print_table(rows)
        if not records:
            print("(no calls yet)")
        return 0

    return asyncio.run(show())


def cmd_calls_show(args: argparse.Namespace, settings: Settings) -> int:
    from ivr_server.store.queries import CallNotFound, call_events_of, find_call, turns_of

    async def show() -> int:
        async with opened_store(settings) as engine:
            try:
                record = await find_call(engine, args.call_id)
            except CallNotFound as err:
                print(f"ivr-server: {err}", file=sys.stderr)
                return int(ExitCode.NOT_FOUND)
            events = await call_events_of(engine, record.id)
            turns = await turns_of(engine, record.id)
        if args.json:
            out = {
                "call": record.as_dict(),
                "turns": [t.as_dict() for t in turns],
                "events": [e.as_dict() for e in events],
            }
            print(json.dumps(out, indent=1))
            return 0
        for key, value in record.as_dict().items():
            if key != "event_count":
                print(f"{key + ':':15} {'-' if value in (None, '', []) else value}")
        if turns:
            print(f"\n{len(turns)} turns:")
            table = [["SEQ", "WHO", "OUTCOME", "LATENCY", "ENGINE", "TEXT"]]
            for t in turns:
                latency = "-" if t.latency_ms is None else f"{t.latency_ms} ms"
                engine_desc = (t.engine or "-") + (" (cached)" if t.cached else "")
                table.append([str(t.seq), t.role, t.outcome, latency, engine_desc, t.text or "(nothing)"])
            print_table(table)
        print(f"\n{len(events)} events:")
        rows = [["SEQ", "+SECONDS", "TYPE", "PAYLOAD"]]
        shortened = False
        for e in events:
            offset = (e.at - record.started_at).total_seconds()
            payload = json.dumps(e.payload, separators=(",", ":"))
            if len(payload) > PAYLOAD_WIDTH:
                payload, shortened = payload[: PAYLOAD_WIDTH - 1] + "…", True
            rows.append([str(e.seq), f"{offset:.3f}", e.type, payload])
        print_table(rows)
        if shortened:
            print("(long payloads shortened; --json shows them whole)")
        return 0

    return asyncio.run(show())


def cmd_config_show(args: argparse.Namespace, settings: Settings) -> int:
    rows = effective_settings(settings, config_file_path(args.config))
    if args.json:
        print(
            json.dumps({name: {"value": value, "source": source} for name, value, source in rows}, indent=1)
        )
    else:
        print_table([["SETTING", "VALUE", "SOURCE"], *[list(r) for r in rows]])
    return 0
