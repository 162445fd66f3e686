"""`ivr-server probe` as an operator runs it: a real call through the sandbox Asterisk into a
real `ivr-server run` process, judged from the captured RTP and the server's store."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from ivr_server.ops.capture import Datagram
from ivr_server.ops.probe_report import ProbeResult, Timeline, prometheus_text, timeline
from tests.conftest import REPO, fresh_database
from tests.support.server_process import migrate, read_until, start

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("asterisk")]


async def probe(*args: str, env: dict[str, str]) -> tuple[int, str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("IVR_")}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "ivr_server", "probe", *args, env={**clean, **env},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    return proc.returncode or 0, out.decode(), err.decode()


@asynccontextmanager
async def banking_server(tmp_path: Path, bank: str) -> AsyncIterator[dict[str, str]]:
    """`ivr-server run` serving flows/banking.yaml against the demo bank: the env to reach its store."""
    flows = tmp_path / "flows"
    flows.mkdir()
    (flows / "banking.yaml").write_text((REPO / "flows" / "banking.yaml").read_text())
    async with fresh_database("sqlite", tmp_path) as url:
        env = {"IVR_FLOWS_DIR": str(flows), "IVR_DATABASE_URL": url, "IVR_METRICS_PORT": "0",
               "IVR_MEDIA_PORT_MIN": "41300", "IVR_MEDIA_PORT_MAX": "41399", "IVR_ARI_PASSWORD": "ivr-sandbox",
               "IVR_TOOLS_SERVICES": json.dumps({"bank": {"url": bank}})}  # fmt: skip
        await migrate(env)
        proc = await start(env)
        try:
            await read_until(proc, "ari.reconciled", [])
            yield {"IVR_DATABASE_URL": url}
        finally:
            proc.terminate()
            await asyncio.wait_for(proc.communicate(), 30)


async def test_a_balance_call_succeeds_with_figures_and_a_metrics_file(tmp_path: Path, bank: str) -> None:
    """Keys 1 (balance) then the account number: exit 0, the JSON has the call's timings and
    the flow's decision, and the textfile has the success and latency samples."""
    metrics = tmp_path / "ivr_probe.prom"
    async with banking_server(tmp_path, bank) as env:
        code, out, err = await probe("--exten", "400", "--keys", "1", "--keys", "12345678", "--expect-flow",
                                     "banking", "--json", "--metrics-file", str(metrics), env=env)  # fmt: skip
    result = json.loads(out)
    assert code == 0, (result, err)
    assert result["success"] and result["answered"] and result["flow"] == "banking"
    assert result["intents"][0] == "balance"
    assert 0 < result["time_to_answer_s"] < 5 and 0 < result["time_to_first_audio_s"] < 5
    assert 0 < result["reply_latency_s"] < 5 and result["heard_s"] > 3
    text = metrics.read_text()
    assert 'ivr_probe_success{exten="400"} 1\n' in text
    assert 'ivr_probe_reply_latency_seconds{exten="400"}' in text
    assert "ivr_probe_last_run_timestamp_seconds" in text and "ivr_probe_duration_seconds" in text


async def test_a_number_without_a_flow_fails_naming_why(tmp_path: Path, bank: str) -> None:
    """199 routes to a flow the server lacks: the dialplan's fallback answers and plays a notice,
    which a caller-side check alone would take for success; the store says it was handed back."""
    metrics = tmp_path / "ivr_probe.prom"
    async with banking_server(tmp_path, bank) as env:
        code, out, err = await probe("--exten", "199", "--greeting", "3", "--listen", "1", "--metrics-file",
                                     str(metrics), env=env)  # fmt: skip
    assert code == 1, out
    assert "handed it back (unknown_flow)" in err, out + err
    assert 'ivr_probe_success{exten="199"} 0\n' in metrics.read_text()


async def test_no_server_running_fails_naming_why(tmp_path: Path) -> None:
    async with fresh_database("sqlite", tmp_path) as url:
        await migrate({"IVR_DATABASE_URL": url})
        code, out, err = await probe("--exten", "400", "--greeting", "2", "--listen", "1", "--expect-flow",
                                     "banking", env={"IVR_DATABASE_URL": url})  # fmt: skip
    assert code == 1
    assert "is ivr-server running" in err, out + err


def test_timeline_and_textfile_from_made_up_packets() -> None:
    """The pure part: answer, first audio and reply onset from datagrams; unmeasured figures are
    left out of the textfile rather than written as 0."""
    loud = bytes([0x80 | 0x00, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1]) + bytes([0x10]) * 160
    quiet = loud[:12] + bytes([0xFF]) * 160
    sip, media = 5062, 6000
    grams = [
        Datagram(100.0, sip, 5060, b"INVITE sip:400@x SIP/2.0\r\n"),
        Datagram(100.2, 5060, sip, b"SIP/2.0 200 OK\r\nCSeq: 1 INVITE\r\n"),
        Datagram(100.5, 10000, media, quiet),
        Datagram(100.7, 10000, media, loud),
        Datagram(100.98, 10000, media, loud),
        Datagram(101.0, media, 10000, b"caller"),
        Datagram(101.02, 10000, media, loud),  # still the prompt: not the reply
        Datagram(101.6, 10000, media, loud),
    ]
    line = timeline(grams, sip, media)
    assert line == Timeline(100.0, 100.2, 101.0, (100.7, 100.98, 101.02, 101.6))
    assert line.first_audio_after(100.2) == 100.7 and line.first_audio_after(101.0) == 101.6
    text = prometheus_text(ProbeResult("400", success=True, duration_s=9.5), 1234.5)
    assert 'ivr_probe_success{exten="400"} 1\n' in text and "reply_latency" not in text
    assert 'ivr_probe_last_run_timestamp_seconds{exten="400"} 1234.500\n' in text
