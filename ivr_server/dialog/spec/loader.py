"""Reading a flow file: ``check_file`` for every problem at once, ``load_flow`` for the server."""

from __future__ import annotations

from pathlib import Path

from ivr_server.dialog.spec.checks import check
from ivr_server.dialog.spec.model import Flow
from ivr_server.dialog.spec.parse import Builder
from ivr_server.dialog.spec.source import Problem, Source, parse_source, read_source
from ivr_server.errors import FlowError


def check_source(src: Source) -> tuple[Flow | None, list[Problem]]:
    flow = Builder(src).flow()
    if flow is not None:
        check(flow, src)
    problems = sorted(set(src.problems), key=lambda p: (p.line, p.column, p.message))
    return (flow if not problems else None), problems


def check_file(path: Path) -> tuple[Flow | None, list[Problem]]:
    return check_source(read_source(path))


def check_text(text: str, name: str = "<flow>") -> tuple[Flow | None, list[Problem]]:
    return check_source(parse_source(text, name))


def load_flow(path: Path) -> Flow:
    """The flow, or FlowError listing every problem (the first in its message)."""
    flow, problems = check_file(path)
    if flow is None:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise FlowError(f"{problems[0]}{more}", list(problems))
    return flow
