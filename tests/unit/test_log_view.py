"""Log lines for people: parsing, filtering and rendering the server's JSON log lines, and the
bounded line reader `ivr-server logs tail` reads them with."""

from __future__ import annotations

import io
import json
import re
import unicodedata
from datetime import timedelta, timezone
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ivr_server.cli.logs import LineReader, last_lines_offset
from ivr_server.observability.log_view import (
    MAX_RAW_CHARS,
    MAX_VALUE_CHARS,
    LineFilter,
    Raw,
    Record,
    Renderer,
    parse_line,
)

CALL = "3f2a9c1e-1111-2222-3333-444455556666"
STAMP = "2026-12-06T14:03:07.412345Z"
SGR = re.compile(r"\x1b\[[0-9;]*m")
BIDI_CONTROLS = set("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def line(event: str = "flow.decision", level: str = "info", **fields: Any) -> str:
    return json.dumps({"event": event, "level": level, "timestamp": STAMP, **fields})


def render(text: str, colour: bool = False) -> list[str]:
    """The lines shown for ``text``, after the date line the first record brings."""
    out = Renderer(colour).render(parse_line(text))
    return out[1:] if isinstance(parse_line(text), Record) else out


def test_record_renders_time_level_call_event_and_useful_keys_first() -> None:
    """Time to the millisecond, level, the call id's first 8 characters, the event, then flow,
    state, intent, outcome ... before the other keys in logged order; channel_id is left out
    when the call id is shown."""
    text = line(
        words="what is my balance",
        intent="balance",
        flow="banking",
        call_id=CALL,
        channel_id="17.4",
        state="menu",
    )
    (shown,) = render(text)
    assert shown.startswith("14:03:07.412 INFO  call=3f2a9c1e flow.decision ")
    assert shown.split("flow.decision")[1].split() == [
        "flow=banking",
        "state=menu",
        "intent=balance",
        'words="what',
        "is",
        "my",
        'balance"',
    ]
    assert "channel_id" not in shown and "\x1b" not in shown


def test_first_record_of_each_day_brings_a_date_line() -> None:
    renderer = Renderer()
    first = renderer.render(parse_line(line()))
    again = renderer.render(parse_line(line()))
    next_day = renderer.render(parse_line(line().replace("2026-12-06", "2026-12-07")))
    assert first[0] == "--- 2026-12-06 ---" and len(again) == 1
    assert next_day[0] == "--- 2026-12-07 ---"


def test_local_time_zone_on_request() -> None:
    (_, shown) = Renderer(tz=timezone(timedelta(hours=2))).render(parse_line(line()))
    assert shown.startswith("16:03:07.412 ")


def test_colours_per_level_only_when_asked() -> None:
    """Colour is the caller's choice (a terminal, --color always): off, no escape at all."""
    warn = render(line(level="warning", call_id=CALL), colour=True)[0]
    error = render(line(level="error"), colour=True)[0]
    assert "\x1b[33mWARN \x1b[0m" in warn and "\x1b[31mERROR\x1b[0m" in error
    assert "\x1b[35mcall=3f2a9c1e\x1b[0m" in warn
    assert "\x1b" not in "".join(render(line(level="warning", call_id=CALL)))


def test_values_are_quoted_when_needed_and_long_ones_cut() -> None:
    (shown,) = render(line(empty="", spaced=" x", eq="a=b", n=3, flag=True, seq=[1, 2], long="y" * 500))
    assert 'empty="" spaced=" x" eq="a=b" n=3 flag=true seq=[1,2] long=' in shown
    assert "y" * (MAX_VALUE_CHARS - 1) + "…" in shown and "y" * MAX_VALUE_CHARS not in shown


def test_control_characters_from_callers_cannot_reach_the_terminal() -> None:
    """A caller name with an escape sequence (or a C1 CSI, or a bidi override) is shown escaped."""
    (shown,) = render(line(name="\x1b[2Jevil\x9b31m\u202e", event_note="a\nb"))
    assert "\x1b" not in shown and "\x9b" not in shown and "\u202e" not in shown
    assert 'name="\\u001b[2Jevil\\x9b31m\\u202e"' in shown and 'event_note="a\\nb"' in shown
    (raw,) = render("plain \x1b]0;title\x07 text")
    assert raw == "plain \\x1b]0;title\\x07 text"


def test_standard_library_line_shows_its_logger() -> None:
    (shown,) = render(line("pool main exhausted", level="warning", logger="sqlalchemy.pool"))
    assert "WARN" in shown and "pool main exhausted" in shown and shown.endswith("logger=sqlalchemy.pool")


def test_exception_follows_its_record_without_locals() -> None:
    """structlog's dict_tracebacks: type, message, cause, the last frames; never the locals."""
    chain = [
        {"exc_type": "ValueError", "exc_value": "bad", "is_cause": False,
         "frames": [{"filename": "a.py", "lineno": n, "name": "f", "locals": {"card": "4111"}} for n in range(9)]},
        {"exc_type": "KeyError", "exc_value": "'x'", "is_cause": True, "frames": []},
    ]  # fmt: skip
    shown = render(line(level="error", exception=chain))
    assert shown[1:] == [
        "    ValueError: bad",
        '      File "a.py", line 6, in f',
        '      File "a.py", line 7, in f',
        '      File "a.py", line 8, in f',
        "    caused by KeyError: 'x'",
    ]
    assert "4111" not in "".join(shown)
    text_trace = render(line(level="error", exception="Traceback:\n  File x\nOSError: gone"))
    assert text_trace[1:] == ["    Traceback:", "      File x", "    OSError: gone"]


@pytest.mark.parametrize(
    ("text", "malformed"),
    [
        ("Traceback (most recent call last):", False),
        ("KeyError: {'a': 1}", False),
        ('{"event": "flow.deci', True),
        ("{not json at all}", True),
        ("[1, 2, 3]", False),
        ("", False),
        ('{"a": ' * 5000 + "1" + "}" * 5000, True),  # deeper than the parser goes
    ],
)
def test_lines_that_are_not_records_are_kept_raw(text: str, malformed: bool) -> None:
    parsed = parse_line(text + "\n")
    assert parsed == Raw(text, malformed=malformed)
    (shown,) = Renderer().render(parsed)
    assert shown == ("[malformed JSON] " if malformed else "") + text[:MAX_RAW_CHARS] + (
        " … [line cut]" if len(text) > MAX_RAW_CHARS else ""
    )


def test_raw_lines_are_dimmed_in_colour() -> None:
    assert Renderer(colour=True).render(parse_line("plain")) == ["\x1b[2mplain\x1b[0m"]
    assert Renderer(colour=True).render(parse_line("{x"))[0].startswith("\x1b[33m[malformed JSON]\x1b[0m")


def test_json_after_a_prefix_is_a_record_only_with_an_event() -> None:
    """journald and docker put a prefix before the line; a brace in a message is not a record."""
    prefixed = parse_line('Dec 06 14:03:07 pbx ivr-server[812]: {"event": "call.started", "level": "info"}')
    assert isinstance(prefixed, Record) and prefixed.event == "call.started"
    assert isinstance(parse_line('note: {"a": 1}'), Raw)


def test_cut_line_is_raw_and_marked() -> None:
    parsed = parse_line('{"event": "x", "words": "aaa', cut=True)
    assert parsed == Raw('{"event": "x", "words": "aaa', malformed=True, cut=True)
    assert Renderer().render(parsed)[0].endswith(" … [line cut]")


def test_filter_by_call_prefix_level_and_event() -> None:
    """--call takes any prefix of the id (case ignored); --level keeps that level and above
    and lines with no known level; --event matches prefixes; raw lines have no call or event."""
    records = {
        "a-info": parse_line(line(call_id=CALL)),
        "a-warn": parse_line(line("flow.repair", level="warning", call_id=CALL)),
        "b-error": parse_line(line("call.started", level="error", call_id="b7c1")),
        "nolevel": parse_line(json.dumps({"event": "flow.x"})),
        "exception": parse_line(line("tool.failed", level="exception")),
        "raw": parse_line("Traceback (most recent call last):"),
    }

    def kept(wanted: LineFilter) -> set[str]:
        return {name for name, rec in records.items() if wanted.keeps(rec)}

    assert kept(LineFilter()) == set(records)
    assert kept(LineFilter(calls=("3F2A",))) == {"a-info", "a-warn"}
    assert kept(LineFilter(calls=(CALL, "b7"))) == {"a-info", "a-warn", "b-error"}
    assert kept(LineFilter(min_level="warning")) == {"a-warn", "b-error", "nolevel", "exception", "raw"}
    assert kept(LineFilter(min_level="error")) == {"b-error", "nolevel", "exception", "raw"}
    assert kept(LineFilter(events=("flow.",))) == {"a-info", "a-warn", "nolevel"}
    assert kept(LineFilter(calls=("3f2a",), min_level="warning")) == {"a-warn"}


def test_odd_but_valid_records_render() -> None:
    """Whatever another program writes as JSON: no timestamp, epoch seconds, odd types."""
    (bare,) = Renderer().render(parse_line('{"msg": "hi"}'))
    (usual,) = render(line(msg="hi"))
    assert bare.strip() == "msg=hi" and bare.index("msg=") == usual.index("msg=")
    epoch = Renderer().render(parse_line('{"event": "x", "timestamp": 0, "level": 5, "call_id": 12}'))
    assert epoch[1].startswith("00:00:00.000 5     call=12 ")
    bad_time = Renderer().render(parse_line('{"event": "x", "timestamp": "yesterday"}'))
    assert bad_time[0].startswith("yesterday ")


@given(st.text(max_size=300) | st.text(max_size=300).map(lambda t: '{"event": ' + t))
def test_any_text_line_renders(text: str) -> None:
    """Property: any text parses and renders; in colour it is the plain rendering plus the
    renderer's own colour codes, and no other control character gets through."""
    plain = Renderer().render(parse_line(text))
    painted = [SGR.sub("", shown) for shown in Renderer(colour=True).render(parse_line(text))]
    assert painted == plain
    for shown in plain:
        assert not [c for c in shown if unicodedata.category(c) in ("Cc", "Zl", "Zp") and c != "\t"]
        assert not set(shown) & BIDI_CONTROLS


@given(st.dictionaries(st.text(max_size=20), st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=50),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4),
), max_size=8))  # fmt: skip
def test_any_json_object_renders(fields: dict[str, Any]) -> None:
    """Property: any JSON object, even with the known keys holding odd types, renders."""
    for shown in Renderer().render(parse_line(json.dumps(fields))):
        assert "\n" not in shown and "\x1b" not in shown


