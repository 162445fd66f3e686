"""The live console with a real call in progress, seen in headless Chromium (Debian's package):
a viewer sees the call (caller masked, flow, state) but no words; a supervisor sees the
caller's recognized words, as they come; the supervisor's view is in the audit trail.
Screenshots: docs/console-viewer.png, docs/console-supervisor.png. Prints the page load time
and the delay from an utterance recognized to it arriving on the transcript stream."""

from __future__ import annotations

import asyncio
import base64
import json
import shutil
import socket
import time
from datetime import datetime
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select
from websockets.asyncio.client import connect

from ivr_server.config import ToolService
from ivr_server.config.settings import ConsoleUser
from ivr_server.console.auth import hash_token
from ivr_server.ops.sipp import free_port
from ivr_server.store.database import create_engine
from ivr_server.store.schema import audit_events
from tests.conftest import REPO, running_server, server_settings
from tests.e2e.test_banking_call import prompt_ms, spoken
from tests.support.sipp import Pause, SippCall, scenario

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("asterisk")]

USERS = {"vera": ("viewer", "viewer-token-0123456789"), "sam": ("supervisor", "supervisor-token-0123456789")}
WORDS = "lost my card"


async def chromium(url: str, profile: Path, screenshot: Path) -> tuple[str, float]:
    """What Chromium shows of ``url`` once the page has its data (its DOM, and a screenshot), read
    over the DevTools protocol in real time: the supervisor's page keeps a transcript stream
    open, which ``--dump-dom`` with a virtual time budget would wait on forever. Returns the
    DOM and the seconds from launch to the data shown."""
    browser = shutil.which("chromium")
    assert browser, "apt-get install chromium (scripts/bootstrap installs it)"
    port = free_port(socket.SOCK_STREAM)
    began = time.monotonic()
    proc = await asyncio.create_subprocess_exec(
        browser, "--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1280,900",
        f"--remote-debugging-port={port}", f"--user-data-dir={profile}", url,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    try:
        async with asyncio.timeout(60):
            page = await _devtools_page(port)
            async with connect(page, max_size=64 * 1024 * 1024) as ws:
                ids = iter(range(1, 10_000))

                async def call(method: str, **params: object) -> dict[str, object]:
                    n = next(ids)
                    await ws.send(json.dumps({"id": n, "method": method, "params": params}))
                    while True:
                        message = json.loads(await ws.recv())
                        if message.get("id") == n:
                            return dict(message["result"])

                async def dom() -> str:
                    got = await call("Runtime.evaluate", expression="document.documentElement.outerHTML",
                                     returnByValue=True)  # fmt: skip
                    return str(got["result"].get("value", ""))  # type: ignore[attr-defined]  # "": not loaded yet

                while "data-loaded-ms" not in (html := await dom()):
                    await asyncio.sleep(0.1)
                shown = time.monotonic() - began
                await asyncio.sleep(1.5)  # the transcript stream's first turns
                html = await dom()
                shot = await call("Page.captureScreenshot", format="png")
                await asyncio.to_thread(screenshot.write_bytes, base64.b64decode(str(shot["data"])))
                return html, shown
    finally:
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
    async with httpx.AsyncClient(auth=auth) as http:
        async with asyncio.timeout(timeout_s):
            while True:
                calls = (await http.get(f"{base}/api/calls")).json()["calls"]
                if calls:
                    return str(calls[0]["call_id"])
                await asyncio.sleep(0.1)


async def heard_on_stream(base: str, call_id: str, auth: tuple[str, str]) -> tuple[dict[str, object], float]:
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


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_console_shows_a_call_in_progress_to_a_viewer_and_a_supervisor(
    database_url: str, bank: str, tmp_path: Path
) -> None:
    port = free_port(socket.SOCK_STREAM)
    users = {
        name: ConsoleUser(role=role, token_hash=hash_token(token)) for name, (role, token) in USERS.items()
    }
    settings = server_settings(
        database_url,
        tools_services={"bank": ToolService(url=bank, breaker_failures=3, breaker_reset_s=30.0)},
        metrics_port=port,
        console_users=users,
    )
    steps = [Pause(prompt_ms("welcome")), spoken(f"I {WORDS}", tmp_path, "lost"), Pause(25_000)]
    call = SippCall(scenario(steps, tmp_path, server_hangs_up=False), service="400", workdir=tmp_path)
    base = f"http://127.0.0.1:{port}/console"
    viewer, supervisor = ("vera", USERS["vera"][1]), ("sam", USERS["sam"][1])
    docs = REPO / "docs"
    docs.mkdir(exist_ok=True)
    async with running_server(settings) as server:
        placed = asyncio.create_task(call.run())
        try:
            call_id = await first_call(base, viewer)
            turn, arrived = await asyncio.wait_for(heard_on_stream(base, call_id, supervisor), 45)
            delay_ms = (arrived - float(turn["at"])) * 1000  # type: ignore[arg-type]
            load_s = await page_load_s(base, viewer)
            pages, shown = {}, {}
            for name, (user, token) in (("viewer", viewer), ("supervisor", supervisor)):
                url = f"http://{user}:{token}@127.0.0.1:{port}/console/"
                pages[name], shown[name] = await chromium(url, tmp_path / name, docs / f"console-{name}.png")
            print(f"chromium: data shown {shown['viewer']:.1f} s / {shown['supervisor']:.1f} s after launch")
            assert server.manager is not None and server.manager.sessions, "the call ended too early"
            assert await placed == 0, call.errors()  # the caller hangs up: no channel left behind
        finally:
            placed.cancel()  # only if it failed before: SIPp is then killed and reaped
            await asyncio.gather(placed, return_exceptions=True)
    print(f"console page load (HTML, script, style, /me, /calls): {load_s * 1000:.0f} ms")
    print(f"utterance recognized -> on the transcript stream: {delay_ms:.0f} ms ({turn['text']!r})")
    assert WORDS in str(turn["text"]).lower(), turn

    short = call_id[:8]
    assert "vera (viewer)" in pages["viewer"] and "••••••00" in pages["viewer"], pages["viewer"]
    assert "banking" in pages["viewer"] and "Transcripts need the supervisor role." in pages["viewer"]
    assert WORDS not in pages["viewer"].lower()  # neither in the list nor a transcript
    assert "sam (supervisor)" in pages["supervisor"] and short in pages["supervisor"]
    assert WORDS in pages["supervisor"].lower(), pages["supervisor"]
    loaded = pages["supervisor"].split('data-loaded-ms="')[1].split('"')[0]
    print(f"console page in Chromium: first data shown {loaded} ms after navigation started")
    assert load_s < 1.0 and delay_ms < 2000  # generous: the targets (1 s, 500 ms) are a benchmark's

    engine = create_engine(database_url)
    try:
        async with asyncio.timeout(10):
            while True:
                async with engine.connect() as conn:
                    rows = (
                        await conn.execute(select(audit_events).where(audit_events.c.kind == "console_view"))
                    ).all()
                if rows:
                    break
                await asyncio.sleep(0.2)
    finally:
        await engine.dispose()
    views = [(r.call_id, json.loads(r.body)["payload"]) for r in rows]
    assert all(cid == call_id and body["user"] == "sam" for cid, body in views), views
    assert {body["viewed"] for _, body in views} >= {"transcript_stream"}
    assert isinstance(rows[0].at, datetime)
