"""Log lines for people: the server's JSON log lines (see logging.py) parsed, filtered and
rendered one readable line each, for `ivr-server logs tail`.

Pure: text in, text out. Reading, following and rotation are the command's (cli/logs.py). Any
text is accepted: a line that is not a log record is kept as :class:`Raw`, and everything
shown is bounded and has its control characters made visible, since values come from callers
and peers (a caller name must not be able to drive the operator's terminal).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from typing import Any

LEVELS = {"debug": 10, "info": 20, "warning": 30, "error": 40, "critical": 50}
_LEVEL_ALIASES = {"warn": "warning", "exception": "error", "fatal": "critical"}
_LEVEL_LABELS = {"debug": "DEBUG", "info": "INFO", "warning": "WARN", "error": "ERROR", "critical": "CRIT"}
FIRST_KEYS = ("flow", "state", "intent", "outcome", "reason", "error", "latency_ms")
# Shown in their own columns (or below the line: the exception), not as key=value.
_COLUMNS = frozenset({"event", "level", "timestamp", "call_id", "exception"})
MAX_VALUE_CHARS = 120
MAX_KEY_CHARS = 40
MAX_PAIRS = 40
MAX_RAW_CHARS = 2000
MAX_TRACE_LINES = 20
CALL_CHARS = 8  # enough to tell a day's calls apart; --call takes any prefix
EVENT_WIDTH = 26

_RESET, _DIM, _BOLD = "\x1b[0m", "\x1b[2m", "\x1b[1m"
_LEVEL_COLOURS = {
    "debug": "\x1b[34m",
    "info": "\x1b[32m",
    "warning": "\x1b[33m",
    "error": "\x1b[31m",
    "critical": "\x1b[1;97;41m",
}
_KEY, _CALL, _MARK = "\x1b[36m", "\x1b[35m", "\x1b[33m"

# C0/C1 controls (escape sequences), line and paragraph separators and bidi overrides, shown
# as escapes; a tab stays.
_INVISIBLE = {c: f"\\x{c:02x}" for c in (*range(0x20), *range(0x7F, 0xA0)) if c != 0x09}
_INVISIBLE |= {c: f"\\u{c:04x}" for c in (0x2028, 0x2029, *range(0x202A, 0x202F), *range(0x2066, 0x206A))}


def visible(text: str) -> str:
    return text.translate(_INVISIBLE)


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


@dataclass(frozen=True)
class Record:
    """One JSON log line: its fields as logged."""

    fields: Mapping[str, Any]

    def text(self, key: str) -> str:
        value = self.fields.get(key)
        return value if isinstance(value, str) else "" if value is None else _dumps(value)

    @property
    def event(self) -> str:
        return self.text("event")

    @property
    def call_id(self) -> str:
        return self.text("call_id")

    @property
    def level(self) -> str:
        name = self.text("level").lower()
        return _LEVEL_ALIASES.get(name, name)


@dataclass(frozen=True)
class Raw:
    """A line that is not a log record (a traceback, another program's line), kept as it is.

    ``malformed``: it looked like a JSON log line but does not parse (cut short, broken);
    ``cut``: the reader kept only the start of a longer line.
    """

    text: str
    malformed: bool = False
    cut: bool = False


Line = Record | Raw


def parse_line(line: str, cut: bool = False) -> Line:
    """A log record if ``line`` is a JSON object (or, after a prefix such as journald's, one
    with an ``event``), else the line itself."""
    body = line.rstrip("\r\n")
    looks_json = body.lstrip().startswith("{")
    start = body.find("{")
    if cut or start < 0:
        return Raw(body, malformed=looks_json, cut=cut)
    try:
        data = json.loads(body[start:])
    except (ValueError, RecursionError):  # RecursionError: nested thousands deep
        data = None
    if isinstance(data, dict) and (looks_json or "event" in data):
        return Record(data)
    return Raw(body, malformed=looks_json)


def level_rank(name: str) -> int | None:
    """The level's rank (debug 10 ... critical 50); None for a level this tool does not know."""
    name = name.lower()
    return LEVELS.get(_LEVEL_ALIASES.get(name, name))


@dataclass(frozen=True)
class LineFilter:
    """Which lines to show: all of the given conditions hold (none given: every line).

    A raw line has no call id or event, so ``calls`` and ``events`` hide it; the level keeps
    it, and keeps records with no or an unknown level: a crash's traceback matters most.
    """

    calls: tuple[str, ...] = ()
    """Call id prefixes (any matches, case ignored)."""
    events: tuple[str, ...] = ()
    """Event name prefixes (any matches): ``flow.`` for the dialog's events."""
    min_level: str | None = None
    """This level and above (a name in LEVELS)."""

    @property
    def active(self) -> bool:
        return bool(self.calls or self.events or self.min_level)

    def keeps(self, line: Line) -> bool:
        if isinstance(line, Raw):
            return not (self.calls or self.events)
        call_id = line.call_id.lower()
        if self.calls and not any(call_id.startswith(c.lower()) for c in self.calls):
            return False
        if self.events and not line.event.startswith(self.events):
            return False
        rank = level_rank(line.level)
        return self.min_level is None or rank is None or rank >= LEVELS[self.min_level]


class Renderer:
    """Lines to print for each log line: ``HH:MM:SS.mmm LEVEL call=abcd1234 event  key=value``.

    A line with the date goes before the first record of each day (records show the time
    only); an exception follows its record, indented. ``colour``: ANSI colours per level.
    ``tz``: times in this zone (None: as logged, UTC).
    """

    def __init__(self, colour: bool = False, tz: tzinfo | None = None) -> None:
        self.colour = colour
        self.tz = tz
        self._day = ""

    def _paint(self, style: str, text: str) -> str:
        return f"{style}{text}{_RESET}" if self.colour and text.strip() else text

    def render(self, line: Line) -> list[str]:
        if isinstance(line, Raw):
            return [self._raw(line)]
        day, clock = _clock(line.fields.get("timestamp"), self.tz)
        out = []
        if day and day != self._day:
            self._day = day
            out.append(self._paint(_DIM, f"--- {day} ---"))
        level = line.level
        style = _LEVEL_COLOURS.get(level, "")
        label = _LEVEL_LABELS.get(level) or visible(_cut(level.upper(), 5))
        call = f"call={visible(line.call_id[:CALL_CHARS])}" if line.call_id else ""
        head = [
            self._paint(_DIM, clock),
            self._paint(style, label.ljust(5)),
            self._paint(_CALL, call.ljust(len("call=") + CALL_CHARS)),
            self._paint(_BOLD, visible(_cut(line.event, 80)).ljust(EVENT_WIDTH)),
        ]
        pairs = [f"{self._paint(_KEY, key + '=')}{value}" for key, value in _pairs(line.fields)]
        out.append(" ".join(head + pairs).rstrip())
        trace = _trace(line.fields.get("exception"))
        out.extend(self._paint(_LEVEL_COLOURS["error"], "    " + text) for text in trace)
        return out

    def _raw(self, line: Raw) -> str:
        text = visible(line.text[:MAX_RAW_CHARS])
        if line.cut or len(line.text) > MAX_RAW_CHARS:
            text += " … [line cut]"
        if line.malformed:
            return self._paint(_MARK, "[malformed JSON]") + " " + self._paint(_DIM, text)
        return self._paint(_DIM, text)


def _clock(stamp: Any, tz: tzinfo | None) -> tuple[str, str]:
    """(date, HH:MM:SS.mmm) of an ISO or epoch timestamp; blanks when there is none."""
    try:
        if isinstance(stamp, str):
            moment = datetime.fromisoformat(stamp)
        elif isinstance(stamp, int | float) and not isinstance(stamp, bool):
            moment = datetime.fromtimestamp(stamp, UTC)
        else:
            return "", " " * 12
    except (ValueError, OverflowError, OSError):
        return "", visible(_cut(str(stamp), 12)).ljust(12)
    if tz is not None and moment.tzinfo is not None:
        moment = moment.astimezone(tz)
    return moment.date().isoformat(), f"{moment:%H:%M:%S}.{moment.microsecond // 1000:03d}"


def _pairs(fields: Mapping[str, Any]) -> list[tuple[str, str]]:
    """key=value pairs: the most useful keys first, then the rest in logged order; channel_id
    only when there is no call id to show."""
    hidden = _COLUMNS | ({"channel_id"} if fields.get("call_id") else set())
    keys = [k for k in FIRST_KEYS if k in fields]
    keys += [k for k in fields if k not in hidden and k not in FIRST_KEYS]
    pairs = [(visible(_cut(k, MAX_KEY_CHARS)), _value(fields[k])) for k in keys[:MAX_PAIRS]]
    if len(keys) > MAX_PAIRS:
        pairs.append(("…", f"{len(keys) - MAX_PAIRS} more keys"))
    return pairs


def _value(value: Any) -> str:
    if isinstance(value, str):
        # Quoted when it would not read back as one value: empty, spaces, '=', quotes, controls.
        bare = value.isprintable() and not any(c in value for c in ' "=\\')
        text = value if value and bare else json.dumps(value, ensure_ascii=False)
    else:
        text = _dumps(value)
    return visible(_cut(text, MAX_VALUE_CHARS))


def _dumps(value: Any) -> str:
    try:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    except (ValueError, RecursionError):  # nested as deep as the parser allowed
        return "…"


def _trace(exception: Any) -> list[str]:
    """The exception under a record: structlog's dict_tracebacks (type, message, the last
    frames; locals left out) or a formatted traceback's last lines."""
    if isinstance(exception, str):
        lines = exception.rstrip("\n").splitlines()[-MAX_TRACE_LINES:]
    elif isinstance(exception, list):
        lines = list(_chain(e for e in exception if isinstance(e, dict)))[:MAX_TRACE_LINES]
    else:
        return []
    return [visible(_cut(line, MAX_RAW_CHARS)) for line in lines]


def _chain(exceptions: Iterable[dict[str, Any]]) -> Iterable[str]:
    for n, exc in enumerate(exceptions):
        how = "" if n == 0 else "caused by " if exc.get("is_cause") else "while handling "
        yield f"{how}{exc.get('exc_type', '?')}: {_cut(str(exc.get('exc_value', '')), MAX_VALUE_CHARS)}"
        frames = exc.get("frames")
        for frame in frames[-3:] if isinstance(frames, list) else []:
            if isinstance(frame, dict):
                yield f'  File "{frame.get("filename")}", line {frame.get("lineno")}, in {frame.get("name")}'
