"""`ivr-server run` as a child process of an end-to-end test.

Each server gets its own outbox file (the default one is locked by whichever server holds it),
and every server a test started is killed when the test ends, passed or failed: a server left
running answers the next tests' calls and holds their media ports."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import tempfile
from pathlib import Path

from tests.conftest import TEST_ASR_RESOURCES

_STARTED: list[asyncio.subprocess.Process] = []


async def start(env: dict[str, str]) -> asyncio.subprocess.Process:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("IVR_")}
    outbox = Path(tempfile.mkdtemp(prefix="ivr-outbox-")) / "outbox.sqlite3"
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "ivr_server",
        "run",
        env={
            **clean,
            "IVR_ASR_RESOURCES_DIR": str(TEST_ASR_RESOURCES),
            "IVR_ADMISSION": "count",
            "IVR_OUTBOX_PATH": str(outbox),
            **env,
        },
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _STARTED.append(proc)
    return proc


async def reap() -> list[int]:
    """Kill what is still running of the servers started so far; the pids killed."""
    killed = []
    while _STARTED:
        proc = _STARTED.pop()
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
                killed.append(proc.pid)
        await asyncio.wait_for(proc.wait(), 30)
    return killed


async def migrate(env: dict[str, str]) -> None:
    upgrade = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "ivr_server",
        "db",
        "upgrade",
        env={**os.environ, **env},
        stdout=asyncio.subprocess.DEVNULL,
    )
    assert await upgrade.wait() == 0


async def read_until(proc: asyncio.subprocess.Process, event: str, lines: list[dict]) -> None:
    assert proc.stderr is not None
    async with asyncio.timeout(20):
        while True:
            raw = await proc.stderr.readline()
            assert raw, f"server exited before {event!r}: {lines[-3:]}"
            lines.append(json.loads(raw))
            if lines[-1]["event"] == event:
                return
