"""The soak's run: one ``ivr-server run`` sized as a capacity level, a warm-up round of callers,
an idle reading, then ``minutes`` of callers kept at ``calls`` at once (SIPp's -l, the banking
script of bench-capacity), the server sampled every SAMPLE_S, and an idle reading once the last
call has ended. The sandbox's lock is held throughout."""

from __future__ import annotations

import asyncio
import time
from contextlib import suppress
from pathlib import Path
from typing import Any

import httpx

from benchmarks.capacity.levels import (
    CAPACITY,
    ENDED_WAIT_S,
    GOODBYE_MS,
    CapacityCall,
    level_settings,
    run_sipp,
    tree_memory_kib,
)
from benchmarks.capacity.levels import callers as round_of_callers
from benchmarks.capacity.measure import sipp_counts
from benchmarks.ops.measure import prometheus_value, read_stats, tree_of
from benchmarks.ops.runs import BANKING, Bench
from benchmarks.ops.server import Server, running, until
from benchmarks.soak.measure import Sample, calls_placed
from ivr_server.ops.sipp import scenario

SAMPLE_S = 10.0
SETTLE_S = 5.0  # after the last call ended: its store writes and tasks done
SPREAD_S = 8.0  # the first round's callers arrive over this, as a capacity level's
CALL_SETUP_S = 5.0  # a call's length beyond its script: INVITE to answer, the hang-up
PROBLEMS = ("call.flow_failed", "call.session_crashed", "call.setup_failed", "call.setup_crashed",
            "call.cleanup_timeout", "asr.worker_died", "media.clock_skipped")  # fmt: skip


def tree_counts(root: int) -> dict[str, int]:
    """Open file descriptors and threads over ``root``'s process tree, from /proc."""
    fds = threads = 0
    for s in tree_of(read_stats(), root):
        with suppress(OSError):
            fds += sum(1 for _ in Path(f"/proc/{s.pid}/fd").iterdir())
        with suppress(OSError, ValueError, StopIteration):
            status = Path(f"/proc/{s.pid}/status").read_text().splitlines()
            threads += int(next(x for x in status if x.startswith("Threads:")).split()[1])
    return {"fds": fds, "threads": threads}


async def reading(http: httpx.AsyncClient, server: Server, began: float) -> Sample:
    """The server now: its tree from /proc, its loop's tasks and calls up from /metrics."""
    page = ""
    with suppress(httpx.HTTPError):
        page = (await http.get(server.url("/metrics"))).text
    counts = await asyncio.to_thread(tree_counts, server.pid)
    tasks, calls = (prometheus_value(page, n) for n in ("ivr_event_loop_tasks", "ivr_calls_active"))
    return Sample(
        t_s=round(time.monotonic() - began, 1),
        pss_mb=round(await asyncio.to_thread(tree_memory_kib, server.pid) / 1024, 1),
        fds=counts["fds"],
        threads=counts["threads"],
        tasks=None if tasks is None else int(tasks),
        calls=None if calls is None else int(calls),
    )


async def idle(http: httpx.AsyncClient, server: Server, began: float) -> Sample:
    """A reading once no call is up any more (and SETTLE_S more)."""

    async def none_up() -> bool:
        return (await reading(http, server, began)).calls == 0

    with suppress(TimeoutError):
        async with asyncio.timeout(ENDED_WAIT_S):
            await until(none_up, 1.0)
    await asyncio.sleep(SETTLE_S)
    return await reading(http, server, began)


def soak_callers(b: Bench, calls: int, placed: int, workdir: Path) -> CapacityCall:
    """``placed`` callers of the script, at most ``calls`` at once (SIPp's -l holds the count):
    the first ``calls`` arrive over SPREAD_S, as a capacity level's, and each call that ends is
    replaced at once (the rate is far above what -l lets through)."""
    return CapacityCall(
        scenario(b.steps, workdir, bye_timeout_ms=GOODBYE_MS), service=BANKING, workdir=workdir,
        calls=placed, concurrent=calls, rate_per_s=calls,
        timeout_s=placed / calls * (b.call_s + GOODBYE_MS / 1000) + 300,
        extra=("-rp", str(round(SPREAD_S * 1000)), "-trace_stat", "-stf", str(workdir / "sipp-stats.csv")),
    )  # fmt: skip


async def _sampling(http: httpx.AsyncClient, server: Server, began: float, into: list[Sample]) -> None:
    while True:
        with suppress(OSError):  # the server gone: the run finds out
            into.append(await reading(http, server, began))
        await asyncio.sleep(SAMPLE_S)


def _counts(workdir: Path) -> dict[str, int]:
    try:
        return sipp_counts((workdir / "sipp-stats.csv").read_text())
    except (OSError, ValueError, KeyError):
        return {"successful": 0, "failed": 0}


async def soak(b: Bench, calls: int, minutes: float) -> dict[str, Any]:
    """The raw figures of one soak (measure.py judges them)."""
    placed = calls_placed(minutes, calls, b.call_s + CALL_SETUP_S)
    raw: dict[str, Any] = {"calls_at_once": calls, "minutes": minutes, "placed": placed, "server_error": None}
    ended_before = 0
    warm_dir, soak_dir = await b.rundir("warm-up"), await b.rundir("soak")
    settings = level_settings(calls)
    async with (
        b.turn(),
        running(CAPACITY, soak_dir, b.bank_url, b.receiver.url, settings) as server,
        httpx.AsyncClient(timeout=10) as http,
    ):
        began = time.monotonic()
        try:
            warm = round_of_callers(b, calls, SPREAD_S, warm_dir)
            raw["warmup_sipp_exit"] = await run_sipp(warm)
            raw["warmup_calls"] = _counts(warm_dir)
            raw["idle_before"] = (await idle(http, server, began)).as_dict()
            ended_before = server.log.count("call.ended")
            samples: list[Sample] = []
            sampler = asyncio.create_task(_sampling(http, server, began, samples))
            soaked = time.monotonic()
            try:
                raw["sipp_exit"] = await run_sipp(soak_callers(b, calls, placed, soak_dir))
            finally:
                sampler.cancel()
                with suppress(asyncio.CancelledError):
                    await sampler
            raw["soak_s"] = round(time.monotonic() - soaked, 1)
            offset = soaked - began  # samples are timed from the soak's start
            raw["samples"] = [{**s.as_dict(), "t_s": round(s.t_s - offset, 1)} for s in samples]
            raw["idle_after"] = (await idle(http, server, began)).as_dict()
        except (RuntimeError, OSError, httpx.HTTPError) as err:
            raw["server_error"] = f"{type(err).__name__}: {err}"[:300]
        raw["calls"] = _counts(soak_dir)
        raw["ended_by_server"] = server.log.count("call.ended") - ended_before
        raw["problems"] = {e: server.log.count(e) for e in PROBLEMS}
        b.saw(server)
    return raw
