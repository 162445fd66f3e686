"""Prompt templates: slot values spoken inside a prompt, with no way to run code.

A template is text with placeholders ``{slot}`` or ``{slot:format}``; ``{{`` and ``}}`` are
literal braces. Nothing else is allowed between braces: no attributes, indexes, calls or
expressions, so a flow file (or a value a caller filled in) can never reach Python.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from ivr_server.errors import FlowError

_TOKEN = re.compile(r"\{\{|\}\}|\{([^{}]*)\}|[{}]")
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


@dataclass(frozen=True)
class Placeholder:
    slot: str
    format: str


@dataclass(frozen=True)
class Template:
    parts: tuple[str | Placeholder, ...]

    @property
    def slots(self) -> tuple[str, ...]:
        return tuple(p.slot for p in self.parts if isinstance(p, Placeholder))

    def render(self, values: Mapping[str, str]) -> str:
        out = []
        for part in self.parts:
            if isinstance(part, str):
                out.append(part)
            else:
                out.append(FORMATS[part.format](values.get(part.slot, "")))
        return "".join(out)


def parse_template(text: str) -> Template:
    """The template, or FlowError saying which placeholder is wrong and what is allowed."""
    parts: list[str | Placeholder] = []
    at = 0
    for match in _TOKEN.finditer(text):
        parts.append(text[at : match.start()])
        at = match.end()
        token = match.group(0)
        if token in ("{{", "}}"):
            parts.append(token[0])
            continue
        inner = match.group(1)
        if inner is None:
            raise FlowError(
                f"unmatched '{token}' at character {match.start() + 1} (write {token * 2} for a brace)"
            )
        name, _, fmt = inner.strip().partition(":")
        fmt = fmt.strip() or "text"
        if not _NAME.match(name.strip()):
            raise FlowError(
                f"placeholder {{{inner}}} must be a slot name (lower case letters, digits, _), "
                "optionally with :format"
            )
        if fmt not in FORMATS:
            raise FlowError(
                f"placeholder {{{inner}}}: unknown format '{fmt}' (expected one of {', '.join(FORMATS)})"
            )
        parts.append(Placeholder(name.strip(), fmt))
    parts.append(text[at:])
    return Template(tuple(p for p in parts if p != ""))


def _digits(value: str) -> str:
    """ "4421" -> "4 4 2 1": read digit by digit, not as a number."""
    return " ".join(value)


def _amount(value: str) -> str:
    """ "1234.5" -> "1234 dollars and 50 cents" (the TTS reads the numbers)."""
    try:
        cents = round(float(value) * 100)
    except ValueError:
        return value
    dollars, cents = divmod(abs(cents), 100)
    sign = "minus " if value.strip().startswith("-") else ""
    words = f"{sign}{dollars} dollar{'s' if dollars != 1 else ''}"
    return words + (f" and {cents} cent{'s' if cents != 1 else ''}" if cents else "")


FORMATS: dict[str, Callable[[str], str]] = {"text": str, "digits": _digits, "amount": _amount}
