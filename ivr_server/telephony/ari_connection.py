"""The ARI events WebSocket: connect, reconcile, read events in order, reconnect with backoff.

Each connection attempt first lists the channels and bridges Asterisk has (the "before"
snapshot), then opens the socket, then lets the handler reconcile before any event is read:
anything that was in the app before we connected and that we do not know is an orphan. Asterisk
does not queue events while no client is connected, so reconciliation is how a reconnect learns
what it missed.

Waits between attempts grow exponentially with jitter up to ``ari_reconnect_max_s`` and reset
only after a connection stayed up for ``STABLE_AFTER_S``, so a socket that opens and drops at once
never turns into a tight loop.
"""

from __future__ import annotations

import base64
import ssl
import time
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Protocol, cast
from urllib.parse import quote, urlsplit, urlunsplit

import structlog
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, wait_exponential_jitter
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI

from ivr_server.config import Settings, ari_ssl_context
from ivr_server.errors import (
    AriAuthError,
    AriEventError,
    AriRequestError,
    AriUnavailable,
    ConfigError,
)
from ivr_server.observability.health import Health
from ivr_server.observability.logging import RateLimitedLog
from ivr_server.observability.metrics import Metrics
from ivr_server.telephony.ari_events import AriEvent, UnknownEvent, UnknownTypes, parse_event
from ivr_server.telephony.ari_rest import AriRestClient

log = structlog.get_logger(__name__)

STABLE_AFTER_S = 5.0
MAX_MESSAGE_BYTES = 8 << 20


@dataclass(frozen=True)
class Snapshot:
    """What Asterisk had before the socket opened."""

    channel_ids: frozenset[str]
    bridges: dict[str, str]  # id -> name


class EventHandler(Protocol):
    async def on_connected(self, before: Snapshot, first: bool) -> None: ...
    def on_event(self, event: AriEvent) -> None: ...
    def on_disconnected(self) -> None: ...


class _ConnectionLost(Exception):
    """The socket closed; try again."""


class _Backoff:
    """tenacity's exponential-with-jitter wait, counting failures since the last stable link."""

    def __init__(self, initial_s: float, max_s: float) -> None:
        self._wait = wait_exponential_jitter(multiplier=initial_s, max=max_s, jitter=initial_s)
        self.failures = 0

    def reset(self) -> None:
        self.failures = 0

    def __call__(self, _state: RetryCallState) -> float:
        self.failures += 1
        return float(self._wait(cast(RetryCallState, SimpleNamespace(attempt_number=self.failures))))


def events_url(ari_url: str, app: str) -> str:
    parts = urlsplit(ari_url.rstrip("/"))
    scheme = "wss" if parts.scheme == "https" else "ws"
    return urlunsplit(
        (scheme, parts.netloc, parts.path + "/ari/events", f"app={quote(app)}&subscribeAll=false", "")
    )


