"""The demo back end for flows/banking.yaml and flows/phone-tree.yaml: a small HTTP service
with a few accounts, card blocking it records, and faults tests can order.

    GET  /accounts/{account}/balance            {"available": "1234.56", "currency": "USD"}
    GET  /accounts/{account}/transactions?limit  {"summary": "...", "items": [...]}
    POST /cards/block {"last4": "4421"}          {"reference": "BLK-000001", "status": "blocked"}
    GET  /_calls                                 every call so far (what the tests assert on), each
                                                 with ``at``: when it came in (Unix seconds)
    POST /_faults {"delay_ms", "status", "malformed", "answer", "times"}   the next requests misbehave
                 (answer: "huge", 5 MB of JSON streamed; "nested", an array nested 100,000 deep)
    GET  /health

Run it with ``ivr-server demo-bank`` (127.0.0.1:8099).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import socket
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

ACCOUNTS = {
    "12345678": {
        "available": "1234.56",
        "items": [("Coffee Corner", "-4.50"), ("Salary", "2500.00"), ("Grocer", "-82.17")],
    },
    "87654321": {"available": "12.05", "items": [("Rent", "-950.00"), ("Bookshop", "-23.99")]},
    "24681357": {"available": "310.40", "items": [("Pharmacy", "-18.75"), ("Refund", "42.00")]},
    "55501234": {
        "available": "8020.00",
        "items": [("Payroll", "3100.00"), ("Electricity", "-64.30"), ("Gym", "-29.00")],
    },
}  # fmt: skip


MAX_CALLS_KEPT, MAX_FAULTS = 1000, 100  # a long-running demo keeps its memory
ANSWERS = ("", "huge", "nested")
HUGE_BYTES = 5_000_000


@dataclass
class Fault:
    delay_ms: int = 0
    status: int = 0
    malformed: bool = False
    times: int = 1
    answer: str = ""

    @classmethod
    def from_json(cls, spec: Any) -> Fault:
        """A fault as a test orders it; ValueError names what is wrong."""
        if not isinstance(spec, dict) or set(spec) - {"delay_ms", "status", "malformed", "times", "answer"}:
            raise ValueError("a fault is an object of delay_ms, status, malformed, times, answer")
        fault = cls(**spec)
        numbers = (fault.delay_ms, fault.status, fault.times)
        if not all(isinstance(v, int) and 0 <= v <= 60_000 for v in numbers) or fault.answer not in ANSWERS:
            raise ValueError(
                f"delay_ms, status and times are whole numbers to 60000; answer one of {ANSWERS}"
            )
        return fault


@dataclass
class Bank:
    calls: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=MAX_CALLS_KEPT))
    faults: list[Fault] = field(default_factory=list)
    refs: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    async def misbehave(self) -> web.StreamResponse | None:
        if not self.faults:
            return None
        fault = self.faults[0]
        fault.times -= 1
        if fault.times <= 0:
            self.faults.pop(0)
        if fault.delay_ms:
            await asyncio.sleep(fault.delay_ms / 1000)
        if fault.status:
            return web.json_response({"error": "injected"}, status=fault.status)
        if fault.malformed:
            return web.Response(text="<html>not json", content_type="text/html")
        if fault.answer == "nested":
            return web.Response(text="[" * 100_000 + "]" * 100_000, content_type="application/json")
        if fault.answer == "huge":
            return _Huge()
        return None


class _Huge(web.StreamResponse):
    """A JSON answer of HUGE_BYTES, streamed: what a client that reads it all would hold."""

    def __init__(self) -> None:
        super().__init__(headers={"Content-Type": "application/json"})

    async def prepare(self, request: web.BaseRequest) -> Any:
        writer = await super().prepare(request)
        chunk = b" " * 65536
        await self.write(b'{"available": "1.00", "pad": "')
        try:
            for _ in range(HUGE_BYTES // len(chunk)):
                await self.write(chunk)
            await self.write(b'"}')
        except (ConnectionResetError, RuntimeError):  # the client stopped reading: as it should
            pass
        return writer


def make_app() -> web.Application:
    bank = Bank()
    app = web.Application(client_max_size=64 * 1024)

    def record(request: web.Request, body: Any = None) -> None:
        bank.calls.append({"method": request.method, "path": request.rel_url.raw_path, "body": body,
                           "idempotency_key": request.headers.get("Idempotency-Key"),
                           "traceparent": request.headers.get("traceparent"),
                           "at": time.time()})  # fmt: skip

    async def account_of(request: web.Request) -> dict[str, Any] | web.StreamResponse:
        """The account a request names, or the answer to send instead (a fault, a 404)."""
        record(request)
        if (bad := await bank.misbehave()) is not None:
            return bad
        account = ACCOUNTS.get(request.match_info["account"])
        if account is None:
            return web.json_response({"error": "no such account"}, status=404)
        return account

    async def balance(request: web.Request) -> web.StreamResponse:
        account = await account_of(request)
        if isinstance(account, web.StreamResponse):
            return account
        return web.json_response({"available": account["available"], "currency": "USD"})

    async def transactions(request: web.Request) -> web.StreamResponse:
        account = await account_of(request)
        if isinstance(account, web.StreamResponse):
            return account
        limit = request.query.get("limit", "3")
        if not limit.isdigit():
            return web.json_response({"error": "limit must be a whole number"}, status=400)
        items = account["items"][: max(1, min(10, int(limit)))]
        summary = "; ".join(
            f"{name}, {amount.lstrip('-')} dollars {'out' if amount.startswith('-') else 'in'}"
            for name, amount in items
        )
        return web.json_response({"summary": summary, "items": [{"name": n, "amount": a} for n, a in items]})

    async def posted(request: web.Request, field: str) -> str | web.StreamResponse | None:
        """The JSON body's ``field`` (None if absent or not text), or the fault to answer with."""
        try:
            body = await request.json()
        except (ValueError, json.JSONDecodeError):
            body = None
        record(request, body)
        if (bad := await bank.misbehave()) is not None:
            return bad
        value = body.get(field) if isinstance(body, dict) else None
        return value if isinstance(value, str) else None

    async def block(request: web.Request) -> web.StreamResponse:
        last4 = await posted(request, "last4")
        if isinstance(last4, web.StreamResponse):
            return last4
        if not (last4 is not None and len(last4) == 4 and last4.isdigit()):
            return web.json_response({"error": "last4 must be 4 digits"}, status=400)
        return web.json_response({"reference": f"BLK-{next(bank.refs):06d}", "status": "blocked"})

    async def callback(request: web.Request) -> web.StreamResponse:
        """A call back booked for a caller no agent could take: the number to ring."""
        number = await posted(request, "number")
        if isinstance(number, web.StreamResponse):
            return number
        if not (number is not None and 7 <= len(number) <= 15 and number.isdigit()):
            return web.json_response({"error": "number must be 7 to 15 digits"}, status=400)
        return web.json_response({"reference": f"CB-{next(bank.refs):06d}", "within": "two hours"})

    async def calls(_request: web.Request) -> web.Response:
        return web.json_response(list(bank.calls))

    async def faults(request: web.Request) -> web.Response:
        try:
            fault = Fault.from_json(await request.json())
        except (ValueError, TypeError) as err:
            return web.json_response({"error": str(err)[:200]}, status=400)
        if len(bank.faults) >= MAX_FAULTS:
            return web.json_response({"error": f"at most {MAX_FAULTS} faults wait"}, status=429)
        bank.faults.append(fault)
        return web.json_response({"queued": len(bank.faults)})

    async def health(_request: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    app.router.add_get("/accounts/{account}/balance", balance)
    app.router.add_get("/accounts/{account}/transactions", transactions)
    app.router.add_post("/cards/block", block)
    app.router.add_post("/callbacks", callback)
    app.router.add_get("/_calls", calls)
    app.router.add_post("/_faults", faults)
    app.router.add_get("/health", health)
    return app


async def serve(host: str = "127.0.0.1", port: int = 8099) -> tuple[web.AppRunner, int]:
    """Started and listening; port 0 picks a free one (returned)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    runner = web.AppRunner(make_app(), access_log=None)
    await runner.setup()
    await web.SockSite(runner, sock).start()
    return runner, int(sock.getsockname()[1])
