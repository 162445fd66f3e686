"""One call's media leg: a local RTP port, Asterisk's ExternalMedia channel and the bridge that
joins it to the caller, the receiver and the paced sender.

Kept apart from the call session (session.py), which decides what the call does: this module
changes when the way audio reaches Asterisk changes. Creation is shielded (a cancelled HTTP
request still creates the object in Asterisk, so cleanup waits for it and deletes it), and
release is best effort and idempotent.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, TypeVar

import structlog

from ivr_server.media.clock import MediaClock
from ivr_server.media.formats import MediaFormat
from ivr_server.media.g711 import Pcm
from ivr_server.media.receiver import RtpReceiver
from ivr_server.media.sender import RtpSender
from ivr_server.telephony.ari_rest import best_effort

if TYPE_CHECKING:
    from ivr_server.telephony.session import CallDeps

log = structlog.get_logger(__name__)
T = TypeVar("T")


def media_channel_id(owner_id: str) -> str:
    """The ExternalMedia channel's id of a call (or agent leg) ``owner_id``; its bridge's is the
    owner's own (rescue.py finds what a dead server made by these names)."""
    return f"{owner_id}-media"


class CallMedia:
    def __init__(
        self, deps: CallDeps, call_id: str, fmt: MediaFormat, on_audio: Callable[[Pcm], None]
    ) -> None:
        self.deps, self.call_id, self.fmt, self.on_audio = deps, call_id, fmt, on_audio
        self.channel_id = media_channel_id(call_id)  # the ExternalMedia channel in Asterisk
        self.bridge_id = call_id
        self.in_app = asyncio.Event()  # the ExternalMedia channel's StasisStart arrived
        self.gone = False  # Asterisk reported the ExternalMedia channel gone
        self.receiver: RtpReceiver | None = None
        self.sender: RtpSender | None = None
        self.port: int | None = None
        self._transport: asyncio.DatagramTransport | None = None
        self._bridge_created = False
        self._channel_created = False
        self._creating: set[asyncio.Future[Any]] = set()  # create requests Asterisk may still act on

    async def open(self, log_fields: dict[str, str]) -> tuple[str, int]:
        """Port, receiver, bridge and ExternalMedia channel; then the sender once the channel
        is in the app. Returns Asterisk's RTP address for the call."""
        rest, s = self.deps.rest, self.deps.settings
        receiver = RtpReceiver(self.fmt, self.on_audio, self.deps.metrics)
        receiver.log = log.bind(**log_fields)
        self.port, transport, _ = await self.deps.ports.open(lambda: receiver)
        self.receiver, self._transport = receiver, transport
        self.deps.clock.add(receiver, MediaClock.AFTER_SEND)
        # Flags go up before the requests: a call cancelled mid-request still deletes what
        # Asterisk may have created (a 404 on delete is fine).
        self._bridge_created = True
        await self._create(rest.create_bridge(self.bridge_id, f"{s.ari_app}/{self.call_id}"))
        self._channel_created = True
        media = await self._create(
            rest.external_media(
                app=s.ari_app,
                channel_id=self.channel_id,
                external_host=f"{s.media_external_host}:{self.port}",
                media_format=self.fmt.name,
            )
        )
        receiver.expect_peer(media.local_host, media.local_port)
        # The channel enters Stasis asynchronously; bridging it before its StasisStart fails
        # ("Channel not in Stasis application"), which load makes likely.
        await self.in_app.wait()
        self.sender = RtpSender(
            self.fmt,
            transport,
            (media.local_host, media.local_port),
            self.deps.clock,
            self.deps.metrics,
            live_capacity=s.media_outbox_frames,
        )
        self.sender.start()
        return media.local_host, media.local_port

    async def join(self, caller_channel_id: str) -> None:
        await self.deps.rest.add_to_bridge(self.bridge_id, [caller_channel_id, self.channel_id])

    def close(self) -> dict[str, Any]:
        """Stop sending and receiving; the leg's RTP statistics (empty if it never opened)."""
        stats: dict[str, Any] = {}
        if self.sender is not None:
            self.sender.close()
            stats["tx"] = {
                "packets": self.sender.stats.packets,
                "live_dropped": self.sender.stats.live_dropped,
                "jitter": self.sender.stats.jitter.snapshot(),
                "slot_offset": self.sender.stats.slot_offset.snapshot(),
            }
        if self.receiver is not None:
            self.deps.clock.remove(self.receiver)
            self.receiver.flush_metrics()
            stats["rx"] = {**self.receiver.stats.snapshot(), "rejected": dict(self.receiver.rejected)}
        return stats

    async def settle(self) -> None:
        """Wait for create requests still in flight, so what they create can be deleted."""
        if self._creating:
            await asyncio.wait(set(self._creating))

    async def release(self) -> None:
        """Delete the ExternalMedia channel and the bridge from Asterisk (best effort)."""
        rest = self.deps.rest
        if self._channel_created and not self.gone:
            await best_effort(rest.hangup(self.channel_id), "media_hangup")
        if self._bridge_created:
            await best_effort(rest.destroy_bridge(self.bridge_id), "bridge_destroy")

    def release_port(self) -> None:
        if self.port is not None and self._transport is not None:
            self.deps.ports.release(self.port, self._transport)
            self.port = None

    async def _create(self, request: Coroutine[Any, Any, T]) -> T:
        """Run a create request to its end even if the call is cancelled meanwhile."""
        task = asyncio.ensure_future(request)
        self._creating.add(task)
        task.add_done_callback(self._creating.discard)
        return await asyncio.shield(task)
