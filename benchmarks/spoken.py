"""The spoken benchmark's page: benchmarks/spoken.md from the figures in spoken.json (the
measuring code is ivr_server/evaluation/bench.py, which the server's own `nlu eval-spoken` shares),
and the whole run as scripts/bench-spoken drives it."""

from __future__ import annotations

import json
import platform
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.common import REPO, commit, cores
from ivr_server.evaluation import bench
from ivr_server.evaluation.voices import Renderer
from ivr_server.speech.adapt.compile import Compiler
from ivr_server.speech.asr.pocketsphinx_engine import PocketSphinxEngine


def pct(x: float) -> str:
    return f"{x:.1%}"


def own_model(directory: Path) -> dict[str, Any]:
    """What the page says of an admin's own telephone model: its version and training voices."""
    manifest = json.loads((directory / "manifest.json").read_text())
    return {"version": manifest["version"], "voices": manifest["plan"]["voices"]}


def markdown(data: dict[str, Any], command: str) -> str:
    """The page for one run's figures (``data`` as spoken.json holds them)."""
    s, yn, dg = data["summary"], data["yes_no"], data["digits"]
    a = s["adapted"]
    dev = bool(data["config"].get("dev"))
    numbers = [str(f["fold"]) for f in data["folds"]]
    out = [
        "# Spoken understanding, development folds" if dev else "# Spoken understanding benchmark",
        "",
        *(
            [
                f"Fold{'s' if len(numbers) > 1 else ''} {', '.join(numbers)}: the ones ideas are tried on, "
                "never the reported figures (benchmarks/spoken.md).",
                "",
            ]
            if dev
            else []
        ),
        f"Regenerate with `{command}`. {data['date']}, {data['machine']}; whole run {data['seconds']:.0f} s.",
        "Held-out banking77 requests (the flow was built from the other folds only), spoken by synthetic",
        "voices through a simulated telephone line (300-3400 Hz, 8 kHz, line noise at "
        f"{data['config']['snr_db']:g} dB SNR, mu-law), each with the 100 ms lead-in and 300 ms end "
        "silence a",
        "call's recognizer gets; PocketSphinx, accurate search, with the telephone-channel acoustic model",
        "(speech/acoustic/: adapted from Flite voices, none of these) unless a row says wideband. "
        "Medians over "
        f"{len(data['folds'])} folds of {data['config']['per_fold']} requests.",
        "",
        '## Open question ("How can I help you today?"), 77 intents',
        "",
        "| recognition | text accuracy | spoken accuracy | WER | acted | confirmed | asked again "
        "| wrong action | ASR RTF |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    names = {
        "adapted": "flow-adapted (compiled resources): what a call does",
        "adapted_heard": "flow-adapted, intent model also trained on phrases as heard",
        "adapted_nbest": "flow-adapted, intent model averaged over the 5 best hypotheses",
        "adapted_own": "flow-adapted, another telephone model (--own-telephone-model; see below)",
        "adapted_wideband": "flow-adapted language model, wideband acoustic model (no telephone adaptation)",
        "general": "general language model, wideband acoustic model (before this work)",
    }
    for key, name in names.items():
        if key not in s:
            continue
        side = s[key]
        act = side["actions"]
        out.append(
            f"| {name} | {pct(side['text_accuracy'])} | {pct(side['spoken_accuracy'])} | "
            f"{pct(side['wer'])} | "
            f"{pct(act['act'])} | {pct(act['confirm'] + act['disambiguate'])} | {pct(act['no_match'])} | "
            f"{pct(side['wrong_actions'])} | {side['asr_rtf']:.3f} |"
        )
    if data.get("own_telephone_model"):
        own = data["own_telephone_model"]
        out += [
            "",
            f"The other telephone model ({own['version']}) was adapted the same way from these voices: "
            + ", ".join(own["voices"])
            + ". Where they share a synthesizer with the test voices it shows what adapting to recordings "
            "of callers like your own buys; it is not the shipped model.",
        ]
    out += [
        "",
        "Per voice, spoken accuracy / word error rate:",
        "",
    ]
    sides = [k for k in ("adapted", "adapted_heard", "adapted_own", "adapted_wideband", "general") if k in s]
    short = {
        "adapted": "as a call",
        "adapted_heard": "+ heard training",
        "adapted_own": "own telephone model",
        "adapted_wideband": "wideband AM",
        "general": "before",
    }
    out.append("| voice | " + " | ".join(short[k] for k in sides) + " |")
    out.append("|---|" + "---:|" * len(sides))
    for voice in a["voices"]:
        cells = [s[k]["voices"].get(voice, {}) for k in sides]
        shown = (f"{pct(c.get('spoken_accuracy', 0))} / {pct(c.get('wer', 0))}" for c in cells)
        out.append(f"| {voice} | " + " | ".join(shown) + " |")
    out += [
        "",
        f"Resources compiled in {s['compile_s']:.1f} s per fold (median), intent model trained in "
        f"{s['train_s']:.1f} s.",
    ]
    if yn is not None and dg is not None:
        out += closed_questions(yn, dg)
    out += [
        "",
        "<details><summary>Per fold, and what was misheard</summary>",
        "",
        "```json",
        json.dumps(
            {
                "folds": [
                    {k: f[k] for k in ("fold", "compile_s", "train_s", "words")}
                    | {
                        "adapted": {k: f["adapted"][k] for k in ("spoken_accuracy", "text_accuracy", "wer")},
                        "general": {k: f["general"][k] for k in ("spoken_accuracy", "wer")},
                        "mistakes": f["adapted"]["mistakes"][:8],
                    }
                    for f in data["folds"]
                ],
            }
            | (
                {"yes_no_mistakes": yn["mistakes"][:10], "digit_mistakes": dg["mistakes"][:10]}
                if yn is not None and dg is not None
                else {}
            ),
            indent=1,
        ),
        "```",
        "</details>",
        "",
    ]
    return "\n".join(out)


