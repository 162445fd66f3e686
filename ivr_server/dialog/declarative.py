"""The flow files in flows_dir as flows the call manager can run (``Stasis(ivr-server,banking)``).

An invalid file is not served: every problem is logged with its place, and the other flows
load. The server keeps what it loaded at start-up.
"""

from __future__ import annotations

from pathlib import Path

import structlog

from ivr_server.dialog.call_port import CallPort
from ivr_server.dialog.engine import Engine, IntentModel
from ivr_server.dialog.flows import CallControl, Flow
from ivr_server.dialog.nlu.flow_model import model_for_flow
from ivr_server.dialog.spec.loader import check_file
from ivr_server.dialog.spec.model import Flow as FlowSpec
from ivr_server.errors import NluError
from ivr_server.tools.client import ToolClient

log = structlog.get_logger(__name__)


def load_flows(
    directory: Path, tools: ToolClient, taken: set[str], nlu_cache: Path | None = None
) -> dict[str, Flow]:
    """Each valid flow with its intent model trained (or read from ``nlu_cache``)."""
    flows: dict[str, Flow] = {}
    for path in sorted(directory.glob("*.yaml")) if directory.is_dir() else []:
        spec, problems = check_file(path)
        if spec is None:
            log.error(
                "flows.invalid", file=str(path), problems=[str(p) for p in problems[:20]], count=len(problems)
            )
            continue
        if spec.name in taken or spec.name in flows:
            log.error("flows.name_taken", file=str(path), flow=spec.name)
            continue
        try:
            model = model_for_flow(spec, cache_dir=nlu_cache)
        except NluError as err:
            log.error("flows.invalid", file=str(path), problems=[str(err)], count=1)
            continue
        flows[spec.name] = _runner(spec, tools, model)
        log.info("flows.loaded", flow=spec.name, version=spec.version, file=str(path),
                 model_version=model.version if model is not None else None)  # fmt: skip
    return flows


def _runner(spec: FlowSpec, tools: ToolClient, model: IntentModel | None) -> Flow:
    async def run(call: CallControl) -> None:
        port = CallPort(call)
        session = await Engine(spec, port, tools, model).run()
        call.record(
            "flow_ended",
            flow=spec.name,
            flow_version=spec.version,
            model_version=model.version if model is not None else None,
            session=session.id,
            outcome=session.outcome,
            states=session.visited,
            tools=session.tool_calls,
            intent=session.intent,
        )
        for record in session.decisions:
            d = record.decision
            call.record("decision", state=record.state, kind=d.kind, intent=d.intent, source=d.source,
                        confidence=d.confidence, reason=d.reason, flow_version=record.flow_version,
                        model_version=record.model_version)  # fmt: skip

    return run
