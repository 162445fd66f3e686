"""Calling a flow's tools over HTTP.

Each call: the path and body rendered from slot values (values percent-encoded into the path,
so a caller's words can never change which URL is called), the service's base URL and secret
headers from config, a timeout per attempt, retries (tenacity, exponential backoff) only for
idempotent tools, the service's circuit breaker consulted before every attempt, and the JSON
answer mapped into slots by dotted paths. A call that takes longer than the tool's
``filler_after_ms`` runs ``on_slow`` (the engine plays the filler prompt) while it goes on.

Errors (ivr_server.errors): ToolTimeout, ToolUnavailable (refused, 5xx, circuit open) and
ToolBadAnswer (4xx, not JSON, a mapped field missing). Slot values are never logged.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx
import structlog
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from ivr_server.dialog.spec.model import Tool
from ivr_server.errors import ToolBadAnswer, ToolError, ToolRefused, ToolTimeout, ToolUnavailable
from ivr_server.observability.metrics import Metrics
from ivr_server.observability.tracing import traceparent
from ivr_server.tools.breaker import Breaker

log = structlog.get_logger(__name__)
MAX_ANSWER_BYTES = 1_000_000


@dataclass(frozen=True)
class Service:
    """One back end: where it is, the headers it needs (secrets resolved), its breaker."""

    url: str
    headers: Mapping[str, str] = field(default_factory=dict)
    breaker_failures: int = 3
    breaker_reset_s: float = 30.0


@dataclass(frozen=True)
class ToolResult:
    slots: dict[str, str]
    status: int
    attempts: int
    elapsed_ms: float
    slow: bool  # the filler ran


def services_from(config: Mapping[str, Any]) -> dict[str, Service]:
    """Settings.tools_services (ToolService models, secrets wrapped) as the client's Services."""
    return {
        name: Service(
            c.url,
            {h: v.get_secret_value() for h, v in c.headers.items()},
            c.breaker_failures,
            c.breaker_reset_s,
        )
        for name, c in config.items()
    }


