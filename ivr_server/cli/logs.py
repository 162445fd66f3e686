"""`ivr-server logs tail [FILE]`: the server's JSON log lines (a file or stdin) as readable
lines, filtered by call, level and event, optionally followed like `tail -F`.

The rendering is observability/log_view.py's; this module reads: lines bounded in length,
decoded whatever the bytes, a line still being written left until its end arrives, and a
followed file reopened when it is rotated or truncated.
"""

from __future__ import annotations

import argparse
import os
import stat
import sys
import time
from collections import deque
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from ivr_server.cli.common import ExitCode
from ivr_server.config import Settings
from ivr_server.observability.log_view import LEVELS, Line, LineFilter, Renderer, parse_line

MAX_LINE_BYTES = 1 << 20  # a record with a long traceback fits; a runaway line is cut here
FOLLOW_POLL_S = 0.25
FOLLOW_DEFAULT_LINES = 10
_BLOCK = 1 << 16

_DESCRIPTION = """\
Write the server's JSON log lines (IVR_LOG_FORMAT=json) from FILE, or stdin, as one
readable line each:

  14:03:07.412 INFO  call=3f2a9c1e flow.decision              flow=banking state=menu intent=balance

the time (UTC, as logged; a line with the date starts each day), the level, the first 8
characters of the call id, the event, then its fields, the most useful first (flow, state,
intent, outcome, reason, error, latency_ms), long values cut. An exception follows its
line, indented. A line that is not a JSON log record (a traceback, another program's
line) is written as it is, dimmed on a terminal; a JSON line cut short or broken is
written raw after [malformed JSON]. FILE itself is only read. Colours only on a terminal
(see --color; NO_COLOR is honoured)."""

_EXAMPLES = """\
examples:
  ivr-server logs tail -f /var/log/ivr-server/server.log --level warning
  ivr-server logs tail server.log --call 3f2a --event flow. | less -R
  journalctl -u ivr-server -o cat -f | ivr-server logs tail

"""


