"""A redis-server of a test's own: on a free port, in memory only, stopped and started at will."""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ivr_server.store.event_bus import RedisStream


class Redis:
    """A redis-server on a free port, in memory only; stop() and start() again at will."""

    def __init__(self, workdir: Path) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.workdir = workdir
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.workdir)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        for _ in range(100):
            if (
                subprocess.run(
                    ["redis-cli", "-p", str(self.port), "ping"], check=False, capture_output=True
                ).stdout
                == b"PONG\n"
            ):
                return
            time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)
            self.proc = None


async def stream_entries(bus: RedisStream, stream: str) -> list[dict[str, str]]:
    """Every entry of ``stream``, oldest first, its fields as text."""
    return [
        {k.decode(): v.decode() for k, v in fields.items()} for _, fields in await bus.client.xrange(stream)
    ]
