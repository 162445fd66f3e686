"""The SIPp caller the tests, probe and benches share, when it is cut off."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import pytest

from ivr_server.ops.sipp import SIPP_MEDIA_SPAN, Pause, SippCall, free_media_ports, scenario


async def test_a_caller_cut_off_before_it_wrote_anything_has_empty_errors(tmp_path: Path) -> None:
    """SIPp cancelled while it still waits for an answer (nobody listens on the target): it is
    killed and reaped, and asking for its errors gives text, not an AttributeError."""
    call = SippCall(scenario([Pause(100)], tmp_path), service="400", workdir=tmp_path, target="127.0.0.1:9")
    running = asyncio.create_task(call.run())
    await asyncio.sleep(0.5)
    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await running
    assert isinstance(call.errors(), str) and call.returncode is None


def test_the_media_ports_are_a_free_block_clear_of_the_sip_port(tmp_path: Path) -> None:
    """SIPp binds four UDP ports from -mp (audio and video, each with RTCP): a block with one
    of them taken, or overlapping the call's own SIP port, is never handed out."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))
        busy = taken.getsockname()[1]
        for _ in range(50):
            first = free_media_ports(avoid=busy)
            block = range(first, first + SIPP_MEDIA_SPAN)
            assert first % 2 == 0 and busy not in block
            for port in block:
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
                    probe.bind(("127.0.0.1", port))
    call = SippCall(scenario([Pause(100)], tmp_path), service="400", workdir=tmp_path)
    assert call.sip_port not in range(call.media_port, call.media_port + SIPP_MEDIA_SPAN)
