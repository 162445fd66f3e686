"""Scoring an intent model on labelled utterances (``ivr-server nlu eval``, scripts/bench-nlu)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.metrics import f1_score

from ivr_server.dialog.nlu.classifier import IntentClassifier, NluSettings, train
from ivr_server.dialog.nlu.data import OUT_OF_SCOPE, Example
from ivr_server.dialog.nlu.encoder import Encoder


def evaluate(
    train_rows: Sequence[Example],
    test_rows: Sequence[Example],
    settings: NluSettings | None = None,
    encoder: Encoder | None = None,
    latency_samples: int = 500,
) -> dict[str, Any]:
    """Train on one set, score on the other: one flat dict of figures."""
    model, figures = train_and_score(train_rows, test_rows, settings, encoder)
    figures.update(latency(model, [r.text for r in test_rows], latency_samples))
    return figures


def train_and_score(
    train_rows: Sequence[Example],
    test_rows: Sequence[Example],
    settings: NluSettings | None = None,
    encoder: Encoder | None = None,
) -> tuple[IntentClassifier, dict[str, Any]]:
    started = time.perf_counter()
    model = train(train_rows, settings, encoder)
    train_s = time.perf_counter() - started
    figures = score(model, test_rows)
    figures.update(
        train_rows=len(train_rows),
        train_seconds=round(train_s, 2),
        categories=len(model.categories),
        model_version=model.version,
        temperature=round(model.temperature, 4),
        oos_threshold=None if model.oos_threshold is None else round(model.oos_threshold, 4),
    )
    return model, figures


def score(model: IntentClassifier, rows: Sequence[Example]) -> dict[str, Any]:
    truth = [r.category for r in rows]
    probs = model.probabilities([r.text for r in rows])
    predicted = model.predict_from(probs)
    right = np.array([t == p for t, p in zip(truth, predicted, strict=True)])
    is_oos = np.array([t == OUT_OF_SCOPE for t in truth])
    said_oos = np.array([p == OUT_OF_SCOPE for p in predicted])
    return {
        "test_rows": len(rows),
        "accuracy": round(float(right.mean()), 4),
        "macro_f1": round(float(f1_score(truth, predicted, average="macro", zero_division=0)), 4),
        "in_scope_accuracy": round(float(right[~is_oos].mean()), 4) if (~is_oos).any() else None,
        "oos_recall": round(float(said_oos[is_oos].mean()), 4) if is_oos.any() else None,
        "ece": round(calibration_error(probs, [model.categories[i] for i in probs.argmax(axis=1)], truth), 4),
    }


def calibration_error(probs: np.ndarray, top: Sequence[str], truth: Sequence[str], bins: int = 15) -> float:
    """Expected calibration error of the top probability (15 equal-width bins): how far the
    confidence the model reports is from how often it is right."""
    confidence = probs.max(axis=1)
    right = np.array([t == p for t, p in zip(top, truth, strict=True)], dtype=float)
    edges = np.linspace(0.0, 1.0, bins + 1)
    error = 0.0
    for low, high in zip(edges[:-1], edges[1:], strict=True):
        inside = (confidence > low) & (confidence <= high)
        if inside.any():
            error += inside.mean() * abs(right[inside].mean() - confidence[inside].mean())
    return float(error)


def latency(model: IntentClassifier, texts: Sequence[str], samples: int) -> dict[str, float]:
    """Milliseconds per single utterance, as a call classifies them (after a warm-up)."""
    picked = list(texts[:: max(1, len(texts) // samples)])[:samples] or ["hello"]
    for text in picked[:20]:
        model.guesses(text)
    times = []
    for text in picked:
        t = time.perf_counter()
        model.guesses(text)
        times.append((time.perf_counter() - t) * 1000)
    return {
        "latency_p50_ms": round(float(np.percentile(times, 50)), 2),
        "latency_p95_ms": round(float(np.percentile(times, 95)), 2),
    }


def oos_recall_sweep(
    rows: Sequence[Example],
    recalls: Sequence[float],
    settings: NluSettings | None = None,
    encoder: Encoder | None = None,
    folds: int = 2,
) -> list[dict[str, Any]]:
    """For each ``oos_recall`` setting: in-scope accuracy and out-of-scope recall on held-out
    parts of ``rows`` (stratified ``folds``), means over the parts. Run on a training split
    only, it chooses the setting without looking at the set the figures are reported on."""
    from dataclasses import replace

    from sklearn.model_selection import StratifiedKFold

    base = settings or NluSettings()
    labels = [r.category for r in rows]
    splits = list(StratifiedKFold(folds, shuffle=True, random_state=0).split(np.zeros(len(rows)), labels))
    out = []
    for recall in recalls:
        parts = []
        for train_idx, test_idx in splits:
            _, figures = train_and_score(
                [rows[i] for i in train_idx],
                [rows[i] for i in test_idx],
                replace(base, oos_recall=recall),
                encoder,
            )
            parts.append((figures["in_scope_accuracy"], figures["oos_recall"]))
        out.append({
            "oos_recall_setting": recall,
            "in_scope_accuracy": round(float(np.mean([p[0] for p in parts])), 4),
            "oos_recall": round(float(np.mean([p[1] for p in parts])), 4),
            "per_part": parts,
        })  # fmt: skip
    return out
