"""Telephone-channel adaptation with the real tools: Flite speaks, SphinxTrain's bw aligns,
MLLR and MAP move the means; the result loads in PocketSphinx and is what calls are heard with.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from structlog.testing import capture_logs

from ivr_server.errors import EngineUnavailable
from ivr_server.evaluation.channel import Line, telephone
from ivr_server.evaluation.voices import Renderer, Voice
from ivr_server.speech.acoustic import mllr
from ivr_server.speech.acoustic.adaptation import AdaptationPlan, adapt, ci_phones, tool
from ivr_server.speech.acoustic.sphinx_files import read_counts, read_gaussians
from ivr_server.speech.acoustic.telephone import BUNDLED, base_model_dir, telephone_model
from ivr_server.speech.adapt.words import spoken_words
from ivr_server.speech.asr.base import feed_all
from ivr_server.speech.asr.evaluate import word_errors
from ivr_server.speech.asr.pocketsphinx_engine import PocketSphinxEngine
from tests.support.data import shared_data

HMM = base_model_dir()


@pytest.fixture(scope="module")
def adapted(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict[str, object]]:
    """A small adaptation (40 sentences, two voices): the whole pipeline in seconds."""
    work, out = tmp_path_factory.mktemp("adapt-work"), tmp_path_factory.mktemp("adapted")
    plan = AdaptationPlan(voices=("flite:slt:1", "flite:rms:1.1"), sentences=40)
    manifest = adapt(plan, HMM / "en-us", HMM / "cmudict-en-us.dict",
                     shared_data() / "clinc150" / "train.csv", out, work, lambda _m: None)  # fmt: skip
    return work, out, manifest


def test_each_pass_fits_the_adaptation_data_better(adapted: tuple[Path, Path, dict[str, object]]) -> None:
    """Likelihood per frame of the adaptation data: base < MLLR < MLLR + MAP; the manifest ties
    the means to the base model they were made from."""
    _work, out, manifest = adapted
    ll = manifest["log_likelihood_per_frame"]
    assert isinstance(ll, dict)
    assert ll["base"] < ll["mllr"] < ll["mllr_map"]
    assert manifest["data"]["utterances"] == 40  # type: ignore[index]
    assert json.loads((out / "manifest.json").read_text())["version"] == manifest["version"]
    model = telephone_model(str(out), HMM / "en-us")
    assert model is not None and model.version == manifest["version"]


def test_mllr_agrees_with_sphinxtrains_own_solver(adapted: tuple[Path, Path, dict[str, object]]) -> None:
    """On the same accumulators, one global class: our solution is mllr_solve's."""
    work, _out, _manifest = adapted
    solve = Path(tool("bw")).parent / "mllr_solve"
    import subprocess

    subprocess.run(
        [str(solve), "-meanfn", str(HMM / "en-us" / "means"), "-varfn", str(HMM / "en-us" / "variances"),
         "-outmllrfn", str(work / "mllr_matrix"), "-accumdir", str(work / "pass1")],  # fmt: skip
        check=True, capture_output=True,
    )  # fmt: skip
    numbers = [float(x) for x in (work / "mllr_matrix").read_text().split()]
    assert numbers[:2] == [1, 3]  # one class, three streams
    classes = mllr.phone_classes(ci_phones(work / "mdef.txt"), "global")
    ours = mllr.solve(read_gaussians(HMM / "en-us" / "means"), read_gaussians(HMM / "en-us" / "variances"),
                      read_counts(work / "pass1" / "gauden_counts"), classes)  # fmt: skip
    pos = 2
    for stream in range(3):
        n = int(numbers[pos])
        a = np.array(numbers[pos + 1 : pos + 1 + n * n]).reshape(n, n)
        b = np.array(numbers[pos + 1 + n * n : pos + 1 + n * n + n])
        pos += 1 + n * n + 2 * n  # A, b, and the variance scale h
        np.testing.assert_allclose(ours[0, stream][:, :-1], a, atol=2e-4)
        np.testing.assert_allclose(ours[0, stream][:, -1], b, atol=2e-3)


def test_an_adaptation_for_another_base_model_is_refused(tmp_path: Path) -> None:
    """The bundled one falls back to the wideband model with a warning; an admin's own is an
    error at start-up, naming both models."""
    own = tmp_path / "own"
    shutil.copytree(BUNDLED, own)
    manifest = json.loads((own / "manifest.json").read_text())
    manifest["base"]["means_sha256"] = "0" * 64
    (own / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(EngineUnavailable, match="another base model .*rebuild it"):
        telephone_model(str(own), HMM / "en-us")
    with pytest.raises(EngineUnavailable, match="no readable manifest"):
        telephone_model(str(tmp_path / "nothing"), HMM / "en-us")
    other_base = tmp_path / "base"
    other_base.mkdir()
    (other_base / "means").write_bytes(b"s3\nsomething else")
    with capture_logs() as logs:
        assert telephone_model("bundled", other_base) is None
    assert logs[0]["event"] == "asr.telephone_model_unused"
    assert telephone_model("off", HMM / "en-us") is None


def test_calls_are_heard_with_the_telephone_model_and_hear_better() -> None:
    """8 kHz streams get the bundled means (the result's model says so), 16 kHz ones do not;
    Piper (a voice the adaptation never heard) over the line: fewer word errors than with the
    wideband model, on sentences in no flow."""
    sentences = [
        "please send the statement to my new address",
        "i would like to pay my electricity bill today",
        "can you tell me when the branch opens tomorrow",
        "my daughter needs a savings account for school",
        "what is the interest rate on the gold card",
        "somebody used my card at a petrol station",
    ]
    renderer = Renderer()
    adapted = PocketSphinxEngine(search="accurate")
    wideband = PocketSphinxEngine(search="accurate", telephone_model="off")
    errors = {"adapted": 0, "wideband": 0}
    for text in sentences:
        pcm, rate = renderer.render(Voice.parse("piper"), text)
        line = telephone(pcm, rate, Line(snr_db=30.0, seed=3))
        for name, engine in (("adapted", adapted), ("wideband", wideband)):
            recognizer = engine.recognizer(8000)
            feed_all(recognizer, line, 8000)
            result = recognizer.finish()
            errors[name] += word_errors(spoken_words(text), spoken_words(result.text))
            assert ("+telephone-en-us@" in result.model) == (name == "adapted")
    assert errors["adapted"] < errors["wideband"], errors
    wide = adapted.recognizer(16000)
    wide.feed(np.zeros(320, dtype=np.int16))
    assert "+telephone" not in wide.finish().model
