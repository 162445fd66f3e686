"""The ARI events socket and REST client against a scripted peer on loopback."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from pydantic import SecretStr

from ivr_server.config import Settings
from ivr_server.errors import AriAuthError, AriRequestError, AriUnavailable
from ivr_server.observability.metrics import Metrics
from ivr_server.telephony.ari_connection import AriConnection, Snapshot
from ivr_server.telephony.ari_events import AriEvent
from ivr_server.telephony.ari_rest import AriRestClient
from tests.support.fake_ari import FakeAri, wait_until

CHANNEL = {"id": "1.1", "name": "PJSIP/sipp-00000001", "caller": {"number": "100"}}


class Recorder:
    def __init__(self) -> None:
        self.events: list[AriEvent] = []
        self.connects: list[bool] = []
        self.disconnects = 0

    async def on_connected(self, before: Snapshot, first: bool) -> None:
        self.connects.append(first)

    def on_event(self, event: AriEvent) -> None:
        self.events.append(event)

    def on_disconnected(self) -> None:
        self.disconnects += 1


def make(url: str, **overrides: object) -> tuple[AriConnection, Recorder, Metrics]:
    settings = Settings(ari_url=url, **overrides)  # type: ignore[arg-type]
    rest = AriRestClient(
        url, settings.ari_username, settings.ari_password, connect_timeout_s=1, request_timeout_s=1
    )
    recorder, metrics = Recorder(), Metrics()
    return AriConnection(settings, rest, metrics, recorder), recorder, metrics


def ev(kind: str, **fields: object) -> str:
    return json.dumps({"type": kind, "application": "ivr-server", **fields})


async def test_bad_messages_are_counted_and_the_stream_goes_on() -> None:
    """Truncated, hostile (a 5000-digit integer, nesting 100,000 deep, not an object) and
    unknown-typed messages are logged and counted; the events around them arrive in order on
    the same connection."""
    script = [
        ev("StasisStart", channel=CHANNEL, args=["digits"]),
        ev("StasisEnd", channel=CHANNEL)[:30],
        ev("ChannelDestroyed", channel=CHANNEL)[:-1] + ', "cause": ' + "9" * 5000 + "}",
        "[" * 100_000 + "]" * 100_000,
        '["StasisEnd"]',
        ev("ChannelTeleported", channel=CHANNEL),
        ev("ChannelDtmfReceived", channel=CHANNEL, digit="5", duration_ms=100),
        ev("StasisEnd", channel=CHANNEL),
    ]
    async with FakeAri(script) as peer:
        connection, recorder, metrics = make(peer.url)
        task = asyncio.create_task(connection.run())
        try:
            await wait_until(lambda: len(recorder.events) == 3)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await connection.rest.aclose()
    assert [e.type for e in recorder.events] == ["StasisStart", "ChannelDtmfReceived", "StasisEnd"]
    value = metrics.registry.get_sample_value
    assert value("ivr_ari_events_malformed_total") == 4
    assert value("ivr_ari_events_unknown_total", {"type": "ChannelTeleported"}) == 1
    assert value("ivr_ari_events_total", {"type": "unknown"}) == 1
    assert recorder.connects == [True] and len(peer.connected_at) == 1


async def test_a_flapping_socket_never_becomes_a_tight_loop() -> None:
    """A peer that accepts and at once closes the socket is retried with growing waits."""
    async with FakeAri(close_after_send=True) as peer:
        connection, recorder, _ = make(peer.url, ari_reconnect_initial_s=0.05, ari_reconnect_max_s=0.4)
        task = asyncio.create_task(connection.run())
        await asyncio.sleep(2.0)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await connection.rest.aclose()
    times = peer.connected_at
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    assert 4 <= len(times) <= 12, f"{len(times)} connections in 2 s"
    assert min(gaps) >= 0.05
    assert gaps[2] > gaps[0], f"waits do not grow: {gaps}"
    assert recorder.connects[0] is True and not any(recorder.connects[1:])


async def test_refused_credentials_stop_the_connection_at_once() -> None:
    async with FakeAri(events_status=401) as peer:
        connection, _, _ = make(peer.url)
        started = time.monotonic()
        with pytest.raises(AriAuthError, match="IVR_ARI_USERNAME"):
            await asyncio.wait_for(connection.run(), 5)
        await connection.rest.aclose()
    assert time.monotonic() - started < 1
    assert not peer.connected_at


async def test_ari_not_ready_yet_is_retried_until_it_is() -> None:
    """While Asterisk starts, HTTP answers 404 before res_ari loads: keep trying."""
    async with FakeAri(rest_status=404) as peer:
        connection, recorder, _ = make(peer.url, ari_reconnect_initial_s=0.05, ari_reconnect_max_s=0.2)
        task = asyncio.create_task(connection.run())
        await asyncio.sleep(0.5)
        assert not recorder.connects and len(peer.requests) >= 2
        peer.rest_status = 200
        try:
            await wait_until(lambda: recorder.connects == [True], 3)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await connection.rest.aclose()


async def test_rest_calls_time_out_against_a_silent_peer() -> None:
    done = asyncio.Event()

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await done.wait()  # accept, read nothing, answer nothing
        writer.close()
        await writer.wait_closed()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    rest = AriRestClient(
        f"http://127.0.0.1:{port}", "ivr", SecretStr("x"), connect_timeout_s=0.5, request_timeout_s=0.3
    )
    started = time.monotonic()
    try:
        with pytest.raises(AriUnavailable, match="timed out"):
            await rest.asterisk_info()
    finally:
        await rest.aclose()
        done.set()
        server.close()
        await server.wait_closed()
    assert time.monotonic() - started < 2


async def test_rest_errors_carry_status_and_asterisk_message() -> None:
    async with FakeAri(rest_status=500) as peer:
        rest = AriRestClient(peer.url, "ivr", SecretStr("x"), connect_timeout_s=1, request_timeout_s=1)
        try:
            with pytest.raises(AriRequestError, match="answered 500: Not found yet") as err:
                await rest.channel_ids()
        finally:
            await rest.aclose()
    assert err.value.status == 500


async def test_nothing_listening_is_unavailable() -> None:
    rest = AriRestClient(
        "http://127.0.0.1:1", "ivr", SecretStr("x"), connect_timeout_s=1, request_timeout_s=1
    )
    try:
        with pytest.raises(AriUnavailable):
            await rest.asterisk_info()
    finally:
        await rest.aclose()
