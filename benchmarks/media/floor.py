"""The platform floor: CPU % of a bare asyncio loop doing one call's packet rates (a 20 ms
timerfd tick sending 50 packets/s, 50 packets/s arriving from another process) with no RTP
work at all, i.e. the cost of the wake-ups and syscalls on this machine.

Measured in a process of its own (its CPU time is the figure): ``python -m
benchmarks.media.floor SECONDS`` prints the percentage; ``... feed PORT`` is the sender.
"""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import time

from benchmarks.common import REPO

PACKET = 172  # bytes: 12 RTP header + 160 µ-law samples
PERIOD_S = 0.02


def feed(port: int, packets: int = 1999) -> None:
    """Send ``packets`` datagrams to 127.0.0.1:``port``, one every 20 ms, as Asterisk would."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    t = time.monotonic()
    for n in range(1, packets + 1):
        s.sendto(b"x" * PACKET, ("127.0.0.1", port))
        time.sleep(max(0, t + n * PERIOD_S - time.monotonic()))


def measure(seconds: float) -> float:
    """This process's CPU % over ``seconds`` of ticking, sending and draining (after 1 s warm-up)."""
    from ivr_server.media.timerfd import PeriodicTimer

    mine, peer = (socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(2))
    for s in (mine, peer):
        s.bind(("127.0.0.1", 0))
        s.setblocking(False)
    feeder = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.media.floor", "feed", str(mine.getsockname()[1])], cwd=REPO
    )
    timer = PeriodicTimer(time.monotonic() + PERIOD_S, PERIOD_S)

    def tick() -> None:
        timer.expirations()
        mine.sendto(b"y" * PACKET, peer.getsockname())

    def drain() -> None:
        try:
            while True:
                mine.recv(2048)
        except BlockingIOError:
            pass

    async def run() -> float:
        loop = asyncio.get_running_loop()
        loop.add_reader(timer.fd, tick)
        loop.add_reader(mine.fileno(), drain)
        await asyncio.sleep(1)
        c, w = time.process_time(), time.monotonic()
        await asyncio.sleep(seconds)
        return (time.process_time() - c) / (time.monotonic() - w) * 100

    try:
        return asyncio.run(run())
    finally:
        feeder.kill()
        feeder.wait()
        timer.close()
        for s in (mine, peer):
            s.close()


def platform_floor(seconds: float) -> float:
    """The floor measured in a fresh process, rounded to 0.01 %."""
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.media.floor", str(seconds)],
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO,
        timeout=seconds + 30,
    )
    return round(float(out.stdout.strip()), 2)


def main(argv: list[str]) -> int:
    if argv[:1] == ["feed"]:
        feed(int(argv[1]))
    else:
        print(measure(float(argv[0])))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