def closed_questions(yn: dict[str, Any], dg: dict[str, Any]) -> list[str]:
    out = [
        "",
        "## Closed questions",
        "",
        "| question | recognition | utterances | correct |",
        "|---|---|---:|---:|",
        f'| yes/no ("..., right?") | banking flow\'s yes/no model | {yn["utterances"]} | '
        f"{pct(yn['accuracy'])} |",
        f"| four-digit strings | the flow's four-digit grammar + digit model | {dg['strings']} | "
        f"{pct(dg['string_accuracy'])} |",
    ]
    if "fsdd" in dg:
        out.append(
            f"| FSDD single digits, real voices | digit grammar + digit model | {dg['fsdd']['recordings']} | "
            f"{pct(dg['fsdd']['accuracy'])} |"
        )
    out += [
        "",
        "The FSDD speakers are the ones the bundled digit model was trained on (benchmarks/digits.md gives",
        "the leave-one-speaker-out figure for unseen speakers).",
    ]
    return out


def run(
    cfg: bench.BenchConfig,
    data_dir: Path,
    out: Path,
    log: Callable[[str], None],
    own_telephone_model: Path | None = None,
) -> dict[str, Any]:
    """Every section in turn: the open question per fold (each fold's figures kept in
    ``out/spoken.folds.json`` as they come, so an hour of folds survives a later failure), then
    yes/no and digit strings. Returns what spoken.json holds."""
    started = time.perf_counter()
    engine = PocketSphinxEngine(search="accurate")  # the telephone-channel model, as calls
    wideband = PocketSphinxEngine(search="accurate", telephone_model="off")
    own = None
    if own_telephone_model is not None:
        own = PocketSphinxEngine(search="accurate", telephone_model=str(own_telephone_model))
    renderer = Renderer()
    rows = bench.banking_rows(data_dir / "banking77" / "train.csv")
    flow_path = REPO / "benchmarks" / "flows" / "banking77.yaml"
    out.mkdir(parents=True, exist_ok=True)
    folds = []
    every = bench.cv_folds(rows)
    name = "spoken-dev" if cfg.dev else "spoken"
    for fold in bench.measured_folds(cfg):
        folds.append(
            bench.run_fold(fold, rows, every[fold], flow_path, engine, renderer, cfg, log, wideband, own)
        )
        (out / f"{name}.folds.json").write_text(json.dumps(folds, indent=1) + "\n")
    if cfg.dev:  # trying an idea: the open question only (the closed questions use no folds)
        return _figures(cfg, folds, started, own_telephone_model, None, None)
    banking = REPO / "flows" / "banking.yaml"
    with tempfile.TemporaryDirectory(prefix="ivr-bench-closed-") as tmp:
        yes_no = bench.run_yes_no(engine, Compiler(Path(tmp)), banking, renderer, cfg)
    log(f"yes/no {yes_no['accuracy']:.1%}")
    with tempfile.TemporaryDirectory(prefix="ivr-bench-digits-") as tmp:
        digits = bench.run_digits(
            engine, Compiler(Path(tmp)), banking, renderer, cfg, data_dir / "fsdd" / "recordings"
        )
    log(f"digit strings {digits['string_accuracy']:.1%}, FSDD {digits.get('fsdd', {}).get('accuracy')}")
    return _figures(cfg, folds, started, own_telephone_model, yes_no, digits)


def _figures(
    cfg: bench.BenchConfig,
    folds: list[dict[str, Any]],
    started: float,
    own_telephone_model: Path | None,
    yes_no: dict[str, Any] | None,
    digits: dict[str, Any] | None,
) -> dict[str, Any]:
    return {
        "date": time.strftime("%Y-%m-%d"),
        "commit": commit(),
        "machine": f"{cores()} cores, Python {platform.python_version()}",
        "config": bench.config_dict(cfg),
        "own_telephone_model": own_model(own_telephone_model) if own_telephone_model else None,
        "folds": folds,
        "summary": bench.summarize(folds),
        "yes_no": yes_no,
        "digits": digits,
        "seconds": round(time.perf_counter() - started, 1),
    }


def write(data: dict[str, Any], out: Path, command: str) -> str:
    """spoken.json and spoken.md in ``out`` (spoken-dev.* for the development folds); returns
    the page."""
    name = "spoken-dev" if data["config"].get("dev") else "spoken"
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(data, indent=1) + "\n")
    page = markdown(data, command)
    (out / f"{name}.md").write_text(page)
    return page
