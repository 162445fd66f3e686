"""The server under test: an ``ivr-server run`` process configured per arm (metrics listener,
console users, tracing: each on or off), its log watched for its own events, and the peers the
bench process plays around it: the demo bank, an OTLP/HTTP receiver that counts the spans it is
sent, and an operator (a console page open on every call, Prometheus scraping every 5 s)."""

from __future__ import annotations

import asyncio
import gzip
import inspect
import json
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from aiohttp import web

from ivr_server.console.auth import hash_token
from ivr_server.ops.sipp import free_port
from tests.support.tasks import alongside

# Kept across runs and invocations: prompts rendered, recognition resources compiled and intent
# models trained once (IVR_DATA_DIR's nlu-cache), not at every server start.
CACHE = Path(tempfile.gettempdir()) / "ivr-bench-ops"
MEDIA_PORTS = (43000, 43999)  # apart from the tests' (41000-41599) and bench-media's (42000-42999)
SUPERVISOR = ("sam", "bench-ops-supervisor-token")
VIEWER = ("vera", "bench-ops-viewer-token")
SCRAPE_S = 5.0  # Prometheus's scrape interval
PAGE_REFRESH_S = 1.0  # console.js refreshes the calls this often


@dataclass(frozen=True)
class Arm:
    """What a server runs with. ``metrics``: the listener (/metrics, /healthz, /readyz, the
    console's port), scraped every 5 s; ``console``: console users, and a supervisor following
    every call (needs the listener); ``tracing``: OTLP/HTTP traces to the bench's receiver."""

    name: str
    metrics: bool
    console: bool
    tracing: bool


WITH = Arm("with", metrics=True, console=True, tracing=True)
WITHOUT = Arm("without", metrics=False, console=False, tracing=False)
TRACING_ONLY = Arm("tracing only", metrics=False, console=False, tracing=True)
LISTENER_ONLY = Arm("metrics and console only", metrics=True, console=True, tracing=False)


def server_env(
    environ: Mapping[str, str], arm: Arm, workdir: Path, bank_url: str, metrics_port: int, otlp_url: str
) -> dict[str, str]:
    """The server's environment: the caller's without any IVR_ or OTEL_ setting of its own, the
    store and outbox in ``workdir``, caches in CACHE, the demo bank, and the arm's listener,
    console and tracing. Everything else is the server's default."""
    users = {
        name: {"role": role, "token_hash": hash_token(token)}
        for role, (name, token) in (("supervisor", SUPERVISOR), ("viewer", VIEWER))
    }
    env = {k: v for k, v in environ.items() if not k.startswith(("IVR_", "OTEL_"))}
    env.update({
        "IVR_DATA_DIR": str(CACHE / "data"),
        "IVR_DATABASE_URL": f"sqlite+aiosqlite:///{workdir / 'ivr.sqlite3'}",
        "IVR_OUTBOX_PATH": str(workdir / "outbox.sqlite3"),
        "IVR_ARI_URL": "http://127.0.0.1:8088",
        "IVR_ARI_PASSWORD": "ivr-sandbox",
        "IVR_MEDIA_PORT_MIN": str(MEDIA_PORTS[0]),
        "IVR_MEDIA_PORT_MAX": str(MEDIA_PORTS[1]),
        "IVR_LOG_FORMAT": "json",
        "IVR_TTS_CACHE_DIR": str(CACHE / "tts"),
        "IVR_ASR_RESOURCES_DIR": str(CACHE / "asr"),
        "IVR_TOOLS_SERVICES": json.dumps({"bank": {"url": bank_url}}),
        "IVR_METRICS_PORT": str(metrics_port if arm.metrics else 0),
        "IVR_CONSOLE_USERS": json.dumps(users if arm.console else {}),
        "IVR_TRACING": "otlp" if arm.tracing else "off",
        "IVR_ADMISSION": "count",  # 20 callers arrive at once: this bench measures serving them
    })  # fmt: skip
    if arm.tracing:
        env["OTEL_EXPORTER_OTLP_ENDPOINT"] = otlp_url
    return env


async def until(check: Callable[[], bool | Awaitable[bool]], every_s: float = 0.1) -> None:
    """Poll ``check`` until it holds (the caller bounds the wait): a log file, a metrics page and
    a browser's page have no event to wait on."""
    while True:
        got = check()
        if await got if inspect.isawaitable(got) else got:
            return
        await asyncio.sleep(every_s)


