"""The spoken benchmark's measuring code (ivr_server/evaluation/bench.py) on a small slice of
banking77: real voices, line, compiler, recognizer and intent model, figures in range."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from ivr_server.dialog.nlu.data import Example
from ivr_server.dialog.spec.loader import load_flow
from ivr_server.evaluation import bench
from ivr_server.evaluation.voices import Renderer
from ivr_server.speech.adapt.compile import AdaptSettings, Compiler
from ivr_server.speech.asr.pocketsphinx_engine import PocketSphinxEngine
from tests.support.data import shared_data

REPO = Path(__file__).resolve().parents[2]
BANKING77 = shared_data() / "banking77" / "train.csv"
needs_banking77 = pytest.mark.skipif(not BANKING77.is_file(), reason=f"banking77 not at {BANKING77}")


@pytest.fixture(scope="module")
def engine() -> PocketSphinxEngine:
    return PocketSphinxEngine(search="accurate")


def small_flow(tmp_path: Path, intents: tuple[str, ...]) -> Path:
    """benchmarks/flows/banking77.yaml cut down to ``intents``."""
    lines = (REPO / "benchmarks" / "flows" / "banking77.yaml").read_text().splitlines()
    names = set(intents)
    kept = []
    for line in lines:
        stripped = line.strip()
        if stripped.endswith(": {}") and stripped[:-4] not in names:
            continue  # an intent not kept
        if (
            stripped.startswith("- ")
            and stripped[2:]
            and stripped[2:].isidentifier()
            and stripped[2:] not in names
        ):
            continue  # listened for, not kept
        if stripped.startswith("- {intent:") and stripped.split(",")[0][10:].strip() not in names:
            continue  # its transition
        kept.append(line)
    path = tmp_path / "flow" / "banking77.yaml"
    path.parent.mkdir()
    path.write_text("\n".join(kept) + "\n")
    return path


@needs_banking77
def test_the_folds_are_the_nlu_benchmarks_stratified_five() -> None:
    rows = bench.banking_rows(BANKING77)
    folds = bench.cv_folds(rows)
    assert len(folds) == 5 and sorted(i for f in folds for i in f) == list(range(len(rows)))
    per_fold = [Counter(rows[i].category for i in f) for f in folds]
    assert all(abs(c["card_arrival"] - per_fold[0]["card_arrival"]) <= 1 for c in per_fold)
    assert "reverted_card_payment" in {r.category for r in rows}  # the "?" is gone


@needs_banking77
def test_a_fold_is_measured_on_rows_its_flow_never_saw(engine: PocketSphinxEngine, tmp_path: Path) -> None:
    """Four intents, 15 rows each: the fold's flow is built from the other rows only, and the
    same recordings are understood with the compiled resources, with the 5 best, with the
    general model and with phrases-as-heard training."""
    keep = ("card_arrival", "lost_or_stolen_card", "balance_not_updated_after_bank_transfer", "exchange_rate")
    rows = [r for r in bench.banking_rows(BANKING77) if r.category in keep]
    rows = [r for c in keep for r in [x for x in rows if x.category == c][:15]]
    held_out = list(range(0, len(rows), 5))
    cfg = bench.BenchConfig(per_fold=4, voices=("piper",), heard_per_intent=1)
    logs: list[str] = []
    fold = bench.run_fold(0, rows, held_out, small_flow(tmp_path, keep), engine, Renderer(), cfg, logs.append)
    assert {"adapted", "adapted_nbest", "general", "adapted_heard"} <= fold.keys()
    for name in ("adapted", "adapted_nbest", "general", "adapted_heard"):
        report = fold[name]
        assert report["utterances"] == 4 and 0 <= report["spoken_accuracy"] <= 1 and report["wer"] >= 0
        assert sum(report["actions"].values()) == pytest.approx(1.0)
    assert fold["adapted"]["resources"] and fold["general"]["resources"] is None
    said = {m["text"] for name in ("adapted", "general") for m in fold[name]["mistakes"]}
    assert not said & {r.text for i, r in enumerate(rows) if i not in held_out}  # only held-out rows
    summary = bench.summarize([fold, fold])
    assert summary["adapted"]["spoken_accuracy"] == fold["adapted"]["spoken_accuracy"]


def test_closed_questions_are_scored_by_the_parsers(engine: PocketSphinxEngine, tmp_path: Path) -> None:
    cfg = bench.BenchConfig(voices=("piper",), digit_strings=3)
    yes_no = bench.run_yes_no(engine, Compiler(tmp_path), REPO / "flows" / "banking.yaml", Renderer(), cfg)
    assert yes_no["utterances"] == len(bench.YES_NO_ANSWERS) and 0.5 <= yes_no["accuracy"] <= 1
    digits = bench.run_digits(
        engine, Compiler(tmp_path), REPO / "flows" / "banking.yaml", Renderer(), cfg, None
    )
    assert digits["strings"] == 3 and 0 <= digits["string_accuracy"] <= 1 and "fsdd" not in digits


def test_the_fold_flow_keeps_the_benchmark_flow_but_its_data(tmp_path: Path) -> None:
    train = [Example("where is my card", "card_arrival"), Example("my card is lost", "lost_or_stolen_card")]
    path = bench.fold_flow_file(REPO / "benchmarks" / "flows" / "banking77.yaml", train, tmp_path)
    flow = load_flow(path)
    assert flow.name == "banking77" and flow.nlu.data == ("train.csv",) and len(flow.intents) == 77
    assert (tmp_path / "train.csv").read_text().splitlines()[1:] == ["where is my card,card_arrival",
                                                                      "my card is lost,lost_or_stolen_card"]  # fmt: skip


def test_the_development_folds_are_never_the_reported_ones() -> None:
    """Ideas are tried on folds 3 and 4; a reported run measures the first folds, so no
    reported run of up to three folds shares a fold with a development run."""
    assert bench.measured_folds(bench.BenchConfig(folds=3)) == [0, 1, 2]
    assert bench.measured_folds(bench.BenchConfig(folds=2, dev=True)) == [3, 4]
    assert bench.measured_folds(bench.BenchConfig(folds=1, dev=True)) == [3]
    assert not set(bench.DEV_FOLDS) & set(bench.measured_folds(bench.BenchConfig(folds=3)))


@needs_banking77
def test_a_fold_hears_with_the_flow_weight_it_is_given(engine: PocketSphinxEngine, tmp_path: Path) -> None:
    """--flow-weight reaches the compiler: the fold is heard with resources built at that
    weight (their version, which hashes the settings, is the one compiled at it), not EM's."""
    keep = ("card_arrival", "exchange_rate")
    rows = [r for r in bench.banking_rows(BANKING77) if r.category in keep]
    rows = [r for c in keep for r in [x for x in rows if x.category == c][:12]]
    held_out = list(range(0, len(rows), 6))
    flow_path = small_flow(tmp_path, keep)
    cfg = bench.BenchConfig(per_fold=2, voices=("piper",), flow_weight=0.5)
    fold = bench.run_fold(0, rows, held_out, flow_path, engine, Renderer(), cfg, lambda _: None)
    train = [r for i, r in enumerate(rows) if i not in set(held_out)]
    flow = load_flow(bench.fold_flow_file(flow_path, train, tmp_path / "again"))
    at_half = Compiler(tmp_path / "c1", settings=AdaptSettings(flow_weight=0.5)).compile(flow)
    by_em = Compiler(tmp_path / "c2").compile(flow)
    assert fold["adapted"]["resources"] == at_half.version != by_em.version
