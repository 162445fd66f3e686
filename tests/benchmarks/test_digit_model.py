"""The recipe of the shipped digit model (benchmarks/digit_model) on real parts: FSDD recordings,
espeak-ng and Piper, the pinned wheel's ONNX front end and embedding net, torch, the shipped model."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest

from benchmarks.digit_model.augment import BANDS, FRAMES, MelFront, augment, augmented_mel, mulaw
from benchmarks.digit_model.data import SPEAKERS, Clip, espeak, fetch, load_fsdd, read_clip, synth
from benchmarks.digit_model.export import NOTICE, disagreement, export_onnx, model_info, write_notices
from benchmarks.digit_model.recipe import Recipe, RecipeError
from benchmarks.digit_model.scoring import (
    evaluate,
    evaluation_lines,
    gated_lines,
    held_out_logits,
    loso,
    scores_of,
    temperature,
)
from ivr_server.speech.asr import digit_model as dm
from tests.support.data import FSDD

REPO = Path(__file__).resolve().parents[2]
needs_fsdd = pytest.mark.skipif(not FSDD.is_dir(), reason=f"FSDD recordings not at {FSDD}")
# The wheel is downloaded once per machine, as the script caches it in its --work.
WHEEL_CACHE = Path(tempfile.gettempdir()) / "ivr-test-train-digits"
Tiny = tuple[list[Clip], np.ndarray]  # real clips and their features


@pytest.fixture(scope="module")
def res() -> Path:
    return fetch(WHEEL_CACHE)


def recipe(tmp_path: Path, **kw: Any) -> Recipe:
    return Recipe(fsdd=FSDD, work=tmp_path, out=tmp_path / "out", **kw)


def clips(per_speaker: int) -> list[Clip]:
    """The first ``per_speaker`` takes of each digit by each speaker, as load_fsdd gives them."""
    out = []
    for speaker in SPEAKERS:
        for take in range(per_speaker):
            for digit in range(10):
                x, sr = read_clip(FSDD / f"{digit}_{speaker}_{take}.wav")
                out.append((digit, speaker, x, sr))
    return out


def labels(items: list[Clip]) -> dict[str, np.ndarray]:
    return {"clean_y": np.array([d for d, *_ in items]), "clean_s": np.array([s for _, s, *_ in items])}


# ---------------------------------------------------------------- recipe and model files


def test_the_cache_tag_of_the_shipped_configuration() -> None:
    """The LOSO/member cache key of the shipped run (defaults + --ensemble 3 --time-mask 0.5) is
    unchanged, so existing caches are found; the script's namespace maps onto the recipe."""
    args = argparse.Namespace(
        loso=True, final=True, evaluate=False, fsdd=FSDD, work=Path("/w"), out=Path("/o"), seed=0,
        ensemble=3, epochs=3, sub=0.5, batch=32, lr_emb=2e-4, lr_head=2e-3, shift=8, time_mask=0.5,
        mixup=0.0, espeak_n=4000, piper_n=1000, fsdd_aug=2, synth_aug=1, tta="",
    )  # fmt: skip
    r = Recipe.from_args(args, "scripts/train-digits --ensemble 3")
    assert r == Recipe(FSDD, Path("/w"), Path("/o"), ensemble=3, time_mask=0.5, command=r.command)
    v = dm.PREPARE_VERSION
    assert r.tag == f"v{v}-s0-ep3-sub0.5-tm0.5-mx0.0-sh8-e4000-p1000-fa2-sa1"
    assert r.features_file == Path(f"/w/feat-v{v}-e4000-p1000-fa2-sa1-s0.npz")
    assert r.fold_weights_file(2, "nicolas") == Path(f"/w/loso-{r.tag}-m2-nicolas.pt")
    assert r.member_seed(2) == 200


def test_model_info_reproduces_the_shipped_model_json(tmp_path: Path) -> None:
    """model.json written for the shipped settings, temperature and LOSO figures is the shipped one."""
    shipped = json.loads((dm.MODEL_DIR / "model.json").read_text())
    r = recipe(tmp_path, ensemble=3, time_mask=0.5, command=shipped["training"]["command"])
    info = model_info(r, shipped["temperature"], shipped["loso_accuracy"], dm.model_id())
    assert info == shipped


