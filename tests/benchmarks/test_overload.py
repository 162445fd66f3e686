"""bench-capacity --offered's arithmetic (benchmarks.capacity.overload): which callers were
refused, whether each heard the prompt, whether the served calls kept their replies."""

from __future__ import annotations

import wave

import numpy as np

from benchmarks.capacity.overload import (
    loud_ms,
    overload_failures,
    overload_markdown,
    overload_settings,
    refused,
    summarize_overload,
)
from benchmarks.common import REPO
from ivr_server.config.settings import Settings

AT_MAX = {"calls": 32, "reply_p95_ms": 460.0}


def _served(start: float, replies: list[float | None]) -> dict:
    turns = [{"at_s": start + 10 * i, "reply_ms": r, "overlapped": False} for i, r in enumerate(replies)]
    return {"answered_s": start, "ended_s": start + 65, "ended_by": "line", "turns": turns, "heard_ms": 30000}


def _refused(start: float, heard_ms: int) -> dict:
    return {
        "answered_s": start,
        "ended_s": start + 6.5,
        "ended_by": "line",
        "turns": [],
        "heard_ms": heard_ms,
    }


def _raw(rows: list[dict], overload: int) -> dict:
    return {
        "calls": len(rows), "call_rows": rows, "server_error": None,
        "metrics": {"declined_by_reason": {"busy": 0.0, "overload": float(overload)},
                    "loop_lag_buckets": {"0.01": 90.0, "0.02": 100.0, "+Inf": 100.0}},
    }  # fmt: skip


def test_a_call_the_line_hung_up_on_within_seconds_was_refused() -> None:
    assert refused(_refused(1.0, 3000)) and not refused(_served(1.0, [300.0]))
    assert not refused({**_refused(1.0, 0), "ended_by": "caller"})  # the caller gave up
    assert not refused({"answered_s": None, "ended_s": None, "ended_by": None})


def test_served_calls_kept_their_replies_and_every_refused_caller_heard_the_prompt() -> None:
    rows = [_served(i, [300.0, 420.0, 350.0]) for i in range(4)] + [_refused(5.0 + i, 3400) for i in range(4)]
    s = summarize_overload(_raw(rows, 4), 3600, AT_MAX)
    assert (s["offered"], s["served"], s["refused"], s["refused_heard_prompt"]) == (8, 4, 4, 4)
    assert s["served_reply_p95_ms"] == 420.0 and s["reply_p95_limit_ms"] == 506.0
    assert s["loop_lag_p99_ms"] is not None and s["failed_because"] == []
    text = overload_markdown({"commit": "abc", "summary": s, "meta": {
        "command": "scripts/bench-capacity --offered 8", "date": "2026-12-06", "machine": "Xeon",
        "cores": 2, "asr": "pocketsphinx", "method": ["- how"]}})  # fmt: skip
    assert "**Met**." in text and "| Refused callers who heard the prompt" in text


def test_each_miss_is_named() -> None:
    rows = [_served(0, [300.0, 900.0, None]), _refused(2.0, 1000), _refused(3.0, 3400)]
    s = summarize_overload(_raw(rows, 1), 3600, AT_MAX)
    assert s["failed_because"] == [
        "1 turns of served calls without a reply",
        "served calls' reply p95 ... ms > 506 ms (max_calls' + 10 %)".replace(
            "...", f"{s['served_reply_p95_ms']:.0f}"
        ),
        "1 of 2 refused callers did not hear the prompt",
        "the server declined 1 calls for load, the callers saw 2 refused",
    ]
    busy = {**s, "failed_because": [], "declined_by_server": {"busy": 3, "overload": 2}}
    assert "3 calls declined by count, not load" in overload_failures(busy)


def test_the_prompts_loud_audio_and_the_servers_settings() -> None:
    with wave.open(str(REPO / "prompts" / "high_volume.wav")) as w:
        assert w.getframerate() in (8000, 16000)
    tone = (np.sin(np.arange(8000) / 8000 * 2 * np.pi * 440) * 8000).astype(np.int16)  # 1 s, loud
    assert loud_ms(np.concatenate([tone, np.zeros(8000, np.int16)])) == 1000
    s = Settings.model_validate({k[4:].lower(): v for k, v in overload_settings(64, 32).items()})
    assert (s.admission, s.max_calls, s.asr_warm_streams) == ("load", 256, 32)