def read_all(data: bytes, limit: int, final: bool = True) -> list[tuple[str, bool]]:
    return list(LineReader(io.BytesIO(data), limit).lines(final=final))


def test_reader_bounds_lines_and_replaces_bad_bytes() -> None:
    """A line longer than the limit yields its start, marked cut, and its rest is skipped;
    bytes that are not UTF-8 become U+FFFD."""
    lines = read_all(b"short\n" + b"x" * 25 + b"\nnext\xff\xfe\n", limit=10)
    assert lines == [("short\n", False), ("x" * 10, True), ("next\ufffd\ufffd\n", False)]


def test_reader_waits_for_the_end_of_a_line_being_written() -> None:
    stream = io.BytesIO()
    reader = LineReader(stream)
    stream.write(b'{"event": "a"}\n{"event": ')
    stream.seek(0)
    assert list(reader.lines(final=False)) == [('{"event": "a"}\n', False)]
    pos = stream.tell()
    stream.seek(0, io.SEEK_END)
    stream.write(b'"b"}\n')
    stream.seek(pos)
    assert list(reader.lines(final=False)) == [('{"event": "b"}\n', False)]
    assert read_all(b"unterminated", 100) == [("unterminated", False)]
    assert read_all(b"unterminated", 100, final=False) == []


