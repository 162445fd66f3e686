"""`ivr-server audit ...` (check the hash chain of the audit trail, read it) and
`ivr-server retention run` (remove what is past its retention window, audited)."""

from __future__ import annotations

import argparse
import asyncio
import json
from typing import Any

from ivr_server.cli.common import opened_store
from ivr_server.config import Settings, retention_policy


def add_commands(commands: Any, epilog: str) -> None:
    audit = commands.add_parser("audit", help="the tamper-evident audit trail", epilog=epilog)
    audit_commands = audit.add_subparsers(dest="audit_command", metavar="ACTION", required=True)
    verify = audit_commands.add_parser(
        "verify",
        help="walk the hash chain; exit 1 naming the first bad row",
        description="Recompute every audit event's hash from its stored content and the hash of "
        "the row before it. Exit 0 when the chain is intact; exit 1 naming the first row that "
        "was edited, deleted, reordered or inserted. A trail written with IVR_AUDIT_KEY needs "
        "the same key here.",
        epilog=epilog,
    )
    verify.add_argument("--json", action="store_true", help="one JSON object")
    verify.set_defaults(handler=cmd_audit_verify)
    listing = audit_commands.add_parser("list", help="the most recent audit events, oldest first")
    listing.add_argument("--call", metavar="ID", help="only this call's events")
    listing.add_argument("--kind", help="only this kind (decision, tool_call, transfer, ...)")
    listing.add_argument("--limit", type=int, default=50, help="how many (default 50)")
    listing.add_argument("--json", action="store_true", help="one JSON array")
    listing.set_defaults(handler=cmd_audit_list)

    retention = commands.add_parser("retention", help="data past its retention window", epilog=epilog)
    retention_commands = retention.add_subparsers(dest="retention_command", metavar="ACTION", required=True)
    apply = retention_commands.add_parser(
        "run",
        help="delete or anonymize what is past its window, with an audit event",
        description="Empty the words of turns, keyed digits and handoff summaries older than "
        "IVR_RETENTION_TRANSCRIPTS_DAYS, clear caller numbers and names older than "
        "IVR_RETENTION_CALLER_IDS_DAYS, delete calls (with their events, turns and handoffs) older "
        "than IVR_RETENTION_CALLS_DAYS, delete returning callers' saved tasks past their flow's "
        "keep_hours or IVR_RETENTION_SAVED_TASKS_HOURS; in one transaction with a 'retention' audit "
        "event saying how much was removed. The server does the same every IVR_RETENTION_INTERVAL_S.",
        epilog=epilog,
    )
    apply.add_argument("--dry-run", action="store_true", help="count what would go; change nothing")
    apply.add_argument("--json", action="store_true", help="one JSON object")
    apply.set_defaults(handler=cmd_retention_run)


def cmd_audit_verify(args: argparse.Namespace, settings: Settings) -> int:
    from ivr_server.store.audit_trail import verify_store

    async def run() -> int:
        async with opened_store(settings) as engine:
            verdict = await verify_store(engine, settings.audit_key_bytes)
        broken = verdict.broken
        if args.json:
            print(json.dumps({
                "intact": verdict.intact, "rows": verdict.rows, "last_seq": verdict.last_seq,
                "last_hash": verdict.last_hash, "keyed": settings.audit_key is not None,
                "broken": None if broken is None else
                {"seq": broken.seq, "position": broken.position, "problem": broken.problem},
            }))  # fmt: skip
        elif broken is None:
            print(f"audit trail intact: {verdict.rows} events, last seq {verdict.last_seq}, "
                  f"head {verdict.last_hash[:16]}")  # fmt: skip
        else:
            where = f"seq {broken.seq} (row {broken.position} in seq order)"
            print(f"audit trail BROKEN at {where}: {broken.problem}")
        return 0 if broken is None else 1

    return asyncio.run(run())


def cmd_audit_list(args: argparse.Namespace, settings: Settings) -> int:
    from ivr_server.store.audit_trail import recent

    async def run() -> int:
        async with opened_store(settings) as engine:
            records = await recent(engine, max(1, args.limit), args.call, args.kind)
        if args.json:
            print(json.dumps([r.as_dict() for r in records], indent=1))
            return 0
        for r in records:
            payload = json.dumps(r.payload, separators=(",", ":"))
            print(f"{r.seq:>8}  {r.at}  {r.kind:<14} {r.call_id or '-':<36}  {payload[:160]}")
        return 0

    return asyncio.run(run())


def cmd_retention_run(args: argparse.Namespace, settings: Settings) -> int:
    from datetime import UTC, datetime

    from ivr_server.store.retention import apply_retention

    async def run() -> int:
        async with opened_store(settings) as engine:
            report = await apply_retention(
                engine,
                retention_policy(settings),
                datetime.now(UTC),
                settings.audit_key_bytes,
                dry_run=args.dry_run,
            )
        if args.json:
            print(json.dumps({**report.as_dict(), "dry_run": args.dry_run}))
            return 0
        verb = "would remove" if args.dry_run else "removed"
        for what, cutoff in report.cutoffs.items():
            print(f"{what:<12} {'kept forever' if cutoff is None else 'before ' + cutoff}")
        print(f"{verb}: " + (", ".join(f"{k} {v}" for k, v in report.removed.items() if v) or "nothing"))
        return 0

    return asyncio.run(run())
