"""The figures per flow, the targets, and the report: ab.json (everything), ab.md (made from
ab.json alone, so the committed report can be checked against its figures) and ab.png."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.ab.goals import REPAIR_KINDS, Goal
from benchmarks.common import median, percentile

FLOWS = ("banking", "phone-tree")
SPEED_TARGET = 0.5  # banking's median call time at most this share of the phone tree's
REPAIR_TARGET = 0.95

Row = dict[str, Any]


def _p90(values: Sequence[float]) -> float | None:
    p = percentile(list(values), 90)
    return round(p, 2) if p is not None else None


def flow_summary(rows: Sequence[Row]) -> dict[str, Any]:
    """One flow's goal calls: success rate, call duration (median, p90), caller turns, keys,
    transfers, time to the first useful action (median, p90, over calls that had one)."""
    durations = [r["duration_s"] for r in rows if r["duration_s"] is not None]
    firsts = [r["first_useful_s"] for r in rows if r["first_useful_s"] is not None]
    done = sum(r["done"] for r in rows)
    return {
        "calls": len(rows),
        "done": done,
        "success": round(done / len(rows), 3) if rows else None,
        "duration_median_s": median(durations, 2),
        "duration_p90_s": _p90(durations),
        "turns_median": median([r["caller_turns"] for r in rows]),
        "turns_mean": round(sum(r["caller_turns"] for r in rows) / len(rows), 2) if rows else None,
        "keys_mean": round(sum(r["keys_pressed"] for r in rows) / len(rows), 2) if rows else None,
        "transferred": sum(r["transferred"] for r in rows),
        "agent_rings": sum(r["agent_attempts"] for r in rows),
        "first_useful_median_s": median(firsts, 2),
        "first_useful_p90_s": _p90(firsts),
    }


def paired_medians(rows: Sequence[Row]) -> dict[str, Any]:
    """Median call time per flow over the goal calls both flows did: the same goals, finished."""
    done = {(r["goal"], r["flow"]) for r in rows if r["done"]}
    both = sorted({g for g, _ in done if all((g, f) in done for f in FLOWS)})
    out: dict[str, Any] = {"goals": len(both)}
    for flow in FLOWS:
        out[flow] = median([r["duration_s"] for r in rows if r["flow"] == flow and r["goal"] in both], 2)
    return out


def repair_summary(rows: Sequence[Row]) -> dict[str, Any]:
    """Per repair kind: calls, done, and how many the engine logged as that repair."""
    out: dict[str, Any] = {}
    for kind in REPAIR_KINDS:
        mine = [r for r in rows if r["repair"] == kind]
        out[kind] = {"calls": len(mine), "done": sum(r["done"] for r in mine),
                     "recognized": sum(kind in r["repairs_recognized"] for r in mine)}  # fmt: skip
    calls = sum(v["calls"] for v in out.values())
    done = sum(v["done"] for v in out.values())
    out["all"] = {"calls": calls, "done": done, "success": round(done / calls, 3) if calls else None}
    return out


def targets(summary: dict[str, Any], paired: dict[str, Any], repairs: dict[str, Any]) -> dict[str, Any]:
    """Each target with the figures it is judged on, and whether it is met (None: no figures)."""
    bank, tree = summary["banking"], summary["phone-tree"]
    ratio = None
    if paired["banking"] is not None and paired["phone-tree"]:
        ratio = round(paired["banking"] / paired["phone-tree"], 3)
    success_ok = None
    if bank["success"] is not None and tree["success"] is not None:
        success_ok = bank["success"] >= tree["success"]
    repair_rate = repairs["all"]["success"]
    return {
        "speed": {
            "ratio": ratio,
            "target": SPEED_TARGET,
            "met": None if ratio is None else ratio <= SPEED_TARGET,
        },  # fmt: skip
        "success": {"banking": bank["success"], "phone-tree": tree["success"], "met": success_ok},
        "repairs": {
            "success": repair_rate,
            "target": REPAIR_TARGET,
            "met": None if repair_rate is None else repair_rate >= REPAIR_TARGET,
        },  # fmt: skip
    }


def goal_listing(goal: Goal) -> dict[str, Any]:
    return {"id": goal.id, "title": goal.title, "repair": goal.repair, "first_words": goal.asks[0],
            "last4": "said" if goal.say_last4 else "keyed",
            "account": "said" if goal.say_account else "keyed",
            "interjections": [i.say for i in goal.interjections]}  # fmt: skip


def _planning(planned_as: str) -> str:
    """How the script was made, by the run's ``planned_as`` (runs before it: "said")."""
    if planned_as == "heard":
        return (
            "to learn the call's turns and what the line says before each, the flow getting each "
            "sentence as the server's recognizer hears it (the caller's Piper speech through G.711 "
            "µ-law, recognized by the server's engine with the flow's resources for the question): "
            "after a mishearing the caller answers what the line then says, as a caller who listens "
            "would, though it never sees the words recognized"
        )
    return (
        "(the engine and intent model, no audio, every word heard as said) to learn the call's "
        "turns and what the line says before each"
    )


