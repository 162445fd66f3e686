"""Routes ARI events to calls, starts a session per caller, reconciles after every connect.

Reconciliation (ARI sends nothing while disconnected, so this is how missed events are made up):
  - a call we know whose caller is no longer in the app is closed ("channel_gone");
  - a call we know whose caller is still there is resumed (its media never depended on ARI);
  - a channel or bridge in the app that we do not know and that was there before the socket
    opened is an orphan (from a crashed run, say): hung up / destroyed;
  - on the first connect, calls the store shows open for this server (a previous run that died)
    are closed ("orphaned").
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Coroutine
from datetime import UTC, datetime
from typing import Any

import structlog
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from ivr_server.store.audit_append import AuditEvent
from ivr_server.store.queries import open_call_ids
from ivr_server.store.writer import CallEnded, CallEvent
from ivr_server.telephony.admission import OVERLOAD_PROMPT_VARIABLE, Admission, overload_prompt
from ivr_server.telephony.agent_leg import AGENT_APP_ARG
from ivr_server.telephony.ari_connection import Snapshot
from ivr_server.telephony.ari_events import (
    ApplicationReplaced,
    AriEvent,
    ChannelDestroyed,
    ChannelDtmfReceived,
    ChannelHangupRequest,
    StasisEnd,
    StasisStart,
)
from ivr_server.telephony.ari_rest import best_effort
from ivr_server.telephony.session import STATUS_VARIABLE, CallDeps, CallSession

log = structlog.get_logger(__name__)


class CallManager:
    def __init__(self, deps: CallDeps, engine: AsyncEngine) -> None:
        self.deps = deps
        self.engine = engine
        self.admission = Admission(deps.settings, deps.metrics.load)
        self.sessions: dict[str, CallSession] = {}  # by call id
        self._by_channel: dict[str, CallSession] = {}  # caller and ExternalMedia channel ids
        self._tasks: set[asyncio.Task[object]] = set()
        self._tg: asyncio.TaskGroup | None = None
        self._stop = asyncio.Event()
        self.accepting = True
        self.reconciled = asyncio.Event()
        self.hurry = asyncio.Event()  # a second stop signal: do not wait for calls to finish

    async def run(self) -> None:
        """Owns every call's task; returns after ``shutdown`` once the calls are closed."""
        async with asyncio.TaskGroup() as tg:
            self._tg = tg
            await self._stop.wait()
        self._tg = None

    async def drain(self, timeout_s: float) -> None:
        """Stop taking calls (new ones go on in the dialplan) and let the calls in progress end
        on their own, for up to ``timeout_s`` or until ``hurry`` is set."""
        self.accepting = False
        if not self.sessions or timeout_s <= 0:
            return
        log.info("calls.draining", calls=len(self.sessions), timeout_s=timeout_s)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while self.sessions and not self.hurry.is_set():  # sessions leave from their own tasks
            if loop.time() >= deadline:
                log.warning("calls.drain_timeout", still_running=len(self.sessions), timeout_s=timeout_s)
                return
            await asyncio.sleep(0.05)
        log.info("calls.drained", hurried=self.hurry.is_set(), still_running=len(self.sessions))

    async def shutdown(self, timeout_s: float) -> None:
        """Stop taking calls, hand active callers back to the dialplan, wait for cleanup."""
        self.accepting = False
        for session in list(self.sessions.values()):
            session.shutdown()
        if self._tasks:
            _, pending = await asyncio.wait(set(self._tasks), timeout=timeout_s)
            for task in pending:
                task.cancel()
            if pending:
                log.error("calls.shutdown_timeout", still_running=len(pending))
                await asyncio.wait(pending, timeout=self.deps.settings.cleanup_timeout_s)
        self._stop.set()

    # --- EventHandler ---------------------------------------------------------------------
    def on_event(self, event: AriEvent) -> None:
        if isinstance(event, StasisStart):
            self._on_stasis_start(event)
        elif isinstance(event, ChannelDtmfReceived):
            session = self._by_channel.get(event.channel.id)
            if session is not None:
                session.on_channel_dtmf(event.channel.id, event.digit, event.duration_ms)
        elif isinstance(event, (StasisEnd, ChannelDestroyed, ChannelHangupRequest)):
            self._on_channel_gone(event)
        elif isinstance(event, ApplicationReplaced):
            log.error(
                "ari.application_replaced",
                app=self.deps.settings.ari_app,
                hint="another client connected with the same IVR_ARI_APP",
            )

    def on_disconnected(self) -> None:
        self.reconciled.clear()
        for session in self.sessions.values():
            session.on_ari_lost()

    async def on_connected(self, before: Snapshot, first: bool) -> None:
        app = await self.deps.rest.application(self.deps.settings.ari_app)
        for session in list(self.sessions.values()):
            session.on_ari_restored(channel_present=session.channel.id in app.channel_ids)
        orphans = [c for c in app.channel_ids - set(self._by_channel) if c in before.channel_ids]
        for channel_id in orphans:
            log.warning("ari.orphan_channel_hangup", orphan_channel=channel_id)
            await best_effort(self.deps.rest.hangup(channel_id), "orphan_hangup")
        known_bridges = {b for s in self.sessions.values() for b in s.bridge_ids}
        prefix = f"{self.deps.settings.ari_app}/"
        for bridge_id, name in before.bridges.items():
            if name.startswith(prefix) and bridge_id not in known_bridges:
                log.warning("ari.orphan_bridge_destroy", bridge_id=bridge_id)
                await best_effort(self.deps.rest.destroy_bridge(bridge_id), "orphan_bridge")
        if first:  # later connects: every call this process started has a session
            await self._close_orphaned_records()
        log.info("ari.reconciled", first=first, calls=len(self.sessions), orphans=len(orphans))
        self.reconciled.set()

    # --- Internals ------------------------------------------------------------------------
    def _on_stasis_start(self, event: StasisStart) -> None:
        channel = event.channel
        known = self._by_channel.get(channel.id)
        if known is not None:
            known.on_channel_in_app(channel.id)  # its media leg, an agent it dialled (or a duplicate)
            return
        if channel.is_external_media or (event.args and event.args[0] == AGENT_APP_ARG):
            # an agent answering for a call that has ended meanwhile is hung up the same way
            log.warning("ari.orphan_media_channel", orphan_channel=channel.id, name=channel.name)
            self._spawn(best_effort(self.deps.rest.hangup(channel.id), "orphan_hangup"))
            return
        if not self.accepting or self._tg is None:
            self._decline(channel.id, "server_draining")
            return
        verdict = self.admission.verdict(len(self.sessions))
        if verdict.reason is not None:  # at once: no call is degraded to take another
            self._decline(channel.id, verdict.reason, verdict.why, verdict.load)
            return
        session = CallSession(self.deps, channel, event.args)
        session.claim = functools.partial(self._claim, session)
        self.sessions[session.call_id] = session
        self._by_channel[channel.id] = session
        self._by_channel[session.media_channel_id] = session
        self._spawn(self._run_session(session))

    def _claim(self, session: CallSession, channel_id: str) -> None:
        """A channel the session is about to create (an agent leg): its events go to it."""
        self._by_channel[channel_id] = session

    def _on_channel_gone(self, event: StasisEnd | ChannelDestroyed | ChannelHangupRequest) -> None:
        session = self._by_channel.get(event.channel.id)
        if session is None:
            return
        if isinstance(event, ChannelDestroyed):
            session.on_channel_gone(event.channel.id, event.type, event.cause, event.cause_txt)
        elif isinstance(event, ChannelHangupRequest):
            session.on_channel_gone(event.channel.id, event.type, event.cause)
        else:
            session.on_channel_gone(event.channel.id, event.type)

    async def _run_session(self, session: CallSession) -> None:
        self.deps.metrics.calls_active.inc()
        try:
            await session.run()
        except Exception:  # session.run handles its own failures; this is the last guard
            log.exception("call.session_crashed", call_id=session.call_id)
        finally:
            self.deps.metrics.calls_active.dec()
            self.sessions.pop(session.call_id, None)
            for channel_id in [c for c, owner in self._by_channel.items() if owner is session]:
                del self._by_channel[channel_id]

    def _decline(
        self, channel_id: str, reason: str, why: str = "", load: dict[str, float | None] | None = None
    ) -> None:
        """Back to the dialplan with IVR_STATUS=reason (ivr-fallback: a busy notice, a queue; for
        overload also IVR_OVERLOAD_PROMPT, the high-volume prompt to play first)."""
        calls = len(self.sessions)
        log.info("call.declined", reason=reason, why=why, caller_channel=channel_id, calls=calls, load=load)
        self.deps.metrics.calls_declined.labels(reason=reason).inc()
        self.deps.writer.submit(AuditEvent("call_declined", datetime.now(UTC), {"reason": reason, "why": why,
                                "channel_id": channel_id, "calls": calls, "load": load or {}}))  # fmt: skip
        rest = self.deps.rest
        prompt = overload_prompt(self.deps.settings) if reason == "overload" else ""

        async def hand_back() -> None:
            await rest.set_variable(channel_id, STATUS_VARIABLE, reason)
            if prompt:
                await rest.set_variable(channel_id, OVERLOAD_PROMPT_VARIABLE, prompt)
            await rest.continue_in_dialplan(channel_id)

        if self._tg is not None:
            self._spawn(best_effort(hand_back(), "decline"))

    def _spawn(self, work: Coroutine[Any, Any, object]) -> None:
        assert self._tg is not None, "call manager is not running"
        task = self._tg.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _close_orphaned_records(self) -> None:
        try:
            stale = await open_call_ids(self.engine, self.deps.server_id)
        except (SQLAlchemyError, OSError) as err:
            log.error("store.reconcile_failed", error=str(err)[:300])
            return
        now = datetime.now(UTC)
        for call_id in stale:
            log.warning("call.orphaned_record_closed", orphan_call_id=call_id)
            # seq far above anything a live call writes, so it never collides with one.
            self.deps.writer.submit(CallEvent(call_id, 1_000_000, now, "call_ended", {"reason": "orphaned"}))
            self.deps.writer.submit(CallEnded(call_id, now, "orphaned"))
            self.deps.writer.submit(AuditEvent("call_ended", now, {"reason": "orphaned"}, call_id))
