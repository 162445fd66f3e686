"""`ivr-server nlu eval-spoken`: recordings through the recognizer with the flow's compiled
resources for the state, then the flow's intent model, as a call hears them."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ivr_server.evaluation.channel import telephone
from ivr_server.evaluation.voices import Renderer, Voice
from ivr_server.media.audio import write_wav

REPO = Path(__file__).resolve().parents[2]
BANKING = REPO / "flows" / "banking.yaml"
# Requests in words no flow file or data set holds.
SAID = (
    ("somebody took my card out of my bag", "lost_card"),
    ("how much money is left in my account", "balance"),
    ("put me through to a real person please", "agent"),
    ("what did i pay for last week", "transactions"),
)


@pytest.fixture(scope="module")
def manifest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("spoken")
    renderer = Renderer()
    with (folder / "manifest.csv").open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["path", "text", "category"])
        for i, (text, category) in enumerate(SAID):
            pcm, rate = renderer.render(Voice.parse("piper"), text)
            write_wav(folder / f"{i}.wav", 8000, telephone(pcm, rate))
            writer.writerow([f"{i}.wav", text, category])
    return folder / "manifest.csv"


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path


def eval_spoken(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The command as an admin runs it (a process of its own: the CLI configures logging)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("IVR_")} | {"IVR_DATA_DIR": str(data_dir)}
    return subprocess.run(
        [sys.executable, "-m", "ivr_server", "nlu", "eval-spoken", *args],
        capture_output=True, text=True, check=False, timeout=300, env=env,
    )  # fmt: skip


def test_eval_spoken_prints_one_json_object_with_the_figures(manifest: Path, data_dir: Path) -> None:
    out = eval_spoken(
        data_dir, "--flow", str(BANKING), "--state", "welcome", "--manifest", str(manifest), "--json"
    )
    assert out.returncode == 0, out.stderr
    figures = json.loads(out.stdout)
    assert figures["utterances"] == len(SAID)
    assert figures["text_accuracy"] == 1.0  # the same model on the words themselves
    assert 0.0 <= figures["spoken_accuracy"] <= 1.0 and figures["wer"] >= 0.0
    assert 0.0 < figures["asr_rtf"] < 2.0
    assert figures["resources"]  # heard with the flow's compiled open model
    assert (data_dir / "asr-resources").is_dir()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--state", "nowhere"], "has no state 'nowhere'"),
        (["--state", "welcome", "--manifest", "/nonexistent.csv"], "cannot be read"),
    ],
)
def test_eval_spoken_names_what_is_unusable_and_exits_6(
    manifest: Path, data_dir: Path, args: list[str], message: str
) -> None:
    out = eval_spoken(data_dir, "--flow", str(BANKING), "--manifest", str(manifest), *args)
    assert out.returncode == 6 and message in out.stderr, out.stderr