def test_notices_are_the_shipped_ones(res: Path, tmp_path: Path) -> None:
    """LICENSE comes from the verified wheel and NOTICE is the text shipped with the model."""
    write_notices(res, tmp_path, {"name": "digits-8k"})
    assert (tmp_path / "LICENSE").read_bytes() == (dm.MODEL_DIR / "LICENSE").read_bytes()
    assert (tmp_path / "NOTICE").read_text() == NOTICE == (dm.MODEL_DIR / "NOTICE").read_text()
    assert json.loads((tmp_path / "model.json").read_text()) == {"name": "digits-8k"}


# ---------------------------------------------------------------- data


@needs_fsdd
def test_load_fsdd_reads_the_three_speakers() -> None:
    """All 1500 clips: 500 per speaker, 50 per digit, labelled from the file name, 8 kHz float."""
    items = load_fsdd(FSDD)
    assert len(items) == 1500
    for speaker in SPEAKERS:
        digits = [d for d, s, _, _ in items if s == speaker]
        assert np.bincount(digits).tolist() == [50] * 10
    d, s, x, sr = items[0]
    assert (d, s, sr) == (0, "jackson", 8000) and x.dtype == np.float32
    assert np.array_equal(x, read_clip(FSDD / "0_jackson_0.wav")[0]) and np.abs(x).max() > 1000


@needs_fsdd
def test_load_fsdd_refuses_an_incomplete_set(tmp_path: Path) -> None:
    """Fewer clips than the three speakers' 1500 is an error naming the count; other speakers'
    clips and other files do not count."""
    for name in ("3_nicolas_0.wav", "7_yweweler_4.wav", "1_theo_0.wav"):
        (tmp_path / name).symlink_to(FSDD / name)
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(RecipeError, match="found 2"):
        load_fsdd(tmp_path)


def test_espeak_renders_a_word() -> None:
    """espeak-ng speaks a digit to 22.05 kHz int16-scale float samples, the same twice."""
    x, sr = espeak("seven", "en-gb+m3", 50, 175)
    assert sr == 22050 and x.dtype == np.float32
    assert 0.3 < len(x) / sr < 1.5 and np.abs(x).max() > 3000
    assert np.array_equal(x, espeak("seven", "en-gb+m3", 50, 175)[0])
    assert len(espeak("seven", "en-gb+m3", 50, 100)[0]) > len(x)  # slower speech, longer audio


def test_synth_is_labelled_and_deterministic_for_a_seed(tmp_path: Path) -> None:
    """espeak-ng renders then Piper ones, digits in turn; the same seed renders the same audio
    (Piper's noise included), and a second call reuses the cache."""
    for w in ("a", "b"):
        (tmp_path / w).mkdir()
    paths = [synth(recipe(tmp_path / w, espeak_n=3, piper_n=2)) for w in ("a", "b")]
    a, b = (np.load(p, allow_pickle=True) for p in paths)
    assert a["y"].tolist() == [0, 1, 2, 0, 1]
    assert a["sr"].tolist() == [22050] * 3 + [22050] * 2  # joe-medium is 22.05 kHz too
    assert all(np.array_equal(x, y) and len(x) > 2000 for x, y in zip(a["audio"], b["audio"], strict=True))
    mtime = paths[0].stat().st_mtime_ns
    assert synth(recipe(tmp_path / "a", espeak_n=3, piper_n=2)) == paths[0]
    assert paths[0].stat().st_mtime_ns == mtime


# ---------------------------------------------------------------- augmentation and features


def test_mulaw_round_trip_is_close_monotonic_and_saturating() -> None:
    """8-bit companding keeps sign and order, errs by about 2 % of the value (plus a small step
    near zero), and clips beyond full scale."""
    x = np.linspace(-40000, 40000, 8001).astype(np.float32)
    y = mulaw(x)
    assert y.dtype == np.float32 and y.shape == x.shape
    assert np.all(np.diff(y) >= 0) and np.all(np.sign(y) * np.sign(x) >= 0)
    inside = np.abs(x) <= 32768
    assert np.all(np.abs(y - x)[inside] <= 0.025 * np.abs(x[inside]) + 8)
    assert y[0] == pytest.approx(-32768) and y[-1] == pytest.approx(32768)
    assert np.allclose(mulaw(y), y, rtol=1e-5, atol=1e-2)  # the levels are fixed points
    assert len(np.unique(y)) <= 256


