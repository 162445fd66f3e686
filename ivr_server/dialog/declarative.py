"""The flow files in flows_dir as flows the call manager can run (``Stasis(ivr-server,banking)``).

An invalid file is not served: every problem is logged with its place, and the other flows
load. On a reload (SIGHUP) a file that has turned invalid keeps serving its last good version.
"""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import structlog

from ivr_server.dialog.call_port import CallPort
from ivr_server.dialog.engine import Engine
from ivr_server.dialog.flows import CallControl, Flow
from ivr_server.dialog.nlu.data import Example
from ivr_server.dialog.nlu.flow_model import model_for_flow
from ivr_server.dialog.nlu.heard_cache import heard_phrases
from ivr_server.dialog.returning import TaskMemory
from ivr_server.dialog.session import DecisionRecord, IntentModel, Session
from ivr_server.dialog.spec.loader import check_file, check_text
from ivr_server.dialog.spec.model import Flow as FlowSpec
from ivr_server.errors import LanguageUnavailable, NluError, ResourceError
from ivr_server.observability.metrics import Metrics, flow_outcome
from ivr_server.speech.adapt.compile import Compiler, FlowResources
from ivr_server.speech.asr.base import LanguageModel
from ivr_server.store.deployments import Deployment
from ivr_server.tools.client import ToolClient

log = structlog.get_logger(__name__)


def flow_languages(directory: Path) -> set[str]:
    """The languages the valid flow files in ``directory`` speak (the server loads a voice for
    each before the first call)."""
    found: set[str] = set()
    for path in sorted(directory.glob("*.yaml")) if directory.is_dir() else []:
        spec, _problems = check_file(path)
        if spec is not None:
            found.update(spec.languages)
    return found


