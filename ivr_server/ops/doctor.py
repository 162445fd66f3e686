"""`ivr-server doctor`'s checks: each gives ok / warn / fail, a one-line finding and a one-line
fix. They run concurrently, each under a deadline, so a dead host costs one timeout, not one
per check. The checks themselves live in doctor_asterisk.py (ARI) and doctor_host.py (this
machine: ports, speech, flows, store, disk)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any, TypeVar

from ivr_server.config import Settings

T = TypeVar("T")


class Status(StrEnum):
    OK = "ok"
    WARN = "warn"
    FAIL = "fail"


@dataclass(frozen=True)
class Finding:
    check: str
    status: Status
    finding: str
    fix: str = ""  # empty when nothing is to be done

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class DoctorOptions:
    timeout_s: float = 10.0
    """Deadline of each check; they run side by side, so this bounds the whole run too."""
    asterisk_cli: list[str] | None = None
    """A command that runs one Asterisk CLI command given as its last argument, e.g.
    ["asterisk", "-rx"]: with it the dialplan itself is read."""


Check = Callable[[Settings, DoctorOptions], Awaitable[list[Finding]]]


async def run_checks(settings: Settings, options: DoctorOptions) -> list[Finding]:
    """Every check's findings, in a stable order; a check past its deadline or raising is a FAIL."""
    from ivr_server.ops.doctor_asterisk import ASTERISK_CHECKS
    from ivr_server.ops.doctor_host import HOST_CHECKS

    checks: list[tuple[str, Check]] = [*ASTERISK_CHECKS, *HOST_CHECKS]
    results = await asyncio.gather(*(_bounded(name, check, settings, options) for name, check in checks))
    return [finding for findings in results for finding in findings]


async def _bounded(name: str, check: Check, settings: Settings, options: DoctorOptions) -> list[Finding]:
    try:
        async with asyncio.timeout(options.timeout_s):
            return await check(settings, options)
    except TimeoutError:
        return [
            Finding(
                name,
                Status.FAIL,
                f"no answer within {options.timeout_s:g} s",
                "check that the host is up and reachable (or raise --timeout)",
            )
        ]
    except Exception as err:  # one broken check must not hide the others' findings
        return [Finding(name, Status.FAIL, f"the check failed: {type(err).__name__}: {err}", "")]


async def in_thread(fn: Callable[..., T], *args: Any) -> T:
    """``fn(*args)`` in a daemon thread: unlike asyncio.to_thread, a call that hangs (a model
    loading from a dead NFS mount) does not keep the process alive after its deadline."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def work() -> None:
        try:
            result = fn(*args)
        except BaseException as err:  # handed to the awaiting task, which re-raises it
            loop.call_soon_threadsafe(_settle, future, None, err)
        else:
            loop.call_soon_threadsafe(_settle, future, result, None)

    threading.Thread(target=work, name=f"doctor-{getattr(fn, '__name__', 'check')}", daemon=True).start()
    return await future


def _settle(future: asyncio.Future[Any], result: Any, err: BaseException | None) -> None:
    if future.done():  # the deadline passed; nobody waits for it any more
        return
    if err is not None:
        future.set_exception(err)
    else:
        future.set_result(result)


def ok(check: str, finding: str) -> Finding:
    return Finding(check, Status.OK, finding)


def warn(check: str, finding: str, fix: str = "") -> Finding:
    return Finding(check, Status.WARN, finding, fix)


def fail(check: str, finding: str, fix: str = "") -> Finding:
    return Finding(check, Status.FAIL, finding, fix)


def exit_ok(findings: list[Finding], strict: bool) -> bool:
    bad = {Status.FAIL, Status.WARN} if strict else {Status.FAIL}
    return not any(f.status in bad for f in findings)