@needs_fsdd
def test_augment_is_8khz_float32_and_seeded() -> None:
    """A channel draws a speed of 0.85-1.18 (the length changes accordingly), stays float32 and
    finite, is the same for the same seed and differs for another."""
    x, sr = read_clip(FSDD / "4_nicolas_3.wav")
    outs = [augment(x, sr, np.random.default_rng(seed)) for seed in range(20)]
    for z in outs:
        assert z.dtype == np.float32 and np.isfinite(z).all()
        assert len(x) / 1.18 - 2 <= len(z) <= len(x) / 0.85 + 2
    lengths = [len(z) for z in outs]
    assert min(lengths) < len(x) / 1.1 and max(lengths) > len(x) / 0.92  # the speed does vary
    assert np.array_equal(outs[3], augment(x, sr, np.random.default_rng(3)))
    assert not np.array_equal(outs[3], outs[4])
    # 16 kHz input comes out at the telephone rate: about half as many samples
    x16 = np.repeat(x, 2)
    assert len(augment(x16, 16000, np.random.default_rng(3))) == pytest.approx(len(outs[3]), rel=0.01)


@needs_fsdd
def test_features_of_a_real_clip(res: Path) -> None:
    """The front end turns a prepared clip into 160 frames of 32 mel bands; an augmented take of
    the same clip has the same shape and differs, the same seed giving the same features."""
    mel = MelFront(res)
    x, sr = read_clip(FSDD / "9_yweweler_20.wav")
    clean = mel(dm.prepare(x, sr))
    assert clean.shape == (FRAMES, BANDS) and clean.dtype == np.float32 and np.isfinite(clean).all()
    aug = augmented_mel(mel, x, sr, np.random.default_rng(5))
    assert aug.shape == clean.shape and not np.allclose(aug, clean)
    assert np.array_equal(aug, augmented_mel(mel, x, sr, np.random.default_rng(5)))


# ---------------------------------------------------------------- torch model


def test_embnet_reproduces_the_wheel_embedding_model(res: Path) -> None:
    """The speech_embedding CNN rebuilt in torch from the ONNX initializers computes what the
    wheel's ONNX graph computes (the starting point of fine-tuning)."""
    import torch

    from benchmarks.digit_model.training import EMBEDDING, WINDOW, EmbNet

    x = np.random.default_rng(0).normal(0, 1, (4, WINDOW, BANDS)).astype(np.float32) + 2.0
    session = ort.InferenceSession(str(res / "embedding_model.onnx"), providers=["CPUExecutionProvider"])
    want = session.run(None, {"input_1": x[..., None]})[0].reshape(4, EMBEDDING)
    with torch.no_grad():
        got = EmbNet(res)(torch.tensor(x)).numpy()
    assert np.allclose(got, want, atol=1e-4)


def test_training_set_leaves_the_held_speaker_out() -> None:
    """A fold trains on the clean and augmented clips of the other speakers plus all synthetic
    renders; None (the final model) takes everything."""
    from benchmarks.digit_model.training import training_set

    def mel(*values: float) -> np.ndarray:
        return np.array(values, np.float64)[:, None, None] * np.ones((1, FRAMES, BANDS))

    f = {
        "clean": mel(1, 2, 3),
        "clean_y": np.array([1, 2, 3]),
        "clean_s": np.array(["jackson", "nicolas", "yweweler"]),
        "aug": mel(11, 12),
        "aug_y": np.array([1, 2]),
        "aug_s": np.array(["jackson", "nicolas"]),
        "syn": mel(21),
        "syn_y": np.array([9]),
    }
    X, Y = training_set(f, "nicolas")
    assert X[:, 0, 0].tolist() == [1, 3, 11, 21] and Y.tolist() == [1, 3, 1, 9]
    assert X.dtype == np.float32 and Y.dtype == np.int64
    assert training_set(f, None)[1].tolist() == [1, 2, 3, 1, 2, 9]


