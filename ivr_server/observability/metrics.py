"""Prometheus metrics. One ``Metrics`` per server (tests make their own registries)."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector, make_wsgi_app
from prometheus_client.exposition import ThreadingWSGIServer

from ivr_server.observability.load import LoadMeter

if TYPE_CHECKING:
    from ivr_server.observability.health import Health


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.ari_connected = Gauge("ivr_ari_connected", "1 while the ARI events socket is up", registry=r)
        self.ari_connects = Counter("ivr_ari_connects", "ARI events socket connections made", registry=r)
        self.ari_connect_failures = Counter(
            "ivr_ari_connect_failures", "Failed ARI connection attempts", registry=r
        )
        self.ari_events = Counter("ivr_ari_events", "ARI events handled, by type", ["type"], registry=r)
        self.ari_events_unknown = Counter(
            "ivr_ari_events_unknown", "ARI events of a type the server does not know", ["type"], registry=r
        )
        self.ari_events_malformed = Counter(
            "ivr_ari_events_malformed", "ARI event messages that could not be parsed", registry=r
        )
        self.flow_files_rejected = Counter(
            "ivr_flow_files_rejected",
            "Flow files refused at a load or reload, each time (the problems: log event flows.invalid)",
            registry=r,
        )
        self.tool_errors = Counter(
            "ivr_tool_errors",
            "Back-end tool calls that failed, by code "
            "(tool_timeout, tool_unavailable, tool_bad_answer, tool_refused)",
            ["code"],
            registry=r,
        )
        self.calls_active = Gauge("ivr_calls_active", "Calls in progress", registry=r)
        self.calls_ended = Counter("ivr_calls_ended", "Calls ended, by reason", ["end_reason"], registry=r)
        self.calls_rescued = Counter(
            "ivr_calls_rescued",
            "Calls of a dead server this server sent on (outcome: continued to the dialplan, caller_gone, "
            "with_agent, failed)",
            ["outcome"],
            registry=r,
        )
        self.calls_declined = Counter(
            "ivr_calls_declined",
            "Calls sent back to the dialplan unserved (busy, overload, server_draining)",
            ["reason"],
            registry=r,
        )
        self.rtp_received = Counter("ivr_rtp_packets_received", "RTP packets accepted", registry=r)
        self.rtp_sent = Counter("ivr_rtp_packets_sent", "RTP packets sent", registry=r)
        self.rtp_lost = Counter("ivr_rtp_packets_lost", "Inbound RTP packets missing by sequence", registry=r)
        self.rtp_rejected = Counter(
            "ivr_rtp_packets_rejected",
            "Inbound datagrams dropped, by reason (wrong_source, malformed, payload_type)",
            ["reason"],
            registry=r,
        )
        self.audio_dropped = Counter(
            "ivr_audio_frames_dropped", "Audio frames dropped by a full queue", ["direction"], registry=r
        )
        self.send_jitter_over = Counter(
            "ivr_rtp_send_jitter_over_2ms",
            "Outbound packets whose spacing from the previous one missed 20 ms by more than 2 ms",
            registry=r,
        )
        self.store_pending = Gauge("ivr_store_pending", "Store writes waiting to be committed", registry=r)
        self.store_failures = Counter("ivr_store_failures", "Failed store write attempts", registry=r)
        # Latencies a caller feels, in seconds (label values: names from the flow files only).
        self.reply_latency = Histogram(
            "ivr_reply_latency_seconds", "End of the caller's speech to the first reply audio sent",
            buckets=REPLY_BUCKETS, registry=r,
        )  # fmt: skip
        self.asr_final_latency = Histogram(
            "ivr_asr_final_latency_seconds", "End of the caller's turn to the recognizer's final words",
            buckets=FAST_BUCKETS, registry=r,
        )  # fmt: skip
        self.intent_latency = Histogram(
            "ivr_intent_latency_seconds", "Rules and intent model deciding a caller's turn",
            buckets=FAST_BUCKETS, registry=r,
        )  # fmt: skip
        self.tts_first_audio = Histogram(
            "ivr_tts_first_audio_seconds", "A prompt asked for to its first audio packet sent",
            buckets=FAST_BUCKETS, registry=r,
        )  # fmt: skip
        self.tool_latency = Histogram(
            "ivr_tool_latency_seconds", "Back-end tool calls, by tool (as named in the flow files)",
            ["tool"], buckets=REPLY_BUCKETS, registry=r,
        )  # fmt: skip
        self.asr_streams = Gauge("ivr_asr_streams", "Recognition streams open", registry=r)
        self.flow_outcomes = Counter(
            "ivr_flow_outcomes",
            "Flows ended, by flow, version and outcome (contained, transferred, abandoned, switched, error)",
            ["flow", "version", "outcome"],
            registry=r,
        )
        self.load = LoadMeter()  # the recent figures admission by load decides on
        self.loop_tasks = Gauge("ivr_event_loop_tasks", "Tasks alive on the event loop", registry=r)
        self.bus_published = Counter("ivr_bus_published", "Call events sent to the event bus", registry=r)
        self.bus_failures = Counter(
            "ivr_bus_failures", "Event bus publish attempts that failed (retried)", registry=r
        )
        # process_open_fds, process_resident_memory_bytes, ... of the server's main process
        ProcessCollector(registry=r)
        self.loop_lag = Histogram(
            "ivr_event_loop_lag_seconds",
            "How late the event loop's 250 ms heartbeat woke (every call's audio shares the loop)",
            buckets=(0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
            registry=r,
        )

    def beat(self, lag_s: float) -> None:
        """One event-loop heartbeat (on the loop): its lag, in the histogram and the load meter,
        and the loop's task count (a soak's leak check: it must come back down after calls)."""
        self.loop_lag.observe(lag_s)
        self.load.beat(lag_s)
        self.loop_tasks.set(len(asyncio.all_tasks()))

    def voice(self, name: str, value: float) -> None:
        """What a call's VoiceIO measures: a latency in seconds, or +1/-1 for a recognition stream."""
        if name == "asr_streams":
            self.asr_streams.inc(value)
        else:
            if name == "asr_final_latency":
                self.load.asr_final(value)
            {"reply_latency": self.reply_latency, "asr_final_latency": self.asr_final_latency,
             "tts_first_audio": self.tts_first_audio}[name].observe(value)  # fmt: skip


