"""RFC 4733 DTMF captures for SIPp: the probe's (ivr_server/ops/dtmf_pcap.py), shared with the tests."""

from ivr_server.ops.dtmf_pcap import EVENTS, PACKET_MS, PAYLOAD_TYPE, RATE, DtmfCaptureWriter

__all__ = ["EVENTS", "PACKET_MS", "PAYLOAD_TYPE", "RATE", "DtmfCaptureWriter"]
