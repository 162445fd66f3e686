"""Structured logs: JSON lines, per-call context, secrets masked."""

from __future__ import annotations

import io
import json

import structlog
from pydantic import SecretStr

from ivr_server.observability.logging import MASK, RateLimitedLog, configure_logging


def test_json_lines_carry_call_context_and_mask_secrets() -> None:
    stream = io.StringIO()
    configure_logging("json", "info", stream)
    log = structlog.get_logger("test")
    with structlog.contextvars.bound_contextvars(call_id="c-1", channel_id="ch-9"):
        log.info("call.thing", ari_password="hunter2", token="abc", secret_value=SecretStr("x"), digits=3)
    log.debug("not shown at info")
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert len(lines) == 1
    line = lines[0]
    assert (line["event"], line["level"], line["call_id"], line["channel_id"]) == (
        "call.thing",
        "info",
        "c-1",
        "ch-9",
    )
    assert line["ari_password"] == line["token"] == line["secret_value"] == MASK
    assert line["digits"] == 3 and "timestamp" in line
    assert "hunter2" not in stream.getvalue()


def test_standard_library_loggers_render_as_json_too() -> None:
    import logging

    stream = io.StringIO()
    configure_logging("json", "info", stream)
    logging.getLogger("sqlalchemy.pool").warning("pool %s exhausted", "main")
    line = json.loads(stream.getvalue().splitlines()[-1])
    assert line["event"] == "pool main exhausted" and line["logger"] == "sqlalchemy.pool"


def test_console_renderer_on_request() -> None:
    stream = io.StringIO()
    configure_logging("console", "info", stream)
    structlog.get_logger("test").info("hello", who="admin")
    assert "hello" in stream.getvalue() and "who=admin" in stream.getvalue()
    assert not stream.getvalue().startswith("{")


def test_rate_limited_log_keeps_powers_of_two() -> None:
    limiter = RateLimitedLog()
    logged = [n for n in range(1, 100) if limiter.should_log("flood")[0]]
    assert logged == [1, 2, 4, 8, 16, 32, 64]
    assert limiter.should_log("other") == (True, 1)


def _fails_holding(card: str) -> None:
    said = f"my card is {card}"  # a frame's local: what a caller said
    raise ValueError(f"could not parse {said}")


def test_an_exception_is_logged_redacted_and_without_the_frames_locals() -> None:
    for fmt in ("json", "console"):
        out = io.StringIO()
        configure_logging(fmt, "info", out)
        try:
            _fails_holding("4111 1111 1111 1111")
        except ValueError:
            structlog.get_logger("t").exception("flow.failed")
        text = out.getvalue()
        assert "4111" not in text and "1111 1111" not in text, text
        assert "ValueError" in text and "_fails_holding" in text  # still says what and where
        if fmt == "json":
            (frame_info,) = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
            frames = frame_info["exception"][0]["frames"]
            assert all("locals" not in f or not f["locals"] for f in frames)
    configure_logging("json", "info")
