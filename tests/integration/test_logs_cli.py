"""`ivr-server logs tail`, run as an operator runs it, on log files the server's own logging
set-up writes: filters, stdin, garbage, and --follow across appends, rotation and truncation."""

from __future__ import annotations

import os
import re
import select
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog

from ivr_server.observability.logging import configure_logging

IVR_SERVER = Path(sys.executable).with_name("ivr-server")
CALL_A, CALL_B = str(uuid.uuid4()), str(uuid.uuid4())
LINE = re.compile(r"^\d\d:\d\d:\d\d\.\d{3} (INFO |WARN |ERROR) (call=[0-9a-f]{8}|\s{13}) \S")


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("IVR_") and k != "NO_COLOR"}


def tail(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [str(IVR_SERVER), "logs", "tail", *args],
        input=stdin,
        capture_output=True,
        env=clean_env(),
        timeout=60,
        check=False,
    )
    return subprocess.CompletedProcess(done.args, done.returncode, done.stdout.decode(), done.stderr.decode())


def write_log(path: Path, lines: Callable[[Any], None], mode: str = "a") -> None:
    """Append what ``lines(log)`` logs to ``path`` through the server's JSON logging set-up."""
    with path.open(mode, encoding="utf-8") as stream:
        configure_logging("json", "debug", stream)
        try:
            lines(structlog.get_logger("test"))
        finally:
            configure_logging("auto", "warning")  # nothing may write to the closed file


def a_day_of_calls(log: Any) -> None:
    log.info("flows.loaded", flow="banking", version=3)
    with structlog.contextvars.bound_contextvars(call_id=CALL_A, channel_id="1733.1"):
        log.info("call.started", flow="banking", exten="100")
        log.info("flow.decision", flow="banking", state="menu", intent="balance", words="my balance")
        log.warning("flow.repair", flow="banking", state="menu", repair="reprompt", reason="no_match")
    with structlog.contextvars.bound_contextvars(call_id=CALL_B, channel_id="1733.2"):
        log.info("call.started", flow="banking", exten="100")
        try:
            raise TimeoutError("bank API")
        except TimeoutError:
            log.exception("tool.failed", tool="balance", error="timeout", latency_ms=3000)


@pytest.fixture
def server_log(tmp_path: Path) -> Path:
    path = tmp_path / "server.log"
    write_log(path, a_day_of_calls, mode="w")
    return path


def shown(output: str) -> list[str]:
    """The record lines (no date line, no exception lines)."""
    return [line for line in output.splitlines() if LINE.match(line)]


def test_help_explains_the_command() -> None:
    helped = subprocess.run(
        [str(IVR_SERVER), "logs", "tail", "--help"], capture_output=True, text=True, check=True
    )
    for words in (
        "stdin",
        "--follow",
        "--call",
        "--level",
        "--event",
        "--color",
        "[malformed JSON]",
        "exit codes",
    ):
        assert words in helped.stdout
    assert (
        subprocess.run([str(IVR_SERVER), "logs", "--help"], capture_output=True, check=False).returncode == 0
    )


def test_renders_a_server_log_with_filters(server_log: Path) -> None:
    """Every record on one readable line; --call by prefix, --level and above, --event by
    prefix, -n the last lines that pass; the file is unchanged."""
    before = server_log.read_bytes()
    everything = tail(str(server_log), "--color", "never")
    assert everything.returncode == 0, everything.stderr
    records = shown(everything.stdout)
    assert len(records) == 6 and everything.stdout.startswith("--- 20")
    decision = next(line for line in records if "flow.decision" in line)
    assert f"INFO  call={CALL_A[:8]} flow.decision" in decision
    assert decision.split("flow.decision")[1].split()[:3] == ["flow=banking", "state=menu", "intent=balance"]
    assert "channel_id" not in decision and "\x1b" not in everything.stdout
    assert "    TimeoutError: bank API" in everything.stdout
    assert server_log.read_bytes() == before

    by_call = shown(tail(str(server_log), "--call", CALL_A[:4].upper()).stdout)
    assert [line.split()[3] for line in by_call] == ["call.started", "flow.decision", "flow.repair"]
    assert [line.split()[3] for line in shown(tail(str(server_log), "--level", "warning").stdout)] == [
        "flow.repair",
        "tool.failed",
    ]
    assert len(shown(tail(str(server_log), "--event", "call.", "--event", "tool.").stdout)) == 3
    last = shown(tail(str(server_log), "-n", "2", "--call", CALL_A).stdout)
    assert [line.split()[3] for line in last] == ["flow.decision", "flow.repair"]


