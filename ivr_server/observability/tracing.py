"""OpenTelemetry traces: one trace per call, a span per caller turn, recognition, intent decision,
tool call and prompt spoken, the W3C ``traceparent`` passed to back-end tools and the handoff
webhook, and the trace and span ids on the call's log lines.

Off unless ``IVR_TRACING`` asks (``otlp``: to the collector at ``OTEL_EXPORTER_OTLP_ENDPOINT``, as
the OpenTelemetry SDK reads it; ``console``: spans as JSON on stdout) and the ``tracing`` extra is
installed. Off, every helper here is a no-op that costs a global lookup.
"""

from __future__ import annotations

from collections.abc import Iterator, MutableMapping
from contextlib import contextmanager
from typing import Any

from ivr_server.errors import ConfigError

MODES = ("off", "otlp", "console")


class _Tracing:
    tracer: Any = None  # None: off
    provider: Any = None


_on = _Tracing()


def configure_tracing(mode: str, service_name: str, exporter: Any = None) -> bool:
    """Start tracing as ``mode`` says; ``exporter`` (tests: an in-memory one) replaces the
    mode's. True when traces are being made."""
    shutdown_tracing()
    if mode == "off" and exporter is None:
        return False
    if mode not in MODES:
        raise ConfigError(f"IVR_TRACING: {mode!r} is not one of {', '.join(MODES)}")
    try:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import (
            BatchSpanProcessor,
            ConsoleSpanExporter,
            SimpleSpanProcessor,
        )
    except ImportError as err:
        raise ConfigError(
            f"IVR_TRACING={mode} needs OpenTelemetry: pip install 'ivr-server[tracing]' ({err})"
        ) from err
    # A provider of our own, not the process-wide one: tests and reloads may configure again.
    provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
    if exporter is not None:
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    elif mode == "otlp":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))  # off the call's path
    else:
        provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter()))
    _on.provider, _on.tracer = provider, provider.get_tracer("ivr-server")
    return True


def shutdown_tracing() -> None:
    """Send what is buffered and stop (server exit)."""
    if _on.provider is not None:
        _on.provider.shutdown()
    _on.tracer = _on.provider = None


@contextmanager
def span(name: str, parent: Any = None, **attributes: Any) -> Iterator[Any]:
    """A span around the block, child of the current span (or of ``parent``, a context from
    ``current_context()``: for work the media clock starts outside the call's task)."""
    if _on.tracer is None:
        yield None
        return
    kept = {f"ivr.{k}": v for k, v in attributes.items() if isinstance(v, str | int | float | bool)}
    with _on.tracer.start_as_current_span(name, context=parent, attributes=kept) as current:
        yield current


def current_context() -> Any:
    """The current trace context, to parent spans started from other tasks (None when off)."""
    if _on.tracer is None:
        return None
    from opentelemetry import context

    return context.get_current()


def traceparent() -> str | None:
    """The W3C ``traceparent`` header of the current span, or None (no trace)."""
    ids = _current_ids()
    return None if ids is None else f"00-{ids[0]}-{ids[1]}-{ids[2]}"


def add_trace_ids(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """structlog processor: ``trace_id`` and ``span_id`` on lines written inside a span."""
    ids = _current_ids()
    if ids is not None:
        event_dict.setdefault("trace_id", ids[0])
        event_dict.setdefault("span_id", ids[1])
    return event_dict


def _current_ids() -> tuple[str, str, str] | None:
    if _on.tracer is None:
        return None
    from opentelemetry import trace

    ctx = trace.get_current_span().get_span_context()
    if not ctx.is_valid:
        return None
    return f"{ctx.trace_id:032x}", f"{ctx.span_id:016x}", f"{int(ctx.trace_flags):02x}"
