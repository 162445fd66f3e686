"""Whether a call did its goal, judged by the back end alone: the demo bank's log of requests (one
call's slice of it) and the store's end reason; and when the first right effect came.

A goal is done when every task's effect is there and nothing else was done to another card or
account: ``block`` a POST /cards/block with the goal's last4 (and no block of any other card),
``balance``/``transactions`` a GET of that endpoint for the goal's account (and no request about an
account the goal does not name), ``agent`` the call ended ``transferred``. A goal whose caller
cancels is done when no card was blocked at all. SIPp must also have finished its scenario."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from benchmarks.ab.goals import Goal, Task

_ACCOUNT_PATH = re.compile(r"^/accounts/([^/]+)/(balance|transactions)\b")


def _blocked(call: dict[str, Any]) -> str | None:
    if call.get("path") != "/cards/block":
        return None
    body = call.get("body")
    return str(body.get("last4")) if isinstance(body, dict) else ""


def _does(call: dict[str, Any], task: Task) -> bool:
    """Whether this back-end request is ``task``'s effect."""
    if task.kind == "block":
        return _blocked(call) == task.value
    m = _ACCOUNT_PATH.match(str(call.get("path", "")))
    return m is not None and m.groups() == (task.value, task.kind)


def verdict(
    goal: Goal, calls: Sequence[dict[str, Any]], end_reason: str | None, sipp_exit: int
) -> tuple[bool, str]:
    """(done, why not: empty when done) for one call of ``goal``."""
    problems: list[str] = []
    if sipp_exit != 0:
        problems.append(f"SIPp exited {sipp_exit}")
    wanted = () if goal.cancels else goal.tasks
    cards = {t.value for t in wanted if t.kind == "block"}
    accounts = {t.value for t in goal.tasks if t.kind in ("balance", "transactions")}
    for call in calls:
        last4 = _blocked(call)
        if last4 is not None and last4 not in cards:
            problems.append(f"blocked card {last4!r}")
        m = _ACCOUNT_PATH.match(str(call.get("path", "")))
        if m is not None and m.group(1) not in accounts:
            problems.append(f"asked about account {m.group(1)}")
    for task in wanted:
        if task.kind == "agent":
            if end_reason != "transferred":
                problems.append(f"not transferred (ended {end_reason})")
        elif not any(_does(c, task) for c in calls):
            problems.append(f"no {task.kind} {task.value}")
    return not problems, "; ".join(problems)


def first_useful_s(
    goal: Goal, calls: Sequence[dict[str, Any]], answered_at: float, transferred_at: float | None
) -> float | None:
    """Seconds from answer to the goal's first right effect: a right back-end request (the bank's
    ``at``), or for an agent goal the hand-off to the queue; None when there was none."""
    if goal.cancels:
        return None
    times = [float(c["at"]) for c in calls if any(_does(c, t) for t in goal.tasks)]
    if transferred_at is not None and any(t.kind == "agent" for t in goal.tasks):
        times.append(transferred_at)
    return round(min(times) - answered_at, 2) if times else None
