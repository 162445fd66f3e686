"""Closed questions answered with something else: the sentences, the run and its page (measuring
code: ivr_server/evaluation/closed.py; command line: scripts/bench-closed-questions).

Three closed questions of the banking flow (flows/banking.yaml): the card's last four digits
(``last4``, heard with a four-digit grammar), the 8-digit account number (``account``, secure)
and the confirmation "That's the card ending ..., right?" (``confirm_last4``, heard with the
flow's yes/no model). At each the caller answers, asks for a repair in words, asks for another
task (digit questions) or corrects the digits (the confirmation); each is scored by what the
engine does with the words heard. Rows of each question and category alternate between a
development half (even rows) and a test half (odd rows).
"""

from __future__ import annotations

import json
import platform
import random
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from benchmarks.banking_speech import BANKING, banking_speech
from benchmarks.common import commit, cores
from ivr_server.dialog.spec.loader import load_flow
from ivr_server.evaluation import closed
from ivr_server.evaluation.closed import ClosedItem, Question
from ivr_server.speech.adapt.compile import COMPILER_VERSION, Compiler

SEED = 2127
VOICES = ("piper", "piper:1.15", "espeak:en-us:150", "espeak:en-gb+m3:165")
QUESTIONS = (
    Question("last4", "lost_card", "last4"),
    Question("account", "balance", "account"),
    Question("confirm_last4", "lost_card", "last4", confirming=True),
)

