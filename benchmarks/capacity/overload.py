"""Calls offered beyond capacity, with admission by load: which callers the server took and
which it refused, whether the calls it took stayed as good as at ``max_calls``, and whether
every refused caller heard the "high volume of calls" prompt. Pure functions over a level's
raw figures (``levels.run_level`` with ``overload_settings``) and the prompt's audio."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from benchmarks.capacity.measure import quantile
from benchmarks.common import page_head, percentile
from benchmarks.speech.audio import LOUD_DBFS
from ivr_server.media.audio import frame_dbfs

DEGRADED = 1.10  # issue 18: calls in progress keep their reply p95 within 10 % of max_calls'
HEARD_SHARE = 0.8  # of the prompt's loud audio received: the refused caller heard it
REFUSED_WITHIN_S = 20.0  # a call the line hung up this soon after answering was refused
FRAME = 160  # 20 ms at 8 kHz


def overload_settings(offered: int, warm: int) -> dict[str, str]:
    """The server of an overload run: admission by load alone (the count far above what is
    offered) and decoders built ahead for ``warm`` calls (the capacity run's max_calls)."""
    return {"IVR_ADMISSION": "load", "IVR_MAX_CALLS": str(4 * offered), "IVR_ASR_WARM_STREAMS": str(warm)}


def loud_ms(pcm: np.ndarray) -> int:
    """Loud audio in 8 kHz ``pcm``, in ms, as the bench counts received packets (20 ms frames
    above LOUD_DBFS)."""
    frames = len(pcm) // FRAME
    return 20 * sum(frame_dbfs(pcm[i * FRAME : (i + 1) * FRAME]) > LOUD_DBFS for i in range(frames))


def refused(row: Mapping[str, Any]) -> bool:
    """The line hung up on the caller within REFUSED_WITHIN_S of answering (a served call runs
    the whole script, about a minute, and the caller hangs up... or the line after goodbye)."""
    answered, ended = row.get("answered_s"), row.get("ended_s")
    return (
        answered is not None
        and ended is not None
        and row.get("ended_by") == "line"
        and ended - answered < REFUSED_WITHIN_S
    )


def summarize_overload(
    raw: Mapping[str, Any], prompt_loud_ms: int, at_max: Mapping[str, Any]
) -> dict[str, Any]:
    """The run's figures and verdict: ``at_max`` is capacity.json's level at max_calls."""
    rows: Sequence[Mapping[str, Any]] = raw["call_rows"]
    served = [r for r in rows if r.get("answered_s") is not None and not refused(r)]
    refusals = [r for r in rows if refused(r)]
    turns = [t for r in served for t in r["turns"]]
    timed = [t["reply_ms"] for t in turns if t["reply_ms"] is not None and not t["overlapped"]]
    unheard = [r for r in refusals if r.get("heard_ms", 0) < HEARD_SHARE * prompt_loud_ms]
    metrics = raw.get("metrics") or {}
    by_reason = metrics.get("declined_by_reason", {})
    p95 = percentile(timed, 95)
    limit = None if at_max.get("reply_p95_ms") is None else at_max["reply_p95_ms"] * DEGRADED
    s: dict[str, Any] = {
        "offered": raw["calls"],
        "answered": sum(r.get("answered_s") is not None for r in rows),
        "served": len(served),
        "refused": len(refusals),
        "declined_by_server": {k: int(v) for k, v in by_reason.items()},
        "refused_heard_prompt": len(refusals) - len(unheard),
        "prompt_loud_ms": prompt_loud_ms,
        "served_turns_unanswered": sum(t["reply_ms"] is None for t in turns),
        "served_reply_p50_ms": None if not timed else round(percentile(timed, 50) or 0, 1),
        "served_reply_p95_ms": None if p95 is None else round(p95, 1),
        "at_max_calls": at_max.get("calls"),
        "at_max_reply_p95_ms": at_max.get("reply_p95_ms"),
        "reply_p95_limit_ms": None if limit is None else round(limit, 1),
        "server_error": raw.get("server_error"),
    }
    lag = quantile(metrics["loop_lag_buckets"], 0.99) if metrics.get("loop_lag_buckets") else None
    s["loop_lag_p99_ms"] = None if lag is None else round(lag * 1000, 1)
    s["failed_because"] = overload_failures(s)
    return s


def overload_failures(s: Mapping[str, Any]) -> list[str]:
    """Why the run misses the target (empty: met): a call unanswered, a served call with a turn
    unanswered or its reply p95 past the limit, a refused caller who did not hear the prompt,
    refusals that were not the server's for load."""
    why = []
    if s.get("server_error"):
        why.append(f"the server failed: {s['server_error']}")
    if s["answered"] < s["offered"]:
        why.append(f"{s['offered'] - s['answered']} of {s['offered']} calls not answered")
    if s["served_turns_unanswered"]:
        why.append(f"{s['served_turns_unanswered']} turns of served calls without a reply")
    p95, limit = s["served_reply_p95_ms"], s["reply_p95_limit_ms"]
    if p95 is None or limit is None:
        why.append("reply p95 not measured (served calls or the max_calls figure)")
    elif p95 > limit:
        why.append(f"served calls' reply p95 {p95:.0f} ms > {limit:.0f} ms (max_calls' + 10 %)")
    if s["refused_heard_prompt"] < s["refused"]:
        why.append(f"{s['refused'] - s['refused_heard_prompt']} of {s['refused']} refused callers "
                   "did not hear the prompt")  # fmt: skip
    overload = s["declined_by_server"].get("overload", 0)
    if overload != s["refused"]:
        why.append(f"the server declined {overload} calls for load, the callers saw {s['refused']} refused")
    if s["declined_by_server"].get("busy"):
        why.append(f"{s['declined_by_server']['busy']} calls declined by count, not load")
    return why


def overload_markdown(data: Mapping[str, Any]) -> str:
    """overload.md: the run's verdict and figures, from overload.json alone."""
    s, meta = data["summary"], data["meta"]
    met = not s["failed_because"]
    declined = ", ".join(f"{k} {v}" for k, v in s["declined_by_server"].items()) or "none"
    return "\n".join(
        [
            *page_head("Calls offered beyond capacity: admission by load", data["commit"], meta),
            "## Result",
            "",
            f"**{'Met' if met else 'Not met'}**"
            + ("." if met else ": " + "; ".join(s["failed_because"]) + "."),
            "",
            "| Figure | Measured |",
            "|---|---|",
            f"| Callers offered (twice max_calls {s['at_max_calls']}) | {s['offered']} |",
            f"| Answered by Asterisk | {s['answered']} |",
            f"| Served by the server (the whole script) | {s['served']} |",
            f"| Refused (the line hung up within {REFUSED_WITHIN_S:.0f} s) | {s['refused']} |",
            f"| Declined by the server, by reason (its counter) | {declined} |",
            f"| Refused callers who heard the prompt (>= {HEARD_SHARE:.0%} of its "
            f"{s['prompt_loud_ms']} ms of loud audio) | {s['refused_heard_prompt']} of {s['refused']} |",
            f"| Served calls' reply p50 / p95 | {s['served_reply_p50_ms']} / {s['served_reply_p95_ms']} ms |",
            f"| Reply p95 at max_calls (capacity.json), limit +10 % | {s['at_max_reply_p95_ms']} ms, "
            f"{s['reply_p95_limit_ms']} ms |",
            f"| Served calls' turns without a reply | {s['served_turns_unanswered']} |",
            f"| Event-loop lag p99 over the run | {s['loop_lag_p99_ms']} ms |",
            "",
        ]
    )
