"""scripts/bench-ops's code (benchmarks.ops) apart from the real calls: the latency summaries,
/proc CPU ticks over a real process tree, the with/without overhead, the Prometheus reader, which
console turns count for the utterance delay, each arm's server environment as the server's own
settings read it, the OTLP receiver fed by the real OpenTelemetry exporter, the health probe
against a real listener, the report, and the committed report against its figures."""

from __future__ import annotations

import asyncio
import copy
import json
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from benchmarks.common import REPO
from benchmarks.ops.measure import (
    Stat,
    cpu_per_call_s,
    cpu_s,
    overhead_pct,
    paired_overheads_pct,
    parse_stat,
    prometheus_value,
    share_pct,
    summary_ms,
    tree_cpu_s,
    tree_ticks,
    utterance_delays_ms,
)
from benchmarks.ops.report import build, markdown, plot, replot
from benchmarks.ops.server import SUPERVISOR, WITH, WITHOUT, LogWatch, OtlpReceiver, server_env
from ivr_server.config import Settings
from ivr_server.console.auth import token_matches


def test_latency_summary_interpolates_percentiles() -> None:
    """p50 and p99 of 1..100 ms by linear interpolation (50.5, 99.01), the max; no samples: no
    figures rather than zeros."""
    assert summary_ms([float(x) for x in range(100, 0, -1)]) == {
        "n": 100, "p50_ms": 50.5, "p99_ms": 99.01, "max_ms": 100.0,
    }  # fmt: skip
    assert summary_ms([3.0, 1.0]) == {"n": 2, "p50_ms": 2.0, "p99_ms": 2.98, "max_ms": 3.0}
    assert summary_ms([]) == {"n": 0, "p50_ms": None, "p99_ms": None, "max_ms": None}


def _stat_line(pid: int, comm: str, ppid: int, utime: int, stime: int, cutime: int, cstime: int) -> str:
    fields = ["S", ppid, 1, 1, 0, -1, 4194560, 100, 0, 0, 0, utime, stime, cutime, cstime, 20, 0, 3, 0, 555]
    return f"{pid} ({comm}) " + " ".join(map(str, fields)) + "\n"


def test_stat_lines_are_read_after_the_command_name() -> None:
    """utime, stime, cutime, cstime are fields 14-17 and ppid field 4, counted after the command
    name's last parenthesis (a name may hold spaces and parentheses); a line that is not a stat
    line is refused; this process's own line reads as this process."""
    line = _stat_line(4242, "python3 (ivr) x) y", 17, 1200, 300, 45, 6)
    assert parse_stat(line) == Stat(pid=4242, ppid=17, utime=1200, stime=300, cutime=45, cstime=6)
    assert parse_stat(line).ticks == 1551
    for bad in ("", "4242 python3 S 1 2 3", "4242 (x) S 1 2 3"):
        with pytest.raises(ValueError):
            parse_stat(bad)
    own = parse_stat(Path("/proc/self/stat").read_text())
    assert (own.pid, own.ppid) == (os.getpid(), os.getppid())


def test_tree_ticks_count_the_root_and_its_descendants_only() -> None:
    """A worker's worker counts, an unrelated process and its children do not; an unknown root
    has no ticks."""
    stats = [
        Stat(10, 1, 5, 1, 2, 0),  # the server: 8 (2 of them exited children's)
        Stat(11, 10, 7, 0, 0, 0),  # a recognizer worker
        Stat(12, 11, 3, 1, 0, 0),  # its helper
        Stat(20, 1, 100, 0, 0, 0),  # another program
        Stat(21, 20, 50, 0, 0, 0),
    ]
    assert tree_ticks(stats, 10) == 8 + 7 + 4
    assert tree_ticks(stats, 11) == 11
    assert tree_ticks(stats, 99) == 0


