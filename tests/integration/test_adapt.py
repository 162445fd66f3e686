"""Flow-adapted recognition with the real tools: IRSTLM estimates, espeak-ng pronounces,
PocketSphinx decodes; compiled resources are cached by content hash and bad input is named."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from ivr_server.dialog.call_port import listening_for
from ivr_server.dialog.declarative import FlowLibrary
from ivr_server.dialog.repair_words import asked_repair, correcting, without_correction
from ivr_server.dialog.slots.parsers import entities, parse
from ivr_server.dialog.spec.loader import check_text, load_flow
from ivr_server.dialog.spec.model import Slot
from ivr_server.errors import ResourceError
from ivr_server.evaluation.channel import Line, telephone
from ivr_server.evaluation.voices import Renderer, Voice
from ivr_server.speech.adapt.arpa import read_arpa
from ivr_server.speech.adapt.compile import AdaptSettings, Compiler
from ivr_server.speech.adapt.corpus import open_sentences
from ivr_server.speech.adapt.estimate import estimate
from ivr_server.speech.adapt.lexicon import Lexicon, pronounce
from ivr_server.speech.adapt.words import ONES
from ivr_server.speech.asr import digit_span
from ivr_server.speech.asr.base import DIGIT_WORDS, AsrResult, LanguageModel, feed_all
from ivr_server.speech.asr.pocketsphinx_engine import PocketSphinxEngine
from ivr_server.tools.client import ToolClient
from tests.support.audio import piper

REPO = Path(__file__).resolve().parents[2]
BANKING = REPO / "flows" / "banking.yaml"


@pytest.fixture(scope="module")
def compiler(tmp_path_factory: pytest.TempPathFactory) -> Compiler:
    return Compiler(tmp_path_factory.mktemp("asr-resources"))


@pytest.fixture(scope="module")
def engine() -> PocketSphinxEngine:
    return PocketSphinxEngine(search="accurate")


@pytest.fixture(scope="module")
def renderer() -> Renderer:
    return Renderer()


def hear(engine: PocketSphinxEngine, renderer: Renderer, text: str, model: object) -> str:
    """Piper over a quiet telephone line (voice band, mu-law; the noisy line is the benchmark's)."""
    pcm, rate = renderer.render(Voice.parse("piper"), text)
    recognizer = engine.recognizer(8000, None, model)  # type: ignore[arg-type]
    feed_all(recognizer, telephone(pcm, rate, Line(snr_db=None)), 8000)
    return recognizer.finish().text


def test_irstlm_estimates_a_normalized_model_that_prefers_what_was_said() -> None:
    """The banking flow's phrases: each history's distribution sums to one, and a seen
    continuation beats an unseen one."""
    model = estimate(open_sentences(load_flow(BANKING)))
    words = [w for w in model.vocabulary if w != "<s>"]
    for history in [("my",), ("lost", "my"), ("<s>",), ("balance",)]:
        assert sum(10 ** model.logprob((*history, w)) for w in words) == pytest.approx(1.0, abs=1e-6)
    assert model.logprob(("my", "card")) > model.logprob(("my", "stolen"))
    assert "<unk>" not in model.vocabulary


def test_a_tiny_corpus_still_gets_a_model() -> None:
    """Three phrases are too few for modified shift-beta; Witten-Bell takes over."""
    model = estimate(["yes", "no", "yes please"])
    assert {"yes", "no", "please"} <= set(model.vocabulary)


def test_an_empty_corpus_is_refused() -> None:
    with pytest.raises(ResourceError, match="no sentences"):
        estimate(["", "  "])


def test_words_the_dictionary_lacks_get_pronounced_and_admins_win(compiler: Compiler) -> None:
    lexicon: Lexicon = compiler.general().lexicon
    got = pronounce(["card", "revolut", "monzo"], lexicon, {"monzo": "m aa n z ow"})
    assert got["card"] == lexicon.entries["card"]
    assert got["monzo"] == ["M AA N Z OW"]
    assert got["revolut"][0].startswith("R EH V")  # espeak-ng's rules, mapped to ARPAbet
    with pytest.raises(ResourceError, match="phones the acoustic model lacks: QQ"):
        pronounce(["x"], lexicon, {"x": "QQ"})


def test_the_banking_flow_compiles_once_and_a_restart_finds_it(tmp_path: Path) -> None:
    flow = load_flow(BANKING)
    first = Compiler(tmp_path).compile(flow)
    assert not first.cached and {"open", "yesno", "amount"} <= first.models.keys()
    assert first.model("open") is not None and first.model("date") == first.model("open")
    manifest = first.directory / "manifest.json"
    stamp = manifest.stat().st_mtime_ns
    again = Compiler(tmp_path).compile(flow)  # a new process: nothing in memory
    assert again.cached and again.version == first.version
    assert manifest.stat().st_mtime_ns == stamp  # nothing rebuilt
    changed = check_text(
        BANKING.read_text().replace("- my card is missing", "- my card has vanished"), str(BANKING)
    )[0]
    assert changed is not None and Compiler(tmp_path).compile(changed).version != first.version


def test_a_flow_word_with_no_pronunciation_is_named_with_the_file(tmp_path: Path) -> None:
    text = BANKING.read_text().replace(
        "handoff: agent ", 'recognition:\n  pronunciations:\n    monzo: "M AA N Z OW"\nhandoff: agent ', 1
    )
    flow, problems = check_text(text, str(tmp_path / "banking.yaml"))
    assert flow is not None, problems
    assert flow.recognition.pronunciations == {"monzo": "M AA N Z OW"}
    bad, problems = check_text(text.replace("M AA N Z OW", "M A N Z O"), "banking.yaml")
    assert bad is None and "pronunciation of 'monzo' must be ARPAbet" in str(problems[0])


def test_the_open_model_hears_the_flows_requests(
    compiler: Compiler, engine: PocketSphinxEngine, renderer: Renderer
) -> None:
    """Piper through the telephone line: the banking flow's model gets its callers' requests
    word for word (benchmarks/spoken.md compares it with the general model on many)."""
    resources = compiler.compile(load_flow(BANKING))
    assert hear(engine, renderer, "what's my balance", resources.model(None)) == "what's my balance"
    assert "lost my card" in hear(engine, renderer, "I lost my card", resources.model(None))


def test_digits_said_inside_a_request_come_through_the_open_model(
    compiler: Compiler, engine: PocketSphinxEngine, renderer: Renderer
) -> None:
    """A flow whose slots collect digits: its open model lists every digit after every digit,
    and the card's or account's digits given in the opening request are heard word for word,
    so the engine fills the slot from it (before, a real call's "ending in four five eight five"
    was heard "ending and for five speak five")."""
    flow = load_flow(BANKING)
    resources = compiler.compile(flow)
    model = resources.model(None)
    assert model is not None and model.arpa is not None
    bigrams = read_arpa(model.arpa).grams[2]
    digits = ONES[:10]
    assert all((a, b) in bigrams for a in digits for b in digits)
    slots = list(flow.slots.values())
    for said, value in (
        ("please block the card that ends in six one three nine", {"last4": "6139"}),
        ("my account number is two seven oh one three six nine four what's my balance",
         {"account": "27013694"}),
    ):  # fmt: skip
        heard = hear(engine, renderer, said, model)
        assert entities(slots, heard) == value, heard


def test_a_closed_question_still_lets_other_words_through(
    compiler: Compiler, engine: PocketSphinxEngine, renderer: Renderer
) -> None:
    """The yes/no model hears yes and no, and an answer outside them ("I want to talk to a
    person") still comes through as words, not as a forced yes or no."""
    yes_no = compiler.compile(load_flow(BANKING)).model("yesno")
    slot = Slot("_", "yes_no")
    assert parse(slot, hear(engine, renderer, "no", yes_no)).value == "no"
    assert parse(slot, hear(engine, renderer, "yes please", yes_no)).value == "yes"
    other = hear(engine, renderer, "I want to talk to a real person", yes_no)
    assert "person" in other and other not in ("yes", "no")


def test_a_digit_slot_is_held_to_its_length_and_each_digit_checked(
    compiler: Compiler, engine: PocketSphinxEngine, renderer: Renderer
) -> None:
    """The banking flow's four- and eight-digit slots compile to grammars of that length; four
    digits said in one breath (no pauses for the islands to find) by Piper and by espeak-ng come
    back exactly, and the line's noise alone gives no digits."""
    resources = compiler.compile(load_flow(BANKING))
    assert {"digits4", "digits8"} <= set(resources.models)
    phrases, model = listening_for(resources, "digits4")
    assert phrases == DIGIT_WORDS and model is not None and model.grammar is not None
    assert "<digit> <digit> <digit> <digit>;" in model.grammar.read_text()
    slot = Slot("last4", "digits", length=4)
    for voice, said, value in (
        ("piper", "four four two one", "4421"),
        ("espeak:en-us:150", "six one zero five", "6105"),
    ):
        pcm, rate = renderer.render(Voice.parse(voice), said)
        padded = np.concatenate([np.zeros(rate // 10, np.int16), pcm, np.zeros(rate * 3 // 10, np.int16)])
        recognizer = engine.recognizer(8000, phrases, model)
        feed_all(recognizer, telephone(padded, rate, Line(snr_db=30.0, seed=1)), 8000)
        result = recognizer.finish()
        assert parse(slot, result.text).value == value, (voice, result.text)
        assert "+digits-8k-" in result.model and result.confidence is not None  # the classifier's
    recognizer = engine.recognizer(8000, phrases, model)
    hiss = np.random.default_rng(4).normal(0, 300, 8000).astype(np.int16)  # steady line noise, no speech
    feed_all(recognizer, telephone(hiss, 8000, Line(snr_db=None)), 8000)
    assert recognizer.finish().text == ""


def test_digits_the_grammar_stops_short_of_are_found_by_the_islands(
    compiler: Compiler, engine: PocketSphinxEngine
) -> None:
    """Piper's "six, five, one, six" as a bench-ab caller says it, after 250 ms of quiet line:
    the four-digit grammar's search ends short of its final state and names only "five one"
    (both weak sixes lost); held to that partial path the card was asked for again. Fewer digits
    than the grammar holds go to the islands and the classifier instead."""
    phrases, model = listening_for(compiler.compile(load_flow(BANKING)), "digits4")
    pcm = piper("six, five, one, six", 8000)
    quiet = np.random.default_rng(1).normal(0, 30, 2000).astype(np.int16)
    recognizer = engine.recognizer(8000, phrases, model)
    feed_all(recognizer, np.concatenate([quiet, pcm, np.zeros(6400, np.int16)]), 8000)
    result = recognizer.finish()
    assert parse(Slot("last4", "digits", length=4), result.text).value == "6516", result.text


def test_an_account_read_out_with_pauses_is_the_grammars_not_the_aside_words(
    compiler: Compiler, engine: PocketSphinxEngine, renderer: Renderer
) -> None:
    """Piper reading "two, four, six, eight, one, three, five, seven" as bench-ab's caller does:
    the aside model hears "is are have a one three that's seven", more words than digits, which
    took the account question's turn from the grammar's right eight digits. Three of its digits
    are the grammar's over the same audio: the words are the answer misheard, and the grammar's
    digits stand."""
    phrases, model = listening_for(compiler.compile(load_flow(BANKING)), "digits8")
    pcm, rate = renderer.render(Voice.parse("piper"), "two, four, six, eight, one, three, five, seven")
    padded = np.concatenate([np.zeros(rate // 4, np.int16), pcm, np.zeros(rate * 8 // 10, np.int16)])
    recognizer = engine.recognizer(8000, phrases, model)
    feed_all(recognizer, telephone(padded, rate, Line(snr_db=30.0, seed=1)), 8000)
    result = recognizer.finish()
    assert parse(Slot("account", "digits", length=8), result.text).value == "24681357", result.text


def test_a_digit_question_hears_a_repair_or_another_request_as_words(
    compiler: Compiler, engine: PocketSphinxEngine, renderer: Renderer
) -> None:
    """At the four-digit question the grammar alone made four digits of anything; the aside
    model heard beside it lets a repair and another of the flow's requests through as words,
    while the digits themselves still come from the grammar and the digit model."""
    flow = load_flow(BANKING)
    resources = compiler.compile(flow)
    phrases, model = listening_for(resources, "digits4")
    assert model is not None and model.words is not None and model.words.name == "banking/aside"

    def heard(text: str) -> AsrResult:
        pcm, rate = renderer.render(Voice.parse("piper"), text)
        padded = np.concatenate([np.zeros(rate // 10, np.int16), pcm, np.zeros(rate * 3 // 10, np.int16)])
        recognizer = engine.recognizer(8000, phrases, model)
        feed_all(recognizer, telephone(padded, rate, Line(snr_db=30.0, seed=3)), 8000)
        return recognizer.finish()

    assert asked_repair(heard("go back").text, "en") == "back"
    assert asked_repair(heard("sorry say that again").text, "en") == "repeat"
    last4 = Slot("last4", "digits", length=4)
    request = heard("how much money do I have")
    assert "money" in request.text and parse(last4, request.text).value is None
    # the grammar's own answer goes along, for the engine when the words mean nothing there
    assert request.grammar is not None and parse(last4, request.grammar.text).value is not None
    digits = heard("nine three oh eight")
    assert parse(last4, digits.text).value == "9308", digits.text
    assert "+digits-8k-" in digits.model  # the grammar's answer, checked by the digit model
    assert digits.grammar is None


def test_digits_misheard_inside_a_request_are_heard_again_with_the_grammar(
    compiler: Compiler, engine: PocketSphinxEngine, renderer: Renderer
) -> None:
    """The open model carries the flow's digit grammars: where its words show a digit string
    said and misheard, that stretch of the audio is heard again with the grammar of the slot's
    length, and its digits replace the words there; a request without digits is left as heard."""
    open_model = compiler.compile(load_flow(BANKING)).model(None)
    assert open_model is not None and {m.name for m in open_model.digit_spans} >= {"banking/digits4"}
    plain = dataclasses.replace(open_model, digit_spans=())

    def heard(text: str, model: LanguageModel) -> AsrResult:
        pcm, rate = renderer.render(Voice.parse("piper"), text)
        padded = np.concatenate([np.zeros(rate // 4, np.int16), pcm, np.zeros(rate * 3 // 10, np.int16)])
        line = telephone(padded, rate, Line(snr_db=30.0, seed=3))
        recognizer = engine.recognizer(8000, None, model)
        frame = np.zeros(160, np.int16)  # one buffer for every frame, as a socket reader reuses one
        for start in range(0, len(line), 160):
            chunk = line[start : start + 160]
            frame[: len(chunk)] = chunk
            recognizer.feed(frame[: len(chunk)])
        return recognizer.finish()

    result = heard("please freeze card ending eight three three one", open_model)
    assert entities([Slot("last4", "digits", length=4)], result.text).get("last4") == "8331", result.text
    assert "card ending" in result.text and result.alternatives[0].text == result.text
    starts = [w.start_s for w in result.words]
    assert starts == sorted(starts) and len(result.words) == len(result.text.split())
    request = "how much money do I have in my account"
    assert heard(request, open_model).text == heard(request, plain).text
    # past the audio a request keeps to hear again, it is left as the n-gram heard it
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(digit_span, "MAX_AUDIO_S", 1.0)
        said = "please freeze card ending eight three three one"
        assert heard(said, open_model).text == heard(said, plain).text


def test_a_confirmation_hears_a_correction_that_carries_the_new_digits(
    compiler: Compiler, engine: PocketSphinxEngine, renderer: Renderer
) -> None:
    """ "I have 4421, is that right?" answered "no I said five six seven eight": the yes/no model
    has the flow's corrections, so the new digits come through for the engine to take."""
    yes_no = compiler.compile(load_flow(BANKING)).model("yesno")
    said = hear(engine, renderer, "no I said five six seven eight", yes_no)
    rest = without_correction(said, "en")
    assert correcting(said, "en") and parse(Slot("last4", "digits", length=4), rest).value == "5678", said
    assert asked_repair(hear(engine, renderer, "start over", yes_no), "en") == "start_over"


def test_words_come_with_their_posteriors(
    compiler: Compiler, engine: PocketSphinxEngine, renderer: Renderer
) -> None:
    """Each word of an open-question result has the lattice's posterior; a request the flow's
    model hears cleanly is surer than one said in a voice and words it barely knows."""
    open_model = compiler.compile(load_flow(BANKING)).model(None)

    def heard(voice: str, text: str) -> tuple[str, float | None, list[float | None]]:
        pcm, rate = renderer.render(Voice.parse(voice), text)
        recognizer = engine.recognizer(8000, None, open_model)
        feed_all(recognizer, telephone(pcm, rate, Line(snr_db=30.0, seed=2)), 8000)
        result = recognizer.finish()
        return result.text, result.confidence, [w.confidence for w in result.words]

    text, clear, words = heard("piper", "I lost my card")
    assert "lost my card" in text and clear is not None and clear > 0.8
    assert all(c is not None and 0 < c <= 1 for c in words)
    _, garbled, _ = heard(
        "espeak:en-gb+m3:200", "the quarterly dividend reinvestment schedule bewilders everyone"
    )
    assert garbled is not None and garbled < clear


def test_a_reload_that_breaks_the_resources_keeps_the_last_good_ones(tmp_path: Path) -> None:
    """A flow edited so its resources no longer compile (here: more distinct words than the
    server allows) still serves, with the resources it had; the error names the file."""
    flows = tmp_path / "flows"
    flows.mkdir()
    (flows / "banking.yaml").write_text(BANKING.read_text())
    compiler = Compiler(tmp_path / "res", settings=AdaptSettings(max_words=400))
    library = FlowLibrary(flows, ToolClient({}), set(), compiler=compiler)
    assert "banking" in library.load()
    good = library._resources["banking"]
    rare = " ".join(f"word{chr(97 + i % 26)}{chr(97 + i // 26 % 26)}x" for i in range(500))
    (flows / "banking.yaml").write_text(BANKING.read_text().replace("- my card is missing", f"- {rare}"))
    with pytest.raises(ResourceError, match="banking.yaml: .* more than the 400"):
        compiler.compile(load_flow(flows / "banking.yaml"))
    served = library.load()
    assert "banking" in served and library._resources["banking"] is good


def test_a_digit_slot_too_long_to_listen_for_is_named_with_the_file(tmp_path: Path) -> None:
    """A 40-digit slot: the compile fails naming the file and the length; in a call the slot
    would be heard with the digit loop instead (no grammar compiled for it)."""
    text = BANKING.read_text().replace("length: 8", "length: 40")
    path = tmp_path / "long.yaml"
    path.write_text(text)
    with pytest.raises(
        ResourceError, match=r"long\.yaml: a digit string of 40 to 40 digits cannot be listened for"
    ):
        Compiler(tmp_path / "cache").compile(load_flow(path))
    phrases, model = listening_for(None, "digits40")
    assert phrases == DIGIT_WORDS and model is None


def test_a_flow_that_asks_for_it_learns_from_its_phrases_as_heard_once(tmp_path: Path) -> None:
    """``nlu: heard_per_intent: 2``: two examples per intent are spoken, sent down the phone
    line and recognized with the flow's own resources; the model trains on them too (its
    version says so), and a second server start reads them from the cache instead of making
    them again."""
    from structlog.testing import capture_logs

    from ivr_server.dialog.nlu.flow_model import model_for_flow

    flows = tmp_path / "flows"
    flows.mkdir()
    text = BANKING.read_text()
    assert "\nnlu:" not in text
    (flows / "banking.yaml").write_text(text + "\nnlu:\n  heard_per_intent: 2\n")
    compiler = Compiler(tmp_path / "res")
    cache = tmp_path / "nlu-cache"
    with capture_logs() as logs:
        assert (
            "banking" in FlowLibrary(flows, ToolClient({}), set(), nlu_cache=cache, compiler=compiler).load()
        )
    (made,) = [e for e in logs if e["event"] == "nlu.heard_phrases"]
    (heard_csv,) = cache.glob("heard-*.csv")
    rows = heard_csv.read_text().splitlines()[1:]
    assert made["phrases"] == len(rows) >= 10 and all(r.rsplit(",", 1)[1] != "oos" for r in rows)
    (loaded,) = [e for e in logs if e["event"] == "flows.loaded"]
    plain = model_for_flow(load_flow(flows / "banking.yaml"), cache_dir=None)
    assert plain is not None and loaded["model_version"] != plain.version
    with capture_logs() as logs:
        again = FlowLibrary(flows, ToolClient({}), set(), nlu_cache=cache, compiler=compiler)
        assert "banking" in again.load()
    assert not [e for e in logs if e["event"] == "nlu.heard_phrases"]  # read back, not made again
    assert [e["model_version"] for e in logs if e["event"] == "flows.loaded"] == [loaded["model_version"]]


def test_the_models_to_warm_are_the_spoken_english_flows_own(tmp_path: Path) -> None:
    """What the server builds decoders for ahead of calls: banking's compiled open model, the
    general model for a spoken flow whose resources could not compile, nothing for the keypad
    tree or the Korean flow (its recognizer is Vosk's)."""
    from tests.conftest import TEST_ASR_RESOURCES

    flows = tmp_path / "flows"
    flows.mkdir()
    for name in ("banking", "phone-tree", "banking-ko"):
        (flows / f"{name}.yaml").write_text((REPO / "flows" / f"{name}.yaml").read_text())
    library = FlowLibrary(flows, ToolClient({}), set(), compiler=Compiler(TEST_ASR_RESOURCES))
    assert {"banking", "phone-tree", "banking-ko"} <= set(library.load())
    assert [m.name if m else None for m in library.open_models()] == ["banking/open"]
    assert FlowLibrary(flows, ToolClient({}), set(), compiler=None).open_models() == []  # nothing loaded
    general = FlowLibrary(flows, ToolClient({}), set(), compiler=None)
    general.load()
    assert general.open_models() == [None]
