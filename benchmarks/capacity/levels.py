"""One level of the ramp: a fresh ``ivr-server run`` sized for N calls, N SIPp callers of the
banking script placed evenly over a few seconds, the callers' side captured on loopback (their
SIP and RTP), the server read just before the first call and after the last (its metrics page,
/proc), its memory sampled while the calls run. The sandbox's lock is held for the level only;
the capture is read after it is given up."""

from __future__ import annotations

import asyncio
import os
import struct
import time
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from benchmarks.capacity.measure import (
    call_rows,
    histogram,
    histogram_delta,
    latency_summary,
    machine_ticks,
    pss_kib,
    sipp_counts,
)
from benchmarks.media.probe import PAGE_KIB
from benchmarks.ops.measure import CLK_TCK, parse_stat, prometheus_value, read_stats, tree_of, tree_ticks
from benchmarks.ops.runs import BANKING, Bench
from benchmarks.ops.runs import SCRIPT as OPS_SCRIPT
from benchmarks.ops.server import Arm, Server, running
from ivr_server.ops.capture import Datagram, PacketCapture, read_pcap
from ivr_server.ops.sipp import SippCall, scenario
from tests.support.tasks import alongside

# The metrics listener on (its page is read), console and tracing off (bench-ops measures them).
CAPACITY = Arm("capacity", metrics=True, console=False, tracing=False)
GOODBYE_MS = 20_000  # as bench-ops: the goodbye, and room for a flow that fell behind the script
SETTLE_S = 2.0  # after start-up, before the first call: its last work done
SAMPLE_S = 1.0  # memory sampling period
ENDED_WAIT_S = 60.0  # for the server to end its calls once SIPp is done
LOOP_LAG = "ivr_event_loop_lag_seconds"
LATENCIES = {  # the server's own view of a reply's parts
    "asr_final": "ivr_asr_final_latency_seconds",
    "intent": "ivr_intent_latency_seconds",
    "tts_first_audio": "ivr_tts_first_audio_seconds",
    "reply": "ivr_reply_latency_seconds",
}
COUNTERS = {
    "declined": "ivr_calls_declined_total",
    "rtp_lost_in": "ivr_rtp_packets_lost_total",
    "rtp_sent": "ivr_rtp_packets_sent_total",
    "send_jitter_over_2ms": "ivr_rtp_send_jitter_over_2ms_total",
    "frames_dropped": "ivr_audio_frames_dropped_total",
}


# The ops callers' script with the card's digits keyed, as the account number is: a digit string
# said aloud ends its turn only after digits_end_silence_ms (800 ms) of silence, by design, which
# would put every level's reply p95 above 700 ms whatever the load.
SCRIPT = [{"keys": "4421"} if t.get("say", "").startswith("four, four") else t for t in OPS_SCRIPT]
assert SCRIPT != OPS_SCRIPT, "the ops script no longer says the card digits: update SCRIPT"


def level_settings(calls: int) -> dict[str, str]:
    """The server's settings for a level: admission by count only (by load it would decline the
    very ramp it is measured on), room for every call, a recognizer built in advance for each."""
    return {"IVR_ADMISSION": "count", "IVR_MAX_CALLS": str(2 * calls), "IVR_ASR_WARM_STREAMS": str(calls)}


@dataclass
class CapacityCall(SippCall):
    """SIPp with options the shared caller does not set (``extra``, before the target)."""

    extra: tuple[str, ...] = ()

    def argv(self) -> list[str]:
        *head, target = super().argv()
        return [*head, *self.extra, target]


def callers(b: Bench, calls: int, spread_s: float, workdir: Path) -> CapacityCall:
    """``calls`` callers of the script in one SIPp, placed evenly over ``spread_s`` (-r calls
    per -rp period: their turns do not all fall at once) and then all up together; its
    statistics file (the calls it completed) in ``workdir``."""
    if spread_s <= 0:
        raise ValueError("the callers need a spread of more than 0 s")
    return CapacityCall(
        scenario(b.steps, workdir, bye_timeout_ms=GOODBYE_MS), service=BANKING, workdir=workdir,
        calls=calls, concurrent=calls, rate_per_s=calls,
        timeout_s=b.call_s + spread_s + GOODBYE_MS / 1000 + 30,
        extra=("-rp", str(round(spread_s * 1000)), "-trace_stat", "-stf", str(workdir / "sipp-stats.csv")),
    )  # fmt: skip