class LogWatch:
    """The server's JSON log lines (its stderr, in a file), read as they are appended."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._offset = 0
        self._partial = b""
        self.counts: dict[str, int] = {}
        self.tail: list[str] = []
        self.asr = ""  # the recognizer the server picked, as its log says

    def poll(self) -> None:
        if not self.path.exists():
            return
        with self.path.open("rb") as f:
            f.seek(self._offset)
            data = f.read()
        self._offset += len(data)
        *lines, self._partial = (self._partial + data).split(b"\n")
        for raw in lines:
            text = raw.decode(errors="replace")
            self.tail = [*self.tail[-19:], text]
            with suppress(ValueError):
                line = json.loads(text)
                name = str(line.get("event", ""))
                self.counts[name] = self.counts.get(name, 0) + 1
                if name == "asr.engine":
                    self.asr = f"{line.get('engine')} ({line.get('model')})"

    def count(self, event_name: str) -> int:
        self.poll()
        return self.counts.get(event_name, 0)


@dataclass
class Server:
    """An ``ivr-server run`` process of ``arm`` in ``workdir`` (see ``running``)."""

    arm: Arm
    workdir: Path
    env: dict[str, str]
    metrics_port: int
    log: LogWatch = field(init=False)
    proc: asyncio.subprocess.Process | None = None
    migrate_s: float | None = None  # `ivr-server db upgrade` (a deploy step, not every start's)
    ready_s: float | None = None  # `ivr-server run` started to serving calls

    def __post_init__(self) -> None:
        self.log = LogWatch(self.workdir / "server.log")

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    async def start(self, timeout_s: float = 120) -> float:
        """Migrate the store, start the process, wait until it serves calls (its log says ARI
        is reconciled; with the listener, /readyz answers 200 too). Returns seconds taken, both
        steps (``migrate_s`` and ``ready_s`` each)."""
        began = time.monotonic()
        migrate = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "ivr_server", "db", "upgrade", env=self.env,
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        _, err = await migrate.communicate()
        if migrate.returncode != 0:
            raise RuntimeError(f"ivr-server db upgrade failed: {err.decode()[-500:]}")
        self.migrate_s = time.monotonic() - began
        with self.log.path.open("wb") as log:
            self.proc = await asyncio.create_subprocess_exec(
                *_with_parent(), sys.executable, "-m", "ivr_server", "run", env=self.env,
                stdout=asyncio.subprocess.DEVNULL, stderr=log,
            )  # fmt: skip
        async with asyncio.timeout(timeout_s), httpx.AsyncClient(timeout=2) as http:
            await until(lambda: self._alive() and self.log.count("ari.reconciled") > 0)
            if self.arm.metrics:

                async def ready() -> bool:
                    return (await http.get(self.url("/readyz"))).status_code == 200

                await until(ready)
        self.ready_s = time.monotonic() - began - self.migrate_s
        return time.monotonic() - began

    def _alive(self) -> bool:
        if self.proc is not None and self.proc.returncode is not None:
            raise RuntimeError(
                f"the server exited ({self.proc.returncode}): " + "\n".join(self.log.tail[-5:])
            )
        return True

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.metrics_port}{path}"

    async def calls_ended(self, n: int, timeout_s: float) -> None:
        """Wait until the server has ended ``n`` calls (its ``call.ended`` lines)."""
        async with asyncio.timeout(timeout_s):
            await until(lambda: self._alive() and self.log.count("call.ended") >= n)

    async def stop(self) -> int | None:
        """SIGTERM twice (callers still in a flow handed back at once); killed after 30 s."""
        if self.proc is None or self.proc.returncode is not None:
            return None if self.proc is None else self.proc.returncode
        for _ in range(2):
            self.proc.send_signal(signal.SIGTERM)
            await asyncio.sleep(0.2)
        try:
            return await asyncio.wait_for(self.proc.wait(), 30)
        except TimeoutError:
            self.proc.kill()
            return await self.proc.wait()


def _with_parent() -> list[str]:
    """The command prefix that makes the server end (SIGTERM) when the bench process dies: a
    bench killed mid-run must not leave a server holding the shared sandbox's ARI app (util-linux
    setpriv; without it, nothing)."""
    setpriv = shutil.which("setpriv")
    return [setpriv, "--pdeathsig", "TERM", "--"] if setpriv else []


@asynccontextmanager
async def running(
    arm: Arm, workdir: Path, bank_url: str, otlp_url: str, settings: Mapping[str, str] | None = None
) -> AsyncIterator[Server]:
    """A started server of ``arm`` (``settings``: IVR_ variables over the arm's, e.g. a capacity
    level's limits); stopped (and reaped) on the way out."""
    port = free_port(socket.SOCK_STREAM)
    env = server_env(os.environ, arm, workdir, bank_url, port, otlp_url) | dict(settings or {})
    server = Server(arm, workdir, env, port)
    try:
        await server.start()
        yield server
    finally:
        await server.stop()


@dataclass
class OtlpReceiver:
    """An OTLP/HTTP trace collector that keeps nothing: POST /v1/traces, protobuf (gzip or not),
    counted (requests, bytes on the wire, spans, distinct traces)."""

    requests: int = 0
    sent_bytes: int = 0
    spans: int = 0
    trace_ids: set[bytes] = field(default_factory=set)
    url: str = ""

    async def _traces(self, request: web.Request) -> web.Response:
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
            ExportTraceServiceRequest,
            ExportTraceServiceResponse,
        )

        body = await request.read()
        self.requests += 1
        self.sent_bytes += len(body)
        if request.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        message = ExportTraceServiceRequest()
        message.ParseFromString(body)
        for resource in message.resource_spans:
            for scope in resource.scope_spans:
                self.spans += len(scope.spans)
                self.trace_ids.update(s.trace_id for s in scope.spans)
        answer = ExportTraceServiceResponse().SerializeToString()
        return web.Response(body=answer, content_type="application/x-protobuf")

    def counts(self) -> dict[str, int]:
        return {"requests": self.requests, "bytes": self.sent_bytes, "spans": self.spans,
                "traces": len(self.trace_ids)}  # fmt: skip

    @asynccontextmanager
    async def serving(self) -> AsyncIterator[OtlpReceiver]:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/v1/traces", self._traces)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        port = free_port(socket.SOCK_STREAM)
        await web.TCPSite(runner, "127.0.0.1", port).start()
        self.url = f"http://127.0.0.1:{port}"
        try:
            yield self
        finally:
            await runner.cleanup()


