"""`ivr-server run` as systemd runs it (Type=notify, WatchdogSec=): the messages a service
manager gets on NOTIFY_SOCKET, read from a unix datagram socket the test binds."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pytest

from tests.conftest import REPO, fresh_database
from tests.support.server_process import migrate, read_until, start
from tests.support.tasks import alongside

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("asterisk")]


@dataclass(frozen=True)
class Message:
    fields: dict[str, str]
    at: float  # wall clock when it arrived, to compare with the log lines' timestamps


class ServiceManager:
    """What systemd would read: every datagram, as it arrives (a task reads them at once, so an
    arrival time is close to when the server sent it)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.messages: list[Message] = []
        self._arrived = asyncio.Event()
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.bind(str(path))
        self._sock.setblocking(False)

    async def read(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            data = await loop.sock_recv(self._sock, 4096)
            fields = dict(line.split("=", 1) for line in data.decode().split("\n"))
            self.messages.append(Message(fields, time.time()))
            self._arrived.set()

    async def wait_for(self, key: str, after: int = 0, timeout_s: float = 20) -> int:
        """The index of the first message from ``after`` on that carries ``key``."""
        async with asyncio.timeout(timeout_s):
            while True:
                for i, message in enumerate(self.messages[after:], after):
                    if key in message.fields:
                        return i
                self._arrived.clear()
                await self._arrived.wait()

    def close(self) -> None:
        self._sock.close()


@asynccontextmanager
async def service_manager(tmp_path: Path) -> AsyncIterator[ServiceManager]:
    manager = ServiceManager(tmp_path / "notify")
    try:
        async with alongside(manager.read()):
            yield manager
    finally:
        manager.close()


def logged_at(line: dict) -> float:
    return datetime.fromisoformat(line["timestamp"]).timestamp()


def server_env(url: str, notify: Path, **more: str) -> dict[str, str]:
    flows = notify.parent / "flows"  # one small flow: start-up in seconds, not the bank's training
    flows.mkdir(exist_ok=True)
    (flows / "phone-tree.yaml").write_text((REPO / "flows" / "phone-tree.yaml").read_text())
    return {
        "IVR_FLOWS_DIR": str(flows),
        "IVR_DATABASE_URL": url,
        "IVR_METRICS_PORT": "0",
        "IVR_MEDIA_PORT_MIN": "41500",
        "IVR_MEDIA_PORT_MAX": "41599",
        "IVR_ARI_PASSWORD": "ivr-sandbox",
        "NOTIFY_SOCKET": str(notify),
        **more,
    }


async def test_systemd_hears_ready_watchdog_reload_and_stopping(tmp_path: Path) -> None:
    """READY=1 only once ARI is connected and reconciled; WATCHDOG=1 at half of WATCHDOG_USEC;
    SIGHUP: RELOADING=1 with the monotonic clock, then READY=1 after the flows are reloaded;
    SIGTERM: STOPPING=1, then exit 0."""
    async with fresh_database("sqlite", tmp_path) as url, service_manager(tmp_path) as systemd:
        env = server_env(url, systemd.path, WATCHDOG_USEC="1000000")
        await migrate(env)
        proc = await start(env)
        lines: list[dict] = []
        ready = await systemd.wait_for("READY", timeout_s=90)  # speech engines load first: slow here
        await read_until(proc, "ari.reconciled", lines)
        reconciled = logged_at(lines[-1])
        assert systemd.messages[ready].at >= reconciled
        assert "serving calls" in systemd.messages[ready].fields["STATUS"]
        assert any("connecting to Asterisk" in m.fields.get("STATUS", "") for m in systemd.messages[:ready])

        first_ping = await systemd.wait_for("WATCHDOG", ready)
        second_ping = await systemd.wait_for("WATCHDOG", first_ping + 1, timeout_s=2)
        gap = systemd.messages[second_ping].at - systemd.messages[first_ping].at
        assert 0.3 < gap < 0.9, gap  # every 0.5 s

        hup_at_us = time.monotonic_ns() // 1000
        proc.send_signal(signal.SIGHUP)
        reloading = await systemd.wait_for("RELOADING", second_ping)
        assert 0 <= int(systemd.messages[reloading].fields["MONOTONIC_USEC"]) - hup_at_us < 5_000_000
        reloaded = await systemd.wait_for("READY", reloading)
        await read_until(proc, "flows.reloaded", lines)
        assert systemd.messages[reloaded].at >= logged_at(lines[-1])

        proc.send_signal(signal.SIGTERM)
        stopping = await systemd.wait_for("STOPPING", reloaded)
        _, rest = await asyncio.wait_for(proc.communicate(), 30)
        lines += [json.loads(line) for line in rest.decode().splitlines()]
    assert proc.returncode == 0
    assert systemd.messages[stopping].fields["STATUS"].startswith("stopping")
    assert not [m for m in systemd.messages[stopping + 1 :] if "READY" in m.fields]
    assert not [line for line in lines if line["event"] == "systemd.notify_failed"]


async def test_no_ready_when_asterisk_refuses_the_password(tmp_path: Path) -> None:
    """A server that never connects never tells systemd it is ready (systemd fails the start)."""
    async with fresh_database("sqlite", tmp_path) as url, service_manager(tmp_path) as systemd:
        env = server_env(url, systemd.path, IVR_ARI_PASSWORD="wrong-password")
        await migrate(env)
        proc = await start(env)
        await asyncio.wait_for(proc.communicate(), 60)
        await asyncio.sleep(0.1)  # the last datagrams read
    assert proc.returncode == 3
    assert systemd.messages, "the server said nothing on NOTIFY_SOCKET"
    assert not [m for m in systemd.messages if "READY" in m.fields]