def test_tree_cpu_counts_a_child_while_it_runs_and_after_it_exits() -> None:
    """A child burning ~0.6 s of CPU is in this process's tree while it runs (its own ticks) and
    once reaped (this process's cutime): neither lost nor counted twice; it is not in this
    process's own CPU."""
    burn = "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.6: pass\nprint('done')"
    before = tree_cpu_s(os.getpid())
    with subprocess.Popen([sys.executable, "-c", burn], stdout=subprocess.PIPE) as child:
        assert child.stdout is not None
        child.stdout.readline()  # its burn is over; it has not been reaped yet
        during = tree_cpu_s(os.getpid())
        tree, own = cpu_s(os.getpid())
    after = tree_cpu_s(os.getpid())
    assert during - before >= 0.55
    assert tree >= during and tree - own >= 0.55  # the child's CPU is not the parent's own
    assert 0.55 <= after - before <= during - before + 0.15  # moved to cutime, not added again


def test_cpu_per_call_and_overhead() -> None:
    """CPU per call is the window's CPU over its calls; the overhead is the medians' difference
    over the median without (1.10 against 1.00: +10 %), and run by run against the run beside it."""
    assert cpu_per_call_s(10.0, 16.0, 4) == 1.5
    with pytest.raises(ValueError):
        cpu_per_call_s(10.0, 16.0, 0)
    with pytest.raises(ValueError):
        cpu_per_call_s(16.0, 10.0, 4)
    with_, without = [1.1, 1.0, 1.2], [1.0, 0.9, 1.05]
    assert overhead_pct(with_, without) == pytest.approx(10.0)
    assert overhead_pct(without, with_) == pytest.approx(-100 / 11)
    assert paired_overheads_pct(with_, without) == pytest.approx([10.0, 100 / 9, 100 * 0.15 / 1.05])
    assert overhead_pct([], without) is None and overhead_pct(with_, [0.0]) is None
    # the server's own process: 0.66 against 0.61 s per call, of a tree using 2.0 s without it
    assert share_pct([0.70, 0.66, 0.64], [0.60, 0.62, 0.61], [2.0, 2.05, 1.9]) == pytest.approx(2.5)
    assert share_pct([0.7], [], [2.0]) is None and share_pct([0.7], [0.6], [0.0]) is None


PAGE = """# HELP ivr_calls_active Calls in progress
# TYPE ivr_calls_active gauge
ivr_calls_active 20.0
ivr_calls_active_extra 5.0
ivr_reply_latency_seconds_sum 3.5
ivr_reply_latency_seconds_count 7.0
ivr_rtp_packets_sent_total{direction="reply"} 100.0
ivr_rtp_packets_sent_total{direction="echo"} 20.0
"""


def test_prometheus_reader_takes_exactly_the_named_metric() -> None:
    """A name is not a prefix of another (ivr_calls_active is not ivr_calls_active_extra, a
    histogram's _sum is not its _count); labelled samples are summed, or filtered by label."""
    assert prometheus_value(PAGE, "ivr_calls_active") == 20.0
    assert prometheus_value(PAGE, "ivr_reply_latency_seconds_count") == 7.0
    assert prometheus_value(PAGE, "ivr_rtp_packets_sent_total") == 120.0
    assert prometheus_value(PAGE, "ivr_rtp_packets_sent_total", {"direction": "echo"}) == 20.0
    assert prometheus_value(PAGE, "ivr_reply_latency_seconds") is None
    assert prometheus_value(PAGE, "ivr_calls") is None


