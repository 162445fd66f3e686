"""Caller goals, generated from a fixed seed: what each caller wants (tasks with their values) and
how this caller puts it (wording, digits said or keyed). The same goal is called into both flows;
repair scenarios (banking only) add what the caller says instead of answering, once."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from ivr_server.speech.adapt.words import ONES

SEED = 20261206
GOALS = 40
REPAIRS_PER_KIND = 5
ACCOUNTS = ("12345678", "87654321", "24681357", "55501234")  # the demo bank's (demo_bank.ACCOUNTS)
KINDS = ("block", "balance", "transactions", "agent")
REPAIR_KINDS = ("correction", "repeat", "digression", "cancel")

# No commas inside a sentence: Piper pauses 0.3 s at one, which the flows' end_silence_ms (300)
# takes for the end of the turn; people do not stop mid-sentence for that long.
_DIGIT = ONES[:10]
BLOCK_ASKS = (
    "I lost my card.",
    "My card was stolen.",
    "I need to block my card.",
    "I can't find my debit card anywhere.",
    "Someone stole my wallet with my cards in it.",
    "I think I've lost my credit card.",
    "My card is missing please block it.",
)
BLOCK_ASKS_WITH_DIGITS = (
    "I lost my card it ends in {d}.",
    "My card ending in {d} was stolen.",
    "Please block my card ending {d}.",
    "I've lost my credit card and the last four digits are {d}.",
)
BALANCE_ASKS = (
    "What's my balance?",
    "How much money do I have in my account?",
    "Can you tell me my account balance?",
    "I'd like to check my balance please.",
    "How much is in my account right now?",
)
TRANSACTION_ASKS = (
    "What are my recent transactions?",
    "Can I hear my last few payments?",
    "What did I spend recently?",
    "I want to go over my recent charges.",
    "Read me my transaction history please.",
)
AGENT_ASKS = (
    "I'd like to speak to someone about a charge I want to dispute.",
    "There's a payment on my statement I don't recognize can I talk to a person?",
    "I need to dispute a transaction put me through to an agent please.",
    "Can I speak to a representative about a disputed charge?",
    "I was charged twice for the same thing I want to talk to a human.",
)
AGENT_AGAIN = (
    "I'll wait for an agent.",
    "Agent please.",
    "I'd still like to speak to an agent.",
    "Put me in the queue for an agent please.",
)
YESES = ("Yes.", "Yes that's right.", "Correct.", "Yes please.", "That's right.")
BYES = ("No thanks that's all.", "No that's everything. Goodbye.", "Nothing else thank you.",
        "That's all thanks.")  # fmt: skip
REPEATS = ("Sorry could you say that again?", "Sorry what was that?", "Pardon?",
           "I didn't catch that can you repeat it?", "Say that again please.")  # fmt: skip
CORRECTIONS = ("No I said {d}.", "No it's {d}.", "No it was {d}.")
DIGRESSIONS = ("Actually first what's my balance?", "Wait before that how much is in my account?",
               "Oh and what's my balance first?")  # fmt: skip
CANCELS = ("Cancel that.", "Never mind.", "Forget it.", "Cancel.")


@dataclass(frozen=True)
class Task:
    """One thing the caller wants done: ``block`` (value: the card's last 4 digits), ``balance`` or
    ``transactions`` (value: the 8-digit account), ``agent`` (no value)."""

    kind: str
    value: str = ""


@dataclass(frozen=True)
class Interjection:
    """What the caller says instead of answering, the first time it hears a prompt of kind ``at``
    (caller.prompt_kind); ``adds``: a task it then wants first (a digression)."""

    at: str
    say: str
    adds: Task | None = None


@dataclass(frozen=True)
class Goal:
    """A caller's goal and manner. ``asks``: the sentence that opens each task (banking), ``again``:
    a second wording for when the first is not understood; ``say_last4``/``say_account``: the
    caller says those digits (else keys them); ``repair``: the scenario's kind (empty for a goal);
    ``cancels``: the caller cancels its task, so the right effect is none. A task an interjection
    ``adds`` is asked for only by it."""

    id: str
    title: str
    tasks: tuple[Task, ...]
    asks: tuple[str, ...]
    again: tuple[str, ...]
    agent_again: str = "Agent please."
    yes: str = "Yes."
    bye: str = "No thanks, that's all."
    say_last4: bool = True
    say_account: bool = False
    repair: str = ""
    interjections: tuple[Interjection, ...] = field(default_factory=tuple)
    cancels: bool = False


def spoken_digits(digits: str, rng: random.Random | None = None, pauses: bool = False) -> str:
    """Digits as a caller says them, one word each ("seven oh three nine": with ``rng``, 0 is "oh"
    or "zero" at random; without, "zero"); with ``pauses``, as read off a card on their own, a short
    pause between ("seven, oh, three, nine")."""
    words = [_DIGIT[int(d)] for d in digits]
    if rng is not None:
        words = [rng.choice(("oh", "zero")) if w == "zero" else w for w in words]
    return (", " if pauses else " ").join(words)


def _last4(rng: random.Random) -> str:
    return "".join(rng.choice("0123456789") for _ in range(4))


def _ask(task: Task, rng: random.Random, with_digits: bool) -> str:
    if task.kind == "block":
        if with_digits:
            return rng.choice(BLOCK_ASKS_WITH_DIGITS).format(d=spoken_digits(task.value, rng))
        return rng.choice(BLOCK_ASKS)
    table = {"balance": BALANCE_ASKS, "transactions": TRANSACTION_ASKS, "agent": AGENT_ASKS}
    return rng.choice(table[task.kind])


def _other(asked: str, task: Task, rng: random.Random) -> str:
    """Another wording of ``task`` than ``asked`` (no digits: a caller rephrasing keeps it short)."""
    table = {"block": BLOCK_ASKS, "balance": BALANCE_ASKS, "transactions": TRANSACTION_ASKS,
             "agent": AGENT_ASKS}  # fmt: skip
    return rng.choice([a for a in table[task.kind] if a != asked])


def _title(tasks: tuple[Task, ...]) -> str:
    words = {"block": "block card ending {v}", "balance": "balance of {v}",
             "transactions": "transactions of {v}", "agent": "agent about a dispute"}  # fmt: skip
    return ", then ".join(words[t.kind].format(v=t.value) for t in tasks)


def _goal(gid: str, tasks: tuple[Task, ...], rng: random.Random, **extra: object) -> Goal:
    # a repair at the digits' question needs that question: its caller keeps the digits for it
    digits_first = rng.random() < 0.4 and not extra.get("repair")
    asks = tuple(_ask(t, rng, digits_first and i == 0) for i, t in enumerate(tasks))
    again = tuple(_other(a, t, rng) for a, t in zip(asks, tasks, strict=True))
    return Goal(
        id=gid,
        title=_title(tasks),
        tasks=tasks,
        asks=asks,
        again=again,
        agent_again=rng.choice(AGENT_AGAIN),
        yes=rng.choice(YESES),
        bye=rng.choice(BYES),
        say_last4=rng.random() < 0.7,
        say_account=rng.random() < 0.3,
        **extra,  # type: ignore[arg-type]
    )


def goals(n: int = GOALS, seed: int = SEED) -> list[Goal]:
    """``n`` goals: single tasks of each kind in turn, and every fifth goal two tasks in one call
    (balance then transactions of one account, or a card block then a balance)."""
    rng = random.Random(seed)
    out: list[Goal] = []
    for i in range(n):
        account = rng.choice(ACCOUNTS)
        if i % 5 == 4:
            pair = (
                (Task("balance", account), Task("transactions", account))
                if rng.random() < 0.5
                else (Task("block", _last4(rng)), Task("balance", account))
            )
            tasks: tuple[Task, ...] = pair
        else:
            kind = KINDS[(i - i // 5) % len(KINDS)]
            value = {"block": _last4(rng), "agent": ""}.get(kind, account)
            tasks = (Task(kind, value),)
        out.append(_goal(f"g{i + 1:02d}", tasks, rng))
    return out


def repairs(per_kind: int = REPAIRS_PER_KIND, seed: int = SEED + 1) -> list[Goal]:
    """Repair scenarios through banking, ``per_kind`` of each: a caller who says the wrong card
    digits and corrects them at the confirmation; asks for the question again; asks for the
    balance while blocking a card; cancels a card block at its confirmation."""
    rng = random.Random(seed)
    out: list[Goal] = []
    for kind in REPAIR_KINDS:
        for i in range(per_kind):
            gid = f"r-{kind}-{i + 1}"
            last4, account = _last4(rng), rng.choice(ACCOUNTS)
            if kind == "correction":
                wrong = _last4(rng)
                while wrong == last4:
                    wrong = _last4(rng)
                said = spoken_digits(wrong, rng, pauses=True)
                fix = rng.choice(CORRECTIONS).format(d=spoken_digits(last4, rng))
                said_wrong = Interjection("last4", said), Interjection(f"confirm:{wrong}", fix)
                goal = _goal(gid, (Task("block", last4),), rng, repair=kind, interjections=said_wrong)
            elif kind == "repeat":
                task = Task("block", last4) if rng.random() < 0.5 else Task("balance", account)
                at = rng.choice(("open", "last4" if task.kind == "block" else "account"))
                goal = _goal(gid, (task,), rng, repair=kind,
                             interjections=(Interjection(at, rng.choice(REPEATS)),))  # fmt: skip
            elif kind == "digression":  # the balance is asked for only on the way, by the aside
                aside = Interjection("last4", rng.choice(DIGRESSIONS), adds=Task("balance", account))
                tasks = (Task("block", last4), Task("balance", account))
                goal = _goal(gid, tasks, rng, repair=kind, interjections=(aside,))
            else:
                stop = Interjection(f"confirm:{last4}", rng.choice(CANCELS))
                goal = _goal(gid, (Task("block", last4),), rng, repair=kind, interjections=(stop,),
                             cancels=True)  # fmt: skip
            out.append(goal)
    return out