class FlowLibrary:
    """The flow files of a directory as runnable flows, each with its intent model.

    ``load()`` is called at start-up and on every reload (SIGHUP): a file that has turned
    invalid keeps serving its last good version (logged), a file that never was valid is not
    served, and a file whose text did not change is not trained again.
    """

    def __init__(
        self,
        directory: Path,
        tools: ToolClient,
        taken: set[str],
        nlu_cache: Path | None = None,
        on_change: Callable[[dict[str, Any]], None] | None = None,
        compiler: Compiler | None = None,
        metrics: Metrics | None = None,
        tasks: TaskMemory | None = None,
    ) -> None:
        self.directory, self.tools, self.taken, self.nlu_cache = directory, tools, taken, nlu_cache
        self.metrics = metrics
        self.tasks = tasks  # returning callers' saved tasks (None: no caller-ID key, so none)
        self.on_change = on_change  # configuration changes, for the audit trail
        self.compiler = compiler  # None: every question heard with the engine's general model
        self._resources: dict[str, FlowResources] = {}  # flow name -> last resources that compiled
        self._good: dict[Path, tuple[FlowSpec, Flow]] = {}
        self._served: dict[str, str] = {}  # flow name -> version, as of the last load
        self._files: dict[str, Flow] = {}  # the flow files' runners, as of the last load
        self._built: dict[str, Flow] = {}  # deployed versions' runners, by content hash

    def load(self) -> dict[str, Flow]:
        flows: dict[str, Flow] = {}
        served: dict[str, str] = {}
        paths = sorted(self.directory.glob("*.yaml")) if self.directory.is_dir() else []
        for path in paths:
            try:
                entry = self._load_file(path)
            except Exception as err:  # a bug or a resource fault in one file: the others still load
                log.exception(
                    "flows.invalid", file=str(path), problems=[f"{type(err).__name__}: {err}"], count=1
                )
                entry = None
            if entry is None:
                if self.metrics is not None:
                    self.metrics.flow_files_rejected.inc()
                entry = self._good.get(path)
                if entry is None:
                    continue
                log.warning(
                    "flows.kept_last_good", file=str(path), flow=entry[0].name, version=entry[0].version
                )
                self._changed(change="flow_rejected", file=str(path), flow=entry[0].name,
                              kept_version=entry[0].version)  # fmt: skip
            spec = entry[0]
            if spec.name in flows:
                log.error("flows.name_taken", file=str(path), flow=spec.name)
                continue
            self._good[path] = entry
            flows[spec.name], served[spec.name] = entry[1], spec.version
        for gone in set(self._good) - set(paths):
            log.warning("flows.removed", file=str(gone), flow=self._good.pop(gone)[0].name)
        for name, version in sorted(served.items()):
            if self._served.get(name) != version:
                self._changed(
                    change="flow_served", flow=name, version=version, previous=self._served.get(name)
                )
        for name in sorted(set(self._served) - set(served)):
            self._changed(change="flow_removed", flow=name, version=self._served[name])
        self._served, self._files = served, dict(flows)
        return flows

    def _changed(self, **what: Any) -> None:
        if self.on_change is not None:
            self.on_change(what)

    def _load_file(self, path: Path) -> tuple[FlowSpec, Flow] | None:
        spec, problems = check_file(path)
        if spec is None:
            log.error(
                "flows.invalid", file=str(path), problems=[str(p) for p in problems[:20]], count=len(problems)
            )
            return None
        if spec.name in self.taken:
            log.error("flows.name_taken", file=str(path), flow=spec.name)
            return None
        old = self._good.get(path)
        if old is not None and old[0].version == spec.version:
            return old
        resources = self._compile(spec)
        try:
            model = self._model(spec, resources)
        except NluError as err:
            log.error("flows.invalid", file=str(path), problems=[str(err)], count=1)
            return None
        log.info("flows.loaded", flow=spec.name, version=spec.version, file=str(path),
                 model_version=model.version if model is not None else None,
                 asr_resources=resources.version if resources is not None else None)  # fmt: skip
        return spec, _runner(spec, self.tools, model, resources, self.tasks, self.metrics)

    def _compile(self, spec: FlowSpec) -> FlowResources | None:
        """The flow's recognition resources; when they cannot be compiled (a word with no
        pronunciation, a data set that cannot be read), the last ones that did, if any."""
        if self.compiler is None or spec.languages[0] != "en":  # its lexicon and models are English
            return None
        try:
            resources = self.compiler.compile(spec)
        except ResourceError as err:
            kept = self._resources.get(spec.name)
            log.error("flows.resources_invalid", flow=spec.name, file=spec.file, error=str(err),
                      kept_version=kept.version if kept is not None else None)  # fmt: skip
            self._changed(change="asr_resources_rejected", flow=spec.name, error=str(err)[:300],
                          kept_version=kept.version if kept is not None else None)  # fmt: skip
            return kept
        self._resources[spec.name] = resources
        return resources

    def open_models(self) -> list[LanguageModel | None]:
        """The open-question models calls of the loaded flows will be heard with: each English
        flow's compiled one, or None (the general model) for a flow that has none. A keypad-only
        flow (no intent has words) opens none."""
        models: list[LanguageModel | None] = []
        for spec, _ in self._good.values():
            spoken = any(i.examples or i.keywords or i.patterns for i in spec.intents.values())
            if spec.languages[0] != "en" or not spoken:
                continue
            resources = self._resources.get(spec.name)
            models.append(resources.model(None) if resources is not None else None)
        return list(dict.fromkeys(models))

    # --- versions deployed into the store ----------------------------------------------------
    def deployed(self, versions: Sequence[Deployment]) -> dict[str, Flow]:
        """The deployed flows new calls get: each flow's active version, or a canary router
        between it and its candidate. A version whose text no longer loads is skipped (logged):
        its flow falls back to the other version, or to the flow file."""
        built: dict[str, dict[str, tuple[Deployment, Flow]]] = {}
        for d in versions:
            runner = self._version(d)
            if runner is not None:
                built.setdefault(d.flow, {})[d.status] = (d, runner)
        self._built = {
            d.content_hash: self._built[d.content_hash] for d in versions if d.content_hash in self._built
        }
        flows: dict[str, Flow] = {}
        for name, roles in built.items():
            active, candidate = roles.get("active"), roles.get("candidate")
            if candidate is not None and active is None and name in self._served:  # vs the file
                flows[name] = CanaryFlow(None, candidate, self._files.get(name))
            elif candidate is not None and active is not None:
                flows[name] = CanaryFlow(active, candidate)
            elif active is not None:
                flows[name] = CanaryFlow(active, None)
            elif candidate is not None:
                flows[name] = CanaryFlow(None, candidate, None)
        return flows

    def _version(self, d: Deployment) -> Flow | None:
        if d.content_hash in self._built:
            return self._built[d.content_hash]
        spec, problems = check_text(d.source, f"{d.flow} v{d.version_number} (deployed)")
        messages, model, resources = [str(p) for p in problems[:20]], None, None
        if spec is not None:
            resources = self._compile(spec)
            try:
                model = self._model(spec, resources)
            except NluError as err:
                messages, spec = [*messages, str(err)], None
        if spec is None:
            log.error(
                "flows.deployed_invalid", flow=d.flow, version_number=d.version_number, problems=messages
            )
            return None
        self._built[d.content_hash] = runner = _runner(
            spec, self.tools, model, resources, self.tasks, self.metrics
        )
        return runner

    def _model(self, spec: FlowSpec, resources: FlowResources | None) -> IntentModel | None:
        """The flow's intent model; with ``nlu: heard_per_intent: N`` it also learns from N of
        each intent's examples as the flow's own recognizer hears them over the phone line
        (synthetic voices at rates and variants the benchmark does not use: evaluation/heard.py).
        Those phrases are cached by everything they depend on; making them takes minutes for a
        large flow (once)."""
        heard: list[Example] = []
        if spec.nlu.heard_per_intent and resources is not None:
            heard = heard_phrases(spec, resources, self.nlu_cache)
        return model_for_flow(spec, cache_dir=self.nlu_cache, extra=heard)


