"""A declarative flow in a real call: the engine's Port over the call's CallControl.

Speech goes through ``call.say``/``call.listen`` (TTS, barge-in, endpointing, ASR); keys are
read from the call's key queue, including keys pressed during the prompt. Recognition that
fails or is unavailable counts as no input, so the engine's escalation offers the keypad and
then a person: never dead air.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import structlog

from ivr_server.dialog.dtmf import DtmfCollector
from ivr_server.dialog.flows import CallControl, collect_digits
from ivr_server.dialog.session import CallerInput
from ivr_server.dialog.spec.model import Settings
from ivr_server.speech.adapt.compile import FlowResources
from ivr_server.speech.adapt.grammars import digit_range
from ivr_server.speech.asr.base import GRAMMARS, LANGUAGE_GRAMMARS, LanguageModel

log = structlog.get_logger(__name__)
MAX_KEYS = 64  # an answer with no fixed length (a card number) ends with # or a pause


def listening_for(
    resources: FlowResources | None, grammar: str | None, language: str = "en"
) -> tuple[Sequence[str] | None, LanguageModel | None]:
    """What the recognizer gets for a kind of answer: digits their words (and the digit model),
    held to the slot's length by the flow's compiled grammar for it (``digits4``); other kinds
    the flow's model for them, open questions its open model; without compiled resources yes/no
    keeps its two-word grammar and the rest the general model. A flow in another language: its
    language's words for digits and yes/no, and the open model for the rest."""
    if language != "en":
        kind = "digits" if grammar is not None and digit_range(grammar) is not None else grammar
        return LANGUAGE_GRAMMARS.get(language, {}).get(kind or ""), None
    if grammar is not None and (grammar == "digits" or digit_range(grammar) is not None):
        compiled = resources.models.get(grammar) if resources is not None else None
        return GRAMMARS["digits"], compiled if compiled is not None and compiled.grammar else None
    model = resources.model(grammar) if resources is not None else None
    if model is None and grammar in GRAMMARS:
        return GRAMMARS[grammar], None
    return None, model


def end_of_turn_ms(settings: Settings, grammar: str | None, server_ms: int) -> int:
    """The silence that ends the caller's turn: the state's (or the server's), and for a digit
    string at least ``digits_end_silence_ms``, so a pause between digits does not end it."""
    ms = settings.end_silence_ms or server_ms
    if grammar is not None and (grammar == "digits" or digit_range(grammar) is not None):
        return max(ms, settings.digits_end_silence_ms)
    return ms


class CallPort:
    def __init__(
        self, call: CallControl, resources: FlowResources | None = None, language: str = "en"
    ) -> None:
        self.call = call
        self.resources = resources  # the flow's compiled recognition resources, if any
        self.language = language  # the flow's: which words closed questions are heard with

    async def say(self, text: str, barge_in: bool, expect: str | None = None) -> None:
        if self.call.speech_ready:
            phrases, model = listening_for(self.resources, expect, self.language)
            await self.call.say(text, barge_in=barge_in, phrases=phrases, model=model)
        else:  # no TTS at all: the flow goes on, and the caller is handed on at the first miss
            log.warning("flow.cannot_speak", chars=len(text))

    async def hear(
        self, settings: Settings, secure: bool, max_keys: int | None, grammar: str | None
    ) -> CallerInput:
        self.call.secure_input(secure)
        try:
            keys = await self._keys(max_keys, first_wait_s=0.0)  # pressed during the prompt
            if keys:
                return CallerInput(keyed=keys)
            if not self.call.speech_ready:
                return CallerInput(keyed=await self._keys(max_keys, settings.no_input_ms / 1000))
            phrases, model = listening_for(self.resources, grammar, self.language)
            heard = await self.call.listen(
                phrases,
                model=model,
                no_input_ms=settings.no_input_ms,
                end_silence_ms=end_of_turn_ms(settings, grammar, self.call.settings.vad_end_silence_ms),
            )
            if heard.outcome == "dtmf":
                return CallerInput(keyed=await self._keys(max_keys, first_wait_s=1.0))
            if heard.outcome == "speech":
                result = heard.result
                others = tuple(a.text for a in result.alternatives[1:]) if result else ()
                grammar = result.grammar.text if result and result.grammar else ""
                return CallerInput(said=heard.text, alternatives=others, confidence=heard.confidence,
                                   barge_in=heard.barge_in, energy_dbfs=heard.energy_dbfs,
                                   grammar_said=grammar)  # fmt: skip
            return CallerInput()
        finally:
            self.call.secure_input(False)

    async def _keys(self, max_keys: int | None, first_wait_s: float) -> str:
        """Keys until ``max_keys`` of them (None: up to 64), #, or the inter-digit timeout."""
        collector = DtmfCollector(
            started_at=self.call.now(),
            first_digit_timeout_s=first_wait_s,
            inter_digit_timeout_s=self.call.settings.dtmf_inter_digit_timeout_s,
            max_digits=max_keys or MAX_KEYS,
        )
        return (await collect_digits(self.call, collector)).digits

    async def transfer(self, target: Mapping[str, str], variables: Mapping[str, str]) -> None:
        if "queue" in target:  # the dialplan's queue extension: context,queue-name,1 by convention
            context, extension = target.get("context", "ivr-agents"), target["queue"]
        else:
            context, extension = target["context"], target["extension"]
        await self.call.transfer(context, extension, int(target.get("priority", "1")), variables)

    async def warm_transfer(
        self, target: Mapping[str, str], variables: Mapping[str, str], whisper: str
    ) -> str:
        return await self.call.warm_transfer(target, variables, whisper)

    def use_language(self, language: str) -> bool:
        return self.call.use_language(language)

    def switch_flow(self, name: str) -> bool:
        return self.call.switch_flow(name)

    async def hangup(self) -> None:
        """The call ends when the flow returns (after its last audio has left)."""