# Written for this benchmark, not taken from any data set or other benchmark. Rows of a category
# come in pairs (one for each half) of the same repair, task or kind of answer; half the digit
# answers are the digits alone (what the digit grammar is made for), half have words around them.
SENTENCES: dict[str, tuple[tuple[str, str, str], ...]] = {
    "last4": (
        ("{digits}", "answer", "digits"),
        ("{digits}", "answer", "digits"),
        ("it's {digits}", "answer", "digits"),
        ("um {digits}", "answer", "digits"),
        ("{digits}", "answer", "digits"),
        ("{digits}", "answer", "digits"),
        ("sure {digits}", "answer", "digits"),
        ("the card ends in {digits}", "answer", "digits"),
        ("{digits}", "answer", "digits"),
        ("{digits}", "answer", "digits"),
        ("yeah it's {digits}", "answer", "digits"),
        ("{digits} please", "answer", "digits"),
        ("sorry can you repeat the question", "repair", "repair:repeat"),
        ("um what did you say", "repair", "repair:repeat"),
        ("what are my options", "repair", "repair:help"),
        ("I don't know what to say", "repair", "repair:help"),
        ("I want to cancel", "repair", "repair:cancel"),
        ("just stop please", "repair", "repair:cancel"),
        ("let's start over", "repair", "repair:start_over"),
        ("I'd like to start again", "repair", "repair:start_over"),
        ("go back please", "repair", "repair:back"),
        ("sorry I need to go back", "repair", "repair:back"),
        ("hang on a second", "repair", "repair:hold"),
        ("hold on let me find it", "repair", "repair:hold"),
        ("can I speak to a person please", "repair", "repair:agent"),
        ("I'd rather talk to a human", "repair", "repair:agent"),
        ("actually can you tell me my balance first", "digression", "task:balance"),
        ("sorry before that what's my current balance", "digression", "task:balance"),
        ("actually I'd like to hear my recent transactions", "digression", "task:transactions"),
        ("wait can you read me my last few payments", "digression", "task:transactions"),
        ("could you transfer me to a customer service agent", "digression", "task:agent"),
        ("you know what just put me through to a representative", "digression", "task:agent"),
        ("can someone call me back later instead", "digression", "task:callback"),
        ("actually I'd prefer a callback", "digression", "task:callback"),
        ("um how much money do I have right now", "digression", "task:balance"),
        ("hang on what's the balance on my account", "digression", "task:balance"),
        ("um what did I spend recently", "digression", "task:transactions"),
        ("before that could you list my latest purchases", "digression", "task:transactions"),
        ("um is there a real person I can talk to", "digression", "task:agent"),
        ("okay I'd rather speak with an operator about this", "digression", "task:agent"),
        ("could I book a call back for this afternoon", "digression", "task:callback"),
        ("sorry can you just have someone call me back", "digression", "task:callback"),
    ),
    "account": (
        ("{digits}", "answer", "digits"),
        ("{digits}", "answer", "digits"),
        ("my account number is {digits}", "answer", "digits"),
        ("it's {digits}", "answer", "digits"),
        ("{digits}", "answer", "digits"),
        ("{digits}", "answer", "digits"),
        ("um {digits}", "answer", "digits"),
        ("okay the number is {digits}", "answer", "digits"),
        ("{digits}", "answer", "digits"),
        ("{digits}", "answer", "digits"),
        ("account {digits}", "answer", "digits"),
        ("{digits} that's it", "answer", "digits"),
        ("could you say it again please", "repair", "repair:repeat"),
        ("sorry I didn't hear you", "repair", "repair:repeat"),
        ("what do I say", "repair", "repair:help"),
        ("um what are the options", "repair", "repair:help"),
        ("please cancel it", "repair", "repair:cancel"),
        ("oh stop", "repair", "repair:cancel"),
        ("I want to start from the beginning", "repair", "repair:start_over"),
        ("main menu please", "repair", "repair:start_over"),
        ("previous question please", "repair", "repair:back"),
        ("um go back", "repair", "repair:back"),
        ("just a moment let me find it", "repair", "repair:hold"),
        ("give me a minute please", "repair", "repair:hold"),
        ("I need to talk to someone", "repair", "repair:agent"),
        ("can I get an agent on the line", "repair", "repair:agent"),
        ("actually can I hear my recent transactions instead", "digression", "task:transactions"),
        ("sorry what were my last payments", "digression", "task:transactions"),
        ("oh actually I need to report a stolen card", "digression", "task:lost_card"),
        ("before that I think I lost my debit card", "digression", "task:lost_card"),
        ("can you connect me with a representative", "digression", "task:agent"),
        ("honestly I'd rather deal with a human", "digression", "task:agent"),
        ("could you have someone call me back tomorrow", "digression", "task:callback"),
        ("actually please book me a callback", "digression", "task:callback"),
        ("um show me my transaction history first", "digression", "task:transactions"),
        ("wait I'd like to hear what I spent lately", "digression", "task:transactions"),
        ("hold on my card is missing can you block it", "digression", "task:lost_card"),
        ("wait first I want to block my card", "digression", "task:lost_card"),
        ("I'd like to speak to an actual agent about this", "digression", "task:agent"),
        ("is there someone I could talk to in person", "digression", "task:agent"),
        ("I'm driving can you call me back later", "digression", "task:callback"),
        ("um can I get a call back instead", "digression", "task:callback"),
    ),
    "confirm_last4": (
        ("yes that's right", "answer", "yes"),
        ("yeah", "answer", "yes"),
        ("no that's not it", "answer", "no"),
        ("nope wrong card", "answer", "no"),
        ("correct", "answer", "yes"),
        ("yep that's the one", "answer", "yes"),
        ("no", "answer", "no"),
        ("no that's not my card", "answer", "no"),
        ("sure is", "answer", "yes"),
        ("yes it is", "answer", "yes"),
        ("uh no", "answer", "no"),
        ("um no that isn't right", "answer", "no"),
        ("sorry what did you say", "repair", "repair:repeat"),
        ("come again please", "repair", "repair:repeat"),
        ("um what can I say", "repair", "repair:help"),
        ("help please", "repair", "repair:help"),
        ("um cancel please", "repair", "repair:cancel"),
        ("forget about it", "repair", "repair:cancel"),
        ("can I start over please", "repair", "repair:start_over"),
        ("start again", "repair", "repair:start_over"),
        ("go back one step please", "repair", "repair:back"),
        ("back up please", "repair", "repair:back"),
        ("wait a second", "repair", "repair:hold"),
        ("one moment please", "repair", "repair:hold"),
        ("let me speak to an agent", "repair", "repair:agent"),
        ("I want a real person", "repair", "repair:agent"),
        ("no it's {digits}", "correction", "correction"),
        ("nope {digits}", "correction", "correction"),
        ("that's wrong it should be {digits}", "correction", "correction"),
        ("no sorry {digits}", "correction", "correction"),
        ("wrong card it's {digits}", "correction", "correction"),
        ("um no the card ends in {digits}", "correction", "correction"),
        ("not quite it's {digits}", "correction", "correction"),
        ("no no {digits}", "correction", "correction"),
        ("actually it's {digits}", "correction", "correction"),
        ("no I meant {digits}", "correction", "correction"),
        ("that's not right {digits}", "correction", "correction"),
        ("no the number is {digits}", "correction", "correction"),
    ),
}

