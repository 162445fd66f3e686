"""One media benchmark run: a fresh ``ivr-server run`` process, N concurrent SIPp calls to the
echo extension through the sandbox Asterisk, the server's CPU and RSS while every call echoes,
and the calls' RTP statistics read back from the store."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from benchmarks.media.probe import metric, proc_cpu_s, proc_rss_kib, wait_for
from ivr_server.media.stats import DeviationHistogram
from ivr_server.store.database import create_engine
from ivr_server.store.queries import call_events_of, list_calls
from tests.support.sipp import Pause, SippCall, Speak, free_port, scenario

ECHO_EXTENSION = "600"


def server_env(environ: Mapping[str, str], database_url: str, metrics_port: int) -> dict[str, str]:
    """The benchmark server's environment: the caller's, minus any IVR_ setting of its own."""
    return {
        **{k: v for k, v in environ.items() if not k.startswith("IVR_")},
        "IVR_DATABASE_URL": database_url,
        "IVR_METRICS_PORT": str(metrics_port),
        "IVR_LOG_LEVEL": "warning",
        "IVR_MEDIA_PORT_MIN": "42000",
        "IVR_MEDIA_PORT_MAX": "42999",
    }


def start_server(env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    """A migrated database and ``ivr-server run`` on it, its stderr in ``log_path``."""
    subprocess.run(
        [sys.executable, "-m", "ivr_server", "db", "upgrade"], env=env, check=True, capture_output=True
    )
    with log_path.open("w") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "ivr_server", "run"], env=env, stdout=subprocess.DEVNULL, stderr=log
        )


async def media_totals(database_url: str, n: int) -> dict[str, Any]:
    """Packets summed and pacing histograms merged over the ``media_stats`` events of the calls
    in the store, which must hold exactly ``n`` calls."""
    engine = create_engine(database_url)
    received = lost = sent = 0
    jitter, offset = DeviationHistogram(), DeviationHistogram()
    try:
        calls = await list_calls(engine, n + 10)
        for record in calls:
            for event in await call_events_of(engine, record.id):
                if event.type == "media_stats":
                    received += event.payload["rx"]["received"]
                    lost += event.payload["rx"]["lost"]
                    sent += event.payload["tx"]["packets"]
                    jitter.merge(DeviationHistogram.from_snapshot(event.payload["tx"]["jitter"]))
                    offset.merge(DeviationHistogram.from_snapshot(event.payload["tx"]["slot_offset"]))
    finally:
        await engine.dispose()
    if len(calls) != n:
        raise RuntimeError(f"expected {n} calls in the store, found {len(calls)}")
    return {
        "packets_received": received,
        "packets_lost": lost,
        "packets_sent": sent,
        "jitter_p50_ms": jitter.percentile(50),
        "jitter_p99_ms": jitter.percentile(99),
        "jitter_max_ms": round(jitter.max_ms, 2),
        "slot_offset_p50_ms": offset.percentile(50),
        "slot_offset_p99_ms": offset.percentile(99),
    }


async def one_run(n: int, seconds: float, voice: Path, intro_s: float, work: Path) -> dict[str, Any]:
    """N calls speaking ``voice`` in a loop; the server measured over ``seconds`` once every
    call is past the echo flow's intro (``intro_s``)."""
    work = Path(tempfile.mkdtemp(prefix=f"{n}-calls-", dir=work))
    url = f"sqlite+aiosqlite:///{work / 'bench.sqlite3'}"
    metrics_port = free_port(kind=socket.SOCK_STREAM)
    env = server_env(os.environ, url, metrics_port)
    log_path = work / "server.log"
    server = await asyncio.to_thread(start_server, env, log_path)
    try:
        await wait_for(lambda: metric(metrics_port, "ivr_ari_connected") == 1, 20, "the server to connect")
        await asyncio.sleep(1.0)
        rss_idle = proc_rss_kib(server.pid)
        call_s = intro_s + 1.0 + seconds + 1.5
        call = SippCall(
            scenario([Pause(300), Speak(voice, int(call_s * 1000))], work, server_hangs_up=False),
            service=ECHO_EXTENSION,
            workdir=work,
            calls=n,
            concurrent=n,
            rate_per_s=max(n, 1),
            timeout_s=call_s + 30,
        )
        # Loop the voice (-1) so every call keeps sending for the whole window.
        call.scenario_path.write_text(
            call.scenario_xml.replace(f'rtp_stream="{voice},1,0"', f'rtp_stream="{voice},-1,0"')
        )
        caller = asyncio.create_task(call.run())
        await wait_for(
            lambda: metric(metrics_port, "ivr_calls_active") == n,
            20,
            f"{n} calls up (have {metric(metrics_port, 'ivr_calls_active'):.0f})",
        )
        await asyncio.sleep(intro_s + 0.5)  # every call past its intro, echoing
        t_a, cpu_a, rss_peak = time.monotonic(), proc_cpu_s(server.pid), 0
        while time.monotonic() - t_a < seconds:
            rss_peak = max(rss_peak, proc_rss_kib(server.pid))
            await asyncio.sleep(0.25)
        t_b, cpu_b = time.monotonic(), proc_cpu_s(server.pid)
        rc = await caller
        if rc != 0:
            raise RuntimeError(f"SIPp failed ({rc}): {call.errors()[-2000:]}")
        await wait_for(lambda: metric(metrics_port, "ivr_calls_active") == 0, 20, "calls to end")
    except Exception:
        print(f"bench-media: run with {n} calls failed; server log tail:", file=sys.stderr)
        print("\n".join(log_path.read_text().splitlines()[-15:]), file=sys.stderr)
        raise
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(30)
    return {
        "calls": n,
        **await media_totals(url, n),
        "cpu_per_call_pct": round((cpu_b - cpu_a) / (t_b - t_a) / n * 100, 3),
        "mem_per_call_kib": round(max(0, rss_peak - rss_idle) / n, 1),
        "window_s": round(t_b - t_a, 2),
    }
