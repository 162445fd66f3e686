"""Wiring: builds the store, media, ARI connection and call manager, and runs them together.

Start-up refuses an un-migrated database and missing prompts before touching Asterisk.
Shutdown (SIGTERM/SIGINT or ``stop``): stop taking calls (new ones go on in the dialplan), let
the calls in progress finish for up to ``drain_timeout_s`` (a second signal cuts this short),
hand callers still in a flow back to the dialplan, close the events socket, flush the store.
"""

from __future__ import annotations

import asyncio
import signal
import socket
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import structlog
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from ivr_server import __version__
from ivr_server.config import (
    Settings,
    ari_ssl_context,
    caller_hash_key,
    effective_settings,
    mask_url,
    retention_policy,
)
from ivr_server.console import Console, ConsoleState, install_error_tap
from ivr_server.dialog.declarative import FlowLibrary, flow_languages
from ivr_server.dialog.flows import FLOWS, Flow
from ivr_server.dialog.nlu.encoder import default_encoder, use_encoder
from ivr_server.errors import AriAuthError, ConfigError, NluError, StoreError
from ivr_server.media.audio import wav_bytes
from ivr_server.media.clock import MediaClock
from ivr_server.media.formats import FORMATS
from ivr_server.media.ports import PortPool
from ivr_server.media.prompts import PromptLibrary
from ivr_server.observability.health import Health, watch_store
from ivr_server.observability.logging import RateLimitedLog
from ivr_server.observability.metrics import Metrics, serve_metrics
from ivr_server.observability.systemd import SystemdNotifier
from ivr_server.observability.tracing import configure_tracing, shutdown_tracing
from ivr_server.speech.adapt.compile import Compiler
from ivr_server.speech.voice_services import LoadedVoice, load_voice
from ivr_server.store.audit_append import AuditEvent
from ivr_server.store.database import create_engine, require_current_schema
from ivr_server.store.deployments import Deployment, rollback, serving
from ivr_server.store.event_bus import RedisStream, keep_publishing
from ivr_server.store.outbox import Outbox
from ivr_server.store.retention import apply_retention
from ivr_server.store.saved_tasks import StoredTasks
from ivr_server.store.writer import OP_KINDS, StoreWriter
from ivr_server.telephony.admission import OVERLOAD_PROMPT, OVERLOAD_PROMPT_PATH
from ivr_server.telephony.ari_connection import AriConnection
from ivr_server.telephony.ari_rest import AriRestClient
from ivr_server.telephony.manager import CallManager
from ivr_server.telephony.rescue import Rescuer
from ivr_server.telephony.session import CallDeps
from ivr_server.tools.client import ToolClient, services_from
from ivr_server.tools.handoff import HandoffDesk

log = structlog.get_logger(__name__)


def server_identity(host: str, ari_url: str, app: str) -> str:
    """This server in the store: its machine, the Asterisk it serves and its ARI application
    ("node1/pbx1.example.com:8088/ivr-server"). Servers of two PBXs may use the same application
    name; with host/application alone, each would take the other for itself (its open calls
    ended at start, one heartbeat row)."""
    parts = urlsplit(ari_url)
    host_name = parts.hostname or ""
    pbx = f"{host_name}:{parts.port}" if parts.port else host_name
    return f"{host}/{pbx}/{app}"