# Digits read out one by one with a pause after each ("two, four, six, eight"), as off a card or
# a statement. Added after the rows above (their own draws, after every other item), so that
# the items before keep their digits and voices.
PAUSED: dict[str, tuple[tuple[str, str, str], ...]] = {
    "last4": (
        ("{digits,}", "answer", "digits"),
        ("{digits,}", "answer", "digits"),
        ("okay {digits,}", "answer", "digits"),
        ("it's {digits,}", "answer", "digits"),
    ),
    "account": (
        ("{digits,}", "answer", "digits"),
        ("{digits,}", "answer", "digits"),
        ("um {digits,}", "answer", "digits"),
        ("the number is {digits,}", "answer", "digits"),
    ),
}

Log = Callable[[str], None]


def items(seed: int = SEED) -> list[ClosedItem]:
    """Every sentence of every question, its digits drawn from ``seed``."""
    rng = random.Random(seed)
    flow = load_flow(BANKING)
    out: list[ClosedItem] = []
    for question in QUESTIONS:
        length = flow.slots[question.slot].length or 4
        out += closed.closed_items(SENTENCES[question.name], question, length, rng)
    paused = random.Random(seed + 1)
    for question in QUESTIONS:
        length = flow.slots[question.slot].length or 4
        out += closed.closed_items(PAUSED.get(question.name, ()), question, length, paused)
    return out


def halves(all_items: Sequence[ClosedItem]) -> dict[str, list[ClosedItem]]:
    """Even rows of each question and category: the development half; odd rows: the test half."""
    out: dict[str, list[ClosedItem]] = {"dev": [], "test": []}
    seen: dict[tuple[str, str], int] = {}
    for item in all_items:
        key = (item.question.name, item.category)
        n = seen[key] = seen.get(key, -1) + 1
        out["dev" if n % 2 == 0 else "test"].append(item)
    return out


def run(
    log: Log,
    halves_measured: Sequence[str] = ("dev", "test"),
    snr_db: float = 30.0,
    nlu_cache: Path | None = None,
) -> dict[str, Any]:
    started = time.perf_counter()
    parts = banking_speech(nlu_cache)
    engine, renderer, flow, intent_model = parts.engine, parts.renderer, parts.flow, parts.intent_model
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="ivr-bench-closed-") as tmp:
        resources = Compiler(Path(tmp) / "asr-resources").compile(flow)
        log(f"banking: resources {resources.version} ({resources.words} words)")
        split = halves(items())
        for half in halves_measured:
            heard = closed.hear_items(
                split[half], engine, resources, flow, renderer, VOICES, SEED + len(half), snr_db
            )
            scored = out[half] = closed.score(split[half], heard, flow, intent_model)
            log(f"{half}: answers {scored['answers']:.1%}, others {scored['others']:.1%} "
                f"({scored['recordings']} recordings)")  # fmt: skip
    return {
        "date": time.strftime("%Y-%m-%d"),
        "commit": commit(),
        "compiler": COMPILER_VERSION,
        "machine": f"{cores()} cores, Python {platform.python_version()}",
        "config": {"seed": SEED, "voices": VOICES, "snr_db": snr_db, "per_sentence": 2},
        "halves": out,
        "seconds": round(time.perf_counter() - started, 1),
    }


