"""A server killed mid-call (SIGKILL): its caller goes on. Two servers on one PostgreSQL behind
extension 410; the first (a process of its own) takes the call and is killed while it asks for
the card's digits. The second, in this process, finds it silent, sends the caller to
[ivr-server-lost] with IVR_STATUS=server_lost and the intent, where the caller hears "one moment
please" and reaches the agents. Measured at the caller's RTP port: what the caller hears after
the kill comes within 3 s. Nothing of the call is lost from the store, and its audit chain holds."""

from __future__ import annotations

import asyncio
import signal
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest

from ivr_server.config import ToolService
from ivr_server.media.g711 import ulaw_decode
from ivr_server.media.rtp import RtpPacket
from ivr_server.store.audit_trail import recent, verify_store
from ivr_server.store.database import create_engine
from ivr_server.store.queries import call_events_of, list_calls
from tests.conftest import (
    TEST_ASR_RESOURCES,
    _migrated,
    fresh_database,
    running_server,
    sandbox,
    server_settings,
    settle,
)
from tests.e2e.test_banking_call import prompt_ms
from tests.e2e.test_cli_run import read_until, start
from tests.support.capture import Datagram, LoopbackCapture
from tests.support.sipp import Keys, Pause, SippCall, scenario

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("asterisk")]

MAX_DEAD_AIR_S = 3.0
AUDIBLE = 300  # mean absolute µ-law sample, decoded: a prompt, not line noise


def heard_at(datagrams: list[Datagram], port: int) -> list[float]:
    """When the caller's port received a 20 ms packet with something to hear in it."""
    times = []
    for d in datagrams:
        if d.dst_port != port:
            continue
        packet = RtpPacket.parse(d.payload)
        if packet.payload_type == 0 and np.abs(ulaw_decode(packet.payload).astype(np.int32)).mean() > AUDIBLE:
            times.append(d.time_s)
    return times


async def test_the_calls_of_a_killed_server_reach_the_agents_with_their_context_within_3_s(
    bank: str, tmp_path: Path
) -> None:
    steps = [Pause(prompt_ms("welcome")), Keys("3"), Pause(500)]  # a lost card; then the BYE is awaited
    call = SippCall(scenario(steps, tmp_path, bye_timeout_ms=30000), service="410", workdir=tmp_path,
                    timeout_s=90)  # fmt: skip
    async with fresh_database("postgres", tmp_path) as url:
        await _migrated(url)
        tts_cache = Path(tempfile.gettempdir()) / "ivr-test-tts-cache"
        first = {
            "IVR_DATABASE_URL": url,
            "IVR_ARI_APP": "ivr-server-a",
            "IVR_ARI_PASSWORD": "ivr-sandbox",
            "IVR_METRICS_PORT": "19468",
            "IVR_MEDIA_PORT_MIN": "41400",
            "IVR_MEDIA_PORT_MAX": "41499",
            "IVR_TOOLS_SERVICES": f'{{"bank": {{"url": "{bank}"}}}}',
            "IVR_TTS_CACHE_DIR": str(tts_cache),
            "IVR_ASR_RESOURCES_DIR": str(TEST_ASR_RESOURCES),
            "IVR_OUTBOX_PATH": str(tmp_path / "a-outbox.sqlite3"),
        }
        second = server_settings(url, ari_app="ivr-server-b", media_port_min=41500, media_port_max=41599,
                                 tools_services={"bank": ToolService(url=bank)})  # fmt: skip
        engine = create_engine(url)
        proc = await start(first)
        try:
            lines: list[dict] = []
            await read_until(proc, "ari.reconciled", lines)
            async with running_server(second) as survivor:
                async with LoopbackCapture(
                    tmp_path / "caller.pcap", f"udp dst port {call.media_port}"
                ) as cap:
                    placed = asyncio.create_task(call.run())
                    await read_until(proc, "flow.decision", lines)  # the lost card: now the digits
                    await asyncio.sleep(1.0)  # in the middle of "Please say or key in ..."
                    proc.send_signal(signal.SIGKILL)
                    killed_at = time.time()
                    await proc.wait()
                    assert await placed == 0, call.errors()
                await settle(survivor, 15)
                rescued = survivor.metrics.registry.get_sample_value(
                    "ivr_calls_rescued_total", {"outcome": "continued"}
                )
                assert rescued == 1
            after = [t - killed_at for t in heard_at(cap.datagrams(), call.media_port) if t > killed_at]
            assert after, "the caller heard nothing after the kill"
            assert after[0] <= MAX_DEAD_AIR_S, f"{after[0]:.2f} s of dead air after the kill"

            (record,) = await list_calls(engine, 10)
            assert record.server_id.endswith("/ivr-server-a") and record.end_reason == "server_lost"
            events = await call_events_of(engine, record.id)
            types = [e.type for e in events]
            assert types[:2] == ["stasis_start", "answered"] and "decision" in types, types
            (ended,) = [e.payload for e in events if e.type == "call_ended"]
            assert ended["outcome"] == "continued" and ended["by"].endswith("/ivr-server-b"), ended
            assert ended["to"] == ["ivr-server-lost", "s", 1]
            audited = [e for e in await recent(engine, 200) if e.kind == "call_rescued"]
            assert [e.call_id for e in audited] == [record.id]
            assert (await verify_store(engine, None)).intact
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
            await engine.dispose()

    # What the dialplan saw on the channel: [ivr-server-lost], then [ivr-agents] with the context.
    console = Path(sandbox("path").stdout.strip()).parent / "asterisk-console.log"
    seen = [line for line in console.read_text(errors="replace").splitlines() if record.id in line]
    assert any(f"ivr-server-lost session={record.id} flow=banking intent=lost_card" in s for s in seen), seen
    assert any("ivr-handoff" in s and "intent=lost_card status=server_lost" in s for s in seen), seen
