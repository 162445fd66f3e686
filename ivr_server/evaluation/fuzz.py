"""Fuzzing every parser that reads what callers, admins and peers send (scripts/fuzz).

Each target is a parser, a generator of hostile inputs and the project error types it may
raise. Inputs are mutations of real ones (ARI events as Asterisk sends them, the shipped flow
files, RTP packets, what callers say and key) plus the shapes known to break parsers: deep
nesting, numbers of thousands of digits, truncation, bytes that are not text, long runs. Any
other exception is a crash; an input that takes longer than ``HANG_S`` is a hang (the timer
interrupts it). The property tests (tests/unit) run the same parsers under Hypothesis; this
runs many more inputs, fast, and reports how many each parser took.
"""

from __future__ import annotations

import json
import random
import signal
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ivr_server.dialog.slots.parsers import parse, parse_heard
from ivr_server.dialog.spec.loader import check_text
from ivr_server.dialog.spec.model import Slot, Tool
from ivr_server.dialog.spec.template import Template, parse_template
from ivr_server.errors import AriEventError, FlowError, RtpParseError, ToolBadAnswer
from ivr_server.media.g711 import ulaw_decode
from ivr_server.media.rtp import RtpPacket
from ivr_server.privacy.redact import Redactor, SecureValues
from ivr_server.telephony.ari_events import parse_event
from ivr_server.tools.client import decode_answer, map_answer

HANG_S = 2.0
REPO = Path(__file__).resolve().parents[2]
Gen = Callable[[random.Random], Any]


class Hang(Exception):
    pass


@dataclass
class TargetReport:
    name: str
    inputs: int = 0
    refused: int = 0  # inputs the parser turned into its own error type (as it should)
    crashes: list[dict[str, str]] = field(default_factory=list)
    hangs: list[str] = field(default_factory=list)
    seconds: float = 0.0
    slowest_ms: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "inputs": self.inputs,
            "refused": self.refused,
            "crashes": len(self.crashes),
            "hangs": len(self.hangs),
            "inputs_per_s": round(self.inputs / max(self.seconds, 1e-9)),
            "slowest_ms": round(self.slowest_ms, 2),
            "examples": self.crashes[:5] + [{"hang": h} for h in self.hangs[:5]],
        }


@dataclass(frozen=True)
class Target:
    name: str
    generate: Gen
    run: Callable[[Any], Any]
    allowed: tuple[type[BaseException], ...]
    share: float  # of the inputs asked for (slow parsers take fewer)


# --- Mutations ----------------------------------------------------------------------------
HOSTILE_TEXT = (
    "9" * 5000, "[" * 3000, "{" * 3000, '"' * 1000, "\x00\xff\ufffd", "\ud800", "-" * 10_000,
    "1e999", "NaN", "Infinity", "a@" * 2000, "4111 1111 1111 1111", "one " * 500, "\n" * 1000,
)  # fmt: skip


def mutate_text(rng: random.Random, text: str) -> str:
    """One to four edits: flip, insert, delete, duplicate, truncate, splice in a hostile piece."""
    for _ in range(rng.randint(1, 4)):
        at = rng.randrange(len(text) + 1)
        edit = rng.randrange(7)
        if edit == 0 and text:
            text = text[:at] + chr(rng.randrange(0x20, 0x7F)) + text[at + 1 :]
        elif edit == 1:
            text = text[:at] + rng.choice(HOSTILE_TEXT)[: rng.choice((1, 10, 100, 10_000))] + text[at:]
        elif edit == 2:
            text = text[:at] + text[at + rng.randint(1, 20) :]
        elif edit == 3:
            piece = text[at : at + rng.randint(1, 40)]
            text = text[:at] + piece * rng.randint(2, 50) + text[at:]
        elif edit == 4:
            text = text[:at]
        elif edit == 5:
            text = text[:at] + chr(rng.randrange(0, 0x3000)) + text[at:]
        else:
            text = text[:at] + rng.choice(" \t,.-_:/@#*") + text[at:]
    return text


def json_value(rng: random.Random, depth: int = 0) -> Any:
    kind = rng.randrange(9 if depth < 4 else 6)
    if kind == 0:
        return None
    if kind == 1:
        return rng.choice((True, False))
    if kind == 2:
        return rng.choice((0, -1, 2**63, 10**30, rng.randrange(-(10**6), 10**6)))
    if kind == 3:
        return rng.choice((0.5, -1e308, 1e-320, 3.14))
    if kind in (4, 5):
        return rng.choice(("", "x", "9" * 40, "ü" * 10, "../../etc/passwd", "\x00")) + str(rng.randrange(100))
    if kind == 6:
        return [json_value(rng, depth + 1) for _ in range(rng.randrange(4))]
    keys = ("id", "name", "type", "channel", "digit", "available", "items", "0", "account", "")
    return {rng.choice(keys): json_value(rng, depth + 1) for _ in range(rng.randrange(5))}


