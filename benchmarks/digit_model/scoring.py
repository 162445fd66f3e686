"""How good the classifier is: leave-one-speaker-out accuracy (per member, of the ensemble, and
with test-time speed changes), the softmax temperature fitted on the held-out logits, and the
shipped model run through the run-time classifier (accuracy and latency)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from benchmarks.common import median, percentile
from benchmarks.digit_model.augment import MelFront
from benchmarks.digit_model.data import SPEAKERS, Clip, load_fsdd
from benchmarks.digit_model.recipe import Recipe, RecipeError, log
from ivr_server.speech.asr import digit_model as dm

CONFIDENCE_GATES = (0.8, 0.9, 0.95)


def scores_of(logits: np.ndarray, f: dict[str, np.ndarray]) -> dict[str, float]:
    """Accuracy of the argmax per FSDD speaker, and their mean (speakers weigh alike)."""
    ok = logits.argmax(1) == f["clean_y"]
    scores = {s: float(ok[f["clean_s"] == s].mean()) for s in SPEAKERS}
    scores["mean"] = float(np.mean([scores[s] for s in SPEAKERS]))
    return scores


def scores_line(scores: dict[str, float]) -> str:
    return "  ".join(f"{s} {v:.3f}" for s, v in scores.items())


def temperature(logits: np.ndarray, y: np.ndarray) -> float:
    """The T minimising held-out NLL of softmax(logits / T) (grid search; one parameter)."""
    best = (np.inf, 1.0)
    for t in np.exp(np.linspace(np.log(0.2), np.log(5.0), 161)):
        z = logits / t
        z = z - z.max(1, keepdims=True)
        nll = float(-(z[np.arange(len(y)), y] - np.log(np.exp(z).sum(1))).mean())
        best = min(best, (nll, float(t)))
    return best[1]


def member_loso(res: Path, f: dict[str, np.ndarray], r: Recipe, k: int) -> np.ndarray:
    """Held-out logits of ensemble member ``k`` for every FSDD clip (each from the fold that did
    not train on its speaker); cached, so adding members or re-running costs only what is new."""
    path = r.loso_logits_file(k)
    if path.is_file():
        cached: np.ndarray = np.load(path)["logits"]
        return cached
    from benchmarks.digit_model.training import predict, save_member, train, training_set

    logits = np.zeros((len(f["clean_y"]), 10), np.float32)
    for held in SPEAKERS:
        X, Y = training_set(f, held)
        log(f"LOSO member {k}, fold {held}: {len(X)} training clips, {r.epochs} epochs")
        te = f["clean_s"] == held
        model = train(res, X, Y, r, r.member_seed(k))
        save_member(model, r.fold_weights_file(k, held))  # for --tta
        logits[te] = predict([model], f["clean"][te])
        log(f"LOSO member {k}, {held}: {(logits[te].argmax(1) == f['clean_y'][te]).mean():.3f}")
    np.savez(path, logits=logits)
    return logits


def held_out_logits(r: Recipe) -> np.ndarray | None:
    """The ensemble's pooled LOSO logits from the cache, None unless every member has run."""
    paths = [r.loso_logits_file(k) for k in range(r.ensemble)]
    if not all(p.is_file() for p in paths):
        return None
    return np.asarray(np.mean([np.load(p)["logits"] for p in paths], 0))


def loso(res: Path, f: dict[str, np.ndarray], r: Recipe) -> dict[str, float]:
    """Prints each member's and the ensemble's LOSO accuracy; returns the ensemble's."""
    members = [member_loso(res, f, r, k) for k in range(r.ensemble)]
    for k, z in enumerate(members):
        print(f"LOSO member {k}: " + scores_line(scores_of(z, f)), flush=True)
    scores = scores_of(np.mean(members, 0), f)
    print(f"LOSO accuracy, ensemble of {r.ensemble}: " + scores_line(scores), flush=True)
    return scores


def loso_tta(res: Path, f: dict[str, np.ndarray], r: Recipe) -> None:
    """Test-time augmentation on the LOSO folds: each held-out clip also classified at the
    --tta speeds, logits averaged; all clips, and only those the plain ensemble is unsure of."""
    from benchmarks.digit_model.training import load_member, predict

    speeds = [float(v) for v in r.tta.split(",")]
    mel, fsdd = MelFront(res), load_fsdd(r.fsdd)
    feats = {
        v: np.stack([mel(dm.prepare(dm.at_speed(x, sr, v), dm.RATE)) for _, _, x, sr in fsdd]) for v in speeds
    }
    per_speed = {v: np.zeros((len(fsdd), 10), np.float32) for v in speeds}
    for k in range(r.ensemble):
        for held in SPEAKERS:
            m = load_member(res, r.fold_weights_file(k, held))
            te = f["clean_s"] == held
            for v in speeds:
                per_speed[v][te] += predict([m], feats[v][te]) / r.ensemble
    plain = held_out_logits(r)
    if plain is None:
        raise RecipeError("--tta needs the LOSO logits of every member: run --loso first")
    for v in speeds:
        print(f"speed {v}: " + scores_line(scores_of(per_speed[v], f)))
    both = np.mean(list(per_speed.values()), 0)
    print(f"TTA {r.tta}, all clips: " + scores_line(scores_of(both, f)))
    for line in gated_lines(plain, both, f):
        print(line, flush=True)


def gated_lines(plain: np.ndarray, tta: np.ndarray, f: dict[str, np.ndarray]) -> list[str]:
    """Accuracy when only clips below a calibrated confidence take the TTA logits."""
    z = plain / temperature(plain, f["clean_y"])
    conf = np.exp(z.max(1)) / np.exp(z).sum(1)
    lines = []
    for gate in CONFIDENCE_GATES:
        mixed = np.where((conf < gate)[:, None], tta, plain)
        lines.append(
            f"TTA only below confidence {gate} ({(conf < gate).mean():.1%} of clips): "
            + scores_line(scores_of(mixed, f))
        )
    return lines


@dataclass(frozen=True)
class Evaluation:
    model_id: str
    accuracy: dict[str, float]  # per speaker, in the clips' order
    overall: float  # over all clips
    confidence: float  # mean
    latencies: list[float]  # seconds per clip


def evaluate(model_dir: Path, clips: list[Clip]) -> Evaluation:
    """The model in ``model_dir`` through the run-time DigitClassifier (with its retry of unsure
    clips), one clip at a time, timing each call."""
    if not clips:
        raise RecipeError("no clips to evaluate")
    clf = dm.DigitClassifier(model_dir)
    ok: dict[str, list[bool]] = {}
    conf, times = [], []
    for d, s, x, sr in clips:
        t0 = time.perf_counter()
        g = clf.classify(x, sr)
        times.append(time.perf_counter() - t0)
        ok.setdefault(s, []).append(g.digit == d)
        conf.append(g.confidence)
    return Evaluation(
        model_id=clf.model_id,
        accuracy={s: float(np.mean(v)) for s, v in ok.items()},
        overall=float(np.mean(sum(ok.values(), []))),
        confidence=float(np.mean(conf)),
        latencies=times,
    )


def evaluation_lines(e: Evaluation) -> list[str]:
    ms = [1000 * t for t in e.latencies]
    return [
        f"{e.model_id} on all FSDD (trained on these speakers, not independent): "
        + scores_line(e.accuracy)
        + f"  all {e.overall:.4f}  mean confidence {e.confidence:.3f}",
        f"latency per utterance: median {median(ms):.1f} ms, p95 "
        f"{percentile(ms, 95):.1f} ms (one thread, {len(ms)} clips)",
    ]