def test_utterance_delays_count_new_spoken_caller_turns_once() -> None:
    """From recognized to shown (the next frame; the moment it was added when no frame came):
    the replayed turn from before the page watched, the system's turns and keyed digits do not
    count; a turn shown again (a stream reopened) counts at its first showing."""
    since = 1000.0
    records = [
        {"seq": 2, "role": "caller", "outcome": "speech", "recognized": 990.0, "appended": 1000.1, "shown": 1000.2},
        {"seq": 3, "role": "system", "outcome": "completed", "recognized": 1001.0, "appended": 1001.5, "shown": None},
        {"seq": 4, "role": "caller", "outcome": "speech", "recognized": 1002.0, "appended": 1002.030, "shown": 1002.045},
        {"seq": 5, "role": "caller", "outcome": "dtmf", "recognized": 1003.0, "appended": 1003.01, "shown": 1003.02},
        {"seq": 6, "role": "caller", "outcome": "speech", "recognized": 1004.0, "appended": 1004.2, "shown": None},
        {"seq": 4, "role": "caller", "outcome": "speech", "recognized": 1002.0, "appended": 1009.0, "shown": 1009.1},
    ]  # fmt: skip
    assert utterance_delays_ms(records, since) == pytest.approx([45.0, 200.0])
    assert utterance_delays_ms(records, 900.0) == pytest.approx([10200.0, 45.0, 200.0])


