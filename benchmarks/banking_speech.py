"""What the spoken benchmarks of the banking flow (flows/banking.yaml) start from: the flow, its
trained intent model, PocketSphinx's accurate search and the synthetic voices' renderer."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from benchmarks.common import REPO
from ivr_server.dialog.nlu.classifier import IntentClassifier
from ivr_server.dialog.nlu.flow_model import model_for_flow
from ivr_server.dialog.spec.loader import load_flow
from ivr_server.dialog.spec.model import Flow
from ivr_server.errors import NluError
from ivr_server.evaluation.voices import Renderer
from ivr_server.speech.asr.pocketsphinx_engine import PocketSphinxEngine

BANKING = REPO / "flows" / "banking.yaml"


@dataclass(frozen=True)
class BankingSpeech:
    engine: PocketSphinxEngine
    renderer: Renderer
    flow: Flow
    intent_model: IntentClassifier


def banking_speech(nlu_cache: Path | None = None) -> BankingSpeech:
    """The parts, the intent model trained (or taken from ``nlu_cache``)."""
    flow = load_flow(BANKING)
    intent_model = model_for_flow(flow, cache_dir=nlu_cache)
    if intent_model is None:
        raise NluError("the banking flow trained no intent model")
    return BankingSpeech(PocketSphinxEngine(search="accurate"), Renderer(), flow, intent_model)