def asterisk_pid() -> int | None:
    """The sandbox Asterisk's main process, found in /proc (only its CPU time is read)."""
    named = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with suppress(OSError):
                if (entry / "comm").read_text().strip() == "asterisk":
                    named.add(int(entry.name))
    return min((s.pid for s in read_stats() if s.pid in named and s.ppid not in named), default=None)


def cpu_now(server: int, asterisk: int | None) -> dict[str, float]:
    """CPU seconds so far, read at one moment: the server's process tree (its recognizer workers
    too), its own process, its main thread (the event loop), Asterisk's tree, this bench's tree
    (SIPp, tcpdump and the server are its children), and the machine's busy and total time over
    all its cores."""
    stats = read_stats()
    own = next((s for s in stats if s.pid == server), None)
    loop = parse_stat(Path(f"/proc/{server}/task/{server}/stat").read_text())
    busy, total = machine_ticks(Path("/proc/stat").read_text())
    ticks = {
        "server_s": tree_ticks(stats, server),
        "main_s": own.utime + own.stime if own else 0,
        "loop_s": loop.utime + loop.stime,
        "bench_s": tree_ticks(stats, os.getpid()),
        "busy_s": busy,
        "total_s": total,
    }
    if asterisk:  # not found: no figure rather than 0
        ticks["asterisk_s"] = tree_ticks(stats, asterisk)
    return {k: v / CLK_TCK for k, v in ticks.items()}


def tree_memory_kib(root: int) -> int:
    """Memory of ``root``'s process tree now: PSS summed (RSS where smaps_rollup is unreadable)."""
    total = 0
    for s in tree_of(read_stats(), root):
        with suppress(OSError, ValueError):
            pss = pss_kib(Path(f"/proc/{s.pid}/smaps_rollup").read_text())
            total += (
                pss
                if pss is not None
                else int(Path(f"/proc/{s.pid}/statm").read_text().split()[1]) * PAGE_KIB
            )
    return total


@dataclass
class Reading:
    at: float
    metrics: str
    cpu: dict[str, float]


async def read_server(http: httpx.AsyncClient, server: Server, asterisk: int | None) -> Reading:
    page = await http.get(server.url("/metrics"))
    page.raise_for_status()
    return Reading(time.monotonic(), page.text, cpu_now(server.pid, asterisk))


async def _sample(pid: int, asterisk: int | None, peak_kib: list[int], cpu: list[dict[str, float]]) -> None:
    """Every SAMPLE_S: the server's memory (its peak kept) and the CPU readings (epoch time
    ``t``, to be matched with the capture's), until cancelled."""
    while True:
        peak_kib[0] = max(peak_kib[0], tree_memory_kib(pid))
        with suppress(OSError):  # the server gone: _place finds out
            cpu.append({"t": time.time(), **cpu_now(pid, asterisk)})
        await asyncio.sleep(SAMPLE_S)


async def run_sipp(sipp: SippCall) -> int | None:
    """SIPp's exit status; None when it outlived its own timeout and was killed."""
    try:
        return await sipp.run()
    except TimeoutError:
        return None