@dataclass
class Operator:
    """What operators do to a server of an arm: Prometheus scrapes /metrics every SCRAPE_S; a
    supervisor's console page (as console.js does) refreshes the calls every PAGE_REFRESH_S and
    follows the transcript stream of one call in progress, the next one once it has ended.
    Counts what it did."""

    server: Server
    scrapes: int = 0
    refreshes: int = 0
    streams: int = 0
    turns: int = 0
    errors: list[str] = field(default_factory=list)

    async def run(self) -> None:
        """Until cancelled."""
        arm = self.server.arm
        async with httpx.AsyncClient(timeout=httpx.Timeout(5, read=None)) as http, asyncio.TaskGroup() as tg:
            if arm.metrics:
                tg.create_task(self._scrape(http))
            if arm.console:
                tg.create_task(self._console(http, tg))

    async def _scrape(self, http: httpx.AsyncClient) -> None:
        while True:
            try:
                (await http.get(self.server.url("/metrics"))).raise_for_status()
                self.scrapes += 1
            except httpx.HTTPError as err:
                self.errors.append(f"/metrics: {err!r}"[:200])
            await asyncio.sleep(SCRAPE_S)

    async def _console(self, http: httpx.AsyncClient, tg: asyncio.TaskGroup) -> None:
        followed: set[str] = set()
        following: asyncio.Task[None] | None = None
        base = self.server.url("/console/api")
        while True:
            try:
                answer = await http.get(f"{base}/calls", auth=SUPERVISOR)
                answer.raise_for_status()
                self.refreshes += 1
                fresh = [c["call_id"] for c in answer.json()["calls"] if c["call_id"] not in followed]
                if fresh and (following is None or following.done()):
                    followed.add(fresh[0])
                    following = tg.create_task(self._follow(http, f"{base}/calls/{fresh[0]}/events"))
            except httpx.HTTPError as err:
                self.errors.append(f"/console/api/calls: {err!r}"[:200])
            await asyncio.sleep(PAGE_REFRESH_S)

    async def _follow(self, http: httpx.AsyncClient, url: str) -> None:
        try:
            async with http.stream("GET", url, auth=SUPERVISOR) as stream:
                stream.raise_for_status()
                self.streams += 1
                async for line in stream.aiter_lines():
                    if line == "event: turn":
                        self.turns += 1
                    elif line == "event: ended":
                        return
        except httpx.HTTPError as err:
            self.errors.append(f"transcript stream: {err!r}"[:200])

    def counts(self) -> dict[str, Any]:
        return {"scrapes": self.scrapes, "page_refreshes": self.refreshes, "streams": self.streams,
                "turns_streamed": self.turns, "errors": self.errors[:5]}  # fmt: skip


@asynccontextmanager
async def operated(server: Server) -> AsyncIterator[Operator]:
    """An operator at work on ``server`` for the block's duration."""
    operator = Operator(server)
    async with alongside(operator.run()):
        yield operator