def _without_paused(before: dict[str, Any] | None, data: dict[str, Any]) -> bool:
    """Whether ``before`` is a run from before the digits read out one by one, and ``data`` has them."""

    def has(run: dict[str, Any] | None) -> bool:
        halves = (run or {}).get("halves", {}).values()
        return any(
            "paused" in cell for h in halves for cells in h["questions"].values() for cell in cells.values()
        )

    return before is not None and has(data) and not has(before)


def markdown(data: dict[str, Any], command: str, before: dict[str, Any] | None = None) -> str:
    """The page for one run; ``before``, an earlier run's shares in a column beside."""

    def pct(x: float | None) -> str:
        return "" if x is None else f"{x:.1%}"

    def earlier(half: str, *keys: str) -> str:
        node: Any = (before or {}).get("halves", {}).get(half)
        for key in keys:
            node = node.get(key) if isinstance(node, dict) else None
        return pct(node) if isinstance(node, float | int) else ""

    out = [
        "# Closed questions answered with something else",
        "",
        f"Regenerate with `{command}`. {data['date']}, {data['machine']}, commit {data['commit']}, "
        f"compiler {data['compiler']}; whole run {data['seconds']:.0f} s.",
        "",
        "Banking flow (flows/banking.yaml), PocketSphinx (accurate), each question heard as a call "
        "hears it; each sentence said by two of " + ", ".join(data["config"]["voices"])
        + f" through the simulated line ({data['config']['snr_db']:g} dB SNR). Right: the engine "
        "did what the caller meant with the words heard; on the text: with the words said.",
        "",
        "A digression counts when the state's decision acts on the task or confirms it (the engine "
        "then asks \"You want balance, right?\"). At the account question it measures what is "
        "heard and understood only: the engine never takes a detour on a secure slot's answer "
        "(its words may hold the secret), so there a caller is asked again. Answers: \"digits "
        "alone\" is what a digit grammar is made for; the others have words around the digits; "
        "\"read out digit by digit\" has a pause after each digit (counted in the answers, and "
        "among the digits alone when no other word is said).",
        "",
    ]  # fmt: skip
    if before:
        out += [f"Before: commit {before['commit']}, compiler {before['compiler']}.", ""]
        if _without_paused(before, data):
            out += ["Answers marked † before: a run without the digits read out one by one (their "
                    "items were added after it; the other items are the same).", ""]  # fmt: skip
    out += [
        "| half | question | category | recordings | right | before | on the text |",
        "|---|---|---|---:|---:|---:|---:|",
    ]
    for half, h in data["halves"].items():
        for question, cells in h["questions"].items():
            for category, c in cells.items():
                mark = " †" if "paused" in c and _without_paused(before, data) else ""
                was = earlier(half, "questions", question, category, "right")
                out.append(
                    f"| {half} | {question} | {category} | {c['recordings']} | {pct(c['right'])} | "
                    f"{was}{mark if was else ''} | {pct(c['text'])} |"
                )
                for part, label in (("alone", "digits alone"), ("paused", "read out digit by digit")):
                    if (sub := c.get(part)) is not None:
                        was = earlier(half, "questions", question, category, part, "right")
                        was += mark if was and part == "alone" else ""
                        out.append(
                            f"| {half} | {question} | {category}: {label} | {sub['recordings']} | "
                            f"{pct(sub['right'])} | {was} | |"
                        )
        for name, label in (("answers", "all answers"), ("others", "all but answers")):
            was = earlier(half, name)
            was += " †" if was and name == "answers" and _without_paused(before, data) else ""
            out.append(f"| {half} | | {label} | | {pct(h[name])} | {was} | |")
    if failed := sum(h.get("failed", 0) for h in data["halves"].values()):
        out += ["", f"{failed} recognitions raised an error; counted as heard nothing, as a call does."]
    out += ["", "<details><summary>Misheard</summary>", "", "```json"]
    mistakes = {
        half: {q: {c: cell["mistakes"] for c, cell in cells.items()} for q, cells in h["questions"].items()}
        for half, h in data["halves"].items()
    }
    out += [json.dumps(mistakes, indent=1), "```", "</details>", ""]
    return "\n".join(out)
