"""The SIPp caller the tests, probe and benches share, when it is cut off."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from ivr_server.ops.sipp import Pause, SippCall, scenario


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
