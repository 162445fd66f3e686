"""Prometheus metrics. One ``Metrics`` per server (tests make their own registries)."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server


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
            "Back-end tool calls that failed, by code (tool_timeout, tool_unavailable, tool_bad_answer)",
            ["code"],
            registry=r,
        )
        self.calls_active = Gauge("ivr_calls_active", "Calls in progress", registry=r)
        self.calls_ended = Counter("ivr_calls_ended", "Calls ended, by reason", ["end_reason"], registry=r)
        self.calls_declined = Counter(
            "ivr_calls_declined",
            "Calls sent back to the dialplan unserved (busy, server_draining)",
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


def serve_metrics(metrics: Metrics, host: str, port: int) -> Any:
    """Serve /metrics in a background thread; returns the server (``shutdown()`` stops it)."""
    server, _thread = start_http_server(port, addr=host, registry=metrics.registry)
    return server
