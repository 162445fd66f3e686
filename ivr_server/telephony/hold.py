"""What a caller hears while an agent is rung and told about the call: a soft tune that never
leaves more than a moment of silence, and every ``announce_s`` seconds their place in line.
The tune is made here (no music file to license or install)."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
import structlog

from ivr_server.media.g711 import Pcm

if TYPE_CHECKING:
    from ivr_server.telephony.session import CallSession

log = structlog.get_logger(__name__)
NOTES_HZ = (523.25, 659.25, 783.99, 659.25, 587.33, 698.46, 880.0, 698.46)  # C E G E, D F A F
NOTE_S = 0.5
LEVEL = 0.12  # of full scale: about -21 dBFS, below the prompts


@functools.lru_cache(maxsize=4)
def tune(rate: int) -> Pcm:
    """Four seconds of a gentle arpeggio (a fundamental and a soft octave, each note faded in
    and out over 40 ms so the loop has no clicks), as 16-bit PCM at ``rate``."""
    n = int(NOTE_S * rate)
    t = np.arange(n) / rate
    fade = np.minimum(1.0, np.minimum(t, NOTE_S - t) / 0.04)
    notes = [(np.sin(2 * np.pi * f * t) + 0.3 * np.sin(4 * np.pi * f * t)) * fade for f in NOTES_HZ]
    wave = np.concatenate(notes) / 1.3 * LEVEL
    return (wave * 32767).astype(np.int16)


class HoldMusic:
    def __init__(self, call: CallSession, place: Callable[[], int], announce_s: int) -> None:
        self.call, self.place, self.announce_s = call, place, announce_s
        self._stopped = False

    async def run(self) -> None:
        sender, rate = self.call.media.sender, self.call.fmt.sample_rate
        if sender is None:
            return
        announce_at = time.monotonic() + self.announce_s
        while not self._stopped:
            if time.monotonic() >= announce_at and self.call.voice is not None:
                announce_at = time.monotonic() + self.announce_s
                text = f"Thank you for holding. You are number {self.place()} in line for the next agent."
                await self.call.voice.say(text, barge_in=False)
                continue
            playback = sender.play(tune(rate))
            await playback.done

    async def stop(self, task: asyncio.Future[None]) -> None:
        """Stop at once (mid-note): the caller is about to hear the agent or the flow again."""
        if not self._stopped:
            self._stopped = True
            if self.call.media.sender is not None:
                self.call.media.sender.stop()
        with contextlib.suppress(asyncio.CancelledError):
            try:
                await asyncio.wait_for(asyncio.shield(task), 2.0)
            except TimeoutError:
                task.cancel()
        if task.done() and not task.cancelled() and task.exception() is not None:
            log.error("hold.failed", error=str(task.exception())[:200])
