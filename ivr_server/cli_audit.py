"""`ivr-server audit ...`: check the hash chain of the audit trail, and read it."""

from __future__ import annotations

import argparse
import asyncio
import json
from typing import Any

from ivr_server.config import Settings


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


def cmd_audit_verify(args: argparse.Namespace, settings: Settings) -> int:
    from ivr_server.audit.store import verify_store
    from ivr_server.cli import _open_store

    async def run() -> int:
        engine = await _open_store(settings)
        try:
            verdict = await verify_store(engine, settings.audit_key_bytes)
        finally:
            await engine.dispose()
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
    from ivr_server.audit.store import recent
    from ivr_server.cli import _open_store

    async def run() -> int:
        engine = await _open_store(settings)
        try:
            records = await recent(engine, max(1, args.limit), args.call, args.kind)
        finally:
            await engine.dispose()
        if args.json:
            print(json.dumps([r.as_dict() for r in records], indent=1))
            return 0
        for r in records:
            payload = json.dumps(r.payload, separators=(",", ":"))
            print(f"{r.seq:>8}  {r.at}  {r.kind:<14} {r.call_id or '-':<36}  {payload[:160]}")
        return 0

    return asyncio.run(run())
