"""The three runners, each one run: a fresh server, real SIPp calls through the sandbox Asterisk
(holding its lock, given up between runs), the figures of that run. Every caller plays the same
banking script (a balance, recent transactions, a lost card blocked, goodbye: about a minute),
its pauses timed to what the line says before each turn."""

from __future__ import annotations

import asyncio
import base64
import http.client
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from benchmarks.ab.runner import sandbox_turn
from benchmarks.flow_comparison import audio_ms, caller_steps, heard_before_each_turn
from benchmarks.ops.measure import (
    cpu_per_call_s,
    cpu_s,
    prometheus_value,
    utterance_delays_ms,
)
from benchmarks.ops.server import (
    SUPERVISOR,
    WITH,
    Arm,
    OtlpReceiver,
    Server,
    operated,
    running,
    until,
)
from ivr_server.tools.demo_bank import serve
from tests.support.console import LOADED, Tab, chromium, first_call
from tests.support.sipp import SippCall, Step, scenario

BANKING = "400"
SCRIPT = [
    {"say": "What's my balance?"},
    {"keys": "12345678"},
    {"say": "What are my recent transactions?"},
    {"say": "I lost my card."},
    {"say": "four, four, two, one."},
    {"say": "yes."},
    {"say": "No thanks, that's all."},
]
HEALTH_PATHS = ("/healthz", "/readyz")
TAIL_S = 6.0  # after the last call: its store writes, and the traces' last batch (sent every 5 s)

# Installed in the console page before its own script: each transcript turn the page receives,
# when its handler has added it to the page, and the next frame after (what the operator sees).
WATCH_TURNS = """(() => {
  window.__turns = [];
  const add = EventSource.prototype.addEventListener;
  EventSource.prototype.addEventListener = function (type, listener, options) {
    if (type !== 'turn') return add.call(this, type, listener, options);
    return add.call(this, type, (e) => {
      listener.call(this, e);
      const t = JSON.parse(e.data);
      const r = {seq: t.seq, role: t.role, outcome: t.outcome, recognized: t.at,
                 appended: Date.now() / 1000, shown: null};
      window.__turns.push(r);
      requestAnimationFrame(() => { r.shown = Date.now() / 1000; });
    }, options);
  };
})();"""


@dataclass
class Bench:
    """What every run shares: the demo bank, the OTLP receiver, the callers' steps (their WAVs
    in ``workdir``), and how long runs waited for the sandbox's lock."""

    workdir: Path
    bank_url: str
    receiver: OtlpReceiver
    steps: list[Step]
    call_s: float  # the script's length: what the caller says and waits for
    runs: int = 0
    lock_wait_s: float = 0.0
    asr: str = ""  # the recognizer the servers picked

    async def rundir(self, name: str) -> Path:
        self.runs += 1
        path = self.workdir / f"{self.runs:02d}-{name.replace(' ', '-')}"
        await asyncio.to_thread(path.mkdir, parents=True)
        return path

    def caller(self, calldir: Path, n: int) -> SippCall:
        """``n`` concurrent callers of the script (one SIPp), the line hanging up after goodbye."""
        goodbye_ms = 20_000  # the goodbye, and room for a flow that fell behind the script
        return SippCall(scenario(self.steps, calldir, bye_timeout_ms=goodbye_ms), service=BANKING,
                        workdir=calldir, calls=n, concurrent=n, rate_per_s=10,
                        timeout_s=self.call_s + goodbye_ms / 1000 + 30)  # fmt: skip

    @asynccontextmanager
    async def turn(self) -> AsyncIterator[None]:
        """The sandbox's lock (its waiting time kept apart from the runs')."""
        began = time.monotonic()
        async with sandbox_turn():
            self.lock_wait_s += time.monotonic() - began
            yield

    def saw(self, server: Server) -> None:
        self.asr = server.log.asr or self.asr


@asynccontextmanager
async def bench(workdir: Path, script: list[dict[str, str]] = SCRIPT) -> AsyncIterator[Bench]:
    """The demo bank, the callers' steps (each pause what the line says before the turn, from the
    flow run in-process against the bank) and the OTLP receiver, for the runs' duration."""
    runner, port = await serve("127.0.0.1", 0)
    bank = f"http://127.0.0.1:{port}"
    try:
        heard = await heard_before_each_turn("banking", script, bank)
        steps = caller_steps(script, heard, workdir)
        call_s = sum(getattr(s, "ms", 0) for s in steps) / 1000 + sum(audio_ms(t) for t in heard[-1]) / 1000
        async with OtlpReceiver().serving() as receiver:
            yield Bench(workdir, bank, receiver, steps, call_s)
    finally:
        await runner.cleanup()