# --- Targets ------------------------------------------------------------------------------
ARI_SEEDS = (
    {"type": "StasisStart", "application": "ivr-server", "timestamp": "2026-12-05T01:00:00.000+0000",
     "args": ["banking"], "channel": {"id": "1795475765.0", "name": "PJSIP/sipp-00000000", "state": "Ring",
     "caller": {"name": "Probe", "number": "+15550100"}, "dialplan": {"context": "ivr", "exten": "100"},
     "channelvars": {"IVR_FLOW": "banking"}}},
    {"type": "ChannelDtmfReceived", "application": "ivr-server", "digit": "5", "duration_ms": 100,
     "channel": {"id": "1.1", "name": "PJSIP/a-1"}},
    {"type": "ChannelDestroyed", "cause": 16, "cause_txt": "Normal Clearing",
     "channel": {"id": "1", "name": "x"}},
    {"type": "ChannelHangupRequest", "soft": True, "channel": {"id": "1", "name": "x"}},
    {"type": "StasisEnd", "channel": {"id": "1", "name": "x"}},
    {"type": "ChannelVarset", "variable": "X", "value": "1"},
)  # fmt: skip


def ari_message(rng: random.Random) -> str | bytes:
    seed = dict(rng.choice(ARI_SEEDS))
    way = rng.randrange(4)
    if way == 0:  # right syntax, wrong shapes
        for _ in range(rng.randint(1, 3)):
            seed[rng.choice([*seed, "channel", "digit", "args", "cause", "type"])] = json_value(rng)
        try:
            return json.dumps(seed)
        except ValueError:
            return "{}"
    if way == 1:
        return mutate_text(rng, json.dumps(seed))
    if way == 2:
        return rng.randbytes(rng.randrange(64))
    depth = rng.choice((10, 900, 1200, 5000, 50_000))
    return json.dumps({**seed, "x": None}).replace("null", "[" * depth + "]" * depth)