class AriConnection:
    def __init__(
        self,
        settings: Settings,
        rest: AriRestClient,
        metrics: Metrics,
        handler: EventHandler,
        health: Health | None = None,
    ) -> None:
        self.settings = settings
        self.health = health or Health()  # its "ari" check: up and reconciled, or why not
        self.rest = rest
        self.metrics = metrics
        self.handler = handler
        self.url = events_url(settings.ari_url, settings.ari_app)
        self._ssl = ari_ssl_context(settings)  # None for ws://
        token = f"{settings.ari_username}:{settings.ari_password.get_secret_value()}"
        self._headers = {"Authorization": "Basic " + base64.b64encode(token.encode()).decode()}
        self._backoff = _Backoff(settings.ari_reconnect_initial_s, settings.ari_reconnect_max_s)
        self._first = True
        self._log_limit = RateLimitedLog()
        self._unknown_types = UnknownTypes()

    async def run(self) -> None:
        """Stay connected until cancelled; raises AriAuthError or ConfigError, which retrying
        cannot fix."""
        retrying = AsyncRetrying(
            retry=retry_if_exception_type((_ConnectionLost, AriUnavailable, OSError, TimeoutError)),
            wait=self._backoff,
            before_sleep=self._before_sleep,
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                await self._session()

    def _before_sleep(self, state: RetryCallState) -> None:
        err = state.outcome.exception() if state.outcome else None
        self.health.fails("ari", f"{str(err) or type(err).__name__} ({self.settings.ari_url})")
        if not isinstance(err, _ConnectionLost):
            self.metrics.ari_connect_failures.inc()
        wait = state.next_action.sleep if state.next_action else 0.0
        log.info(
            "ari.reconnect_wait",
            wait_s=round(wait, 3),
            attempt=self._backoff.failures,
            error=str(err) or type(err).__name__,
        )

    async def _session(self) -> None:
        try:
            before = Snapshot(await self.rest.channel_ids(), await self.rest.bridges())
        except AriRequestError as err:
            # While Asterisk starts, HTTP answers before res_ari has loaded (404).
            raise AriUnavailable(f"ARI not ready: {err}") from err
        ws = await self._open()
        opened = time.monotonic()
        try:
            self.metrics.ari_connected.set(1)
            self.metrics.ari_connects.inc()
            log.info("ari.connected", url=self.url, app=self.settings.ari_app, first=self._first)
            await self.handler.on_connected(before, self._first)
            self.health.holds("ari")
            self._first = False
            async for message in ws:
                self._dispatch(message)
            close = ws.close_code
            raise _ConnectionLost(f"events socket closed by Asterisk (code {close})")
        except ConnectionClosed as err:
            raise _ConnectionLost(f"events socket lost: {err}") from err
        finally:
            self.health.fails("ari", "events socket lost; reconnecting")
            self.metrics.ari_connected.set(0)
            if time.monotonic() - opened >= STABLE_AFTER_S:
                self._backoff.reset()
            self.handler.on_disconnected()
            await ws.close()
            log.warning("ari.disconnected", up_s=round(time.monotonic() - opened, 3))

    async def _open(self) -> ClientConnection:
        try:
            return await connect(
                self.url,
                additional_headers=self._headers,
                open_timeout=self.settings.ari_connect_timeout_s,
                ping_interval=10,
                ping_timeout=10,
                max_size=MAX_MESSAGE_BYTES,
                ssl=self._ssl,
            )
        except InvalidStatus as err:
            status = err.response.status_code
            if status in (401, 403):
                raise AriAuthError(
                    f"ARI refused the events socket ({status}): check IVR_ARI_USERNAME / "
                    "IVR_ARI_PASSWORD against ari.conf"
                ) from err
            raise AriUnavailable(f"events socket handshake answered {status}") from err
        except InvalidURI as err:
            raise ConfigError(f"IVR_ARI_URL gives an invalid events URL: {err}") from err
        except ssl.SSLCertVerificationError as err:
            raise ConfigError(
                f"IVR_ARI_URL {self.settings.ari_url}: Asterisk's TLS certificate is not trusted "
                f"({err.verify_message}); set IVR_ARI_TLS_CA_FILE to the certificate that signed it"
            ) from err
        except InvalidHandshake as err:
            raise AriUnavailable(f"events socket handshake failed: {err}") from err

    def _dispatch(self, message: str | bytes) -> None:
        try:
            event = parse_event(message)
        except AriEventError as err:
            self.metrics.ari_events_malformed.inc()
            should, count = self._log_limit.should_log("malformed")
            if should:
                log.warning("ari.event_malformed", error=str(err), count=count)
            return
        if isinstance(event, UnknownEvent):
            label = self._unknown_types.label(event.type)
            self.metrics.ari_events.labels(type="unknown").inc()
            self.metrics.ari_events_unknown.labels(type=label).inc()
            should, count = self._log_limit.should_log(f"unknown:{label}")
            if should:
                log.warning("ari.event_unknown", event_type=event.type, count=count)
            return
        self.metrics.ari_events.labels(type=event.type).inc()
        try:
            self.handler.on_event(event)
        except Exception:  # a bug in one handler must not stop the event stream
            log.exception("ari.event_handler_failed", event_type=event.type)