@pytest.fixture(scope="module")
def tiny(res: Path) -> Tiny:
    """Ten real clips per speaker and their features."""
    items = clips(1)
    mel = MelFront(res)
    return items, np.stack([mel(dm.prepare(x, sr)) for _, _, x, sr in items])


@needs_fsdd
def test_training_is_deterministic_for_a_seed(res: Path, tiny: Tiny, tmp_path: Path) -> None:
    """Two members trained with the same seed predict the same logits (and a saved member loads
    back to them); another seed gives another member."""
    from benchmarks.digit_model.training import load_member, predict, save_member, train

    items, X = tiny
    Y = np.array([d for d, *_ in items], np.int64)
    r = recipe(tmp_path, epochs=2, sub=1.0, batch=10, time_mask=0.5, mixup=0.4)
    a, b, c = (train(res, X, Y, r, seed) for seed in (7, 7, 8))
    za = predict([a], X)
    assert za.shape == (30, 10) and np.isfinite(za).all()
    assert np.array_equal(za, predict([b], X))
    assert not np.allclose(za, predict([c], X))
    save_member(a, tmp_path / "a.pt")
    assert np.array_equal(predict([load_member(res, tmp_path / "a.pt")], X), za)
    assert np.allclose(predict([a, c], X), (za + predict([c], X)) / 2, atol=1e-6)


@needs_fsdd
def test_exported_graph_matches_the_torch_members(res: Path, tiny: Tiny, tmp_path: Path) -> None:
    """The merged ONNX graph (front end + ensemble / temperature) run by the run-time classifier
    on raw clips gives the torch members' logits on the training-time features; a graph with
    another temperature does not pass the same check."""
    import torch

    from benchmarks.digit_model.training import Digits

    items, X = tiny
    torch.manual_seed(0)
    members = [Digits(res).eval(), Digits(res).eval()]
    raw = [(x, sr) for _, _, x, sr in items[:6]]
    export_onnx(res, members, 0.5, tmp_path, tmp_path / "classifier.onnx")
    assert dm.model_id(tmp_path).startswith("digits-8k-")
    assert disagreement(members, 0.5, tmp_path, X[:6], raw) < 1e-2
    assert disagreement(members, 1.0, tmp_path, X[:6], raw) > 1e-2


# ---------------------------------------------------------------- scoring


def test_scores_of_known_logits() -> None:
    """Accuracy per speaker of the argmax, and the unweighted mean of the three."""
    f = {
        "clean_y": np.array([0, 1, 2, 3, 4, 5, 6, 7, 8]),
        "clean_s": np.array(["jackson"] * 2 + ["nicolas"] * 3 + ["yweweler"] * 4),
    }
    logits = np.eye(10)[[0, 1, 2, 9, 9, 5, 9, 9, 9]]
    assert scores_of(logits, f) == pytest.approx(
        {"jackson": 1.0, "nicolas": 1 / 3, "yweweler": 0.25, "mean": (1 + 1 / 3 + 0.25) / 3}
    )


def test_temperature_recovers_the_generating_temperature() -> None:
    """Labels drawn from softmax(z / T) give back about T, and logits scaled by k give about k T."""
    rng = np.random.default_rng(0)
    z = rng.normal(0, 3, (6000, 10))
    p = np.exp(z / 2.0)
    p /= p.sum(1, keepdims=True)
    y = np.array([rng.choice(10, p=row) for row in p])
    assert temperature(z, y) == pytest.approx(2.0, rel=0.08)
    assert temperature(0.5 * z, y) == pytest.approx(1.0, rel=0.08)
    assert temperature(z, z.argmax(1)) == pytest.approx(0.2)  # never wrong: the sharpest on the grid