class CanaryFlow:
    """A deployed flow: new calls get the active version, and a share of them (``canary_percent``,
    by a hash of the call id: stable and even) the candidate. The call keeps the version it got;
    which one is recorded on the call (event ``deployment``)."""

    def __init__(
        self,
        active: tuple[Deployment, Flow] | None,
        candidate: tuple[Deployment, Flow] | None,
        fallback: Flow | None = None,
    ) -> None:
        self.active, self.candidate, self.fallback = active, candidate, fallback

    def choose(self, call_id: str) -> tuple[Deployment | None, Flow | None]:
        if self.candidate is not None:
            bucket = int(hashlib.sha256(call_id.encode()).hexdigest()[:8], 16) % 100
            if bucket < self.candidate[0].canary_percent or (self.active is None and self.fallback is None):
                return self.candidate
        if self.active is not None:
            return self.active
        return None, self.fallback

    async def __call__(self, call: CallControl) -> None:
        chosen, runner = self.choose(getattr(call, "call_id", "") or uuid.uuid4().hex)
        if chosen is not None:
            call.record("deployment", flow=chosen.flow, version_number=chosen.version_number,
                        content_hash=chosen.content_hash, role=chosen.status,
                        canary_percent=chosen.canary_percent)  # fmt: skip
        if runner is None:
            raise RuntimeError("no version of this flow can be served")
        await runner(call)


def _runner(
    spec: FlowSpec,
    tools: ToolClient,
    model: IntentModel | None,
    resources: FlowResources | None = None,
    tasks: TaskMemory | None = None,
    metrics: Metrics | None = None,
) -> Flow:
    resources_version = resources.version if resources is not None else None
    if spec.returning.enabled and tasks is None:
        log.warning("flows.returning_off", flow=spec.name, version=spec.version,
                    why="no caller-ID key: set IVR_RETURNING_CALLER_KEY or IVR_AUDIT_KEY")  # fmt: skip

    async def run(call: CallControl) -> None:
        def record(r: DecisionRecord) -> None:
            d = r.decision
            call.record("decision", state=r.state, kind=d.kind, intent=d.intent, source=d.source,
                        confidence=d.confidence, reason=d.reason, flow_version=r.flow_version,
                        model_version=r.model_version,
                        asr_resources_version=r.resources_version)  # fmt: skip

        def audit(kind: str, payload: dict[str, Any]) -> None:
            call.audit(kind, **payload)
            if metrics is not None and payload.get("latency_ms") is not None:
                if kind == "decision":
                    metrics.intent_latency.observe(payload["latency_ms"] / 1000)
                elif kind == "tool_call":
                    metrics.tool_latency.labels(tool=payload["tool"]).observe(payload["latency_ms"] / 1000)
            if kind == "repair":  # counted per flow version by `flows stats`
                call.record("repair", state=payload["state"], repair=payload["repair"],
                            flow_version=payload["flow_version"])  # fmt: skip
            elif kind == "returning":
                call.record("returning", action=payload["action"], reason=payload["reason"],
                            state=payload.get("state"), intent=payload.get("intent"),
                            flow_version=payload["flow_version"])  # fmt: skip

        caller = call.caller_key if tasks is not None and spec.returning.enabled else None
        port = CallPort(call, resources, spec.languages[0])
        engine = Engine(spec, port, tools, model, on_decision=record, audit=audit,
                        resources_version=resources_version, caller=caller, tasks=tasks)  # fmt: skip

        def ended(session: Session, outcome: str | None) -> None:
            if metrics is not None:
                metrics.flow_outcomes.labels(flow=spec.name, version=spec.version,
                                             outcome=flow_outcome(outcome)).inc()  # fmt: skip
            call.record(
                "flow_ended",
                flow=spec.name,
                flow_version=spec.version,
                model_version=model.version if model is not None else None,
                asr_resources_version=resources_version,
                session=session.id,
                outcome=outcome,
                states=session.visited,
                tools=session.tool_calls,
                intent=session.intent,
                repairs=[[state, repair] for state, repair, _ in session.repairs],
                agent_attempts=session.agent_attempts,
            )

        try:
            session = await engine.run()
        except asyncio.CancelledError:  # the caller hung up mid-flow: where they got to is kept
            ended(engine.session, "abandoned")
            raise
        except LanguageUnavailable:  # recorded, then the call goes back to the dialplan
            ended(engine.session, "language_unavailable")
            raise
        ended(session, session.outcome)

    return run
