"""The handoff webhook against a real local HTTP server: delivered, refused, unreachable."""

from __future__ import annotations

import socket
from typing import Any

from aiohttp import web

from ivr_server.store.writer import Handoff, HandoffDelivery, Op
from ivr_server.tools.handoff import HandoffDesk

VARIABLES = {
    "IVR_SESSION_ID": "s-1",
    "IVR_FLOW": "banking@abc",
    "IVR_INTENT": "agent",
    "IVR_SUMMARY": "banking: agent",
}


async def serve(status: int, seen: list[dict[str, Any]]) -> tuple[web.AppRunner, str]:
    async def take(request: web.Request) -> web.Response:
        seen.append(await request.json())
        return web.Response(status=status)

    app = web.Application()
    app.router.add_post("/pop", take)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    return runner, f"http://127.0.0.1:{runner.addresses[0][1]}/pop"


async def test_a_refused_webhook_is_not_retried_and_its_status_is_stored() -> None:
    ops: list[Op] = []
    seen: list[dict[str, Any]] = []
    runner, url = await serve(400, seen)
    desk = HandoffDesk(ops.append, url, attempts=3)
    try:
        handoff_id = desk.hand_off("call-1", "ivr-agents,100,1", VARIABLES, "+15550100")
        await desk.aclose()
    finally:
        await runner.cleanup()
    stored, delivery = ops
    assert isinstance(stored, Handoff) and stored.id == handoff_id and stored.webhook_status == "pending"
    assert (stored.intent, stored.summary, stored.flow) == ("agent", "banking: agent", "banking@abc")
    assert delivery == HandoffDelivery(handoff_id, "failed: HTTP 400", 1)
    assert len(seen) == 1 and seen[0]["caller"] == "+15550100" and seen[0]["context"] == VARIABLES


async def test_an_unreachable_webhook_is_tried_each_attempt_then_marked_failed() -> None:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ops: list[Op] = []
    desk = HandoffDesk(ops.append, f"http://127.0.0.1:{port}/pop", timeout_s=0.5, attempts=2)
    handoff_id = desk.hand_off("call-2", "ivr-agents,100,1", VARIABLES, None)
    await desk.aclose()
    delivery = ops[-1]
    assert isinstance(delivery, HandoffDelivery) and delivery.handoff_id == handoff_id
    assert delivery.attempts == 2 and delivery.status.startswith("failed: ConnectError")


async def test_without_a_webhook_the_handoff_is_still_stored() -> None:
    ops: list[Op] = []
    desk = HandoffDesk(ops.append, None)
    desk.hand_off("call-3", "ivr-agents,100,1", VARIABLES, None)
    await desk.aclose()
    (stored,) = ops
    assert isinstance(stored, Handoff) and stored.webhook_status == "not_configured"


async def test_a_webhook_that_answers_50_mb_is_delivered_without_reading_them() -> None:
    """A screen pop that answers 200 with an endless body: the status decides, the body is
    never read (the server's memory does not hold it)."""
    seen: list[dict[str, Any]] = []

    async def flood(request: web.Request) -> web.StreamResponse:
        seen.append(await request.json())
        response = web.StreamResponse(status=200)
        await response.prepare(request)
        try:
            for _ in range(800):  # 50 MB, if anyone read it
                await response.write(b"x" * 65536)
        except (ConnectionResetError, RuntimeError):
            pass
        return response

    app = web.Application()
    app.router.add_post("/pop", flood)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}/pop"
    ops: list[Op] = []
    desk = HandoffDesk(ops.append, url, attempts=1)
    try:
        handoff_id = desk.hand_off("call-1", "ivr-agents,100,1", VARIABLES, "+15550100")
        await desk.aclose()
    finally:
        await runner.cleanup()
    assert ops[-1] == HandoffDelivery(handoff_id, "delivered", 1) and len(seen) == 1
