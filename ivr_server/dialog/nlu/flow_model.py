"""The intent model of a flow: trained when the flow loads, from its intents' examples, its CSV
data sets and out-of-scope phrases; kept by version (in memory, and on disk when given a
directory) so a reload or a restart with the same data does not train again."""

from __future__ import annotations

import pickle
import re
import time
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path

import structlog

from ivr_server.dialog.nlu.classifier import IntentClassifier, NluSettings, model_version, train
from ivr_server.dialog.nlu.data import OUT_OF_SCOPE, Example, read_csv
from ivr_server.dialog.nlu.encoder import default_encoder
from ivr_server.dialog.spec.model import Flow
from ivr_server.errors import NluError

log = structlog.get_logger(__name__)
GENERIC_OUT_OF_SCOPE = Path(__file__).parent / "bundled" / "out_of_scope.txt"
KEEP_IN_MEMORY = 8  # trained models by version: reloads of edited flows must not grow memory
_trained: OrderedDict[str, IntentClassifier] = OrderedDict()


def generic_out_of_scope() -> list[str]:
    lines = GENERIC_OUT_OF_SCOPE.read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def intent_name(category: str) -> str:
    """A data set's category as an intent name: lower case, anything but letters, digits and _
    dropped at the ends and made _ inside ("reverted_card_payment?" -> reverted_card_payment)."""
    return re.sub(r"[^a-z0-9_]+", "_", category.strip().lower()).strip("_")


def flow_examples(flow: Flow) -> list[Example]:
    """Every training example the flow names; CSV rows only for the flow's intents and oos."""
    examples = [Example(text, intent.name) for intent in flow.intents.values() for text in intent.examples]
    base = Path(flow.file).parent
    for name in flow.nlu.data:
        rows = [Example(r.text, intent_name(r.category)) for r in read_csv(base / name)]
        unknown = sorted({r.category for r in rows} - set(flow.intents) - {OUT_OF_SCOPE})
        if unknown:
            raise NluError(f"{base / name}: categories the flow has no intent for: {', '.join(unknown[:10])}")
        examples.extend(rows)
    taught = {e.category for e in examples}
    silent = [
        i.name
        for i in flow.intents.values()
        if i.name not in taught and not (i.keywords or i.patterns or i.dtmf)
    ]
    if silent:
        raise NluError(
            f"{flow.file}: intents with no examples in the flow or its data: {', '.join(silent[:10])}"
        )
    examples.extend(Example(text, OUT_OF_SCOPE) for text in flow.nlu.out_of_scope)
    if flow.nlu.generic_out_of_scope:
        examples.extend(Example(text, OUT_OF_SCOPE) for text in generic_out_of_scope())
    return examples


def model_for_flow(
    flow: Flow,
    settings: NluSettings | None = None,
    cache_dir: Path | None = None,
    extra: Sequence[Example] = (),
) -> IntentClassifier | None:
    """The flow's trained model; None when fewer than two intents have examples (rules only).
    ``extra``: more examples (its phrases as recognized); they are part of the model's version."""
    settings = settings or NluSettings()
    examples = [*flow_examples(flow), *extra]
    if len({e.category for e in examples} - {OUT_OF_SCOPE}) < 2:
        return None
    version = model_version(examples, settings, default_encoder().version)
    if version in _trained:
        _trained.move_to_end(version)
        return _trained[version]
    model = _load(cache_dir, version)
    if model is None:
        started = time.perf_counter()
        model = train(examples, settings)
        log.info("nlu.trained", flow=flow.name, model_version=version, examples=len(examples),
                 intents=len(model.categories), seconds=round(time.perf_counter() - started, 2))  # fmt: skip
        _save(cache_dir, model)
    _trained[version] = model
    while len(_trained) > KEEP_IN_MEMORY:
        _trained.popitem(last=False)
    return model


def _path(cache_dir: Path, version: str) -> Path:
    return cache_dir / f"intent-model-{version}.pickle"


def _load(cache_dir: Path | None, version: str) -> IntentClassifier | None:
    if cache_dir is None or not _path(cache_dir, version).is_file():
        return None
    try:
        model = pickle.loads(_path(cache_dir, version).read_bytes())  # our own file, keyed by its hash
    except Exception as err:  # a torn or stale file: train again
        log.warning("nlu.cache_unreadable", file=str(_path(cache_dir, version)), error=str(err)[:200])
        return None
    return model if isinstance(model, IntentClassifier) and model.version == version else None


def _save(cache_dir: Path | None, model: IntentClassifier) -> None:
    if cache_dir is None:
        return
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        tmp = _path(cache_dir, model.version).with_suffix(".tmp")
        tmp.write_bytes(pickle.dumps(model))
        tmp.replace(_path(cache_dir, model.version))
    except OSError as err:
        log.warning("nlu.cache_not_written", dir=str(cache_dir), error=str(err))