def test_loso_scores_the_cached_members(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """With every member's held-out logits cached nothing trains: each member and the mean of
    their logits are scored and printed; a missing member means no pooled logits."""
    f = labels([(d, s, np.zeros(1), 8000) for s in SPEAKERS for d in (3, 5)])
    r = recipe(tmp_path, ensemble=2)
    right, wrong = np.eye(10)[f["clean_y"]], np.eye(10)[(f["clean_y"] + 1) % 10]
    assert held_out_logits(r) is None
    np.savez(r.loso_logits_file(0), logits=3 * right + 2 * wrong)  # right on all
    assert held_out_logits(r) is None
    np.savez(r.loso_logits_file(1), logits=np.where([[1], [1], [0], [0], [0], [0]], right, 5 * wrong))
    scores = loso(tmp_path / "no-resources-needed", f, r)
    assert scores == {"jackson": 1.0, "nicolas": 0.0, "yweweler": 0.0, "mean": pytest.approx(1 / 3)}
    out = capsys.readouterr().out.splitlines()
    assert out == [
        "LOSO member 0: jackson 1.000  nicolas 1.000  yweweler 1.000  mean 1.000",
        "LOSO member 1: jackson 1.000  nicolas 0.000  yweweler 0.000  mean 0.333",
        "LOSO accuracy, ensemble of 2: jackson 1.000  nicolas 0.000  yweweler 0.000  mean 0.333",
    ]
    pooled = held_out_logits(r)
    assert pooled is not None
    assert np.allclose(pooled, (3 * right + 2 * wrong + np.load(r.loso_logits_file(1))["logits"]) / 2)


def test_tta_applies_only_below_the_confidence_gate() -> None:
    """Clips the calibrated ensemble is sure of keep their logits, unsure ones take the TTA logits."""
    f = labels([(d, s, np.zeros(1), 8000) for s in SPEAKERS for d in (3, 5)])
    right, wrong = np.eye(10)[f["clean_y"]], np.eye(10)[(f["clean_y"] + 1) % 10]
    sure = np.array([[1], [0], [1], [0], [1], [0]])
    plain = np.where(sure, 40 * right, 0.3 * wrong)  # sure and right, or nearly flat and wrong
    tta = np.where(sure, wrong, right)  # TTA would spoil the sure ones and fix the others
    lines = gated_lines(plain, tta, f)
    assert lines == [
        f"TTA only below confidence {g} (50.0% of clips): jackson 1.000  nicolas 1.000  yweweler 1.000  mean 1.000"
        for g in (0.8, 0.9, 0.95)
    ]


@needs_fsdd
def test_evaluate_the_shipped_model_on_real_clips() -> None:
    """The shipped model through the run-time classifier: per-speaker and overall accuracy as
    the classifier's own answers give them (it trained on these clips: near 100 %), a latency
    per clip, and the report lines."""
    items = clips(1)
    e = evaluate(dm.MODEL_DIR, items)
    clf = dm.DigitClassifier()
    right = {s: [clf.classify(x, sr).digit == d for d, sp, x, sr in items if sp == s] for s in SPEAKERS}
    assert e.model_id == dm.model_id() and list(e.accuracy) == list(SPEAKERS)
    assert e.accuracy == {s: pytest.approx(np.mean(v)) for s, v in right.items()}
    assert e.overall >= 0.9 and 0.5 < e.confidence <= 1.0
    assert len(e.latencies) == 30 and all(0 < t < 5 for t in e.latencies)
    head, latency = evaluation_lines(e)
    assert head.startswith(f"{e.model_id} on all FSDD (trained on these speakers, not independent): jackson ")
    assert head.endswith(f"all {e.overall:.4f}  mean confidence {e.confidence:.3f}")
    assert latency.startswith("latency per utterance: median ") and latency.endswith("(one thread, 30 clips)")
    with pytest.raises(RecipeError):
        evaluate(dm.MODEL_DIR, [])


def test_script_refuses_nothing_to_do() -> None:
    """The thin script parses its options before any work: no step, or --tta without --loso, is
    a usage error."""
    script = str(REPO / "scripts" / "train-digits")
    for args, message in (([], "nothing to do"), (["--final", "--tta", "1,1.1"], "give --loso too")):
        done = subprocess.run([sys.executable, script, *args], check=False, capture_output=True, text=True)
        assert done.returncode == 2 and message in done.stderr
