"""scripts/bench-nlu's measuring code (benchmarks.nlu) with the bundled MiniLM encoder, on small
slices of the real banking77 and CLINC150 files."""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from benchmarks.common import REPO
from benchmarks.nlu import SWEEP, MemoEncoder, default_data, report, run
from ivr_server.dialog.nlu.data import OUT_OF_SCOPE, Example, read_csv
from ivr_server.dialog.nlu.encoder import Encoder, bundled_encoder

SHARED = default_data()


class Counting:
    """The real encoder, noting which texts it was asked to encode."""

    def __init__(self, inner: Encoder) -> None:
        self.inner = inner
        self.name, self.version, self.dimension = inner.name, inner.version, inner.dimension
        self.asked: list[list[str]] = []

    def encode(self, texts: Sequence[str], batch: int = 64) -> np.ndarray:
        self.asked.append(list(texts))
        return self.inner.encode(texts, batch)


def write_slice(path: Path, rows: list[Example]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as f:
        out = csv.writer(f)
        out.writerow(["text", "category"])
        out.writerows([r.text, r.category] for r in rows)


def first(rows: list[Example], categories: Sequence[str], each: int) -> list[Example]:
    return [r for c in categories for r in [r for r in rows if r.category == c][:each]]


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """banking77: 4 intents x 10 rows; CLINC150: 3 intents + out of scope, 10 train and 5 val each."""
    root = tmp_path_factory.mktemp("data")
    b77 = ["card_arrival", "lost_or_stolen_card", "balance_not_updated_after_bank_transfer", "exchange_rate"]
    write_slice(
        root / "banking77" / "train.csv", first(read_csv(SHARED / "banking77" / "train.csv"), b77, 10)
    )
    clinc = ["translate", "flip_coin", "weather", OUT_OF_SCOPE]
    write_slice(
        root / "clinc150" / "train.csv", first(read_csv(SHARED / "clinc150" / "train.csv"), clinc, 10)
    )
    write_slice(root / "clinc150" / "val.csv", first(read_csv(SHARED / "clinc150" / "val.csv"), clinc, 5))
    return root


def test_memo_encoder_gives_the_wrapped_vectors_and_encodes_each_text_once() -> None:
    """Rows equal the wrapped encoder's, duplicates included; a text seen before is not encoded
    again; nothing asked gives an empty (0, dimension) array."""
    inner = Counting(bundled_encoder())
    memo = MemoEncoder(inner)
    texts = ["i lost my card", "what's my balance", "i lost my card"]
    got = memo.encode(texts)
    assert np.allclose(got, bundled_encoder().encode(texts), atol=1e-5)
    assert inner.asked == [["i lost my card", "what's my balance"]]
    again = memo.encode(["what's my balance", "exchange rate please"])
    assert inner.asked[-1] == ["exchange rate please"]
    assert np.array_equal(again[0], got[1])
    assert memo.encode([]).shape == (0, memo.dimension)


def test_bypassed_memo_encoder_runs_the_encoder_every_time() -> None:
    """With bypass (latency timing), every call reaches the encoder, memo or not."""
    inner = Counting(bundled_encoder())
    memo = MemoEncoder(inner)
    memo.encode(["i lost my card"])
    memo.bypass = True
    memo.encode(["i lost my card", "i lost my card"])
    assert inner.asked[-1] == ["i lost my card", "i lost my card"]
    assert list(memo.memo) == ["i lost my card"]


def test_run_covers_every_protocol_on_small_slices(data: Path) -> None:
    """Five stratified folds test each banking77 row once, trained on all of the rest or on N per
    intent; CLINC150 gives in-scope accuracy and out-of-scope recall; the sweep tries each setting;
    every text is encoded once across all of it."""
    inner = Counting(bundled_encoder())
    results = run(data, ["b77", "fewshot", "clinc", "oos-select"], 3, MemoEncoder(inner))
    runs = results["runs"]
    assert list(runs) == ["banking77_full", "banking77_3shot", "clinc150"]
    for name, train_rows in (("banking77_full", 32), ("banking77_3shot", 12)):
        assert [r["fold"] for r in runs[name]] == [0, 1, 2, 3, 4]
        assert sum(r["test_rows"] for r in runs[name]) == 40
        assert {r["train_rows"] for r in runs[name]} == {train_rows}
        assert all(
            0 <= r["accuracy"] <= 1 and r["latency_p95_ms"] >= r["latency_p50_ms"] > 0 for r in runs[name]
        )
    (clinc,) = runs["clinc150"]
    assert (
        clinc["test_rows"] == 20
        and clinc["in_scope_accuracy"] is not None
        and clinc["oos_recall"] is not None
    )
    assert [r["oos_recall_setting"] for r in results["oos_select"]] == list(SWEEP)
    assert results["encoder"] == bundled_encoder().version and results["seconds"] >= 0
    encoded = [t for batch in inner.asked for t in batch]
    assert len(set(encoded)) == 40 + 40 + 20  # b77 + clinc train + val: each text once ...
    assert len(encoded) > len(set(encoded))  # ... apart from the latency timing, which bypasses the memo
    text = report(runs, 3, "minilm", results["oos_select"])
    assert "| banking77 5-fold, 3 per intent |" in text and "| 0.85 |" in text


def test_report_averages_folds_and_marks_what_was_not_run() -> None:
    """Figures are means over folds, latency the median of the folds' p50 / p95; a protocol not
    run shows '–'; the model line names the encoder; no sweep, no sweep table."""
    runs = {
        "banking77_full": [
            {"accuracy": 0.9, "macro_f1": 0.88, "ece": 0.02, "latency_p50_ms": 1.0, "latency_p95_ms": 4.0},
            {"accuracy": 0.8, "macro_f1": 0.78, "ece": 0.04, "latency_p50_ms": 3.0, "latency_p95_ms": 6.0},
        ]
    }
    lines = report(runs, 10, "mpnet").splitlines()
    assert "| banking77 5-fold, all rows | 85.00% | 83.00% | – | – | 3.00% | 2.0 / 5.0 | ≥ 93.5 % |" in lines
    assert "| banking77 5-fold, 10 per intent | – | – | – | – | – | – | ≥ 86 % |" in lines
    assert any("MiniLM-L6 int8 ⊕ all-mpnet-base-v2 int8 embeddings" in line for line in lines)
    assert "`OMP_NUM_THREADS=1 nice scripts/bench-nlu --encoder mpnet`" in lines[2]
    assert not any("oos_recall (out of fold)" in line for line in lines)
    assert "MiniLM-L6 int8 embedding (weight 1.5)" in report(runs, 10, "minilm")


def test_default_data_prefers_ivr_shared_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """IVR_SHARED_DATA wins when it holds banking77/; without it, the next candidate is used."""
    monkeypatch.setenv("IVR_SHARED_DATA", str(tmp_path))
    assert default_data() != tmp_path
    (tmp_path / "banking77").mkdir()
    assert default_data() == tmp_path


def test_committed_nlu_md_is_the_report_of_nlu_json() -> None:
    """benchmarks/nlu.md is exactly what report makes of benchmarks/nlu.json (10 shots, the
    encoder it names): the committed report is regenerable from its figures."""
    results = json.loads((REPO / "benchmarks" / "nlu.json").read_text())
    encoder = "mpnet" if "mpnet" in results["encoder"] else "minilm"
    text = report(results["runs"], 10, encoder, results.get("oos_select"))
    assert text == (REPO / "benchmarks" / "nlu.md").read_text()
