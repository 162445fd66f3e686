"""structlog set-up: JSON lines by default, a readable renderer on a terminal.

Per-call context (``call_id``, ``channel_id``) is bound with ``structlog.contextvars`` in the
call's task, so every line a call writes carries it. Secret-looking keys are masked before
rendering, whatever the caller passed, and personal data (card numbers, phone numbers, e-mail
addresses, national ids, secure slot values) passes the redaction step every output shares.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any, TextIO

import structlog
from pydantic import SecretStr

from ivr_server.observability.tracing import add_trace_ids
from ivr_server.privacy.redact import Redactor, is_id_key

MASK = "********"
_configured: list[tuple[str, str]] = []  # (format, level) of the last configure_logging
_SECRET_KEY_PARTS = ("password", "secret", "token", "authorization", "api_key", "apikey")


def redact_secrets(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """Mask values whose key looks like a secret, and any SecretStr, wherever they come from."""
    for key, value in event_dict.items():
        if isinstance(value, SecretStr) or any(p in key.lower() for p in _SECRET_KEY_PARTS):
            event_dict[key] = MASK
    return event_dict


_REDACTOR = Redactor()


def redact_personal_data(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    for key, value in event_dict.items():
        if not is_id_key(key) and isinstance(value, str | list | tuple | dict):
            event_dict[key] = _REDACTOR.value(value)
    return event_dict


def configure_logging(fmt: str = "auto", level: str = "info", stream: TextIO | None = None) -> None:
    """Configure structlog and the standard library (third-party loggers) to render alike."""
    _configured[:] = [(fmt, level)]
    stream = stream or sys.stderr
    use_json = fmt == "json" or (fmt == "auto" and not stream.isatty())
    # An exception becomes data before redaction runs (its message may carry a card number),
    # and never with the frames' local variables, which hold whatever the caller said.
    exceptions: Any = (
        structlog.processors.ExceptionRenderer(
            structlog.tracebacks.ExceptionDictTransformer(show_locals=False)
        )
        if use_json
        else structlog.processors.format_exc_info
    )
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        add_trace_ids,  # inside a call's trace: its ids, to find the spans of a log line
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        exceptions,
        redact_secrets,
        redact_personal_data,
    ]
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if use_json
        else structlog.dev.ConsoleRenderer(
            colors=stream.isatty(), exception_formatter=structlog.dev.plain_traceback
        )
    )
    numeric = logging.getLevelName(level.upper())
    structlog.configure(
        processors=[*shared, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(stream),
        cache_logger_on_first_use=False,
    )
    handler = logging.StreamHandler(stream)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
            foreign_pre_chain=[structlog.stdlib.add_logger_name, *shared],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(numeric)
    # Libraries that log every request or frame at INFO/DEBUG.
    for noisy in ("httpx", "httpcore", "websockets", "aiosqlite", "asyncio", "alembic"):
        logging.getLogger(noisy).setLevel(max(numeric, logging.WARNING))


def child_logging() -> tuple[str, str]:
    """(format, level) for a worker process to configure: the server's, so its lines render as
    the server's do; warnings only when nothing was configured (a script, a test)."""
    return _configured[0] if _configured else ("auto", "warning")


class RateLimitedLog:
    """Logs the 1st, 2nd, 4th, 8th ... occurrence of a kind of event, with the running count.

    Used where a peer can send a flood (garbage RTP, unknown events): every occurrence is
    counted in metrics, the log gets enough lines to see it without drowning.
    """

    MAX_KEYS = 1024  # kinds kept apart; past that they share one count (a peer picks the keys)

    def __init__(self) -> None:
        self._counts: dict[str, int] = {}

    def should_log(self, key: str) -> tuple[bool, int]:
        if key not in self._counts and len(self._counts) >= self.MAX_KEYS:
            key = "(other kinds)"
        count = self._counts.get(key, 0) + 1
        self._counts[key] = count
        return (count & (count - 1)) == 0, count
