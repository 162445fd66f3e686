"""The spoken benchmark's page (benchmarks/spoken.py): the committed figures render to the
committed page, and each section of a run shows up in it."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

from benchmarks import spoken
from benchmarks.common import REPO

COMMITTED = REPO / "benchmarks"


def committed() -> tuple[dict, str, str]:
    page = (COMMITTED / "spoken.md").read_text()
    match = re.search(r"Regenerate with `([^`]*)`", page)
    assert match, "the committed page names no command"
    return json.loads((COMMITTED / "spoken.json").read_text()), page, match.group(1)


def test_the_committed_figures_render_to_the_committed_page() -> None:
    """spoken.md is exactly what markdown() makes of spoken.json: the page was not edited by hand
    and the renderer did not drift from what the last run wrote."""
    data, page, command = committed()
    assert spoken.markdown(data, command) == page


def test_the_page_shows_each_recognition_row_with_its_figures() -> None:
    """A row per recognition side present in the summary, with its accuracy as a percentage;
    sides the run did not measure are left out rather than shown empty."""
    data, _, _ = committed()
    data = copy.deepcopy(data)
    data["summary"]["adapted"]["spoken_accuracy"] = 0.5
    data["summary"].pop("adapted_heard", None)
    page = spoken.markdown(data, "scripts/bench-spoken --folds 1")
    row = next(line for line in page.splitlines() if line.startswith("| flow-adapted (compiled resources)"))
    assert "| 50.0% |" in row
    assert "phrases as heard" not in page
    assert "Regenerate with `scripts/bench-spoken --folds 1`" in page


def test_write_puts_the_json_and_the_page_side_by_side(tmp_path: Path) -> None:
    """write() stores the figures as JSON that reads back equal, and the page beside them."""
    data, _, command = committed()
    page = spoken.write(data, tmp_path / "out", command)
    assert json.loads((tmp_path / "out" / "spoken.json").read_text()) == data
    assert (tmp_path / "out" / "spoken.md").read_text() == page


def test_own_model_reads_an_adapted_models_manifest(tmp_path: Path) -> None:
    """The page names an admin's own telephone model by its manifest's version and voices."""
    (tmp_path / "manifest.json").write_text(
        json.dumps({"version": "tel-abc123", "plan": {"voices": ["piper", "espeak:en-us"]}, "other": 1})
    )
    assert spoken.own_model(tmp_path) == {"version": "tel-abc123", "voices": ["piper", "espeak:en-us"]}


def test_a_development_run_has_its_own_page_and_no_closed_questions(tmp_path: Path) -> None:
    """--dev measures the open question on the development folds: its page says which folds
    and that they are not the reported ones, has no closed-question section, and is written as
    spoken-dev.* so it never replaces the reported page."""
    data, _, _ = committed()
    data = copy.deepcopy(data)
    data["config"]["dev"] = True
    data["yes_no"] = data["digits"] = None
    data["folds"] = data["folds"][:2]
    for fold, number in zip(data["folds"], (3, 4), strict=True):
        fold["fold"] = number
    page = spoken.write(data, tmp_path, "scripts/bench-spoken --dev")
    assert page.startswith("# Spoken understanding, development folds")
    assert "Folds 3, 4:" in page and "never the reported figures" in page
    assert "## Closed questions" not in page and "yes_no_mistakes" not in page
    assert "| flow-adapted (compiled resources)" in page
    assert sorted(p.name for p in tmp_path.iterdir()) == ["spoken-dev.json", "spoken-dev.md"]
