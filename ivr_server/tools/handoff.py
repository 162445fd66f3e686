"""Handoffs to a person: stored, and POSTed to a webhook (the agent desktop's screen pop).

The caller is transferred first and never waits for the webhook: it is sent in the background
with a timeout per attempt and a few retries (the handoff id is its idempotency key, so a
receiver that saw an attempt whose answer was lost can ignore the repeat). Its outcome is
written to the handoff's row. A server that stops waits a moment for deliveries in flight.
Summary and context pass the redaction step; the caller's number is sent as it is, since the
agent's CRM looks the caller up by it.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import httpx
import structlog
from pydantic import SecretStr
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from ivr_server.observability.tracing import traceparent
from ivr_server.privacy.redact import Redactor
from ivr_server.store.writer import Handoff, HandoffDelivery, Op

log = structlog.get_logger(__name__)


class _Retry(Exception):
    """A 5xx, 429 or a transport error: worth another attempt."""


class HandoffDesk:
    def __init__(
        self,
        submit: Callable[[Op], None],
        webhook_url: str | None,
        token: SecretStr | None = None,
        timeout_s: float = 2.0,
        attempts: int = 3,
    ) -> None:
        self.submit = submit
        self.webhook_url = webhook_url
        self.token = token
        self.timeout_s = timeout_s
        self.attempts = attempts
        self._tasks: set[asyncio.Task[None]] = set()
        self._http: httpx.AsyncClient | None = None
        self.redactor = Redactor()

    def hand_off(self, call_id: str, target: str, variables: Mapping[str, str], caller: str | None) -> str:
        """Store the handoff and start its webhook; returns the handoff id."""
        handoff_id = str(uuid.uuid4())
        at = datetime.now(UTC)
        status = "pending" if self.webhook_url else "not_configured"
        variables = self.redactor.value(dict(variables))  # what the agent sees: no card, no secret
        record = Handoff(
            id=handoff_id,
            call_id=call_id,
            at=at,
            target=target,
            flow=variables.get("IVR_FLOW"),
            intent=variables.get("IVR_INTENT") or None,
            summary=variables.get("IVR_SUMMARY", ""),
            context=dict(variables),
            webhook_status=status,
        )
        self.submit(record)
        log.info("handoff.stored", handoff_id=handoff_id, target=target, intent=record.intent, webhook=status)
        if self.webhook_url:
            body = {
                "handoff_id": handoff_id,
                "call_id": call_id,
                "at": at.isoformat(),
                "target": target,
                "caller": caller,
                "flow": record.flow,
                "intent": record.intent,
                "summary": record.summary,
                "context": record.context,
            }
            task = asyncio.create_task(self._deliver(handoff_id, body), name=f"handoff-{handoff_id}")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return handoff_id

    async def _deliver(self, handoff_id: str, body: dict[str, Any]) -> None:
        assert self.webhook_url is not None
        headers = {"Idempotency-Key": handoff_id}
        if (parent := traceparent()) is not None:  # this task was started inside the call's trace
            headers["traceparent"] = parent
        if self.token is not None:
            headers["Authorization"] = f"Bearer {self.token.get_secret_value()}"
        if self._http is None:
            self._http = httpx.AsyncClient(timeout=self.timeout_s)
        tried = 0
        status = "delivered"
        try:
            async for attempt in AsyncRetrying(
                stop=stop_after_attempt(self.attempts),
                wait=wait_exponential(multiplier=0.2, max=2.0),
                retry=retry_if_exception_type(_Retry),
                reraise=True,
            ):
                with attempt:
                    tried += 1
                    try:  # the status is all we need: the answer's body is never read
                        async with self._http.stream(
                            "POST", self.webhook_url, json=body, headers=headers
                        ) as answer:
                            code = answer.status_code
                    except httpx.HTTPError as err:
                        raise _Retry(f"{type(err).__name__}: {err}") from err
                    if code >= 500 or code == 429:
                        raise _Retry(f"HTTP {code}")
                    if code >= 400:
                        status = f"failed: HTTP {code}"
        except _Retry as err:
            status = f"failed: {err}"
        except Exception as err:  # nothing the endpoint does may lose the delivery's record
            status = f"failed: {type(err).__name__}: {str(err)[:200]}"
        if status == "delivered":
            log.info("handoff.delivered", handoff_id=handoff_id, attempts=tried)
        else:
            log.error("handoff.webhook_failed", handoff_id=handoff_id, attempts=tried, error=status)
        self.submit(HandoffDelivery(handoff_id, status, tried))

    async def aclose(self, timeout_s: float = 5.0) -> None:
        """Wait for deliveries in flight (bounded), then close the HTTP client."""
        if self._tasks:
            _, pending = await asyncio.wait(set(self._tasks), timeout=timeout_s)
            for task in pending:
                task.cancel()
        if self._http is not None:
            await self._http.aclose()
