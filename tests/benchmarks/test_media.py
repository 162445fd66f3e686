"""The media benchmark's code (benchmarks/media) without Asterisk: the /proc readers on real
processes, the metrics scrape against the server's real /metrics endpoint, the bounded wait,
the store read-back of real RTP statistics, the medians, outputs and plot, and the platform
floor measured in its own process."""

from __future__ import annotations

import asyncio
import json
import mmap
import os
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from benchmarks.media import report
from benchmarks.media.floor import platform_floor
from benchmarks.media.probe import metric, proc_cpu_s, proc_rss_kib, wait_for
from benchmarks.media.run import media_totals, server_env
from ivr_server.media.sender import SendStats
from ivr_server.media.stats import RtpReceiveStats
from ivr_server.observability.metrics import Metrics, serve_metrics
from ivr_server.store.database import create_engine, upgrade
from ivr_server.store.writer import CallEvent, CallStarted, StoreWriter
from tests.support.sipp import free_port

T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def burn(cpu_s: float) -> None:
    end = time.process_time() + cpu_s
    while time.process_time() < end:
        pass


def test_proc_cpu_s_reads_this_process_cpu_time() -> None:
    """CPU time from /proc/PID/stat moves with the process's own CPU clock (10 ms ticks)."""
    c0, p0 = proc_cpu_s(os.getpid()), time.process_time()
    burn(0.3)
    c1, p1 = proc_cpu_s(os.getpid()), time.process_time()
    assert c1 - c0 == pytest.approx(p1 - p0, abs=0.05)


def test_proc_cpu_s_survives_a_command_name_with_spaces_and_parentheses() -> None:
    """Fields are counted after the command name's last parenthesis, so a process named
    ``a) b (c`` still reads as the CPU it used."""
    code = (
        "import ctypes, sys, time\n"
        "ctypes.CDLL(None).prctl(15, b'a) b (c', 0, 0, 0)\n"
        "end = time.process_time() + 0.3\n"
        "while time.process_time() < end: pass\n"
        "print(flush=True); time.sleep(20)\n"
    )
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
    try:
        assert child.stdout is not None and child.stdout.readline() == b"\n"
        assert Path(f"/proc/{child.pid}/comm").read_text().strip() == "a) b (c"
        assert 0.25 <= proc_cpu_s(child.pid) <= 2.0
    finally:
        child.kill()
        child.wait()
        assert child.stdout is not None
        child.stdout.close()


def test_proc_rss_kib_grows_with_touched_memory() -> None:
    """RSS from /proc/PID/statm agrees with the kernel's VmRSS and grows by the memory touched."""
    before = proc_rss_kib(os.getpid())
    # A fresh anonymous mapping, every page written: memory the allocator freed earlier in the
    # process (and still resident) cannot serve it, as it could a numpy array.
    block = mmap.mmap(-1, 64 * 1024 * 1024)
    for offset in range(0, len(block), mmap.PAGESIZE):
        block[offset] = 1
    after = proc_rss_kib(os.getpid())
    status = Path("/proc/self/status").read_text()
    vm_rss = int(next(line for line in status.splitlines() if line.startswith("VmRSS:")).split()[1])
    assert after - before >= 60 * 1024
    assert after == pytest.approx(vm_rss, abs=2048)
    block.close()


def test_metric_reads_one_value_from_the_servers_metrics_page() -> None:
    """metric() finds a gauge and a labelled counter on the server's real /metrics page; a name
    that is only a prefix of others, or absent, reads 0."""
    metrics = Metrics()
    port = free_port(kind=socket.SOCK_STREAM)
    server = serve_metrics(metrics, "127.0.0.1", port)
    try:
        metrics.calls_active.set(3)
        metrics.calls_ended.labels(end_reason="hangup").inc(2)
        assert metric(port, "ivr_calls_active") == 3.0
        assert metric(port, "ivr_calls_ended_total") == 2.0
        assert metric(port, "ivr_calls") == 0.0
        assert metric(port, "ivr_no_such_metric") == 0.0
    finally:
        server.shutdown()
        server.server_close()