@given(st.binary(max_size=300), st.integers(1, 40))
def test_reader_takes_any_bytes(data: bytes, limit: int) -> None:
    """Property: any bytes give lines of at most ``limit`` characters; when nothing is cut,
    they are the whole input, decoded."""
    lines = read_all(data, limit)
    assert all(len(text) <= limit for text, _ in lines)
    if not any(cut for _, cut in lines):
        assert "".join(text for text, _ in lines) == data.decode("utf-8", errors="replace")


@pytest.mark.parametrize(
    ("data", "count", "expected"),
    [
        (b"a\nb\nc\n", 2, b"b\nc\n"),
        (b"a\nb\nc", 2, b"b\nc"),
        (b"a\nb\nc\n", 5, b"a\nb\nc\n"),
        (b"a\nb\nc\n", 0, b""),
        (b"", 3, b""),
        (b"\n\n\n", 1, b"\n"),
        (b"x" * 200_000 + b"\n" + b"y" * 70_000 + b"\n", 1, b"y" * 70_000 + b"\n"),
    ],
)
def test_last_lines_offset(data: bytes, count: int, expected: bytes) -> None:
    """Like tail -n: the file's final newline ends the last line; blocks are read backwards."""
    assert data[last_lines_offset(io.BytesIO(data), count) :] == expected
