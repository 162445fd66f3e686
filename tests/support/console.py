"""A console client, as an operator has one: headless Chromium (Debian's package) driven over the
DevTools protocol in real time, and the console's HTTP API read with httpx. The console's
end-to-end test and the operations benchmark (benchmarks/ops/) both use it."""

from __future__ import annotations

import asyncio
import base64
import json
import shutil
import socket
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from itertools import count
from pathlib import Path
from typing import Any

import httpx
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from ivr_server.ops.sipp import free_port

LOADED = "data-loaded-ms"  # set on <body> by console.js once the page shows its first data


class Tab:
    """Chromium's one page, commanded over its DevTools WebSocket. A reader task takes every
    message as it comes: answers go to their command, events (Network.enable sends many) are
    dropped, so they never pile up unread and stall the socket."""

    def __init__(self, ws: ClientConnection) -> None:
        self._ws = ws
        self._ids = count(1)
        self._waiting: dict[int, asyncio.Future[dict[str, Any]]] = {}

    async def read(self) -> None:
        """Until the socket closes (then commands waiting fail) or the task is cancelled."""
        try:
            async for raw in self._ws:
                message = json.loads(raw)
                future = self._waiting.pop(message.get("id", 0), None)
                if future is not None and not future.done():
                    future.set_result(message)
        except ConnectionClosed:
            pass
        for future in self._waiting.values():
            if not future.done():
                future.set_exception(ConnectionError("Chromium's DevTools socket closed"))

    async def call(self, method: str, **params: object) -> dict[str, Any]:
        n = next(self._ids)
        answer = self._waiting[n] = asyncio.get_running_loop().create_future()
        await self._ws.send(json.dumps({"id": n, "method": method, "params": params}))
        message = await answer
        if "error" in message:
            raise RuntimeError(f"DevTools {method}: {message['error']}")
        return dict(message["result"])

    async def evaluate(self, expression: str) -> Any:
        """The expression's value in the page (None: undefined, or nothing loaded yet)."""
        got = await self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        return got["result"].get("value")

    async def dom(self) -> str:
        return str(await self.evaluate("document.documentElement.outerHTML") or "")

    async def data_shown(self, poll_s: float = 0.1) -> str:
        """The DOM, once the console page shows its data (console.js marks the moment)."""
        while LOADED not in (html := await self.dom()):
            await asyncio.sleep(poll_s)
        return html

    async def screenshot(self, path: Path) -> None:
        shot = await self.call("Page.captureScreenshot", format="png")
        await asyncio.to_thread(path.write_bytes, base64.b64decode(str(shot["data"])))


@asynccontextmanager
async def chromium(profile: Path, url: str = "about:blank", timeout_s: float = 60) -> AsyncIterator[Tab]:
    """Headless Chromium opened on ``url``, its page commanded in real time (a console page keeps
    a transcript stream open, which ``--dump-dom`` with a virtual time budget would wait on
    forever); killed and reaped on the way out. ``timeout_s`` bounds getting the page."""
    browser = shutil.which("chromium")
    assert browser, "apt-get install chromium (scripts/bootstrap installs it)"
    port = free_port(socket.SOCK_STREAM)
    proc = await asyncio.create_subprocess_exec(
        browser, "--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1280,900",
        f"--remote-debugging-port={port}", f"--user-data-dir={profile}", url,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    try:
        async with asyncio.timeout(timeout_s):
            page = await _devtools_page(port)
        async with connect(page, max_size=64 * 1024 * 1024) as ws, asyncio.TaskGroup() as tg:
            tab = Tab(ws)
            reader = tg.create_task(tab.read())
            try:
                yield tab
            finally:
                reader.cancel()
    finally:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()


async def _devtools_page(port: int) -> str:
    """The page's DevTools WebSocket address, once Chromium listens."""
    async with httpx.AsyncClient() as http:
        while True:
            try:
                targets = (await http.get(f"http://127.0.0.1:{port}/json")).json()
                pages = [t["webSocketDebuggerUrl"] for t in targets if t.get("type") == "page"]
                if pages:
                    return str(pages[0])
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.1)


async def first_call(base: str, auth: tuple[str, str], timeout_s: float = 30) -> str:
    """The id of the first call the console lists as in progress (``base``: .../console)."""
    async with httpx.AsyncClient(auth=auth) as http:
        async with asyncio.timeout(timeout_s):
            while True:
                calls = (await http.get(f"{base}/api/calls")).json()["calls"]
                if calls:
                    return str(calls[0]["call_id"])
                await asyncio.sleep(0.1)


async def heard_on_stream(base: str, call_id: str, auth: tuple[str, str]) -> tuple[dict[str, Any], float]:
    """The first caller turn on the call's transcript stream, and when it arrived (epoch s)."""
    async with (
        httpx.AsyncClient(auth=auth, timeout=httpx.Timeout(5, read=60)) as http,
        http.stream("GET", f"{base}/api/calls/{call_id}/events") as stream,
    ):
        assert stream.status_code == 200
        kind = ""
        async for line in stream.aiter_lines():
            if line.startswith("event: "):
                kind = line[7:]
            elif line.startswith("data: ") and kind == "turn":
                turn = json.loads(line[6:])
                if turn["role"] == "caller" and turn["text"]:
                    return turn, time.time()
    raise AssertionError("the stream ended before the caller's words came")


async def page_load_s(base: str, auth: tuple[str, str]) -> float:
    """What the page fetches before it shows the calls: HTML, script, style, /me, /calls."""
    async with httpx.AsyncClient(auth=auth) as http:
        began = time.monotonic()
        for path in ("/", "/console.js", "/console.css", "/api/me", "/api/calls"):
            assert (await http.get(base + path)).status_code == 200
        return time.monotonic() - began