async def _metric(http: httpx.AsyncClient, server: Server, name: str) -> float | None:
    return prometheus_value((await http.get(server.url("/metrics"))).text, name)


async def _until_calls(http: httpx.AsyncClient, server: Server, n: int, timeout_s: float) -> None:
    async def up() -> bool:
        return (await _metric(http, server, "ivr_calls_active") or 0) >= n

    async with asyncio.timeout(timeout_s):
        await until(up, 0.2)


def _probe(port: int, n_each: int, gap_s: float, stop: threading.Event) -> dict[str, Any]:
    """Sequential GETs of /healthz and /readyz in turn, a new connection each (as a load balancer
    probes), ``gap_s`` apart, until ``n_each`` of each or ``stop``: their latencies (connect to
    the body read) and statuses."""
    took: dict[str, list[float]] = {p: [] for p in HEALTH_PATHS}
    statuses: dict[str, dict[int, int]] = {p: {} for p in HEALTH_PATHS}
    for _ in range(n_each):
        for path in HEALTH_PATHS:
            if stop.is_set():
                return {"took": took, "statuses": statuses}
            began = time.perf_counter()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            try:
                conn.request("GET", path)
                answer = conn.getresponse()
                answer.read()
                status = answer.status
            finally:
                conn.close()
            took[path].append((time.perf_counter() - began) * 1000)
            statuses[path][status] = statuses[path].get(status, 0) + 1
            time.sleep(gap_s)
    return {"took": took, "statuses": statuses}


async def health_run(b: Bench, calls: int, n_each: int, gap_s: float) -> dict[str, Any]:
    """Target 1: ``calls`` callers at once on a server with everything on; once all are in
    progress, /healthz and /readyz probed ``n_each`` times each while the calls stay up (the
    probing stops if the calls-in-progress gauge, read every 2 s, drops below ``calls``)."""
    calldir = await b.rundir("health")
    async with b.turn(), running(WITH, calldir, b.bank_url, b.receiver.url) as server:
        call = b.caller(calldir, calls)
        placed = asyncio.create_task(call.run())
        try:
            async with httpx.AsyncClient(timeout=5) as http:
                await _until_calls(http, server, calls, 30)
                before = await _health_counters(http, server)
                stop = threading.Event()
                probing = asyncio.create_task(
                    asyncio.to_thread(_probe, server.metrics_port, n_each, gap_s, stop)
                )
                gauge: list[float] = []
                while not probing.done():
                    gauge.append(await _metric(http, server, "ivr_calls_active") or 0)
                    if gauge[-1] < calls:
                        stop.set()
                    await asyncio.wait([probing], timeout=2)
                probe = await probing
                after = await _health_counters(http, server)
                gauge.append(await _metric(http, server, "ivr_calls_active") or 0)
            sipp_exit = await placed
        finally:
            placed.cancel()
            await asyncio.gather(placed, return_exceptions=True)
        await server.calls_ended(calls, 60)
        b.saw(server)
    window_s = after["at"] - before["at"]
    sent = after["ivr_rtp_packets_sent_total"] - before["ivr_rtp_packets_sent_total"]
    replies = after["ivr_reply_latency_seconds_count"] - before["ivr_reply_latency_seconds_count"]
    reply_s = after["ivr_reply_latency_seconds_sum"] - before["ivr_reply_latency_seconds_sum"]
    return {
        "calls": calls,
        "window_s": round(window_s, 1),
        "calls_in_progress_min": min(gauge),
        "calls_in_progress_max": max(gauge),
        "samples_ms": {p: [round(x, 3) for x in probe["took"][p]] for p in HEALTH_PATHS},
        "statuses": probe["statuses"],
        "reply_packets_per_call_s": round(sent / window_s / calls, 1),
        "replies": int(replies),
        "reply_latency_mean_ms": round(reply_s / replies * 1000) if replies else None,
        "frames_dropped": after["ivr_audio_frames_dropped_total"] - before["ivr_audio_frames_dropped_total"],
        "sipp_exit": sipp_exit,
        "ended": server.log.counts.get("call.ended", 0),
    }


async def _health_counters(http: httpx.AsyncClient, server: Server) -> dict[str, float]:
    text = (await http.get(server.url("/metrics"))).text
    names = ("ivr_rtp_packets_sent_total", "ivr_reply_latency_seconds_count",
             "ivr_reply_latency_seconds_sum", "ivr_audio_frames_dropped_total")  # fmt: skip
    return {"at": time.monotonic(), **{n: prometheus_value(text, n) or 0.0 for n in names}}