def add_commands(commands: Any, epilog: str) -> None:
    logs = commands.add_parser("logs", help="read the server's JSON logs as people do", epilog=epilog)
    logs_commands = logs.add_subparsers(dest="logs_command", metavar="ACTION", required=True)
    tail = logs_commands.add_parser(
        "tail",
        help="JSON log lines (a file or stdin) as readable, coloured lines; filter, follow",
        description=_DESCRIPTION,
        epilog=_EXAMPLES + epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    tail.add_argument("file", nargs="?", type=Path, metavar="FILE", help="a log file (default: stdin)")
    tail.add_argument(
        "-f",
        "--follow",
        action="store_true",
        help="keep reading lines appended to FILE, across rotation (a new file at the same path) "
        "and truncation, until Ctrl-C; with stdin, read until it ends",
    )
    tail.add_argument(
        "-n",
        "--lines",
        type=_count,
        metavar="N",
        help=f"only the last N lines that pass the filters (default: all; {FOLLOW_DEFAULT_LINES} "
        "with --follow on a FILE)",
    )
    tail.add_argument(
        "--call",
        action="append",
        default=[],
        metavar="ID",
        help="only this call's lines: its id or the start of it (repeat for several calls); "
        "hides lines that are not log records",
    )
    tail.add_argument(
        "--level",
        choices=list(LEVELS),
        metavar="LEVEL",
        help="only this level and above: debug, info, warning, error, critical (lines without a "
        "known level are kept)",
    )
    tail.add_argument(
        "--event",
        action="append",
        default=[],
        metavar="PREFIX",
        help="only events starting with PREFIX, e.g. flow. or call.started (repeat for several)",
    )
    tail.add_argument(
        "--color",
        choices=("auto", "always", "never"),
        default="auto",
        help="ANSI colours: auto (on a terminal, unless NO_COLOR is set), always, never",
    )
    tail.add_argument(
        "--local-time", action="store_true", help="times in this machine's time zone instead of UTC"
    )
    tail.set_defaults(handler=cmd_logs_tail)


def _count(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"not a number of lines: {text!r}")
    return int(text)


def cmd_logs_tail(args: argparse.Namespace, _settings: Settings) -> int:
    """Exit 0 at the end of the input; Ctrl-C ends --follow (exit 130, as every command)."""
    wanted = LineFilter(calls=tuple(args.call), events=tuple(args.event), min_level=args.level)
    colour = args.color == "always" or (
        args.color == "auto" and sys.stdout.isatty() and not os.environ.get("NO_COLOR")
    )
    renderer = Renderer(colour, tz=datetime.now().astimezone().tzinfo if args.local_time else None)
    live = args.file is None  # stdin may be a running server: show each line as it comes

    def emit(line: Line) -> None:
        for text in renderer.render(line):
            sys.stdout.write(text + "\n")
        if live:
            sys.stdout.flush()

    if args.file is None:
        if sys.stdin.isatty():
            print(
                "ivr-server logs: reading log lines from the terminal (give a FILE, or pipe)", file=sys.stderr
            )
        _show(LineReader(sys.stdin.buffer).lines(final=True), wanted, args.lines, emit)
        return int(ExitCode.OK)
    try:
        source = args.file.open("rb")
    except OSError as err:
        print(f"ivr-server: error: cannot read log file {args.file}: {err.strerror}", file=sys.stderr)
        return int(ExitCode.NOT_FOUND if isinstance(err, FileNotFoundError) else ExitCode.BAD_INPUT)
    # A named pipe or a device is read to its end, as stdin is: only a file grows and rotates.
    follow = args.follow and stat.S_ISREG(os.fstat(source.fileno()).st_mode)
    last = args.lines if args.lines is not None or not follow else FOLLOW_DEFAULT_LINES
    if last is not None and not wanted.active and source.seekable():
        source.seek(last_lines_offset(source, last))  # no filter: no need to read it all
    reader = LineReader(source)
    _show(reader.lines(final=not follow), wanted, last, emit)
    if follow:
        _follow(args.file, source, reader, wanted, emit)
    source.close()
    return int(ExitCode.OK)


def _show(
    texts: Iterator[tuple[str, bool]], wanted: LineFilter, last: int | None, emit: Callable[[Line], None]
) -> None:
    """Emit the lines that pass the filter, or only the last ``last`` of them."""
    kept = (line for line in (parse_line(text, cut) for text, cut in texts) if wanted.keeps(line))
    for line in kept if last is None else deque(kept, maxlen=last):
        emit(line)
    sys.stdout.flush()


def _follow(
    path: Path, source: IO[bytes], reader: LineReader, wanted: LineFilter, emit: Callable[[Line], None]
) -> None:
    """Like `tail -F`: poll for appended lines; after a rotation finish the old file, then read
    the new one from its start; after a truncation read from the start again. Ends on Ctrl-C."""
    while True:
        time.sleep(FOLLOW_POLL_S)
        change = _change(path, source)
        if change == "replaced" and (new := _opened(path)) is not None:
            _show(reader.lines(final=True), wanted, None, emit)  # written before the move
            source.close()
            source, reader = new, LineReader(new)
            _note(f"{path} was replaced; following the new file")
        elif change == "truncated":
            source.seek(0)
            reader = LineReader(source)
            _note(f"{path} was truncated; reading it from the start")
        _show(reader.lines(final=False), wanted, None, emit)


def _change(path: Path, source: IO[bytes]) -> str | None:
    """What happened to the followed file: "replaced" (another file is at ``path`` now),
    "truncated" (``source`` is shorter than what was read of it) or None."""
    try:
        now, here = os.stat(path), os.fstat(source.fileno())
    except OSError:  # mid-rotation: the new file is not there yet
        return None
    if (now.st_ino, now.st_dev) != (here.st_ino, here.st_dev):
        return "replaced"
    return "truncated" if here.st_size < source.tell() else None


def _opened(path: Path) -> IO[bytes] | None:
    try:
        return path.open("rb")
    except OSError:  # gone again, or not readable yet: keep the old file, look again
        return None


def _note(text: str) -> None:
    print(f"ivr-server logs: {text}", file=sys.stderr, flush=True)


class LineReader:
    """Lines of a binary stream, decoded (bad bytes become U+FFFD) and at most ``limit`` bytes
    each: a longer line yields its start, marked cut, and the rest is skipped. Without ``final``
    a line still being written (no newline yet) waits for the next call."""

    def __init__(self, stream: IO[bytes], limit: int = MAX_LINE_BYTES) -> None:
        self._stream = stream
        self._limit = limit
        self._partial = b""
        self._skipping = False  # inside the rest of a line that was cut

    def lines(self, final: bool) -> Iterator[tuple[str, bool]]:
        """(text, cut) for each line available now; with ``final`` the unterminated last one too."""
        while chunk := self._stream.readline(self._limit - len(self._partial)):
            if self._skipping:
                self._skipping = not chunk.endswith(b"\n")
                continue
            self._partial += chunk
            if chunk.endswith(b"\n") or len(self._partial) >= self._limit:
                line, self._partial = self._partial, b""
                cut = not chunk.endswith(b"\n")
                self._skipping = cut
                yield line.decode("utf-8", errors="replace"), cut
        if final and self._partial:
            line, self._partial = self._partial, b""
            yield line.decode("utf-8", errors="replace"), False


def last_lines_offset(source: IO[bytes], count: int) -> int:
    """Where the last ``count`` lines of a seekable file begin (an unterminated last line
    counts), read backwards block by block."""
    end = source.seek(0, os.SEEK_END)
    if count == 0:
        return end
    seen, pos = 0, end
    while pos > 0:
        size = min(_BLOCK, pos)
        pos -= size
        source.seek(pos)
        block = source.read(size)
        # The file's final newline ends its last line: it does not start one.
        hi = size - 1 if pos + size == end else size
        while (nl := block.rfind(b"\n", 0, hi)) >= 0:
            seen += 1
            if seen == count:
                return pos + nl + 1
            hi = nl
    return 0