class IvrServer:
    def __init__(
        self, settings: Settings, metrics: Metrics | None = None, notifier: SystemdNotifier | None = None
    ) -> None:
        self.settings = settings
        self.notifier = notifier or SystemdNotifier()  # sd_notify; does nothing outside systemd
        self.metrics = metrics or Metrics()
        self.server_id = server_identity(socket.gethostname(), settings.ari_url, settings.ari_app)
        self.manager: CallManager | None = None
        self.writer: StoreWriter | None = None
        self.voice: LoadedVoice | None = None
        self.stop_requested = asyncio.Event()
        self.health = Health(settings.health_stall_s)  # /healthz and /readyz on the metrics listener
        self.files: dict[str, bytes] = {}  # served by the metrics listener: the high-volume prompt
        self.flow_library: FlowLibrary | None = None
        self._reloading: asyncio.Task[None] | None = None
        self._file_flows: dict[str, Flow] = {}
        self._deployed_flows: dict[str, Flow] = {}
        self._deployments_seen: tuple[tuple[int, str, int], ...] | None = None
        self._poll_log = RateLimitedLog()
        self.console = ConsoleState()  # /console/ on the metrics listener, with console_users set

    def stop(self) -> None:
        """The first call drains (calls in progress may finish); a second one hurries."""
        if self.stop_requested.is_set() and self.manager is not None:
            log.warning("server.stop_hurried", calls=len(self.manager.sessions))
            self.manager.hurry.set()
        self.health.draining = True  # /readyz: the load balancer stops sending calls at once
        self.stop_requested.set()

    def request_reload(self) -> None:
        """SIGHUP: read the flow files again (off the event loop: models may train)."""
        if self._reloading is None or self._reloading.done():
            self.notifier.reloading()
            self._reloading = asyncio.get_running_loop().create_task(self._reload_logged())

    async def _reload_logged(self) -> None:
        """A reload nobody awaits: its failure is logged, and the flows served stay as they were."""
        try:
            await self.reload_flows()
        except Exception as err:
            log.exception(
                "flows.reload_failed", error=f"{type(err).__name__}: {err}", kept="the flows served before"
            )
        finally:
            self.notifier.reloaded()

    async def reload_flows(self) -> dict[str, Flow]:
        """New calls get the flows as the files are now; calls in progress keep theirs."""
        assert self.flow_library is not None and self.manager is not None
        self._file_flows = await asyncio.to_thread(self.flow_library.load)
        flows = self._compose_flows()
        log.info("flows.reloaded", flows=sorted(flows))
        if self.voice is not None:  # a changed flow's new model: warm before its calls come
            await self.voice.warm(self.flow_library.open_models() or [None])
        return flows

    def _compose_flows(self) -> dict[str, Flow]:
        """Built-in flows, then the flow files, then versions deployed into the store."""
        assert self.manager is not None
        flows = self.manager.deps.flows
        flows.clear()
        flows.update({**FLOWS, **self._file_flows, **self._deployed_flows})
        return flows

    async def _watch_deployments(self) -> None:
        """Pick up `ivr-server flows deploy/promote/rollback` without a restart: the serving
        versions are read every ``flows_poll_s``; a change is built off the loop, then swapped in
        (calls in progress keep the version they started with)."""
        assert self.manager is not None and self.flow_library is not None
        while True:
            await asyncio.sleep(self.settings.flows_poll_s)
            try:
                versions = await serving(self.manager.engine)
            except (SQLAlchemyError, OSError) as err:
                should, count = self._poll_log.should_log("deployments")
                if should:
                    log.error("flows.deployments_unreadable", error=str(err)[:300], failures=count)
            else:
                self.console.set_deployments(versions)
                now = _signature(versions)
                if now != self._deployments_seen:
                    self._deployed_flows = await asyncio.to_thread(self.flow_library.deployed, versions)
                    self._compose_flows()
                    self._deployments_seen = now
                    shown = [f"{d.flow} v{d.version_number} {d.status} {d.canary_percent}%" for d in versions]
                    log.info("flows.deployments_applied", versions=shown)

    async def run(self, *, install_signal_handlers: bool = True) -> None:
        """Serve until stopped. Raises ConfigError/AriAuthError/StoreError for what an admin
        must fix (the CLI turns them into exit codes)."""
        s = self.settings
        engine = create_engine(s.effective_database_url)
        rest: AriRestClient | None = None
        voice: LoadedVoice | None = None
        warming: asyncio.Task[None] | None = None
        tools: ToolClient | None = None
        metrics_server: Any = None
        console = Console(self.console, s.console_users) if s.console_users else None
        remove_error_tap = install_error_tap(self.console) if console is not None else None
        try:
            configure_tracing(s.tracing, "ivr-server")
            if s.metrics_port:  # first: health answers during start-up too
                try:
                    metrics_server = serve_metrics(
                        self.metrics, s.metrics_host, s.metrics_port, self.health, console, self.files
                    )
                except OSError as err:
                    raise ConfigError(
                        f"IVR_METRICS_PORT: cannot serve metrics on {s.metrics_host}:{s.metrics_port}: {err}"
                    ) from err
            await require_current_schema(engine)
            self.health.holds("store")
            # The intent encoder loads while the speech models do; the flows (their intent models
            # and recognition resources) load once the encoder is there, still beside the speech
            # models: start-up takes the longest of the two paths, not their sum.
            encoder = asyncio.create_task(asyncio.to_thread(_load_encoder, s))
            prompts = PromptLibrary(s.prompts_dir)
            rate = FORMATS[s.media_format].sample_rate
            prompts.prepare(rate)
            if OVERLOAD_PROMPT in prompts:  # for Asterisk to play to a call declined for load
                self.files[OVERLOAD_PROMPT_PATH] = wav_bytes(8000, prompts.audio(OVERLOAD_PROMPT, 8000))
            voice_loading = asyncio.create_task(
                load_voice(s, rate, prompts.texts.values(), flow_languages(s.flows_dir))
            )
            try:
                await encoder
                outbox = Outbox(s.effective_outbox_path, s.effective_database_url, OP_KINDS)
                self.writer = writer = StoreWriter(
                    engine, self.metrics, audit_key=s.audit_key_bytes, outbox=outbox
                )
                if console is not None:
                    writer.tap = self.console.observe
                    console.bind(asyncio.get_running_loop(), writer.submit, self._console_rollback)
                tools = ToolClient(services_from(s.tools_services), metrics=self.metrics)
                shown = {env: value for env, value, _ in effective_settings(s, None)}  # secrets masked
                started = {"change": "server_started", "version": __version__, "server_id": self.server_id}
                writer.submit(AuditEvent("config_change", _utcnow(), {**started, "settings": shown}))
                loop = asyncio.get_running_loop()

                def changed(what: dict[str, Any]) -> None:  # flows load in a thread; the writer is the loop's
                    loop.call_soon_threadsafe(writer.submit, AuditEvent("config_change", _utcnow(), what))

                self.flow_library = FlowLibrary(
                    s.flows_dir,
                    tools,
                    set(FLOWS),
                    s.data_dir / "nlu-cache",
                    on_change=changed,
                    compiler=Compiler(s.asr_resources_path) if s.asr_adapt else None,
                    metrics=self.metrics,
                    tasks=StoredTasks(engine, writer.submit, s.returning_lookup_timeout_s)
                    if caller_hash_key(s) is not None
                    else None,
                )
                self._file_flows = await asyncio.to_thread(self.flow_library.load)
            finally:
                voice = self.voice = await voice_loading
            rest = AriRestClient(
                s.ari_url,
                s.ari_username,
                s.ari_password,
                connect_timeout_s=s.ari_connect_timeout_s,
                request_timeout_s=s.ari_request_timeout_s,
                ssl_context=ari_ssl_context(s),
            )
            try:
                versions = await serving(engine)
            except (SQLAlchemyError, OSError) as err:
                raise StoreError(f"reading the deployed flows failed: {err}") from err
            self._deployed_flows = await asyncio.to_thread(self.flow_library.deployed, versions)
            # Decoders for the models calls will use (not the general one, ~55 MB each, unused),
            # built while the server already serves: a decoder costs ~16 ms to build now that
            # decoders share their n-gram model, and the workers build a few at a time, so a
            # call that comes first waits at most that for its own.
            warming = asyncio.create_task(
                voice.warm(self.flow_library.open_models() or [None]), name="asr-warm"
            )
            self._deployments_seen = _signature(versions)
            self.console.set_deployments(versions)
            flows = {**FLOWS, **self._file_flows, **self._deployed_flows}
            deps = CallDeps(
                settings=s,
                rest=rest,
                writer=self.writer,
                prompts=prompts,
                ports=PortPool(s.media_bind_host, s.media_port_min, s.media_port_max),
                clock=MediaClock(),
                metrics=self.metrics,
                flows=flows,
                server_id=self.server_id,
                voice=voice.services,
                voices=voice.by_language,
                handoffs=HandoffDesk(
                    self.writer.submit,
                    s.handoff_webhook_url,
                    s.handoff_webhook_token,
                    s.handoff_webhook_timeout_s,
                    s.handoff_webhook_attempts,
                ),
            )
            self.manager = CallManager(deps, engine)
            connection = AriConnection(s, rest, self.metrics, self.manager, self.health)
            self._check_speech_and_flows(voice, flows)
            if install_signal_handlers:
                loop = asyncio.get_running_loop()
                for sig in (signal.SIGTERM, signal.SIGINT):
                    loop.add_signal_handler(sig, self.stop)
                loop.add_signal_handler(signal.SIGHUP, self.request_reload)
            log.info(
                "server.started",
                version=__version__,
                server_id=self.server_id,
                ari=connection.url,
                database=mask_url(s.effective_database_url),
                media_format=s.media_format,
                ports=f"{s.media_port_min}-{s.media_port_max}",
                flows=sorted(flows),
                metrics_port=s.metrics_port or None,
                asr=voice.services.asr.model_id if voice.services.asr else None,
                tts=voice.services.synth.engine.name if voice.services.synth else None,
            )
            self.notifier.status(f"connecting to Asterisk at {connection.url}")
            await self._serve(connection)
        finally:
            if warming is not None:
                warming.cancel()
            self.notifier.close()
            self.console.close()  # ends transcript streams, so the listener can stop
            if remove_error_tap is not None:
                remove_error_tap()
            if metrics_server is not None:
                metrics_server.shutdown()
            shutdown_tracing()  # the spans still buffered go out
            if rest is not None:
                await rest.aclose()
            if voice is not None:
                await voice.close()
            if tools is not None:
                await tools.aclose()
            if self.writer is not None and self.writer.outbox is not None:
                self.writer.outbox.close()
            await engine.dispose()

    def _check_speech_and_flows(self, voice: LoadedVoice, flows: dict[str, Flow]) -> None:
        """Readiness: speech engines and flows as loaded (a server without them still serves
        the keypad, but is not what was deployed)."""
        asr, synth = voice.services.asr, voice.services.synth
        if asr is None or synth is None:
            missing = " and ".join(n for n, e in (("recognizer", asr), ("voice", synth)) if e is None)
            self.health.fails("speech", f"no {missing} loaded: callers get the keypad only (see the log)")
        else:
            self.health.holds("speech")
        file_flows = [name for name in flows if name in self._file_flows or name in self._deployed_flows]
        if file_flows:
            self.health.holds("flows")
        else:
            self.health.fails("flows", f"no flow loaded from {self.settings.flows_dir} or the store")

    async def _console_rollback(self, flow: str) -> str:
        """The console's "roll back canary" (on the loop): as `ivr-server flows rollback`."""
        assert self.manager is not None
        now = await rollback(self.manager.engine, flow, self.settings.audit_key_bytes)
        self.console.set_deployments(await serving(self.manager.engine))
        return f"v{now.version_number}" if now is not None else "the flow file"

    async def _probe_store(self) -> None:
        assert self.manager is not None
        async with self.manager.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    async def _serve(self, connection: AriConnection) -> None:
        assert self.manager is not None and self.writer is not None
        fatal: list[BaseException] = []

        async def stay_connected() -> None:
            try:
                await connection.run()
            except (AriAuthError, ConfigError) as err:
                fatal.append(err)

        async with asyncio.TaskGroup() as tg:
            writer_task = tg.create_task(self.writer.run(), name="store-writer")
            tg.create_task(self.manager.run(), name="call-manager")
            health_tasks = [
                tg.create_task(self.health.keep_beating(on_lag=self.metrics.beat), name="heartbeat"),
                tg.create_task(watch_store(self.health, self._probe_store), name="store-check"),
            ]
            conn_task = tg.create_task(stay_connected(), name="ari-connection")
            stop_task = tg.create_task(self.stop_requested.wait(), name="stop")
            retention_task = tg.create_task(self._retention_schedule(), name="retention")
            deployments_task = tg.create_task(self._watch_deployments(), name="deployments")
            systemd_task = tg.create_task(self._tell_systemd(connection.url), name="systemd")
            bus_task = tg.create_task(self._publish_events(self.writer.engine), name="event-bus")
            rescue_task = tg.create_task(self._rescue(self.writer.engine), name="rescue")
            await asyncio.wait({conn_task, stop_task}, return_when=asyncio.FIRST_COMPLETED)
            log.info("server.stopping", calls=len(self.manager.sessions))
            self.notifier.stopping(f"stopping: draining {len(self.manager.sessions)} calls")
            self.health.draining = True
            if stop_task.done() and not conn_task.done():  # asked to stop, with Asterisk still there
                await self.manager.drain(self.settings.drain_timeout_s)
            await self.manager.shutdown(self.settings.shutdown_timeout_s)
            rescue_task.cancel()  # its row goes: a server that stopped is not a dead one
            if self.manager.deps.handoffs is not None:
                await self.manager.deps.handoffs.aclose(self.settings.handoff_webhook_timeout_s)
            conn_task.cancel()
            stop_task.cancel()
            retention_task.cancel()
            deployments_task.cancel()
            for task in health_tasks:
                task.cancel()
            if not await self.writer.flush(self.settings.shutdown_timeout_s):
                journaled = self.writer.outbox.count() if self.writer.outbox is not None else 0
                log.error("store.unflushed_at_exit", pending=self.writer.pending, kept_in_outbox=journaled,
                          outbox=str(self.settings.effective_outbox_path))  # fmt: skip
            systemd_task.cancel()  # watchdog pings last through the drain
            writer_task.cancel()
            bus_task.cancel()  # after the writer's flush: what it committed may still go out now
        log.info("server.stopped")
        if fatal:
            raise fatal[0]
        if self.writer.pending and self.writer.lost_on_exit():
            raise StoreError(f"{self.writer.pending} store writes not committed at exit, nor journaled")

    async def _publish_events(self, engine: AsyncEngine) -> None:
        """Call events to the bus (IVR_BUS_URL) until cancelled; nothing without one."""
        s = self.settings
        if not s.bus_url:
            return
        bus = RedisStream(s.bus_url, s.bus_stream, s.bus_maxlen)
        log.info("bus.publishing", url=mask_url(s.bus_url), stream=s.bus_stream)
        try:
            await keep_publishing(engine, bus, self.metrics, server_id=self.server_id)
        finally:
            await bus.aclose()

    async def _rescue(self, engine: AsyncEngine) -> None:
        """Beat in the store and send on the calls of dead peers (telephony/rescue.py), on a
        shared PostgreSQL with IVR_RESCUE_AFTER_S; nothing otherwise."""
        s = self.settings
        if s.rescue_after_s <= 0 or engine.dialect.name != "postgresql":
            return
        assert self.manager is not None and self.writer is not None
        context, extension, priority = s.rescue_target.split(",")
        target = (context, extension, int(priority))
        rescuer = Rescuer(engine, self.manager.deps.rest, self.writer, self.metrics, self.server_id,
                          mask_url(s.ari_url), s.rescue_after_s, target)  # fmt: skip
        await rescuer.run()

    async def _tell_systemd(self, ari_url: str) -> None:
        """READY=1 once Asterisk is connected and reconciled (calls can be taken), then watchdog
        pings from this loop until the server has stopped."""
        assert self.manager is not None
        await self.manager.reconciled.wait()
        self.notifier.ready(f"serving calls from {ari_url}")
        await self.notifier.watchdog()

    async def _retention_schedule(self) -> None:
        """Retention every ``retention_interval_s``, the first a minute after start; a failure
        is logged and tried again next time (nothing is removed by a failed run)."""
        interval = self.settings.retention_interval_s
        if interval <= 0 or self.manager is None:
            return
        await asyncio.sleep(min(60.0, interval))
        while True:
            try:
                report = await apply_retention(
                    self.manager.engine,
                    retention_policy(self.settings),
                    _utcnow(),
                    self.settings.audit_key_bytes,
                )
                log.info("retention.applied", removed={k: v for k, v in report.removed.items() if v})
            except StoreError as err:
                log.error("retention.failed", error=str(err)[:300])
            await asyncio.sleep(interval)


def _signature(versions: list[Deployment]) -> tuple[tuple[int, str, int], ...]:
    return tuple((d.id, d.status, d.canary_percent) for d in versions)


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _load_encoder(s: Settings) -> None:
    """The intent model's sentence encoder, loaded before any flow trains: one the settings name
    that cannot load is a configuration error, not a call-time surprise."""
    try:
        use_encoder(s.nlu_encoder, s.nlu_encoder_dir)
        encoder = default_encoder()
    except NluError as err:
        raise ConfigError(str(err)) from err
    log.info("nlu.encoder", encoder=encoder.name, version=encoder.version, asked=s.nlu_encoder)