def test_stdin_colour_and_the_usual_errors(server_log: Path, tmp_path: Path) -> None:
    """Stdin works like a file; --color always paints levels; a missing file exits 5 naming
    it; a bad -n is a usage error."""
    piped = tail("--color", "always", "--level", "warning", stdin=server_log.read_bytes())
    assert piped.returncode == 0
    assert "\x1b[33mWARN \x1b[0m" in piped.stdout and "\x1b[31mERROR\x1b[0m" in piped.stdout
    missing = tail(str(tmp_path / "nowhere.log"))
    assert missing.returncode == 5 and "nowhere.log" in missing.stderr and not missing.stdout
    assert tail(str(server_log), "-n", "-3").returncode == 2


def test_garbage_never_stops_it(server_log: Path) -> None:
    """A traceback, binary bytes, a cut JSON line and lines of megabytes: shown raw, marked,
    bounded; the records around them still render."""
    with server_log.open("ab") as raw:
        raw.write(b"Traceback (most recent call last):\n\x00\xff\xfe\x1b[2J binary\n")
        raw.write(b'{"event": "flow.decision", "level": "in\n')
        raw.write(b"x" * 3_000_000 + b"\n" + b'{"event": "big", "words": "' + b"y" * 3_000_000 + b'"}\n')
    write_log(server_log, lambda log: log.info("call.ended", reason="hangup"))
    result = tail(str(server_log), "--color", "never")
    assert result.returncode == 0, result.stderr
    out = result.stdout.splitlines()
    assert "Traceback (most recent call last):" in out
    assert "\\x00\ufffd\ufffd\\x1b[2J binary" in out
    assert '[malformed JSON] {"event": "flow.decision", "level": "in' in out
    assert "x" * 2000 + " … [line cut]" in out
    assert any(
        line.startswith('[malformed JSON] {"event": "big"') and line.endswith("[line cut]") for line in out
    )
    assert max(len(line) for line in out) < 2100
    assert "call.ended" in shown(result.stdout)[-1]


class Output:
    """What a running command has written so far, read with a deadline."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdout is not None
        self.proc, self.fd, self.text = proc, proc.stdout.fileno(), ""

    def until(self, needle: str, timeout_s: float = 15) -> str:
        deadline = time.monotonic() + timeout_s
        while needle not in self.text:
            left = deadline - time.monotonic()
            assert left > 0, f"no {needle!r} in {self.text!r}"
            if select.select([self.fd], [], [], left)[0]:
                chunk = os.read(self.fd, 1 << 16)
                assert chunk, f"exited {self.proc.poll()} before {needle!r}: {self.text!r}"
                self.text += chunk.decode()
        return self.text


@pytest.fixture
def following(server_log: Path, tmp_path: Path) -> Iterator[tuple[Output, Path]]:
    errors = tmp_path / "stderr"
    with errors.open("wb") as err:
        proc = subprocess.Popen(
            [str(IVR_SERVER), "logs", "tail", "-f", str(server_log), "--color", "never"],
            stdout=subprocess.PIPE,
            stderr=err,
            env=clean_env(),
        )
    try:
        yield Output(proc), errors
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=15) == 130  # Ctrl-C, as for every ivr-server command
        assert "Traceback" not in errors.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        assert proc.stdout is not None
        proc.stdout.close()


def test_follow_picks_up_appends_rotation_and_truncation(
    following: tuple[Output, Path], server_log: Path
) -> None:
    """-f shows the last 10 lines, then each appended line (a half-written one once it ends),
    the new file after a rotation and the file again after it was truncated."""
    output, errors = following
    output.until("tool.failed")
    write_log(server_log, lambda log: log.info("call.ended", reason="hangup"))
    output.until("reason=hangup")

    with server_log.open("a") as writer:  # a line written in two parts is shown once, whole
        writer.write('{"event": "flow.split", "level": "info", ')
        writer.flush()
        time.sleep(0.6)
        writer.write('"state": "menu"}\n')
    output.until("state=menu")
    assert "[malformed JSON]" not in output.text

    server_log.rename(server_log.with_suffix(".log.1"))  # logrotate's create mode
    write_log(server_log, lambda log: log.info("flows.loaded", flow="after-rotation"), mode="w")
    output.until("flow=after-rotation")
    write_log(server_log, lambda log: log.info("flows.loaded", flow="appended-after-rotation"))
    output.until("flow=appended-after-rotation")

    # Truncated and rewritten shorter than what was read (as tail, it compares sizes).
    write_log(server_log, lambda log: log.info("flows.loaded", flow="after-truncation"), mode="w")
    output.until("flow=after-truncation")
    assert output.text.count("flow=after-rotation") == 1
    assert "was replaced" in errors.read_text() and "was truncated" in errors.read_text()
