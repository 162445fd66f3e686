"""sd_notify without libsystemd: datagrams on a real unix socket (a path or an abstract name),
nothing without NOTIFY_SOCKET, one warning and no exception when the socket is broken."""

from __future__ import annotations

import asyncio
import os
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import structlog

from ivr_server.observability.systemd import SystemdNotifier


def received(sock: socket.socket) -> list[dict[str, str]]:
    """Every datagram waiting on ``sock``, each as its KEY=VALUE fields."""
    messages = []
    while True:
        try:
            data = sock.recv(4096)
        except BlockingIOError:
            return messages
        messages.append(dict(line.split("=", 1) for line in data.decode().split("\n")))


@pytest.fixture
def notifier_for() -> Iterator[Callable[[dict[str, str]], SystemdNotifier]]:
    """Notifiers built from an environment of the test's; their sockets closed afterwards."""
    made: list[SystemdNotifier] = []

    def make(env: dict[str, str]) -> SystemdNotifier:
        made.append(SystemdNotifier(env))
        return made[-1]

    yield make
    for notifier in made:
        notifier.close()


@pytest.fixture
def listener(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    path = tmp_path / "notify"
    sock.bind(str(path))
    sock.setblocking(False)
    yield sock, str(path)
    sock.close()


def test_the_lifecycle_arrives_in_order_on_a_path_socket(
    listener: tuple[socket.socket, str], notifier_for: Callable[[dict[str, str]], SystemdNotifier]
) -> None:
    """READY with a status; a reload as RELOADING (with the monotonic clock) then READY again
    with the same status; STOPPING once; a reload after stopping announces nothing."""
    sock, path = listener
    notifier = notifier_for({"NOTIFY_SOCKET": path})
    assert notifier.reloading() is False  # not ready yet: a reload is not the service's news
    assert notifier.reloaded() is False
    assert notifier.ready("serving calls")
    assert notifier.reloading()
    assert notifier.reloaded()
    assert notifier.stopping("draining 2 calls")
    assert notifier.stopping("again") is False
    assert notifier.reloading() is False and notifier.ready("late") is False
    notifier.close()
    ready, reloading, reloaded, stopping = received(sock)
    assert ready == {"READY": "1", "STATUS": "serving calls"}
    assert reloading["RELOADING"] == "1" and reloading["STATUS"] == "reloading"
    monotonic_us = int(reloading["MONOTONIC_USEC"])
    assert abs(monotonic_us - time.monotonic_ns() // 1000) < 5_000_000  # systemd's clock, in µs
    assert reloaded == ready
    assert stopping == {"STOPPING": "1", "STATUS": "draining 2 calls"}


def test_an_abstract_socket_name_is_reached(
    notifier_for: Callable[[dict[str, str]], SystemdNotifier],
) -> None:
    """``@name`` is the abstract namespace (systemd's own NOTIFY_SOCKET can be one)."""
    name = f"ivr-test-notify-{uuid.uuid4().hex}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    sock.setblocking(False)
    try:
        notifier = notifier_for({"NOTIFY_SOCKET": "@" + name})
        assert notifier.status("connecting")
        assert received(sock) == [{"STATUS": "connecting"}]
    finally:
        sock.close()


def test_without_notify_socket_nothing_is_sent_and_nothing_logged(
    notifier_for: Callable[[dict[str, str]], SystemdNotifier],
) -> None:
    notifier = notifier_for({})
    with structlog.testing.capture_logs() as logs:
        assert not notifier.enabled
        assert notifier.ready("serving") is False and notifier.stopping("bye") is False
    assert logs == []


@pytest.mark.parametrize("name", ["/nonexistent/notify", "vsock:2:1234", "@"])
def test_a_broken_socket_warns_once_and_never_raises(
    name: str, notifier_for: Callable[[dict[str, str]], SystemdNotifier]
) -> None:
    """A socket that is gone (or an address we cannot use) costs one warning, not the server."""
    notifier = notifier_for({"NOTIFY_SOCKET": name})
    with structlog.testing.capture_logs() as logs:
        assert notifier.ready("serving") is False
        assert notifier.notify("WATCHDOG=1") is False
        assert notifier.stopping("bye") is False
    (warning,) = logs
    assert warning["event"] == "systemd.notify_failed" and warning["log_level"] == "warning"
    assert warning["notify_socket"] == name


def test_a_receiver_that_went_away_after_the_first_message(
    listener: tuple[socket.socket, str], notifier_for: Callable[[dict[str, str]], SystemdNotifier]
) -> None:
    sock, path = listener
    notifier = notifier_for({"NOTIFY_SOCKET": path})
    assert notifier.ready("serving")
    sock.close()
    Path(path).unlink()
    with structlog.testing.capture_logs() as logs:
        assert notifier.notify("WATCHDOG=1") is False
        assert notifier.notify("WATCHDOG=1") is False
    assert [entry["event"] for entry in logs] == ["systemd.notify_failed"]


async def test_watchdog_pings_at_half_the_interval(
    listener: tuple[socket.socket, str], notifier_for: Callable[[dict[str, str]], SystemdNotifier]
) -> None:
    """WATCHDOG_USEC=200 ms: a ping every 100 ms, from the event loop."""
    sock, path = listener
    notifier = notifier_for({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "200000"})
    assert notifier.watchdog_interval_s == pytest.approx(0.1)
    task = asyncio.create_task(notifier.watchdog())
    await asyncio.sleep(0.35)
    task.cancel()
    pings = received(sock)
    assert 3 <= len(pings) <= 5 and all(p == {"WATCHDOG": "1"} for p in pings)


@pytest.mark.parametrize(
    ("env", "interval"),
    [
        ({}, None),
        ({"WATCHDOG_USEC": "30000000"}, 15.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid())}, 15.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}, None),  # another process's watchdog
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "soon"}, None),
    ],
)
def test_watchdog_interval_from_the_environment(
    env: dict[str, str], interval: float | None, notifier_for: Callable[[dict[str, str]], SystemdNotifier]
) -> None:
    assert notifier_for({"NOTIFY_SOCKET": "/run/x", **env}).watchdog_interval_s == interval


async def test_watchdog_without_a_socket_returns_at_once(
    notifier_for: Callable[[dict[str, str]], SystemdNotifier],
) -> None:
    await asyncio.wait_for(notifier_for({"WATCHDOG_USEC": "1000"}).watchdog(), 1)
