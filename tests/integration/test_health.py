"""/healthz and /readyz on the metrics listener, over real HTTP: what each check says, a stalled
loop, draining, and bad requests answered without touching the event loop."""

from __future__ import annotations

import asyncio
import http.client
import json
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from prometheus_client import generate_latest

from ivr_server.observability.health import Health, watch_store
from ivr_server.observability.metrics import Metrics, serve_metrics


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def listener() -> Iterator[tuple[int, Health, Clock]]:
    clock = Clock()
    health = Health(2.0, clock)
    server = serve_metrics(Metrics(), "127.0.0.1", 0, health)
    try:
        yield server.server_port, health, clock
    finally:
        server.shutdown()


def get(port: int, path: str, method: str = "GET") -> tuple[int, Any]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request(method, path)
        response = conn.getresponse()
        body = response.read()
        return response.status, json.loads(body) if response.getheader(
            "Content-Type"
        ) == "application/json" else body
    finally:
        conn.close()


def test_starting_then_ready_then_draining(listener: tuple[int, Health, Clock]) -> None:
    port, health, clock = listener
    assert get(port, "/healthz") == (200, {"alive": True, "starting": True, "loop_heartbeat_age_s": 0.0,
                                           "uptime_s": 0.0})  # fmt: skip
    status, body = get(port, "/readyz")
    assert status == 503 and body["ready"] is False
    assert body["checks"] == {"ari": "not checked yet", "store": "not checked yet", "speech": "not checked yet",
                              "flows": "not checked yet", "server": "starting"}  # fmt: skip
    health.serving = True
    health.beat()
    for check in ("ari", "store", "speech", "flows"):
        health.holds(check)
    assert get(port, "/readyz") == (
        200,
        {"ready": True, "checks": dict.fromkeys(("ari", "store", "speech", "flows"), "ok")},
    )
    health.fails("ari", "connection refused to 127.0.0.1:8088")
    status, body = get(port, "/readyz")
    assert status == 503 and body["checks"]["ari"] == "connection refused to 127.0.0.1:8088"
    assert body["checks"]["store"] == "ok"
    health.holds("ari")
    health.draining = True
    status, body = get(port, "/readyz")
    assert status == 503 and "draining" in body["checks"]["draining"]
    assert get(port, "/healthz")[0] == 200  # draining is not dead


def test_a_stalled_loop_answers_503_on_both(listener: tuple[int, Health, Clock]) -> None:
    port, health, clock = listener
    health.serving = True
    health.beat()
    clock.now += 1.9
    assert get(port, "/healthz")[0] == 200
    clock.now += 0.2  # 2.1 s since the last heartbeat
    status, body = get(port, "/healthz")
    assert status == 503 and body["alive"] is False and body["loop_heartbeat_age_s"] == pytest.approx(2.1)
    status, body = get(port, "/readyz")
    assert status == 503 and body["checks"]["loop"].startswith("event loop stalled for 2.1s")


def test_metrics_still_served_and_bad_requests_are_4xx(listener: tuple[int, Health, Clock]) -> None:
    port, _, _ = listener
    status, body = get(port, "/metrics")
    assert status == 200 and b"ivr_event_loop_lag_seconds_bucket" in body
    assert get(port, "/../../etc/passwd")[0] == 404
    assert get(port, "/healthz", "POST")[0] == 405
    assert get(port, "/readyz?x=" + "a" * 2000)[0] == 503  # still starting: a long query changes nothing


def test_a_slow_client_does_not_hold_up_the_others(listener: tuple[int, Health, Clock]) -> None:
    port, health, _ = listener
    slow = [socket.create_connection(("127.0.0.1", port)) for _ in range(20)]
    try:
        for s in slow:
            s.sendall(b"GET /heal")  # and never the rest
        started = time.perf_counter()
        results = []

        def probe() -> None:
            results.append(get(port, "/healthz")[0])

        threads = [threading.Thread(target=probe) for _ in range(50)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
        assert results == [200] * 50 and time.perf_counter() - started < 5
    finally:
        for s in slow:
            s.close()


async def test_the_store_check_follows_the_probe() -> None:
    health = Health()
    answers: list[BaseException | None] = [None, OSError("connection refused"), None]

    async def probe() -> None:
        outcome = answers.pop(0) if answers else None
        if outcome is not None:
            raise outcome

    task = asyncio.create_task(watch_store(health, probe, every_s=0.01))
    try:
        seen = []
        for _ in range(200):
            await asyncio.sleep(0.005)
            problem = health.readiness()[1]["checks"]["store"]
            if not seen or seen[-1] != problem:
                seen.append(problem)
            if len(seen) >= 3:
                break
        assert seen[:3] == ["ok", "OSError: connection refused", "ok"], seen
    finally:
        task.cancel()


async def test_the_heartbeat_measures_loop_lag() -> None:
    health = Health()
    lags: list[float] = []
    task = asyncio.create_task(health.keep_beating(0.02, lags.append))
    await asyncio.sleep(0.05)
    time.sleep(0.1)  # noqa: ASYNC251 - the loop blocked on purpose, as a decoder run on it would
    await asyncio.sleep(0.05)
    task.cancel()
    assert health.serving and max(lags) >= 0.07, lags


async def test_each_heartbeat_counts_the_loops_tasks_and_the_page_has_the_process_figures() -> None:
    """A soak's leak checks read these: the loop's tasks (back down once calls end) and the
    process's open file descriptors and memory, Prometheus's standard names."""
    metrics = Metrics()
    sleepers = [asyncio.create_task(asyncio.sleep(10)) for _ in range(5)]
    metrics.beat(0.001)
    with_sleepers = metrics.loop_tasks._value.get()
    for task in sleepers:
        task.cancel()
    await asyncio.gather(*sleepers, return_exceptions=True)
    metrics.beat(0.001)
    assert with_sleepers - metrics.loop_tasks._value.get() == 5
    page = generate_latest(metrics.registry).decode()
    assert "ivr_event_loop_tasks" in page and "process_open_fds" in page
    assert "process_resident_memory_bytes" in page
