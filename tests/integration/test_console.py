"""The console over real HTTP on the metrics listener: who sees what, what is audited, bad input
answered 4xx, transcript streams bounded, rollback only for a supervisor."""

from __future__ import annotations

import asyncio
import base64
import http.client
import json
import socket
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from ivr_server.config.settings import ConsoleUser
from ivr_server.console import Console, ConsoleState
from ivr_server.console.auth import hash_token
from ivr_server.observability.metrics import Metrics, serve_metrics
from ivr_server.store.audit_append import AuditEvent
from ivr_server.store.deployments import Deployment
from ivr_server.store.writer import CallEnded, CallEvent, CallStarted, Turn

CALL = "0f1e2d3c-4b5a-4678-9abc-def012345678"
USERS = {
    "vera": ConsoleUser(role="viewer", token_hash=hash_token("viewer-token")),
    "sam": ConsoleUser(role="supervisor", token_hash=hash_token("supervisor-token", slow=True)),
    "old": ConsoleUser(role="supervisor", token_hash=hash_token("old-token"), expires=date(2020, 1, 1)),
}
VIEWER = "Basic " + base64.b64encode(b"vera:viewer-token").decode()
SUPERVISOR = "Basic " + base64.b64encode(b"sam:supervisor-token").decode()


def now() -> datetime:
    return datetime.now(UTC)


def started(state: ConsoleState) -> None:
    state.observe(CallStarted(CALL, "ch1", "+15551234567", None, "400", "banking", [], "srv", now()))
    state.observe(CallEvent(CALL, 1, now(), "deployment", {"version_number": 2, "role": "candidate"}))
    state.observe(CallEvent(CALL, 2, now(), "decision", {"state": "main_menu"}))


@pytest.fixture
def console() -> Iterator[tuple[int, Console]]:
    state = ConsoleState(max_subscribers=2)
    app = Console(state, USERS, keepalive_s=0.2)
    server = serve_metrics(Metrics(), "127.0.0.1", 0, None, app)
    try:
        yield server.server_port, app
    finally:
        state.close()
        server.shutdown()


def get(port: int, path: str, auth: str = "", method: str = "GET", headers: dict[str, str] | None = None
        ) -> tuple[int, Any]:  # fmt: skip
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request(method, path, headers={**({"Authorization": auth} if auth else {}), **(headers or {})})
        response = conn.getresponse()
        body = response.read()
        is_json = response.getheader("Content-Type") == "application/json"
        return response.status, json.loads(body) if is_json else body
    finally:
        conn.close()


def bind(app: Console, rollback: Any = None) -> list[AuditEvent]:
    audited: list[AuditEvent] = []
    app.bind(asyncio.get_running_loop(), audited.append, rollback)
    return audited


def test_no_credentials_wrong_or_expired_get_401_without_call_data(console: tuple[int, Console]) -> None:
    port, app = console
    app.auth.max_failures = 1000
    started(app.state)
    for auth in ("", "Bearer nope", "Basic " + base64.b64encode(b"vera:wrong").decode(),
                 "Basic " + base64.b64encode(b"old:old-token").decode(), "Basic !!!", "Digest x"):  # fmt: skip
        for path in ("/console/", "/console/api/calls", f"/console/api/calls/{CALL}/events"):
            status, body = get(port, path, auth)
            assert status == 401, (auth, path)
            assert CALL not in json.dumps(body) and "banking" not in json.dumps(body)
    assert get(port, "/console/api/me", "Basic " + base64.b64encode(b"old:old-token").decode())[1] == {
        "error": "credentials expired"
    }


def test_failed_attempts_are_rate_limited(console: tuple[int, Console]) -> None:
    port, _ = console
    codes = [get(port, "/console/api/me", "Bearer wrong")[0] for _ in range(12)]
    assert codes[:10] == [401] * 10 and codes[10:] == [429, 429]
    assert get(port, "/console/api/me", VIEWER)[0] == 429  # the address, whatever it sends now