class ToolClient:
    def __init__(
        self,
        services: Mapping[str, Service],
        http: httpx.AsyncClient | None = None,
        clock: Callable[[], float] = time.monotonic,
        metrics: Metrics | None = None,
    ) -> None:
        """``clock`` drives the circuit breakers (tests move it); elapsed times are real."""
        self.services = dict(services)
        self.metrics = metrics
        self._http = http or httpx.AsyncClient()
        self._clock = clock
        self._breakers = {
            name: Breaker(s.breaker_failures, s.breaker_reset_s) for name, s in services.items()
        }

    async def aclose(self) -> None:
        await self._http.aclose()

    def breaker_state(self, service: str) -> str:
        return self._breakers[service].state(self._clock())

    async def call(
        self,
        tool: Tool,
        values: Mapping[str, str],
        on_slow: Callable[[], Awaitable[None]] | None = None,
    ) -> ToolResult:
        service = self.services.get(tool.service)
        if service is None:
            raise ToolUnavailable(f"tool {tool.name}: service '{tool.service}' is not configured")
        started, attempts = time.monotonic(), 0
        slow = asyncio.Event()
        filler = asyncio.create_task(self._filler(tool, on_slow, slow)) if on_slow else None
        request = self._request(tool, service, values)
        retry_on = (ToolTimeout, ToolUnavailable) if tool.idempotent else ()
        try:
            async for attempt in AsyncRetrying(
                stop=stop_after_attempt(1 + (tool.retries if tool.idempotent else 0)),
                wait=wait_exponential(multiplier=0.1, max=1.0),
                retry=retry_if_exception_type(retry_on),
                reraise=True,
            ):
                with attempt:
                    attempts += 1
                    answer = await self._attempt(tool, request)
        except ToolError as err:
            if self.metrics is not None:
                self.metrics.tool_errors.labels(code=err.code).inc()
            log.warning("tool.failed", tool=tool.name, service=tool.service, code=err.code, error=str(err),
                        attempts=attempts, breaker=self.breaker_state(tool.service))  # fmt: skip
            raise
        except asyncio.CancelledError:
            if filler is not None:
                filler.cancel()
            raise
        finally:
            if filler is not None:
                if not slow.is_set():
                    filler.cancel()  # not started: not needed
                # A filler that started is heard to its end, not cut mid-word by the answer.
                await asyncio.gather(filler, return_exceptions=True)
        elapsed_ms = (time.monotonic() - started) * 1000
        result = ToolResult(
            map_answer(tool, answer[1]), answer[0], attempts, round(elapsed_ms, 1), slow.is_set()
        )
        log.info("tool.called", tool=tool.name, service=tool.service, status=result.status,
                 attempts=attempts, elapsed_ms=result.elapsed_ms, slow=result.slow)  # fmt: skip
        return result

    def _request(self, tool: Tool, service: Service, values: Mapping[str, str]) -> httpx.Request:
        path = tool.path.render({k: quote(str(v), safe="") for k, v in values.items()})
        headers = dict(service.headers)
        if tool.idempotent and tool.method in ("POST", "PATCH"):
            headers["Idempotency-Key"] = str(uuid.uuid4())  # the same for every retry of this call
        if (parent := traceparent()) is not None:  # the back end's spans join the call's trace
            headers["traceparent"] = parent
        body = {k: t.render(values) for k, t in tool.body.items()} if tool.body else None
        return self._http.build_request(
            tool.method, service.url.rstrip("/") + path, headers=headers, json=body, timeout=tool.timeout_s
        )

    async def _attempt(self, tool: Tool, request: httpx.Request) -> tuple[int, Any]:
        breaker = self._breakers[tool.service]
        if not breaker.allow(self._clock()):
            raise ToolUnavailable(f"tool {tool.name}: the circuit for service '{tool.service}' is open")
        try:
            async with asyncio.timeout(tool.timeout_s):  # the whole answer, not each read of it
                status, body = await self._read(request)
        except (httpx.TimeoutException, TimeoutError) as err:
            breaker.failed(self._clock())
            raise ToolTimeout(f"tool {tool.name}: no answer within {tool.timeout_s:g} s") from err
        except httpx.HTTPError as err:
            breaker.failed(self._clock())
            raise ToolUnavailable(f"tool {tool.name}: {type(err).__name__}: {err}") from err
        if status >= 500:
            breaker.failed(self._clock())
            raise ToolUnavailable(f"tool {tool.name}: service '{tool.service}' answered {status}")
        if status >= 400:
            breaker.succeeded()  # the service works; the request was refused
            raise ToolRefused(f"tool {tool.name}: service '{tool.service}' refused it ({status})")
        if len(body) > MAX_ANSWER_BYTES:
            breaker.failed(self._clock())
            raise ToolBadAnswer(f"tool {tool.name}: the answer is over {MAX_ANSWER_BYTES} bytes")
        try:
            data = decode_answer(tool, body)
        except ToolBadAnswer:
            breaker.failed(self._clock())
            raise
        breaker.succeeded()
        return status, data

    async def _read(self, request: httpx.Request) -> tuple[int, bytes]:
        """Status and body, reading no more than one byte past MAX_ANSWER_BYTES."""
        response = await self._http.send(request, stream=True)
        try:
            body = bytearray()
            async for chunk in response.aiter_bytes():
                body += chunk
                if len(body) > MAX_ANSWER_BYTES:
                    break
            return response.status_code, bytes(body[: MAX_ANSWER_BYTES + 1])
        finally:
            await response.aclose()

    async def _filler(self, tool: Tool, on_slow: Callable[[], Awaitable[None]], slow: asyncio.Event) -> None:
        await asyncio.sleep(tool.filler_after_ms / 1000)
        slow.set()
        await on_slow()


def decode_answer(tool: Tool, body: bytes) -> Any:
    """A service's answer as JSON values; ToolBadAnswer says what was wrong with it."""
    try:
        return json.loads(body) if body.strip() else {}
    except (ValueError, UnicodeDecodeError) as err:  # not JSON, or an integer of over 4300 digits
        raise ToolBadAnswer(f"tool {tool.name}: the answer is not JSON ({str(err)[:200]})") from err
    except RecursionError as err:
        raise ToolBadAnswer(f"tool {tool.name}: the answer is nested too deeply to read") from err


def map_answer(tool: Tool, data: Any) -> dict[str, str]:
    """The answer's fields into slots: ``{"balance": "available"}`` reads data["available"];
    dotted paths go deeper (``account.balance``, ``items.0.amount``)."""
    out = {}
    for slot, path in tool.result.items():
        value: Any = data
        for part in path.split("."):
            if isinstance(value, dict) and part in value:
                value = value[part]
            elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
                value = value[int(part)]
            else:
                raise ToolBadAnswer(f"tool {tool.name}: the answer has no '{path}' (for slot {slot})")
        if isinstance(value, dict | list):
            raise ToolBadAnswer(f"tool {tool.name}: '{path}' is not a single value (for slot {slot})")
        out[slot] = "" if value is None else str(value)
    return out