def test_each_arm_is_a_valid_server_configuration(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The environment each arm gives the server, read by the server's own settings: with, the
    listener, console users (tokens stored hashed) and OTLP tracing to the receiver; without,
    none of them. Settings of the caller's own (IVR_*, OTEL_*) never leak in."""
    environ = {"PATH": "/usr/bin", "IVR_MAX_CALLS": "3", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://elsewhere"}
    with_env = server_env(environ, WITH, tmp_path, "http://127.0.0.1:8099", 9555, "http://127.0.0.1:4318")
    without_env = server_env(
        environ, WITHOUT, tmp_path, "http://127.0.0.1:8099", 9555, "http://127.0.0.1:4318"
    )
    assert "IVR_MAX_CALLS" not in with_env and SUPERVISOR[1] not in json.dumps(with_env)
    assert with_env["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://127.0.0.1:4318"
    assert "OTEL_EXPORTER_OTLP_ENDPOINT" not in without_env
    read = {}
    for name, env in (("with", with_env), ("without", without_env)):
        for key in [k for k in os.environ if k.startswith("IVR_")]:
            monkeypatch.delenv(key)
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        read[name] = Settings()
    w, wo = read["with"], read["without"]
    assert (w.metrics_port, w.tracing, wo.metrics_port, wo.tracing) == (9555, "otlp", 0, "off")
    assert w.console_users["sam"].role == "supervisor" and wo.console_users == {}
    assert token_matches(SUPERVISOR[1], w.console_users["sam"].token_hash)
    assert w.tools_services["bank"].url == wo.tools_services["bank"].url == "http://127.0.0.1:8099"
    assert w.database_url == wo.database_url == f"sqlite+aiosqlite:///{tmp_path / 'ivr.sqlite3'}"


async def test_otlp_receiver_counts_what_the_real_exporter_sends() -> None:
    """The OpenTelemetry SDK's own OTLP/HTTP exporter (the server's) posts 3 spans of 2 traces:
    the receiver counts 3 spans, 2 traces, and the bytes it was sent."""
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    async with OtlpReceiver().serving() as receiver:

        def send() -> None:
            provider = TracerProvider()
            provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(f"{receiver.url}/v1/traces")))
            tracer = provider.get_tracer("test")
            with tracer.start_as_current_span("call"), tracer.start_as_current_span("turn"):
                pass
            with tracer.start_as_current_span("another call"):
                pass
            provider.shutdown()

        await asyncio.to_thread(send)
        counts = receiver.counts()
    assert (counts["spans"], counts["traces"], counts["requests"]) == (3, 2, 3)
    assert counts["bytes"] > 100


def test_log_watch_counts_events_of_whole_lines(tmp_path: Path) -> None:
    """A line the server is still writing is counted once it is whole; lines that are not JSON
    are kept for the tail but not counted; the recognizer is read from asr.engine."""
    log = tmp_path / "server.log"
    watch = LogWatch(log)
    assert watch.count("call.ended") == 0  # no file yet
    log.write_text('{"event": "call.ended"}\nTraceback (most recent call last):\n{"event": "call.en')
    assert watch.count("call.ended") == 1
    with log.open("a") as f:
        f.write('ded"}\n{"event": "asr.engine", "engine": "pocketsphinx", "model": "en-us"}\n')
    assert watch.count("call.ended") == 2 and watch.asr == "pocketsphinx (en-us)"
    assert "Traceback (most recent call last):" in watch.tail


def test_health_probe_times_each_request_on_a_real_listener() -> None:
    """The probe alternates /healthz and /readyz on the server's own listener, records a latency
    and a status for each, and stops when told to."""
    from benchmarks.ops.runs import _probe
    from ivr_server.observability.health import Health
    from ivr_server.observability.metrics import Metrics, serve_metrics

    health = Health()
    for check in ("ari", "store", "speech", "flows"):
        health.holds(check)
    health.serving = True
    listener = serve_metrics(Metrics(), "127.0.0.1", 0, health)
    port = listener.server_address[1]
    try:
        got = _probe(port, 20, 0.0, threading.Event())
        stop = threading.Event()
        stop.set()
        none = _probe(port, 20, 0.0, stop)
    finally:
        listener.shutdown()
    assert [len(got["took"][p]) for p in ("/healthz", "/readyz")] == [20, 20]
    assert got["statuses"] == {"/healthz": {200: 20}, "/readyz": {200: 20}}
    assert all(0 < ms < 1000 for p in got["took"] for ms in got["took"][p])
    assert none["took"] == {"/healthz": [], "/readyz": []}


def _health_run(p99: float, full: bool = True) -> dict[str, Any]:
    samples = [1.0] * 98 + [p99, p99]  # p99 of these is p99
    return {"calls": 20, "window_s": 30.0, "calls_in_progress_min": 20.0 if full else 17.0,
            "calls_in_progress_max": 20.0, "samples_ms": {"/healthz": samples, "/readyz": [2.0] * 100},
            "statuses": {"/healthz": {"200": 100}, "/readyz": {"200": 99, "503": 1}},
            "reply_packets_per_call_s": 30.0, "replies": 40, "reply_latency_mean_ms": 450,
            "frames_dropped": 0.0, "sipp_exit": 0, "ended": 20}  # fmt: skip


def _cpu_run(arm: str, per_call: float, main: float) -> dict[str, Any]:
    return {"arm": arm, "calls": 4, "cpu_s": per_call * 4, "cpu_per_call_s": per_call,
            "main_cpu_per_call_s": main, "window_s": 70.0,
            "operator": {"scrapes": 14, "page_refreshes": 70, "streams": 4, "turns_streamed": 60, "errors": []},
            "otlp": {"requests": 15, "bytes": 40960, "spans": 300, "traces": 4}, "sipp_exit": 0,
            "ended": 4}  # fmt: skip


META = {"command": "scripts/bench-ops", "date": "2026-12-06", "commit": "abc", "machine": "cpu, 2 cores",
        "asr": "pocketsphinx (en-us)", "minutes": 25, "lock_wait_minutes": 3, "health_calls": 20,
        "method": ["- how"], "notes": []}  # fmt: skip


def _data() -> dict[str, Any]:
    health = [_health_run(4.0), _health_run(12.0), _health_run(6.0), _health_run(50.0, full=False)]
    console = [{"calls": 3, "page_load_ms": [300.0, 250.0], "page_load_wall_ms": [320, 270],
                "utterance_delays_ms": [40.0, 60.0, 520.0], "followed_call": "c", "sipp_exit": 0, "ended": 3}]  # fmt: skip
    cpu = [_cpu_run("with", 2.2, 0.70), _cpu_run("without", 2.0, 0.60), _cpu_run("with", 2.1, 0.66),
           _cpu_run("without", 2.05, 0.62), {**_cpu_run("with", 2.0, 0.64), "sipp_exit": 1, "ended": 3},
           _cpu_run("without", 1.9, 0.61)]  # fmt: skip
    return build(health, console, cpu, META)


def test_targets_are_judged_on_the_runs_that_count() -> None:
    """Health: the median of the runs' p99 (4, 6, 12: 6 ms; the run whose calls dropped is not
    counted), met; the console: its slowest load (300 ms) met, its slowest utterance (520 ms) not;
    CPU: 2.1 against 2.0 s per call, +5.0 %: not under 5 % (the server's own process: 0.66
    against 0.61 s, +2.5 % of the 2.0)."""
    data = _data()
    h = data["summary"]["health"]
    assert h["runs_counted"] == 3 and h["/healthz"]["p99_ms_median"] == pytest.approx(6.0)
    assert h["/healthz"]["p99_ms_worst"] == pytest.approx(12.0) and h["/readyz"]["not_200"] == 3
    t = data["targets"]
    assert t["health_p99_ms"] == {"value": pytest.approx(6.0), "target": 10.0, "met": True}
    assert (t["page_load_ms"]["met"], t["utterance_ms"]["met"]) == (True, False)
    assert t["cpu_overhead_pct"]["value"] == pytest.approx(5.0) and t["cpu_overhead_pct"]["met"] is False
    assert data["summary"]["cpu"]["with"]["paired_pct"] == [10.0, 2.4, 5.3]
    assert data["summary"]["cpu"]["with"]["main_overhead_pct"] == 2.5
    assert data["summary"]["cpu"]["without"]["spread_pct"] == 7.5  # (2.05 - 1.9) / 2.0


def test_nothing_measured_is_not_met_or_passed() -> None:
    """A report without figures for a part says so: neither met nor not met."""
    data = build([], [], [], META)
    assert all(t["met"] is None for t in data["targets"].values())
    assert markdown(data).count("not measured") == 4


def test_report_names_each_verdict_and_plots(tmp_path: Path) -> None:
    """The markdown states each target's figure and verdict, the command, every run; the run
    whose calls dropped is marked; the plot is a PNG; --replot makes the same report again."""
    data = _data()
    text = markdown(data)
    assert text.count("**met**") == 2 and text.count("**not met**") == 2 and "`scripts/bench-ops`" in text
    assert "p99 /healthz 6.00 ms" in text and "| 4 (not counted) | 17–20 |" in text
    assert "the server's own process alone: +2.5 %" in text
    assert "differ by up to 7.5 % (without)" in text and "(with: +2.4 % to +10.0 %)" in text
    assert "- health run 4: calls in progress dropped to 17: not counted." in text
    assert (
        "- cpu run 5 (with): SIPp exited 1" in text and "- cpu run 5 (with): the server ended 3 of 4" in text
    )
    assert (
        "2.100 against 2.000 CPU s per call" in text
        and "+5.0 % (run by run: +10.0 %, +2.4 %, +5.3 %)" in text
    )
    (tmp_path / "ops.json").write_text(json.dumps(data))
    assert replot(tmp_path) == text == (tmp_path / "ops.md").read_text()
    assert (tmp_path / "ops.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    plot(copy.deepcopy(data), tmp_path / "again.png")


def test_committed_ops_md_is_the_report_of_ops_json() -> None:
    """benchmarks/ops.md is exactly what markdown makes of benchmarks/ops.json, and the figures
    are real runs: every target measured, 20 calls in progress in the health runs counted."""
    data = json.loads((REPO / "benchmarks" / "ops.json").read_text())
    assert markdown(data) == (REPO / "benchmarks" / "ops.md").read_text()
    assert all(t["met"] is not None for t in data["targets"].values())
    counted = [r for r in data["runs"]["health"] if r["full"]]
    assert len(counted) == data["summary"]["health"]["runs_counted"] >= 1
    assert all(r["calls"] >= 20 and r["calls_in_progress_min"] >= r["calls"] for r in counted)
    assert all(len(r["samples_ms"][p]) >= 100 for r in counted for p in ("/healthz", "/readyz"))
    assert {r["arm"] for r in data["runs"]["cpu"]} >= {"with", "without"}