def test_traversal_and_unknown_paths_are_refused(console: tuple[int, Console]) -> None:
    port, _ = console
    for path in ("/console/../metrics", "/console/%2e%2e/", "/console/static/../../etc/passwd",
                 "/console/..%2f..%2fetc/passwd", "/console//etc/passwd"):  # fmt: skip
        assert get(port, path, VIEWER)[0] == 400, path
    for path in ("/console/etc/passwd", "/console/console.js.bak", f"/console/api/calls/{CALL}/x"):
        assert get(port, path, VIEWER)[0] == 404, path
    assert get(port, "/console", VIEWER)[0] == 308
    assert get(port, "/metrics")[0] == 200  # the rest of the listener is unchanged


def test_huge_requests_are_refused(console: tuple[int, Console]) -> None:
    port, _ = console
    status, _ = get(port, "/console/api/me", VIEWER, "POST", {"Content-Length": "10000000"})
    assert status == 413
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:  # a 100 kB request line
        sock.sendall(b"GET /console/" + b"a" * 100_000 + b" HTTP/1.0\r\n\r\n")
        assert sock.recv(100).split()[1] in (b"400", b"414")


async def test_viewer_sees_calls_but_no_words_supervisor_sees_words_audited(
    console: tuple[int, Console],
) -> None:
    port, app = console
    audited = bind(app)
    started(app.state)
    turn = Turn(CALL, 1, "caller", now(), "my card is [card]", "silence")
    app.state.observe(turn)
    status, body = await asyncio.to_thread(get, port, "/console/api/calls", VIEWER)
    assert status == 200
    [call] = body["calls"]
    assert call["caller"] == "••••••••67" and call["flow"] == "banking" and call["state"] == "main_menu"
    assert call["version"] == "v2" and call["canary"] is True and "last_utterance" not in call
    assert await asyncio.to_thread(get, port, f"/console/api/calls/{CALL}/transcript", VIEWER) == (
        403, {"error": "transcripts need the supervisor role"})  # fmt: skip
    status, body = await asyncio.to_thread(get, port, "/console/api/calls", SUPERVISOR)
    assert body["calls"][0]["last_utterance"] == "my card is [card]"
    await asyncio.to_thread(get, port, "/console/api/calls", SUPERVISOR)  # audited once per call
    status, body = await asyncio.to_thread(get, port, f"/console/api/calls/{CALL}/transcript", SUPERVISOR)
    assert status == 200 and [t["text"] for t in body["turns"]] == ["my card is [card]"]
    await asyncio.sleep(0.05)
    assert [(e.kind, e.call_id, e.payload) for e in audited] == [
        ("console_view", CALL, {"user": "sam", "role": "supervisor", "viewed": "last_utterance"}),
        ("console_view", CALL, {"user": "sam", "role": "supervisor", "viewed": "transcript"}),
    ]


async def test_transcripts_refused_until_audit_is_possible(console: tuple[int, Console]) -> None:
    """No audit trail yet (the store writer not running): no transcript either."""
    port, app = console
    started(app.state)
    status, _ = await asyncio.to_thread(get, port, f"/console/api/calls/{CALL}/transcript", SUPERVISOR)
    assert status == 503


def read_stream(port: int, auth: str, until: bytes) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    conn.request("GET", f"/console/api/calls/{CALL}/events", headers={"Authorization": auth})
    response = conn.getresponse()
    data = b""
    while response.status == 200 and until not in data:
        chunk = response.read1(4096)
        if not chunk:
            break
        data += chunk
    conn.close()
    return response.status, data


async def test_stream_sends_turns_as_they_come_and_ends_with_the_call(console: tuple[int, Console]) -> None:
    port, app = console
    audited = bind(app)
    started(app.state)
    app.state.observe(Turn(CALL, 1, "system", now(), "How can I help?", "completed"))
    reader = asyncio.create_task(asyncio.to_thread(read_stream, port, SUPERVISOR, b"event: ended"))
    for _ in range(50):  # subscribed, then a keep-alive or two
        await asyncio.sleep(0.1)
        if app.state.subscribers:
            break
    await asyncio.sleep(0.5)
    app.state.observe(Turn(CALL, 2, "caller", now(), "balance please", "silence"))
    app.state.observe(Turn(CALL, 2, "caller", now(), "balance please", "silence"))  # stored later: once
    app.state.observe(CallEnded(CALL, now(), "completed"))
    status, data = await reader
    assert status == 200
    assert data.count(b"balance please") == 1 and b"How can I help?" in data and b": keepalive" in data
    assert data.index(b"How can I help?") < data.index(b"balance please") < data.index(b"event: ended")
    assert [e.payload["viewed"] for e in audited] == ["transcript_stream"]
    for _ in range(100):  # the listener's thread lets go once the stream's last write returns
        if app.state.subscribers == 0:
            break
        await asyncio.sleep(0.02)
    assert app.state.subscribers == 0
    assert app.state.overview(False)["recent"][0]["end_reason"] == "completed"


