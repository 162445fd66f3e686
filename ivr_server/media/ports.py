"""UDP ports for ExternalMedia, taken from a configured range and always given back."""

from __future__ import annotations

import asyncio
import errno
from collections.abc import Callable

from ivr_server.errors import PortsExhausted

ProtocolFactory = Callable[[], asyncio.DatagramProtocol]


class PortPool:
    """Hands out ports round-robin, so a just-freed port (stale packets may still be in flight
    to it) is the last to be reused. Ports held by other programs are skipped."""

    def __init__(self, host: str, port_min: int, port_max: int) -> None:
        self.host = host
        self.port_min = port_min
        self.port_max = port_max
        self._in_use: set[int] = set()
        self._next = port_min

    @property
    def in_use(self) -> frozenset[int]:
        return frozenset(self._in_use)

    async def open(
        self, factory: ProtocolFactory
    ) -> tuple[int, asyncio.DatagramTransport, asyncio.DatagramProtocol]:
        loop = asyncio.get_running_loop()
        size = self.port_max - self.port_min + 1
        for _ in range(size):
            port = self._next
            self._next = self.port_min if port == self.port_max else port + 1
            if port in self._in_use:
                continue
            try:
                transport, protocol = await loop.create_datagram_endpoint(
                    factory, local_addr=(self.host, port)
                )
            except OSError as err:
                if err.errno in (errno.EADDRINUSE, errno.EACCES):
                    continue
                raise
            self._in_use.add(port)
            return port, transport, protocol
        raise PortsExhausted(
            f"no free UDP port in {self.host}:{self.port_min}-{self.port_max} "
            f"({len(self._in_use)} held by calls); widen IVR_MEDIA_PORT_MIN/MAX"
        )

    def release(self, port: int, transport: asyncio.BaseTransport) -> None:
        transport.close()
        self._in_use.discard(port)