def build(rows: Sequence[Row], goals: Sequence[Goal], meta: dict[str, Any]) -> dict[str, Any]:
    """ab.json's content: the run's description, the figures, and every call. A call the shared
    sandbox interfered with in every try is listed but counts for neither flow."""
    lost = [r for r in rows if r.get("interfered")]
    rows = [r for r in rows if not r.get("interfered")]
    again = sum(r.get("tries", 1) - 1 for r in rows) + sum(meta["tries"] for _ in lost)
    meta = {**meta, "placed_again": again,
            "lost_to_sandbox": [f"{r['goal']} {r['flow']}" for r in lost]}  # fmt: skip
    plain = [r for r in rows if not r["repair"]]
    summary = {f: flow_summary([r for r in plain if r["flow"] == f]) for f in FLOWS}
    paired = paired_medians(plain)
    repairs = repair_summary([r for r in rows if r["repair"]])
    return {"meta": meta, "summary": summary, "paired": paired, "repairs": repairs,
            "targets": targets(summary, paired, repairs), "goals": [goal_listing(g) for g in goals],
            "calls": list(rows)}  # fmt: skip


def _f(value: Any, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _met(value: bool | None) -> str:
    return {True: "**met**", False: "**not met**", None: "not judged (no figures)"}[value]


def _cell(calls: Sequence[Row]) -> str:
    """A goal's calls into one flow: done (yes/NO, or k/n for several), then medians of duration,
    turns and time to first useful action."""
    if not calls:
        return "-"
    done = sum(c["done"] for c in calls)
    said = ("yes" if done else "NO") if len(calls) == 1 else f"{done}/{len(calls)}"
    duration = median([c["duration_s"] for c in calls])
    first = median([c["first_useful_s"] for c in calls])
    return f"{said}, {_f(duration)}, {_f(median([c['caller_turns'] for c in calls]), 0)}, {_f(first)}"


def markdown(data: dict[str, Any]) -> str:
    """ab.md, from ab.json's content alone."""
    meta, s, t = data["meta"], data["summary"], data["targets"]
    lines = [
        "# Agent versus phone tree, measured with real calls",
        "",
        f"Regenerate: `{meta['command']}` (sandbox Asterisk running; about {meta['minutes']} minutes).",
        f"Run {meta['date']} at commit {meta['commit']}, {meta['machine']}; ASR: {meta['asr']}."
        + (
            f" The phone tree's calls (keyed: no speech recognized) taken from a run at commit "
            f"{', '.join(meta['tree_commits'])} (`--tree-from`)."
            if meta.get("tree_commits")
            else ""
        ),
        "",
        "## Method",
        "",
        f"{len([g for g in data['goals'] if not g['repair']])} caller goals (seed {meta['seed']}) are each "
        "called into `flows/banking.yaml` (extension 400, the caller speaks) and `flows/phone-tree.yaml` "
        "(401, the caller keys), plus repair scenarios into banking. A simulated caller listens to each "
        "prompt and answers as a caller with that goal would: its own wording, card digits said or keyed, "
        "yes/no to a read-back, the keys the menu offers. It is first run through the flow in-process "
        + _planning(meta.get("planned_as", "said"))
        + "; the real call then plays that script: SIPp through the sandbox Asterisk into the server, "
        "Piper speech as u-law RTP or RFC 4733 keys, each turn once the prompts before it have had time "
        f"to play (their Piper length + {meta['margin_ms']} ms; no barge-in), and an agent's ring (15 s: "
        "the sandbox's agent desk never answers) waited out. The script cannot adapt during the call: "
        "when the call's recognizer hears otherwise than the plan, the caller goes on with its planned "
        "turns, as a caller who does not listen would, so such a call usually fails its goal.",
        "",
        "A call counts as done only if the demo bank shows exactly the goal's effect (the card blocked "
        "is the goal's card and no other card was blocked; the balance/transactions were fetched for "
        "the goal's account and no other account was asked about; an agent goal ended `transferred` "
        "in the store; a cancelled block blocked nothing) and SIPp finished its scenario. Duration: "
        "answer to end in the store. Time to first useful action: answer to the first back-end request "
        "that is part of the goal (the bank's receive time), or for an agent goal to the hand-off to "
        "the agents' queue (the store's `handoff` event; banking first rings the agent desk, which "
        "does not count). Caller turns: utterances or key sequences the caller made. Transfers: calls "
        "ending `transferred`; agent rings: warm-transfer attempts. Calls run one at a time.",
        "",
        "The sandbox is shared: a call during which Asterisk restarted or another server took the ARI "
        f"app is placed again (up to {meta['tries']} tries). Calls placed again: {meta['placed_again']}; "
        f"lost in every try (counted for neither flow): {', '.join(meta['lost_to_sandbox']) or 'none'}.",
        "",
        "## Per flow (the goals)",
        "",
        "| Flow | Calls | Done | Success | Duration median (s) | Duration p90 (s) | Caller turns "
        "(median / mean) | Keys pressed (mean) | Transferred | Agent rings | First useful action median (s) "
        "| p90 (s) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for flow in FLOWS:
        v = s[flow]
        lines.append(
            f"| {flow} | {v['calls']} | {v['done']} | {_f(v['success'] and v['success'] * 100, 0)} % | "
            f"{_f(v['duration_median_s'])} | {_f(v['duration_p90_s'])} | {_f(v['turns_median'], 0)} / "
            f"{_f(v['turns_mean'])} | {_f(v['keys_mean'])} | {v['transferred']} | {v['agent_rings']} | "
            f"{_f(v['first_useful_median_s'])} | {_f(v['first_useful_p90_s'])} |"
        )
    p, r = data["paired"], data["repairs"]
    lines += [
        "",
        f"Goals done in both flows: {p['goals']}; their median call time: banking "
        f"{_f(p['banking'])} s, phone-tree {_f(p['phone-tree'])} s.",
        "",
        "## Targets",
        "",
        f"- Banking's median call time at most {int(SPEED_TARGET * 100)} % of the phone tree's (goals done "
        f"in both): {_f(t['speed']['ratio'] and t['speed']['ratio'] * 100, 0)} %: {_met(t['speed']['met'])}.",
        f"- Banking's task success at least the phone tree's: {_f(s['banking']['success'], 3)} vs "
        f"{_f(s['phone-tree']['success'], 3)}: {_met(t['success']['met'])}.",
        f"- Repair scenarios succeed in at least {int(REPAIR_TARGET * 100)} % of calls: "
        f"{r['all']['done']} of {r['all']['calls']}: {_met(t['repairs']['met'])}.",
        "",
        "## Repair scenarios (banking)",
        "",
        "| Repair | Calls | Done | Logged by the engine as that repair |",
        "|---|---|---|---|",
    ]
    lines += [f"| {k} | {r[k]['calls']} | {r[k]['done']} | {r[k]['recognized']} |" for k in REPAIR_KINDS]
    lines += ["", "## Per goal", "", "| Goal | What the caller wants | First words (banking) | Digits | "
              "banking: done, s, turns, first action s | phone-tree: done, s, turns, first action s |",
              "|---|---|---|---|---|---|"]  # fmt: skip
    for g in data["goals"]:
        cells = []
        for flow in FLOWS:
            mine = [c for c in data["calls"] if c["goal"] == g["id"] and c["flow"] == flow]
            cells.append(_cell(mine))
        digits = f"card {g['last4']}, account {g['account']}"
        words = g["first_words"] + "".join(f" / *{w}*" for w in g["interjections"])
        lines.append(f"| {g['id']} | {g['title']} | {words} | {digits} | {cells[0]} | {cells[1]} |")
    failed = [c for c in data["calls"] if not c["done"]]
    lines += ["", "## Calls not done", ""]
    if not failed:
        lines.append("None.")
    for c in failed:
        heard = " / ".join(c.get("heard") or []) or "-"
        lines.append(f"- {c['goal']} {c['flow']}: {c['why_not']}. The recognizer heard: {heard}")
    return "\n".join(lines) + "\n"


def plot(data: dict[str, Any], path: Path) -> None:
    """ab.png: call durations per flow (each call a dot, goals and repairs apart), and time to the
    first useful action per flow."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    calls = data["calls"]
    groups = {
        "banking": [c for c in calls if c["flow"] == "banking" and not c["repair"]],
        "phone-tree": [c for c in calls if c["flow"] == "phone-tree"],
        "banking repairs": [c for c in calls if c["repair"]],
    }
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.5))
    for ax, key, title in ((left, "duration_s", "Call duration (s), answer to end"),
                           (right, "first_useful_s", "Time to first useful action (s)")):  # fmt: skip
        names = [n for n in groups if key == "duration_s" or n != "banking repairs"]
        series = [[c[key] for c in groups[n] if c[key] is not None] for n in names]
        ax.boxplot([s or [0.0] for s in series], showfliers=False)
        ax.set_xticks(range(1, len(names) + 1), names)
        for i, (name, values) in enumerate(zip(names, series, strict=True), start=1):
            done = [c["done"] for c in groups[name] if c[key] is not None]
            for j, (v, ok) in enumerate(zip(values, done, strict=True)):
                x = i + ((j % 9) - 4) * 0.03
                ax.plot(x, v, "o", color="tab:green" if ok else "tab:red", alpha=0.6, markersize=4)
        ax.set_title(title)
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle("bench-ab: green dot a goal done, red not done")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write(out: Path, data: dict[str, Any]) -> str:
    """ab.json, ab.md and ab.png into ``out``; returns the markdown."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "ab.json").write_text(json.dumps(data, indent=1) + "\n")
    text = markdown(data)
    (out / "ab.md").write_text(text)
    plot(data, out / "ab.png")
    return text