async def test_wait_for_returns_once_the_condition_holds_through_errors() -> None:
    """OSError from the predicate (server not up yet) counts as not yet; the wait ends as soon
    as the predicate holds."""
    calls = []

    def ready() -> bool:
        calls.append(1)
        if len(calls) < 3:
            raise ConnectionRefusedError
        return len(calls) >= 4

    t0 = time.monotonic()
    await wait_for(ready, 5, "readiness")
    assert len(calls) == 4 and time.monotonic() - t0 < 1


async def test_wait_for_gives_up_after_its_timeout_naming_what() -> None:
    """A condition that never holds raises TimeoutError saying what was awaited, after the timeout."""
    t0 = time.monotonic()
    with pytest.raises(TimeoutError, match="timed out waiting for the moon"):
        await wait_for(lambda: False, 0.3, "the moon")
    assert 0.3 <= time.monotonic() - t0 < 1.5


def test_server_env_replaces_the_callers_ivr_settings() -> None:
    """The benchmark server keeps the caller's environment but none of its IVR_ settings."""
    env = server_env(
        {"PATH": "/bin", "IVR_FLOWS_DIR": "/elsewhere", "IVR_LOG_LEVEL": "debug"}, "sqlite://x", 9999
    )
    assert env == {
        "PATH": "/bin",
        "IVR_DATABASE_URL": "sqlite://x",
        "IVR_METRICS_PORT": "9999",
        "IVR_LOG_LEVEL": "warning",
        "IVR_MEDIA_PORT_MIN": "42000",
        "IVR_MEDIA_PORT_MAX": "42999",
    }


def media_stats(jitter_ms: list[float], offset_ms: list[float], missing: set[int]) -> dict[str, Any]:
    """A call's media_stats payload as the call records it, from the real statistics classes."""
    tx = SendStats(packets=len(jitter_ms))
    for ms in jitter_ms:
        tx.jitter.add(ms)
    for ms in offset_ms:
        tx.slot_offset.add(ms)
    rx = RtpReceiveStats(8000)
    for seq in (s for s in range(100) if s not in missing):
        rx.update(seq, seq * 160, seq * 0.02)
    return {
        "tx": {
            "packets": tx.packets,
            "jitter": tx.jitter.snapshot(),
            "slot_offset": tx.slot_offset.snapshot(),
        },
        "rx": rx.snapshot(),
    }


