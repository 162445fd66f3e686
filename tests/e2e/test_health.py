"""/healthz and /readyz of a real `ivr-server run` process, through its whole life: starting,
ready, the ARI connection lost and back (a TCP proxy in front of the sandbox's ARI is cut), and
draining on SIGTERM with a call still up."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import fresh_database
from tests.support.server_process import migrate, start
from tests.support.sipp import Pause, SippCall, scenario

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("asterisk")]


class Proxy:
    """127.0.0.1:<port> -> the sandbox's ARI (8088); ``cut()`` drops every connection and
    refuses new ones until ``restore()``."""

    def __init__(self) -> None:
        self.port = _free_port()
        self._server: asyncio.Server | None = None
        self._pipes: set[asyncio.StreamWriter] = set()

    async def restore(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)

    async def cut(self) -> None:
        assert self._server is not None
        self._server.close()
        for writer in list(self._pipes):
            writer.transport.abort()
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", 8088)
        except OSError:
            writer.close()
            return
        self._pipes |= {writer, up_writer}

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                dst.transport.abort()

        await asyncio.gather(pump(reader, up_writer), pump(up_reader, writer))
        self._pipes -= {writer, up_writer}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def until(
    client: httpx.AsyncClient, path: str, want: int, timeout_s: float
) -> tuple[float, dict[str, Any]]:
    """Poll ``path`` every 50 ms until it answers ``want``; (when it did, its body)."""
    async with asyncio.timeout(timeout_s):
        while True:
            try:
                r = await client.get(path)
                if r.status_code == want:
                    return time.monotonic(), r.json()
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.05)


async def test_health_through_start_ari_loss_and_drain(tmp_path: Path) -> None:
    proxy = Proxy()
    await proxy.restore()
    metrics_port = _free_port()
    async with fresh_database("sqlite", tmp_path) as url:
        env = {
            "IVR_DATABASE_URL": url,
            "IVR_ARI_URL": f"http://127.0.0.1:{proxy.port}",
            "IVR_ARI_PASSWORD": "ivr-sandbox",
            "IVR_ARI_RECONNECT_MAX_S": "1",
            "IVR_METRICS_PORT": str(metrics_port),
            "IVR_MEDIA_PORT_MIN": "41500",
            "IVR_MEDIA_PORT_MAX": "41599",
            "IVR_DRAIN_TIMEOUT_S": "30",
        }
        await migrate(env)
        started = time.monotonic()
        proc = await start(env)
        lines: list[dict[str, Any]] = []
        logs = asyncio.create_task(_collect(proc, lines))  # a full pipe would block the server
        try:
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{metrics_port}", timeout=2) as client:
                # Starting: alive (models load on the loop: not a stall), not ready, and says why.
                _, alive = await until(client, "/healthz", 200, 30)
                status = (await client.get("/readyz")).status_code
                assert alive["alive"] is True
                ready_at, ready = await until(client, "/readyz", 200, 60)
                print(f"ready {ready_at - started:.1f}s after the process started")
                assert ready == {
                    "ready": True,
                    "checks": dict.fromkeys(("ari", "store", "speech", "flows"), "ok"),
                }
                assert status in (200, 503)

                # ARI lost: not ready within a second, naming ARI; still alive.
                cut_at = time.monotonic()
                await proxy.cut()
                lost_at, lost = await until(client, "/readyz", 503, 5)
                assert lost["checks"]["ari"] != "ok" and lost["checks"]["store"] == "ok", lost
                assert (await client.get("/healthz")).status_code == 200
                print(f"not ready {lost_at - cut_at:.2f}s after ARI was cut: {lost['checks']['ari']}")
                assert lost_at - cut_at < 1.5
                await asyncio.sleep(1.5)
                refused = (await client.get("/readyz")).json()["checks"]["ari"]
                assert "127.0.0.1" in refused, refused  # the retry's error names where it tried

                # ARI back: ready again.
                await proxy.restore()
                await until(client, "/readyz", 200, 10)

                # Draining with a call up: not ready at once ("draining"), alive, then gone.
                call = SippCall(scenario([Pause(6000)], tmp_path, server_hangs_up=False), service="600",
                                workdir=tmp_path)  # fmt: skip
                placed = asyncio.create_task(call.run())
                await asyncio.sleep(2.5)
                proc.send_signal(signal.SIGTERM)
                _, draining = await until(client, "/readyz", 503, 2)
                assert "draining" in draining["checks"], draining
                assert (await client.get("/healthz")).status_code == 200
                assert await placed == 0, call.errors()
                async with asyncio.timeout(30):
                    assert await proc.wait() == 0, lines[-3:]
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
            await proxy.cut()
            await logs
    events = [x.get("event") for x in lines]
    assert events.index("calls.draining") < events.index("server.stopped"), events[-10:]


async def _collect(proc: asyncio.subprocess.Process, lines: list[dict[str, Any]]) -> None:
    assert proc.stderr is not None
    while raw := await proc.stderr.readline():
        if raw.startswith(b"{"):
            lines.append(json.loads(raw))
