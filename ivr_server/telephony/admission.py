"""Whether a new call is taken: by measured headroom, not only by a fixed count.

A call is refused while the server is already at a limit a caller would feel: the event loop
lagging (``admit_loop_lag_ms``), the recognizer's answers late (``admit_asr_final_ms``), the
machine's CPU near full (``admit_cpu``), or more calls arriving within a second than
``admit_per_s`` (load shows only once a call is talking, so a burst is paced: the "calls per
second" limit of a PBX trunk). ``max_calls``, when set, stays a hard cap. The first call is
always taken: with no call in progress there is nobody to protect, and a refusing server with
nothing to do would never measure its way out. A refused caller goes back to the dialplan with
IVR_STATUS (busy: the cap; overload: the measured limits), which plays the high-volume prompt and
sends the call to the overflow the admin configured (asterisk_conf/extensions.conf).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from ivr_server.config.settings import Settings
from ivr_server.observability.load import Load, LoadMeter

OVERLOAD_PROMPT_VARIABLE = "IVR_OVERLOAD_PROMPT"
OVERLOAD_PROMPT = "high_volume"  # its text: prompts/prompts.toml
OVERLOAD_PROMPT_PATH = f"/prompts/{OVERLOAD_PROMPT}.wav"  # served by the metrics listener


@dataclass(frozen=True)
class Verdict:
    reason: str | None  # None: taken; "busy" (max_calls), "overload" (a measured limit)
    why: str = ""  # which limit, with the figure: "cpu 0.96 > 0.90"
    load: dict[str, float | None] = field(default_factory=dict)


class Admission:
    def __init__(self, settings: Settings, meter: LoadMeter, clock: Callable[[], float] = time.monotonic):
        self._s = settings
        self._meter = meter
        self._clock = clock
        self._taken: deque[float] = deque()

    def verdict(self, active: int) -> Verdict:
        """The decision on a new call with ``active`` calls in progress; a call taken is counted
        for the rate limit."""
        s = self._s
        now = self._clock()
        while self._taken and self._taken[0] <= now - 1.0:  # the last second's calls only
            self._taken.popleft()
        load = self._meter.now()
        figures = load.figures()
        if s.max_calls and active >= s.max_calls:
            return Verdict("busy", f"{active} calls >= max_calls {s.max_calls}", figures)
        if s.admission == "load" and active > 0:
            why = self._over(load, active)
            if why:
                return Verdict("overload", why, figures)
        self._taken.append(now)
        return Verdict(None, "", figures)

    def _over(self, load: Load, active: int) -> str:
        s = self._s
        if s.admit_per_s and len(self._taken) >= s.admit_per_s:
            return f"{len(self._taken)} calls taken in the last second >= admit_per_s {s.admit_per_s}"
        if load.loop_lag_ms is not None and load.loop_lag_ms > s.admit_loop_lag_ms:
            return f"event-loop lag {load.loop_lag_ms:.0f} ms > {s.admit_loop_lag_ms:g} ms"
        if load.asr_final_ms is not None and load.asr_final_ms > s.admit_asr_final_ms:
            return f"recognition final {load.asr_final_ms:.0f} ms > {s.admit_asr_final_ms:g} ms"
        if load.cpu is not None and load.cpu > s.admit_cpu:
            return f"cpu {load.cpu:.2f} > {s.admit_cpu:.2f} with {active} calls"
        return ""


def overload_prompt(settings: Settings) -> str:
    """What the dialplan plays to a call declined for load: the setting, or with ``auto`` the
    server's own prompt on its metrics listener (none when that does not listen). A listener on
    every address is reached at the address Asterisk sends media to (on another machine
    127.0.0.1 would be Asterisk's own)."""
    url = settings.overload_prompt_url
    if url != "auto":
        return url
    if not settings.metrics_port:
        return ""
    wildcard = settings.metrics_host in ("0.0.0.0", "::", "")
    host = settings.metrics_host if not wildcard else (settings.media_advertise_host or "127.0.0.1")
    host = f"[{host}]" if ":" in host else host
    return f"http://{host}:{settings.metrics_port}{OVERLOAD_PROMPT_PATH}"