async def test_media_totals_sum_packets_and_merge_histograms_over_calls(tmp_path: Path) -> None:
    """Packets are summed and the pacing histograms merged over every call's media_stats event
    (other events ignored); the store must hold exactly the expected number of calls."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'bench.sqlite3'}"
    await asyncio.to_thread(upgrade, url)
    engine = create_engine(url)
    writer = StoreWriter(engine, Metrics())
    task = asyncio.create_task(writer.run())
    payloads = {
        "c1": media_stats([0.05] * 90 + [1.55] * 10, [0.35] * 100, {50, 51}),
        "c2": media_stats([0.25] * 100, [0.45] * 100, set()),
    }
    for seq, (call_id, payload) in enumerate(payloads.items()):
        writer.submit(CallStarted(call_id, f"ch-{call_id}", None, None, "600", "echo", [], "bench", T0))
        writer.submit(CallEvent(call_id, 1, T0, "call_answered", {"n": seq}))
        writer.submit(CallEvent(call_id, 2, T0, "media_stats", payload))
    assert await writer.flush(10)
    task.cancel()
    await engine.dispose()
    totals = await media_totals(url, 2)
    assert totals == {
        "packets_received": 98 + 100,
        "packets_lost": 2,
        "packets_sent": 200,
        "jitter_p50_ms": 0.3,  # 90 in the 0.1 ms bin, 100 in the 0.3 ms bin: the 100th is there
        "jitter_p99_ms": 1.55,  # bin 1.6 ms, capped at the largest seen
        "jitter_max_ms": 1.55,
        "slot_offset_p50_ms": 0.4,
        "slot_offset_p99_ms": 0.45,
    }
    with pytest.raises(RuntimeError, match="expected 3 calls in the store, found 2"):
        await media_totals(url, 3)


def run_figures(calls: int, **figures: float) -> dict[str, Any]:
    base = {
        "packets_received": 694,
        "packets_lost": 0,
        "packets_sent": 708,
        "jitter_p50_ms": 0.1,
        "jitter_p99_ms": 0.3,
        "jitter_max_ms": 1.67,
        "slot_offset_p50_ms": 0.3,
        "slot_offset_p99_ms": 0.4,
        "cpu_per_call_pct": 3.49,
        "mem_per_call_kib": 416.0,
        "window_s": 8.02,
    }
    return {"calls": calls, **base, **figures}


def test_summarize_takes_the_median_of_each_figure_over_runs() -> None:
    """Each figure is the median over the runs, rounded to 3 decimals, with the call count and runs."""
    runs = [
        run_figures(10, cpu_per_call_pct=1.2345, jitter_p99_ms=0.7),
        run_figures(10, cpu_per_call_pct=1.11111, jitter_p99_ms=0.3),
        run_figures(10, cpu_per_call_pct=1.5, jitter_p99_ms=0.5, packets_lost=4),
    ]
    s = report.summarize(runs)
    assert list(s)[:2] == ["calls", "runs"] and (s["calls"], s["runs"]) == (10, 3)
    assert s["cpu_per_call_pct"] == 1.234 and s["jitter_p99_ms"] == 0.5 and s["packets_lost"] == 0
    assert report.summarize(runs[:2])["cpu_per_call_pct"] == 1.173  # even count: mean of the middle two


def test_console_table_has_a_row_per_concurrency() -> None:
    """The console table prints each concurrency's medians under aligned headers."""
    table = report.console_table([report.summarize([run_figures(1)]), report.summarize([run_figures(50)])])
    header, one, fifty = table.splitlines()
    assert header.split() == "calls received lost jit p50 jit p99 offs p99 cpu/call mem/call".split()
    assert one.split() == ["1", "694", "0", "0.10ms", "0.30ms", "0.40ms", "3.49%", "416KiB"]
    assert fifty.split()[0] == "50" and len(one) == len(fifty) == len(header)


def test_write_outputs_and_replot(tmp_path: Path) -> None:
    """media.json keeps the command, date, floor, medians and every run; media.md tabulates the
    medians and quotes the floor; media.png is drawn; --replot rebuilds the same page from the json."""
    raw = [run_figures(1), run_figures(10, cpu_per_call_pct=0.62, jitter_p99_ms=0.9)]
    summary = [report.summarize([r]) for r in raw]
    report.write_outputs(tmp_path, summary, raw, "1,10", 3.0, 1, 1.75, date="2026-11-24")
    saved = json.loads((tmp_path / "media.json").read_text())
    assert saved["meta"]["command"] == "scripts/bench-media --concurrency 1,10 --seconds 3 --runs 1"
    assert (saved["meta"]["date"], saved["meta"]["platform_floor_pct"]) == ("2026-11-24", 1.75)
    assert saved["summary"] == summary and saved["runs"] == raw
    md = (tmp_path / "media.md").read_text()
    assert "| 10 | 694 | 0 | 0.10 ms | 0.90 ms | 0.40 ms | 0.62 % | 416 KiB |" in md.splitlines()
    assert "takes 1.75 % of a core" in md and "Medians of 1 runs" in md
    assert (tmp_path / "media.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    (tmp_path / "media.md").unlink()
    (tmp_path / "media.png").unlink()
    report.replot(tmp_path)
    assert (tmp_path / "media.md").read_text() == md
    assert (tmp_path / "media.png").exists()


def test_platform_floor_measures_a_bare_loop_in_its_own_process() -> None:
    """The floor program runs as ``python -m benchmarks.media.floor`` with its packet feeder and
    reports a CPU percentage: above nothing, far below a core."""
    floor = platform_floor(1)
    assert 0 < floor < 50
