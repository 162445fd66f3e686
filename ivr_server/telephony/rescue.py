"""Calls of a server that died, sent on by a live one.

A server killed mid-call (SIGKILL, a crash, its machine gone) leaves its callers in Asterisk
with nobody listening. Every server on one PostgreSQL beats in the store (store/heartbeat.py);
a live server that finds a peer on its Asterisk silent for IVR_RESCUE_AFTER_S claims each of
the peer's open calls and, while the caller is still there, removes what the dead server made
for the call (the ExternalMedia channel and the bridge, both named after the call) and continues
the caller in the dialplan at IVR_RESCUE_TARGET (ivr-server-lost: a word to the caller, then the
agents' queue) with IVR_STATUS=server_lost and what the store knows of the call.

A server judges others only while its own beats reach the store: after an outage of the
database every row is old, and no server is dead for that.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import structlog
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from ivr_server.errors import AriError
from ivr_server.observability.metrics import Metrics
from ivr_server.store.audit_append import AuditEvent
from ivr_server.store.heartbeat import OpenCall, beat, claim, forget, last_intent, open_calls, silent_peers
from ivr_server.store.writer import CallEvent, StoreWriter
from ivr_server.telephony.agent_leg import agent_leg_id, agent_media_owner
from ivr_server.telephony.ari_rest import AriRestClient, best_effort
from ivr_server.telephony.call_media import media_channel_id
from ivr_server.telephony.session import STATUS_VARIABLE

log = structlog.get_logger(__name__)

REASON = "server_lost"  # IVR_STATUS and the call's end reason
RESCUED_SEQ = 1_000_001  # above any seq a live call writes (and the orphan record's 1_000_000)
FORGET_TIMEOUT_S = 2.0


@dataclass(frozen=True)
class _Asterisk:
    channels: frozenset[str]
    bridges: dict[str, frozenset[str]]  # id -> channel ids


class Rescuer:
    def __init__(
        self,
        engine: AsyncEngine,
        rest: AriRestClient,
        writer: StoreWriter,
        metrics: Metrics,
        server_id: str,
        asterisk: str,
        after_s: float,
        target: tuple[str, str, int],
    ) -> None:
        self.engine, self.rest, self.writer, self.metrics = engine, rest, writer, metrics
        self.server_id, self.asterisk, self.after_s, self.target = server_id, asterisk, after_s, target
        self._healthy_since: float | None = None  # when this server's beats began to reach the store
        self._with_agent: set[str] = set()  # bridges of a dead server's caller and agent, watched

    async def run(self) -> None:
        """Beat, and send on the calls of silent peers, until cancelled; the row is deleted on
        the way out (a clean stop is not a death)."""
        loop = asyncio.get_running_loop()
        log.info("rescue.watching", after_s=self.after_s, target=",".join(map(str, self.target)))
        try:
            while True:
                if await self._beat():
                    self._healthy_since = self._healthy_since or loop.time()
                    if loop.time() - self._healthy_since >= 2 * self.after_s:
                        await self.rescue_silent_peers()
                else:
                    self._healthy_since = None
                if self._with_agent:
                    await self._end_half_calls()
                await asyncio.sleep(self.after_s / 3)
        finally:
            try:
                await asyncio.wait_for(forget(self.engine, self.server_id), FORGET_TIMEOUT_S)
            except (SQLAlchemyError, OSError, TimeoutError) as err:
                log.warning("rescue.forget_failed", error=str(err)[:200])  # its row ages: peers check

    async def _beat(self) -> bool:
        try:
            await beat(self.engine, self.server_id, self.asterisk)
        except (SQLAlchemyError, OSError) as err:
            if self._healthy_since is not None:
                log.warning("rescue.heartbeat_failed", error=str(err)[:200])
            return False
        return True

    async def rescue_silent_peers(self) -> int:
        """Send on every open call of a peer silent past ``after_s``; how many were claimed."""
        try:
            peers = await silent_peers(self.engine, self.server_id, self.asterisk, self.after_s)
            lost = await open_calls(self.engine, peers)
        except (SQLAlchemyError, OSError) as err:
            log.warning("rescue.lookup_failed", error=str(err)[:200])
            return 0
        claimed = 0
        asterisk: _Asterisk | None = None
        for call in lost:
            try:
                if not await claim(self.engine, call.id, REASON):
                    continue  # another server took it, or it ended meanwhile
            except (SQLAlchemyError, OSError) as err:
                log.warning("rescue.claim_failed", lost_call_id=call.id, error=str(err)[:200])
                continue
            claimed += 1
            asterisk = await self._send_on(call, asterisk)
        return claimed

    async def _send_on(self, call: OpenCall, asterisk: _Asterisk | None) -> _Asterisk | None:
        """Send one claimed call on; ``asterisk``: the channels and bridges read for an earlier
        call of this pass (read once per pass, not per call). Returns what it read."""
        started = asyncio.get_running_loop().time()
        outcome, detail = "failed", ""
        try:
            if asterisk is None:
                asterisk = _Asterisk(await self.rest.channel_ids(), await self.rest.bridge_members())
            outcome = await self._continue(call, asterisk)
        except (AriError, OSError) as err:
            detail = str(err)[:200]
        took_ms = round((asyncio.get_running_loop().time() - started) * 1000)
        payload: dict[str, Any] = {"reason": REASON, "by": self.server_id, "lost_server": call.server_id,
                                   "outcome": outcome, "took_ms": took_ms}  # fmt: skip
        if outcome == "continued":
            payload["to"] = list(self.target)
        if detail:
            payload["error"] = detail
        now = datetime.now(UTC)
        self.writer.submit(CallEvent(call.id, RESCUED_SEQ, now, "call_ended", payload))
        self.writer.submit(AuditEvent("call_rescued", now, {**payload, "flow": call.flow}, call.id))
        self.metrics.calls_rescued.labels(outcome=outcome).inc()
        level = log.error if outcome == "failed" else log.warning
        level("call.rescued", lost_call_id=call.id, lost_server=call.server_id, outcome=outcome,
              took_ms=took_ms, error=detail or None)  # fmt: skip
        return asterisk

    async def _continue(self, call: OpenCall, asterisk: _Asterisk) -> str:
        """The caller on to the dialplan target, with the context; what happened."""
        if call.channel_id not in asterisk.channels:
            return "caller_gone"
        leg, agent_media = agent_leg_id(call.id), agent_media_owner(call.id)
        medias = (media_channel_id(call.id), media_channel_id(agent_media))
        if leg in asterisk.bridges.get(call.id, frozenset()):
            for channel in medias:  # out of the bridge already
                await best_effort(self.rest.hangup(channel), "rescue_hangup")
            self._with_agent.add(call.id)  # they keep talking; when one hangs up, so does the other
            return "with_agent"
        intent = await _intent(self.engine, call.id)
        variables = {
            STATUS_VARIABLE: REASON,
            "IVR_SESSION_ID": call.id,
            "IVR_FLOW": call.flow,
            "IVR_INTENT": intent or "",
            "IVR_SUMMARY": f"The IVR server on this call stopped; the caller was in {call.flow}"
            + (f", about {intent.replace('_', ' ')}." if intent else "."),
        }
        for name, value in variables.items():
            await self.rest.set_variable(call.channel_id, name, value)
        # What the dead server made for the call: its media, and an agent leg still ringing or
        # hearing the whisper (which would otherwise enter an application nobody serves).
        for channel in (*medias, leg):
            await best_effort(self.rest.hangup(channel), "rescue_hangup")
        for bridge in (call.id, agent_media):
            await best_effort(self.rest.destroy_bridge(bridge), "rescue_bridge_destroy")
        context, extension, priority = self.target
        await self.rest.continue_in_dialplan(call.channel_id, context, extension, priority)
        return "continued"

    async def _end_half_calls(self) -> None:
        """A dead server's caller and agent talk in its bridge; nobody serves its application, so
        once one of them hangs up this server hangs up the other and removes the bridge."""
        try:
            members = await self.rest.bridge_members()
        except (AriError, OSError) as err:
            log.warning("rescue.bridges_unread", error=str(err)[:200])
            return
        for bridge in list(self._with_agent):
            left = members.get(bridge, frozenset())
            if len(left) >= 2:
                continue
            self._with_agent.discard(bridge)
            for channel in left:
                await best_effort(self.rest.hangup(channel), "rescue_hangup")
            await best_effort(self.rest.destroy_bridge(bridge), "rescue_bridge_destroy")
            log.info("rescue.agent_call_ended", lost_call_id=bridge, hung_up=sorted(left))


async def _intent(engine: AsyncEngine, call_id: str) -> str | None:
    try:
        return await last_intent(engine, call_id)
    except (SQLAlchemyError, OSError):
        return None  # the caller goes on without it
