"""The console's HTTP side: a WSGI app mounted under /console/ on the metrics listener.

It runs on the listener's threads and never awaits the event loop, with two exceptions that
go through it on purpose: audit events (``call_soon_threadsafe``, without waiting) and a canary
rollback (``run_coroutine_threadsafe``, waited for up to ``ROLLBACK_TIMEOUT_S``).

Routes (anything else is 404; ``..`` anywhere in a path is 400):
  GET  /console/                        the page (and /console/console.js, /console/console.css)
  GET  /console/api/me                  who is logged in, and the role
  GET  /console/api/calls               calls in progress, recent calls, flow versions, errors
  GET  /console/api/calls/ID/transcript the call's turns so far        (supervisor; audited)
  GET  /console/api/calls/ID/events     its turns as they happen (SSE) (supervisor; audited)
  POST /console/api/flows/NAME/rollback withdraw the flow's canary     (supervisor; audited)
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

from ivr_server.config.settings import ConsoleUser
from ivr_server.console.auth import Authenticator, Login
from ivr_server.console.page import ASSETS
from ivr_server.console.state import ConsoleState, Subscriber
from ivr_server.store.audit_append import AuditEvent

Respond = Callable[[str, list[tuple[str, str]]], Any]
Environ = dict[str, Any]

MAX_BODY = 1024  # no route reads a body; a larger one is refused before anything else
MAX_PATH = 512
ROLLBACK_TIMEOUT_S = 10.0
AUDITED_MAX = 4096  # (user, call) pairs whose last utterance was shown, remembered to audit once
_CALL = re.compile(r"/console/api/calls/([0-9a-f-]{36})/(transcript|events)")
_ROLLBACK = re.compile(r"/console/api/flows/([A-Za-z0-9_.-]{1,64})/rollback")
_REASONS = {200: "OK", 308: "Permanent Redirect", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden",
            404: "Not Found", 405: "Method Not Allowed", 409: "Conflict", 413: "Content Too Large",
            429: "Too Many Requests", 502: "Bad Gateway", 503: "Service Unavailable"}  # fmt: skip
_SECURITY = [("X-Content-Type-Options", "nosniff"), ("Referrer-Policy", "no-referrer"),
             ("Cache-Control", "no-store"), ("X-Frame-Options", "DENY"),
             ("Content-Security-Policy", "default-src 'self'; frame-ancestors 'none'")]  # fmt: skip


class Console:
    """``app.bind(loop, submit, rollback)`` once the store writer runs: until then transcripts
    (which must be audited) and rollbacks answer 503."""

    def __init__(
        self,
        state: ConsoleState,
        users: Mapping[str, ConsoleUser],
        keepalive_s: float = 5.0,
        stream_max_s: float = 3600.0,
    ) -> None:
        self.state = state
        self.auth = Authenticator(users)
        self.keepalive_s, self.stream_max_s = keepalive_s, stream_max_s
        self._loop: asyncio.AbstractEventLoop | None = None
        self._submit: Callable[[AuditEvent], None] | None = None
        self._rollback: Callable[[str], Awaitable[str]] | None = None
        self._audited: deque[tuple[str, str]] = deque(maxlen=AUDITED_MAX)
        self._lock = threading.Lock()

    def bind(
        self,
        loop: asyncio.AbstractEventLoop,
        submit: Callable[[AuditEvent], None],
        rollback: Callable[[str], Awaitable[str]] | None,
    ) -> None:
        self._loop, self._submit, self._rollback = loop, submit, rollback

    def __call__(self, environ: Environ, respond: Respond) -> Iterable[bytes]:
        path, method = environ.get("PATH_INFO", ""), environ.get("REQUEST_METHOD", "")
        if len(path) > MAX_PATH or ".." in path or "\\" in path or "\x00" in path or "//" in path:
            return _json(respond, 400, {"error": "bad path"})
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            return _json(respond, 400, {"error": "bad Content-Length"})
        if length > MAX_BODY or environ.get("HTTP_TRANSFER_ENCODING"):
            return _json(respond, 413, {"error": f"request bodies over {MAX_BODY} bytes are refused"})
        if path == "/console":
            respond("308 Permanent Redirect", [("Location", "/console/"), ("Content-Length", "0")])
            return [b""]
        login, why = self.auth.check(environ.get("HTTP_AUTHORIZATION", ""), environ.get("REMOTE_ADDR", ""))
        if login is None:
            if why == "too many attempts":
                return _json(respond, 429, {"error": "too many failed attempts; wait a minute"})
            challenge = [("WWW-Authenticate", 'Basic realm="ivr-server console", charset="UTF-8"')]
            return _json(respond, 401, {"error": f"credentials {why}"}, challenge)
        if method == "POST":
            flow = _ROLLBACK.fullmatch(path)
            if flow is None:
                return _json(respond, 404 if path not in ASSETS else 405, {"error": "not found"})
            return self._rollback_canary(login, flow.group(1), environ, respond)
        if method not in ("GET", "HEAD"):
            return _json(respond, 405, {"error": "only GET, HEAD and POST"})
        return self._get(login, path, respond)

    def _get(self, login: Login, path: str, respond: Respond) -> Iterable[bytes]:
        if path in ASSETS:
            content_type, body = ASSETS[path]
            respond(
                "200 OK", [("Content-Type", content_type), ("Content-Length", str(len(body))), *_SECURITY]
            )
            return [body]
        if path == "/console/api/me":
            return _json(respond, 200, {"user": login.user, "role": login.role})
        if path == "/console/api/calls":
            overview = self.state.overview(with_words=login.supervisor and self._bound)
            if login.supervisor and self._bound:
                self._audit_utterances(login, overview["calls"])
            return _json(respond, 200, overview)
        match = _CALL.fullmatch(path)
        if match is None:
            return _json(respond, 404, {"error": "not found"})
        call_id, what = match.groups()
        if not login.supervisor:
            return _json(respond, 403, {"error": "transcripts need the supervisor role"})
        if not self._bound:
            return _json(respond, 503, {"error": "the server is starting: transcripts are not available yet"})
        if what == "transcript":
            turns = self.state.transcript(call_id)
            if turns is None:
                return _json(respond, 404, {"error": "no call in progress with this id"})
            self._audit("console_view", login, call_id, viewed="transcript")
            return _json(respond, 200, {"call_id": call_id, "turns": turns})
        if not self.state.known(call_id):
            return _json(respond, 404, {"error": "no call in progress with this id"})
        sub, turns = self.state.subscribe(call_id)
        if sub is None:
            return _json(respond, 503, {"error": "too many transcript streams open; try again later"})
        self._audit("console_view", login, call_id, viewed="transcript_stream")
        respond("200 OK", [("Content-Type", "text/event-stream"), ("X-Accel-Buffering", "no"), *_SECURITY])
        return self._stream(sub, turns)

    def _stream(self, sub: Subscriber, turns: list[dict[str, Any]]) -> Iterator[bytes]:
        """A generator: wsgiref writes (and flushes) each piece; a client gone makes the write
        fail, and closing the generator lets the slot go."""
        try:
            yield b"retry: 2000\n\n" + b"".join(_sse("turn", t) for t in turns)
            deadline = time.monotonic() + self.stream_max_s
            while not self.state.closed and time.monotonic() < deadline:
                entries = self.state.wait(sub, self.keepalive_s)
                if not entries:
                    yield b": keepalive\n\n"
                for entry in entries:
                    if "ended" in entry:
                        yield _sse("ended", entry)
                        return
                    yield _sse("turn", entry)
        finally:
            self.state.unsubscribe(sub)

    def _rollback_canary(
        self, login: Login, flow: str, environ: Environ, respond: Respond
    ) -> Iterable[bytes]:
        if not login.supervisor:
            return _json(respond, 403, {"error": "rolling back needs the supervisor role"})
        if environ.get("HTTP_X_CONSOLE_REQUEST") != "1":  # a cross-site form cannot set it
            return _json(respond, 403, {"error": "missing X-Console-Request header"})
        if not self._bound or self._rollback is None or self._loop is None:
            return _json(respond, 503, {"error": "rollback is not available now"})
        if not any(
            f["flow"] == flow and f["status"] == "candidate" for f in self.state.overview(False)["flows"]
        ):
            return _json(respond, 409, {"error": f"{flow} has no canary to roll back"})
        try:
            future = asyncio.run_coroutine_threadsafe(_awaited(self._rollback(flow)), self._loop)
            outcome = future.result(ROLLBACK_TIMEOUT_S)
        except Exception as err:  # the store's answer, a timeout, a closed loop: the operator sees it
            self._audit("console_rollback", login, None, flow=flow, done=False, error=str(err)[:200])
            return _json(respond, 502, {"error": f"rollback failed: {err}"[:300]})
        self._audit("console_rollback", login, None, flow=flow, done=True, now_serving=outcome)
        return _json(respond, 200, {"flow": flow, "now_serving": outcome})

    @property
    def _bound(self) -> bool:
        return self._loop is not None and self._submit is not None and not self._loop.is_closed()

    def _audit_utterances(self, login: Login, calls: list[dict[str, Any]]) -> None:
        """A supervisor's list shows each call's last words: one audit event per user and call."""
        for call in calls:
            key = (login.user, call["call_id"])
            if not call.get("last_utterance"):
                continue
            with self._lock:
                if key in self._audited:
                    continue
                self._audited.append(key)
            self._audit("console_view", login, call["call_id"], viewed="last_utterance")

    def _audit(self, kind: str, login: Login, call_id: str | None, **what: Any) -> None:
        """What was viewed or done, and by whom; never the content itself."""
        if self._loop is None or self._submit is None:
            return
        event = AuditEvent(kind, datetime.now(UTC), {"user": login.user, "role": login.role, **what}, call_id)
        try:
            self._loop.call_soon_threadsafe(self._submit, event)
        except RuntimeError:  # the loop has closed: the server is gone, and so is the view
            pass


async def _awaited(result: Awaitable[str]) -> str:
    return await result


def _sse(kind: str, data: dict[str, Any]) -> bytes:
    return f"event: {kind}\ndata: {json.dumps(data)}\n\n".encode()


def _json(
    respond: Respond, status: int, body: dict[str, Any], extra: list[tuple[str, str]] | None = None
) -> list[bytes]:
    data = json.dumps(body).encode()
    headers = [("Content-Type", "application/json"), ("Content-Length", str(len(data))), *_SECURITY]
    respond(f"{status} {_REASONS[status]}", headers + (extra or []))
    return [data]