async def console_run(b: Bench, calls: int, loads: int) -> dict[str, Any]:
    """Target 2: ``calls`` callers at once on a server with everything on; a supervisor's console
    page in headless Chromium (no cache) loaded ``loads`` times while they are in progress (the
    page's own figure: navigation start to its data shown), then left open on the call it
    follows: each caller utterance, from recognized to shown on its transcript."""
    calldir = await b.rundir("console")
    auth = "Basic " + base64.b64encode(":".join(SUPERVISOR).encode()).decode()
    async with b.turn(), running(WITH, calldir, b.bank_url, b.receiver.url) as server:
        page = server.url("/console/")
        async with chromium(calldir / "chromium") as tab:
            await tab.call("Page.enable")  # needed for the script added to each new document
            await tab.call("Network.enable")
            await tab.call("Network.setCacheDisabled", cacheDisabled=True)
            await tab.call("Network.setExtraHTTPHeaders", headers={"Authorization": auth})
            await tab.call("Page.addScriptToEvaluateOnNewDocument", source=WATCH_TURNS)
            call = b.caller(calldir, calls)
            placed = asyncio.create_task(call.run())
            try:
                await first_call(server.url("/console"), SUPERVISOR)
                load_ms, wall_ms = [], []
                for _ in range(loads):
                    since = time.time()
                    shown_ms, began = await _load(tab, page)
                    load_ms.append(shown_ms)
                    wall_ms.append((time.monotonic() - began) * 1000)
                followed = await tab.evaluate("selected")
                sipp_exit = await placed
                records = await tab.evaluate("window.__turns")
            finally:
                placed.cancel()
                await asyncio.gather(placed, return_exceptions=True)
        await server.calls_ended(calls, 60)
        b.saw(server)
    delays = utterance_delays_ms(records or [], since)
    return {
        "calls": calls,
        "page_load_ms": load_ms,
        "page_load_wall_ms": [round(w) for w in wall_ms],
        "utterance_delays_ms": [round(d, 1) for d in delays],
        "followed_call": followed,
        "sipp_exit": sipp_exit,
        "ended": server.log.counts.get("call.ended", 0),
    }


async def _load(tab: Tab, url: str) -> tuple[float, float]:
    """Navigate to ``url`` (from a blank page) and wait until it shows its data: the page's own
    figure (navigation start to data shown, ms), and when the navigation was asked for."""
    shown: list[Any] = []

    async def blank() -> bool:
        return bool(await tab.evaluate("location.href") == "about:blank")

    async def loaded() -> bool:
        shown.append(await tab.evaluate(f"document.body && document.body.getAttribute('{LOADED}')"))
        return shown[-1] is not None

    await tab.call("Page.navigate", url="about:blank")
    async with asyncio.timeout(30):
        await until(blank, 0.02)
        began = time.monotonic()
        await tab.call("Page.navigate", url=url)
        await until(loaded, 0.02)
    return float(shown[-1]), began


async def cpu_run(b: Bench, arm: Arm, calls: int) -> dict[str, Any]:
    """Target 3, one run of ``arm``: ``calls`` callers at once, the server's CPU (its process
    tree: the recognizer's worker processes too) from just before the first call is placed to
    TAIL_S after the last has ended, per call; the operator at work throughout (an arm with
    the listener, console or tracing gets what operators would do with them)."""
    calldir = await b.rundir(f"cpu-{arm.name}")
    spans_before = b.receiver.counts()
    async with b.turn(), running(arm, calldir, b.bank_url, b.receiver.url) as server:
        async with operated(server) as operator:
            await asyncio.sleep(2)  # past start-up's last work
            began, (cpu_before, own_before) = time.monotonic(), cpu_s(server.pid)
            call = b.caller(calldir, calls)
            sipp_exit = await call.run()
            await server.calls_ended(calls, 60)
            await asyncio.sleep(TAIL_S)
            (cpu_after, own_after), window_s = cpu_s(server.pid), time.monotonic() - began
        ops = operator.counts()
        ended = server.log.counts.get("call.ended", 0)
        b.saw(server)
    spans = {k: v - spans_before[k] for k, v in b.receiver.counts().items()}
    return {
        "arm": arm.name,
        "calls": calls,
        "cpu_s": round(cpu_after - cpu_before, 2),
        "cpu_per_call_s": round(cpu_per_call_s(cpu_before, cpu_after, calls), 3),
        "main_cpu_per_call_s": round(cpu_per_call_s(own_before, own_after, calls), 3),
        "window_s": round(window_s, 1),
        "operator": ops,
        "otlp": spans,
        "sipp_exit": sipp_exit,
        "ended": ended,
    }