async def test_stream_clients_are_bounded(console: tuple[int, Console]) -> None:
    port, app = console
    bind(app)
    started(app.state)
    conns = []
    for _ in range(2):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        await asyncio.to_thread(conn.request, "GET", f"/console/api/calls/{CALL}/events",
                                headers={"Authorization": SUPERVISOR})  # fmt: skip
        assert (await asyncio.to_thread(conn.getresponse)).status == 200
        conns.append(conn)
    status, body = await asyncio.to_thread(get, port, f"/console/api/calls/{CALL}/events", SUPERVISOR)
    assert status == 503 and "too many" in body["error"]
    for conn in conns:
        conn.close()
    app.state.observe(Turn(CALL, 3, "caller", now(), "x", "silence"))  # a write fails: the slot frees
    for _ in range(50):
        if app.state.subscribers == 0:
            break
        await asyncio.sleep(0.1)
    assert app.state.subscribers == 0


def test_a_slow_reader_loses_the_oldest_turns_not_memory() -> None:
    state = ConsoleState()
    started(state)
    sub, _ = state.subscribe(CALL)
    assert sub is not None
    for seq in range(1, 251):
        state.observe(Turn(CALL, seq, "caller", now(), f"turn {seq}", "silence"))
    queued = state.wait(sub, 0)
    assert len(queued) == 100 and queued[0]["text"] == "turn 151" and sub.dropped == 150
    assert len(state.transcript(CALL) or []) == 200


async def test_rollback_only_for_a_supervisor_on_a_canary(console: tuple[int, Console]) -> None:
    port, app = console
    done: list[str] = []

    async def rollback(flow: str) -> str:
        done.append(flow)
        return "v1"

    audited = bind(app, rollback)
    at = now()
    app.state.set_deployments([
        Deployment(1, "banking", 1, "h1", "", "active", 0, at, "me", at),
        Deployment(2, "banking", 2, "h2", "", "candidate", 20, at, "me", at),
    ])  # fmt: skip
    post = "/console/api/flows/banking/rollback"
    sent = {"X-Console-Request": "1"}
    assert (await asyncio.to_thread(get, port, post, VIEWER, "POST", sent))[0] == 403
    assert (await asyncio.to_thread(get, port, post, SUPERVISOR, "POST"))[0] == 403  # no header: CSRF
    assert (await asyncio.to_thread(get, port, "/console/api/flows/other/rollback", SUPERVISOR, "POST",
                                    sent))[0] == 409  # fmt: skip
    assert done == []
    status, body = await asyncio.to_thread(get, port, post, SUPERVISOR, "POST", sent)
    assert (status, body, done) == (200, {"flow": "banking", "now_serving": "v1"}, ["banking"])
    await asyncio.sleep(0.05)
    assert [(e.kind, e.payload) for e in audited] == [
        ("console_rollback", {"user": "sam", "role": "supervisor", "flow": "banking", "done": True,
                              "now_serving": "v1"})]  # fmt: skip


def test_flow_rates_and_errors() -> None:
    state = ConsoleState()
    started(state)
    state.observe(CallEvent(CALL, 3, now(), "flow_ended", {"flow": "banking", "outcome": "transfer"}))
    state.error({"event": "tool.failed", "level": "error", "error": "card 4111 1111 1111 1111 refused"})
    at = now() - timedelta(minutes=1)
    state.set_deployments([Deployment(2, "banking", 2, "h2", "", "candidate", 20, at, "me", at)])
    overview = state.overview(False)
    assert overview["flows"] == [{"flow": "banking", "version": "v2", "status": "candidate",
                                  "canary_percent": 20, "calls": 1, "containment_pct": 0.0,
                                  "transfer_pct": 100.0}]  # fmt: skip
    assert "4111" not in json.dumps(overview["errors"]) and overview["errors"][0]["event"] == "tool.failed"
