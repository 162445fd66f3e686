"""A scripted stand-in for Asterisk's ARI on loopback, for what a real Asterisk cannot be made to
do: send truncated JSON, flap its events socket, refuse credentials on cue.

Serves the REST GETs the connection makes (channels, bridges, application) and the events
WebSocket from one websockets server.
"""

from __future__ import annotations

import asyncio
import json
import time
from http import HTTPStatus
from typing import Any

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.http11 import Request, Response


class FakeAri:
    def __init__(
        self,
        messages: list[str | bytes] | None = None,
        *,
        close_after_send: bool = False,
        events_status: int | None = None,
        rest_status: int = 200,
    ) -> None:
        self.messages = messages or []
        self.close_after_send = close_after_send
        self.events_status = events_status  # e.g. 401: refuse the socket
        self.rest_status = rest_status  # e.g. 404 while "res_ari is loading"
        self.connected_at: list[float] = []
        self.requests: list[str] = []
        self._server: Server | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        host, port = next(iter(self._server.sockets)).getsockname()[:2]
        return f"http://{host}:{port}"

    async def __aenter__(self) -> FakeAri:
        self._server = await serve(self._events, "127.0.0.1", 0, process_request=self._http)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    def _http(self, connection: ServerConnection, request: Request) -> Response | None:
        self.requests.append(request.path)
        if request.path.startswith("/ari/events"):
            if self.events_status:
                return connection.respond(HTTPStatus(self.events_status), "refused\n")
            return None
        if self.rest_status != 200:
            return _json(self.rest_status, {"message": "Not found yet"})
        if request.path == "/ari/channels" or request.path == "/ari/bridges":
            return _json(200, [])
        if request.path.startswith("/ari/applications/"):
            return _json(200, {"name": "ivr-server", "channel_ids": [], "bridge_ids": []})
        return _json(404, {"message": "Resource not found"})

    async def _events(self, ws: ServerConnection) -> None:
        self.connected_at.append(time.monotonic())
        for message in self.messages:
            await ws.send(message)
        if self.close_after_send:
            await ws.close()
            return
        await ws.wait_closed()


def _json(status: int, body: Any) -> Response:
    data = json.dumps(body).encode()
    headers = Headers(
        {"Content-Type": "application/json", "Content-Length": str(len(data)), "Connection": "close"}
    )
    return Response(status, HTTPStatus(status).phrase, headers, data)


async def wait_until(predicate: Any, timeout_s: float = 5) -> None:
    async with asyncio.timeout(timeout_s):
        while not predicate():
            await asyncio.sleep(0.01)
