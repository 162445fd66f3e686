"""A flow's training phrases as its recognizer hears them (``nlu: heard_per_intent: N``), made
once and kept on disk by content hash: the examples picked, the compiled recognition resources,
the voices and the line. A restart reads them back; a change to any of those makes new ones.

How they are made (voices, telephone line, recognizer) is evaluation/heard.py, the same code the
spoken benchmark measures them with (benchmarks/spoken.md: the heard-training row).
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import asdict
from pathlib import Path

import structlog

from ivr_server.dialog.nlu.data import OUT_OF_SCOPE, Example, read_csv
from ivr_server.dialog.nlu.flow_model import flow_examples
from ivr_server.dialog.spec.model import Flow
from ivr_server.speech.adapt.compile import FlowResources

log = structlog.get_logger(__name__)


def heard_phrases(flow: Flow, resources: FlowResources, cache_dir: Path | None) -> list[Example]:
    from ivr_server.evaluation.heard import HeardSettings, heard_examples, pick, write_csv

    settings = HeardSettings(per_intent=flow.nlu.heard_per_intent)
    examples = [e for e in flow_examples(flow) if e.category != OUT_OF_SCOPE]
    chosen = pick(examples, settings.per_intent, settings.seed)
    key = hashlib.sha256(
        "\n".join(
            [
                resources.version,
                repr(sorted(asdict(settings).items())),
                *(f"{e.category}\t{e.text}" for e in chosen),
            ]
        ).encode()
    ).hexdigest()[:16]
    path = cache_dir / f"heard-{key}.csv" if cache_dir is not None else None
    if path is not None and path.is_file():
        return read_csv(path)
    started = time.perf_counter()
    heard = heard_examples(examples, resources.model(None), settings)
    log.info(
        "nlu.heard_phrases",
        flow=flow.name,
        phrases=len(heard),
        seconds=round(time.perf_counter() - started, 1),
    )
    if path is not None and heard:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        write_csv(heard, tmp)
        tmp.replace(path)
    return heard
