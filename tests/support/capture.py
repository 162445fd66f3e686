"""What reached a UDP port on loopback: the probe's capture (ivr_server/ops/capture.py)."""

from ivr_server.ops.capture import Datagram, read_pcap
from ivr_server.ops.capture import PacketCapture as LoopbackCapture

__all__ = ["Datagram", "LoopbackCapture", "read_pcap"]