REPLY_BUCKETS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 1.0, 1.25, 1.5, 2.0, 3.0, 5.0)
FAST_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0, 2.0)
OUTCOMES = {"hangup": "contained", "ended": "contained", "transfer": "transferred", "abandoned": "abandoned",
            "switched": "switched"}  # fmt: skip


def flow_outcome(outcome: str | None) -> str:
    """A flow's session outcome as the closed set the outcome counter takes."""
    return OUTCOMES.get(outcome or "", "error")


def serve_metrics(
    metrics: Metrics,
    host: str,
    port: int,
    health: Health | None = None,
    console: WsgiApp | None = None,
    files: Mapping[str, bytes] | None = None,
) -> Any:
    """Serve /metrics (and /healthz, /readyz with ``health``; /console/ with ``console``; each
    path of ``files`` as a WAV, e.g. the high-volume prompt Asterisk plays to a call declined for
    load) in a background thread; returns the server (``shutdown()`` stops it)."""
    app = _app(metrics, health, console, files)
    server = make_server(host, port, app, _Listener, handler_class=_QuietHandler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="metrics-listener", daemon=True).start()
    return server


class _Listener(ThreadingWSGIServer):
    def shutdown(self) -> None:
        super().shutdown()
        self.server_close()  # the listening socket too: a restart in the same process can bind


class _QuietHandler(WSGIRequestHandler):
    timeout = 5  # a client that sends its request slowly frees its thread after this

    def log_message(self, format: str, *args: Any) -> None:
        """Scrapes and probes are not log lines."""


Respond = Callable[[str, list[tuple[str, str]]], Any]
WsgiApp = Callable[[dict[str, Any], Respond], Iterable[bytes]]


def _app(
    metrics: Metrics,
    health: Health | None,
    console: WsgiApp | None = None,
    files: Mapping[str, bytes] | None = None,
) -> WsgiApp:
    files = files if files is not None else {}
    prometheus = make_wsgi_app(metrics.registry)

    def app(environ: dict[str, Any], respond: Respond) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if console is not None and (path == "/console" or path.startswith("/console/")):
            return console(environ, respond)  # it checks methods, sizes and credentials itself
        if environ.get("REQUEST_METHOD") not in ("GET", "HEAD"):
            return _json(respond, 405, {"error": "only GET and HEAD"})
        if path == "/metrics":
            return prometheus(environ, respond)  # type: ignore[no-any-return]
        if health is not None and path == "/healthz":
            return _json(respond, *health.liveness())
        if health is not None and path == "/readyz":
            return _json(respond, *health.readiness())
        if (body := files.get(path)) is not None:
            respond("200 OK", [("Content-Type", "audio/wav"), ("Content-Length", str(len(body))),
                               ("Cache-Control", "max-age=3600")])  # fmt: skip
            return [b""] if environ.get("REQUEST_METHOD") == "HEAD" else [body]
        return _json(respond, 404, {"error": "not found", "paths": ["/metrics", "/healthz", "/readyz"]})

    return app


def _json(respond: Respond, status: int, body: dict[str, Any]) -> list[bytes]:
    data = json.dumps(body).encode()
    reason = {200: "OK", 404: "Not Found", 405: "Method Not Allowed", 503: "Service Unavailable"}[status]
    respond(f"{status} {reason}", [("Content-Type", "application/json"), ("Content-Length", str(len(data))),
                                   ("Cache-Control", "no-store")])  # fmt: skip
    return [data]
