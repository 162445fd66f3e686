"""Readings of a running server from outside: its CPU time and RSS from /proc, one value from
its Prometheus /metrics page, and a bounded wait for a condition on them."""

from __future__ import annotations

import asyncio
import os
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_KIB = os.sysconf("SC_PAGE_SIZE") // 1024


def proc_cpu_s(pid: int) -> float:
    """User + system CPU seconds the process has used (clock-tick resolution)."""
    # The command name may hold spaces and parentheses: fields are counted after its last ")".
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime + stime


def proc_rss_kib(pid: int) -> int:
    """The process's resident set size."""
    return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE_KIB


def metric(port: int, name: str) -> float:
    """The first sample of metric ``name`` on 127.0.0.1:``port``/metrics (0 when absent)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as resp:
        for line in resp.read().decode().splitlines():
            if line.startswith((name + " ", name + "{")):
                return float(line.rsplit(" ", 1)[1])
    return 0.0


async def wait_for(predicate: Callable[[], bool], timeout_s: float, what: str) -> None:
    """Poll ``predicate`` every 50 ms until it holds; OSError (server not up yet) counts as not
    yet. TimeoutError naming ``what`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except OSError:
            pass
        await asyncio.sleep(0.05)
    raise TimeoutError(f"timed out waiting for {what}")