def rtp_datagram(rng: random.Random) -> bytes:
    good = RtpPacket(0, rng.randrange(65536), rng.randrange(2**32), 7, bytes(160)).to_bytes()
    way = rng.randrange(3)
    if way == 0:
        data = bytearray(good)
        for _ in range(rng.randint(1, 6)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        return bytes(data[: rng.randrange(len(data) + 1)])
    if way == 1:  # header flags that announce more than is there
        first = 0x80 | rng.choice((0x10, 0x20, 0x0F, 0x3F))
        return bytes([first]) + rng.randbytes(rng.randrange(40))
    return rng.randbytes(rng.choice((0, 1, 11, 12, 13, 172, 1500, 70_000)))


def parse_rtp(data: bytes) -> Any:
    packet = RtpPacket.parse(data)
    return ulaw_decode(packet.payload)


FLOW_TEXTS = tuple((REPO / "flows" / name).read_text() for name in ("banking.yaml", "phone-tree.yaml"))
YAML_PIECES = ("!!python/object/apply:os.system ['x']", "!include x.yaml", "&a [*a]", "*nope", "<<: *a",
               "? [a]\n: b", "{{{{", "- - - -", "'''", "%YAML 1.1\n---", "\t", "states: ~")  # fmt: skip


def flow_text(rng: random.Random) -> str:
    lines = rng.choice(FLOW_TEXTS).splitlines()
    for _ in range(rng.randint(1, 3)):
        at = rng.randrange(len(lines))
        way = rng.randrange(4)
        if way == 0:
            del lines[at]
        elif way == 1:
            lines.insert(at, lines[rng.randrange(len(lines))])
        elif way == 2:
            lines[at] = lines[at] + " " + rng.choice(YAML_PIECES)
        else:
            lines[at] = mutate_text(rng, lines[at])[:2000]
    return "\n".join(lines)


SLOT_TYPES = ("digits", "card_number", "yes_no", "number", "amount", "date", "text")
WORDS = ("one", "two", "for", "oh", "double", "twenty", "hundred", "thousand", "million", "point", "and",
         "dollars", "cents", "yes", "no", "not", "right", "march", "the", "first", "twelfth", "today",
         "2026-02-30", "12.50", "4421", "99999999999999999999999", "nineteen", "st", "$")  # fmt: skip


def slot_input(rng: random.Random) -> tuple[Slot, str, str, list[str]]:
    kind = rng.choice(SLOT_TYPES)
    slot = Slot("s", kind, length=rng.choice((None, 4, 16)) if kind == "digits" else None)
    said = " ".join(rng.choice(WORDS) for _ in range(rng.randrange(12)))
    if rng.random() < 0.3:
        said = mutate_text(rng, said)
    keyed = "".join(rng.choice("0123456789*#") for _ in range(rng.choice((0, 0, 4, 8, 40, 5000))))
    return slot, said, keyed, [mutate_text(rng, said) for _ in range(rng.randrange(3))]


def parse_slot(args: tuple[Slot, str, str, list[str]]) -> Any:
    slot, said, keyed, others = args
    return parse(slot, said, keyed), parse_heard(slot, said, others)


PII_PIECES = (
    "4111 1111 1111 1111", "4111.1111.1111.1111", "four one one one", "123-45-6789", "123456789",
    "john dot smith at example dot com", "a@b.co", "GB82 WEST 1234 5698 7654 32", "20-00-00",
    "12/03/1985", "march twelfth nineteen eighty five", "+1 (555) 123-4567", "AB 12 34 56 C",
)  # fmt: skip


def redact_input(rng: random.Random) -> str:
    pieces = [rng.choice(PII_PIECES + WORDS) for _ in range(rng.randrange(30))]
    return mutate_text(rng, " ".join(pieces)) if rng.random() < 0.5 else " ".join(pieces)


_REDACTOR = Redactor(SecureValues())
TOOL = Tool("fuzz", "GET", "svc", Template(("/x",)), result={"a": "available", "b": "items.0.amount"})


def tool_answer(rng: random.Random) -> bytes:
    way = rng.randrange(3)
    if way == 0:  # JSON of the right shape with values of any kind, or of any shape
        items = [{"amount": json_value(rng)}] if rng.random() < 0.7 else json_value(rng)
        try:
            return json.dumps({"available": json_value(rng), "items": items}).encode()
        except ValueError:
            return b"{}"
    if way == 1:
        return mutate_text(rng, '{"available": "1.00", "items": [{"amount": "2"}]}').encode(
            "utf-8", "replace"
        )
    return rng.randbytes(rng.randrange(100))


def read_tool_answer(body: bytes) -> Any:
    return map_answer(TOOL, decode_answer(TOOL, body))


def template_text(rng: random.Random) -> str:
    return mutate_text(rng, rng.choice(("Your balance is {balance} dollars.", "{a}{b}", "{", "}{", "{x|y}")))


TARGETS = (
    Target("ari_event", ari_message, parse_event, (AriEventError,), 0.25),
    Target("rtp_packet", rtp_datagram, parse_rtp, (RtpParseError,), 0.25),
    Target("flow_file", flow_text, check_text, (), 0.02),
    Target("slot_parsers", slot_input, parse_slot, (), 0.18),
    Target("redactor", redact_input, _REDACTOR.text, (), 0.12),
    Target("tool_answer", tool_answer, read_tool_answer, (ToolBadAnswer,), 0.12),
    Target("prompt_template", template_text, parse_template, (FlowError,), 0.06),
)


@contextmanager
def _deadline(seconds: float) -> Iterator[None]:
    def alarm(_signum: int, _frame: Any) -> None:
        raise Hang()

    previous = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def fuzz(target: Target, inputs: int, seed: int) -> TargetReport:
    """``inputs`` generated inputs through one parser (main thread only: the hang timer is a
    signal)."""
    rng = random.Random(f"{seed}:{target.name}")
    report = TargetReport(target.name)
    started = time.perf_counter()
    for _ in range(inputs):
        value = target.generate(rng)
        t0 = time.perf_counter()
        try:
            with _deadline(HANG_S):
                target.run(value)
        except Hang:
            report.hangs.append(repr(value)[:200])
        except target.allowed:
            report.refused += 1
        except Exception as err:  # a crash: what the fuzzer is here to find
            report.crashes.append({"input": repr(value)[:200], "error": f"{type(err).__name__}: {err}"[:200]})
        report.slowest_ms = max(report.slowest_ms, (time.perf_counter() - t0) * 1000)
        report.inputs += 1
    report.seconds = time.perf_counter() - started
    return report


def fuzz_all(total: int, seed: int = 1, log: Callable[[str], None] = print) -> dict[str, TargetReport]:
    """About ``total`` inputs, shared among the targets by their ``share``."""
    out = {}
    for target in TARGETS:
        out[target.name] = report = fuzz(target, max(1, round(total * target.share)), seed)
        log(f"{target.name}: {report.inputs} inputs in {report.seconds:.1f} s, {report.refused} refused, "
            f"{len(report.crashes)} crashes, {len(report.hangs)} hangs, "
            f"slowest {report.slowest_ms:.1f} ms")  # fmt: skip
    return out


# Texts that make a backtracking pattern quadratic or worse, at the size redaction still takes
# in one piece (privacy/redact.py MAX_TEXT).
REDACTION_STRESS: dict[str, Callable[[int], str]] = {
    "letters, no @": lambda n: "a" * n,
    "a@ repeated": lambda n: "a@" * (n // 2),
    "a. repeated": lambda n: "a." * (n // 2),
    "one @ then letters": lambda n: "a@" + "b" * (n - 2),
    "digits and spaces": lambda n: "1 " * (n // 2),
    "'for' repeated": lambda n: "for " * (n // 4),
    "spoken 'a dot'": lambda n: "a dot " * (n // 6),
    "card-like text": lambda n: ("john.smith@example.com 4111 1111 1111 1111 " * (n // 43 + 1))[:n],
}


def redaction_timing(chars: int = 100_000, repeats: int = 5) -> dict[str, float]:
    """Median milliseconds to redact each stress text of ``chars`` characters."""
    import statistics

    out = {}
    for name, make in REDACTION_STRESS.items():
        text = make(chars)
        times = []
        for _ in range(repeats):
            started = time.perf_counter()
            _REDACTOR.text(text)
            times.append((time.perf_counter() - started) * 1000)
        out[name] = round(statistics.median(times), 1)
    return out
