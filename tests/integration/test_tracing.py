"""Traces with the OpenTelemetry SDK: the banking flow against the demo back end inside a call's
span makes a span per turn, intent decision and tool call; the tool request carries the W3C
traceparent of its span (the demo bank records it), the handoff webhook that of the call, and the
call's log lines carry the trace id. Off, nothing is traced and no header is sent."""

from __future__ import annotations

import datetime as dt
import io
import json
from collections.abc import Iterator

import httpx
import pytest
from aiohttp import web
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from ivr_server.dialog.engine import Engine
from ivr_server.dialog.flowtest import ScriptPort
from ivr_server.dialog.nlu.flow_model import model_for_flow
from ivr_server.dialog.spec.loader import load_flow
from ivr_server.errors import ConfigError
from ivr_server.observability.logging import configure_logging
from ivr_server.observability.tracing import configure_tracing, shutdown_tracing, span, traceparent
from ivr_server.tools.client import Service, ToolClient
from ivr_server.tools.demo_bank import serve
from ivr_server.tools.handoff import HandoffDesk
from tests.conftest import REPO

BANKING = load_flow(REPO / "flows" / "banking.yaml")


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    assert configure_tracing("otlp", "ivr-server-test", exporter)
    try:
        yield exporter
    finally:
        shutdown_tracing()


async def lost_card(bank: str) -> None:
    port = ScriptPort([{"say": "I lost my card ending in four four two one"}, {"say": "yes"}, {"keys": "9"}])
    tools = ToolClient({"bank": Service(bank)})
    try:
        engine = Engine(BANKING, port, tools, model_for_flow(BANKING), today=dt.date(2026, 11, 24))
        port.engine = engine
        with span("call", call_id="c-1", flow="banking"):
            session = await engine.run()
    finally:
        await tools.aclose()
    assert session.tool_calls == [("block_card", "ok")]


async def test_a_call_is_one_trace_and_its_tool_request_carries_traceparent(
    spans: InMemorySpanExporter,
) -> None:
    runner, port = await serve("127.0.0.1", 0)
    bank = f"http://127.0.0.1:{port}"
    out = io.StringIO()
    configure_logging("json", "info", out)
    try:
        await lost_card(bank)
        async with httpx.AsyncClient() as http:
            (made,) = (await http.get(f"{bank}/_calls")).json()
    finally:
        configure_logging("json", "info")
        await runner.cleanup()
    finished = spans.get_finished_spans()
    names = [s.name for s in finished]
    assert names.count("call") == 1 and names.count("tool") == 1
    assert names.count("turn") == 3 and names.count("intent") >= 1, names
    (call,) = [s for s in finished if s.name == "call"]
    trace_id = call.context.trace_id
    assert {s.context.trace_id for s in finished} == {trace_id}, "one trace per call"
    (tool,) = [s for s in finished if s.name == "tool"]
    assert tool.attributes["ivr.tool"] == "block_card" and tool.parent.span_id == call.context.span_id
    version, trace, parent, flags = made["traceparent"].split("-")
    assert version == "00" and int(flags, 16) & 1  # sampled (level 2 may add the random bit)
    assert int(trace, 16) == trace_id and int(parent, 16) == tool.context.span_id
    intents = [s for s in finished if s.name == "intent"]
    assert intents[0].attributes["ivr.intent"] == "lost_card"
    logged = [json.loads(line) for line in out.getvalue().splitlines()]
    decisions = [x for x in logged if x["event"] == "flow.decision"]
    assert decisions and all(x["trace_id"] == f"{trace_id:032x}" for x in decisions)


async def test_the_handoff_webhook_carries_the_calls_traceparent(spans: InMemorySpanExporter) -> None:
    got: list[str | None] = []

    async def hook(request: web.Request) -> web.Response:
        got.append(request.headers.get("traceparent"))
        return web.json_response({})

    app = web.Application()
    app.router.add_post("/handoffs", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    desk = HandoffDesk(lambda _op: None, f"http://127.0.0.1:{port}/handoffs")
    try:
        with span("call", call_id="c-2") as call:
            desk.hand_off("c-2", "queue:agents", {"IVR_INTENT": "agent"}, None)
        await desk.aclose(5)
    finally:
        await runner.cleanup()
    (header,) = got
    assert header is not None and int(header.split("-")[1], 16) == call.get_span_context().trace_id


async def test_off_nothing_is_traced_and_no_header_sent() -> None:
    shutdown_tracing()
    assert traceparent() is None
    runner, port = await serve("127.0.0.1", 0)
    bank = f"http://127.0.0.1:{port}"
    try:
        await lost_card(bank)
        async with httpx.AsyncClient() as http:
            (made,) = (await http.get(f"{bank}/_calls")).json()
    finally:
        await runner.cleanup()
    assert made["traceparent"] is None


def test_a_mode_that_does_not_exist_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="IVR_TRACING"):
        configure_tracing("jaeger", "x")