async def _place(server: Server, sipp: CapacityCall, pcap: Path, row: dict[str, Any]) -> None:
    """The calls, with the server read around them, into ``row``; a server that dies on the way
    is the level's ``server_error``."""
    asterisk = asterisk_pid()
    async with httpx.AsyncClient(timeout=10) as http:
        try:
            before = await read_server(http, server, asterisk)
            peak = [tree_memory_kib(server.pid)]
            idle = peak[0]
            samples: list[dict[str, float]] = []
            ports = f"udp and (port {sipp.sip_port} or port {sipp.media_port})"
            sampling = _sample(server.pid, asterisk, peak, samples)
            capture = PacketCapture(pcap, ports)
            async with capture, alongside(sampling):
                row["sipp_exit"] = await run_sipp(sipp)
                with suppress(TimeoutError):  # what it ended is counted from its log
                    await server.calls_ended(sipp.calls, ENDED_WAIT_S)
            row["capture_dropped"] = capture.dropped  # by tcpdump: not lost on the line
            after = await read_server(http, server, asterisk)
        except (RuntimeError, OSError, httpx.HTTPError) as err:
            row["server_error"] = f"{type(err).__name__}: {err}"[:300]
            return
    row["window_s"] = round(after.at - before.at, 1)
    row["cpu"] = {k: round(after.cpu[k] - v, 2) for k, v in before.cpu.items() if k in after.cpu}
    row["cpu_samples"] = [{k: round(v, 3) for k, v in x.items()} for x in samples]
    b, a = before.metrics, after.metrics
    row["metrics"] = {
        "loop_lag_buckets": histogram_delta(histogram(b, LOOP_LAG), histogram(a, LOOP_LAG)),
        **{k: (prometheus_value(a, n) or 0.0) - (prometheus_value(b, n) or 0.0) for k, n in COUNTERS.items()},
        "declined_by_reason": {
            reason: (prometheus_value(a, COUNTERS["declined"], {"reason": reason}) or 0.0)
            - (prometheus_value(b, COUNTERS["declined"], {"reason": reason}) or 0.0)
            for reason in ("busy", "overload")
        },
        "latency": {k: latency_summary(b, a, n) for k, n in LATENCIES.items()},
    }
    row["memory"] = {"mem_idle_mb": round(idle / 1024, 1), "mem_peak_mb": round(peak[0] / 1024, 1)}


async def run_level(
    b: Bench, calls: int, spread_s: float, settings: dict[str, str] | None = None
) -> dict[str, Any]:
    """One level: ``calls`` callers on a fresh server (``settings``: its IVR_ variables, by
    default ``level_settings``), and what was measured, raw (measure.summarize makes the
    level's figures of it)."""
    workdir = await b.rundir(f"{calls}-calls")
    sipp = callers(b, calls, spread_s, workdir)
    pcap = workdir / "callers.pcap"
    row: dict[str, Any] = {"calls": calls, "spread_s": spread_s, "server_error": None, "sipp_exit": None,
                           "window_s": None, "cpu": None, "metrics": None, "memory": None}  # fmt: skip
    async with b.turn():
        began = time.monotonic()
        env = settings if settings is not None else level_settings(calls)
        async with running(CAPACITY, workdir, b.bank_url, b.receiver.url, env) as server:
            row["start_s"] = round(time.monotonic() - began, 1)  # db upgrade, start, ARI and /readyz
            row["migrate_s"] = None if server.migrate_s is None else round(server.migrate_s, 2)
            row["ready_s"] = None if server.ready_s is None else round(server.ready_s, 2)
            await asyncio.sleep(SETTLE_S)
            await _place(server, sipp, pcap, row)
            row["ended"] = server.log.count("call.ended")
            row["clock_skips"] = server.log.count("media.clock_skipped")
            b.saw(server)
    row["sipp"], row["sipp_errors"] = None, ""
    with suppress(OSError, ValueError, KeyError):
        row["sipp"] = sipp_counts((workdir / "sipp-stats.csv").read_text())
    row["sipp_errors"] = sipp.errors()[-500:] if row["sipp_exit"] != 0 else ""
    datagrams: list[Datagram] = []
    with suppress(OSError, struct.error, KeyError):  # no capture, or one cut short
        datagrams = await asyncio.to_thread(read_pcap, pcap)
    row.update(await asyncio.to_thread(call_rows, datagrams, sipp.sip_port, sipp.media_port))
    return row
