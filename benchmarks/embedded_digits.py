"""Digits inside the opening request: the sentences, the run and its page (measuring code:
ivr_server/evaluation/embedded.py; command line: scripts/bench-embedded-digits).

(a) Requests to the banking flow (flows/banking.yaml) that give the card's last four digits or
the 8-digit account number in passing, heard with the flow's open model: is the digit string
recovered exactly (the engine's own slot filling from the words heard), is the request
understood? The sentences are split into a development half (where choices are made: the card
sentences) and a test half (reported only: the account sentences). (b) Ordinary banking77
requests of a development fold (no digits), heard with the same open model and with the
benchmark flow's (banking77.yaml, given the banking flow's two digit slots so that whatever the
compiler does for digit slots applies to it too): word errors and spoken intent accuracy must
not drop.
"""

from __future__ import annotations

import json
import platform
import random
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from benchmarks.banking_speech import banking_speech
from benchmarks.common import REPO, commit, cores
from ivr_server.dialog.nlu.flow_model import model_for_flow
from ivr_server.dialog.spec.loader import load_flow
from ivr_server.errors import NluError
from ivr_server.evaluation import bench, embedded
from ivr_server.evaluation.spoken import recognize_all, understand
from ivr_server.evaluation.voices import Renderer
from ivr_server.speech.adapt.compile import COMPILER_VERSION, Compiler
from ivr_server.speech.asr.pocketsphinx_engine import PocketSphinxEngine

BANKING77 = REPO / "benchmarks" / "flows" / "banking77.yaml"
STATE = "welcome"
LENGTHS = {"last4": 4, "account": 8}
SEED = 4585
VOICES = ("piper", "piper:1.15", "espeak:en-us:150", "espeak:en-gb+m3:165")

# Written for this benchmark (not from any data set or other benchmark). Even rows (the card's
# last four digits) are the development half, odd rows (an 8-digit account number) the test half:
# what is chosen on cards is tested on another length, other words and other intents.
TEMPLATES: tuple[tuple[str, str], ...] = (
    ("I need to block the card that ends with {last4}", "lost_card"),
    ("my account number is {account} what's my balance", "balance"),
    ("I think I left my card ending {last4} at a restaurant last night", "lost_card"),
    ("can you tell me the balance on account {account}", "balance"),
    ("someone took my wallet and the card ending in {last4} was in it", "lost_card"),
    ("I'd like to hear the recent transactions on account number {account}", "transactions"),
    ("please cancel my debit card the last four are {last4} it's gone", "lost_card"),
    ("balance please for account {account}", "balance"),
    ("my visa ending {last4} has been stolen", "lost_card"),
    ("it's account {account} and I want to know how much money I have", "balance"),
    ("hi I lost my card the one that ends in {last4}", "lost_card"),
    ("what were my last few payments on account {account}", "transactions"),
    ("the card ending with {last4} is missing can you freeze it", "lost_card"),
    ("I'm calling about account {account} I'd like my current balance", "balance"),
    ("my purse was stolen with the card ending {last4}", "lost_card"),
    ("could you read me the latest charges on my account {account}", "transactions"),
    ("card number ending {last4} I can't find it anywhere", "lost_card"),
    ("my account is {account} how much is in it", "balance"),
    ("yes hello my card ending in {last4} got stolen this morning", "lost_card"),
    ("for account {account} what did I spend this week", "transactions"),
    ("I want to report a lost card it ends in {last4}", "lost_card"),
    ("good morning account number {account} can I get the balance", "balance"),
    ("my mastercard that ends with {last4} has gone missing", "lost_card"),
    ("list the recent purchases on account {account} please", "transactions"),
    ("I dropped my card somewhere the last digits are {last4}", "lost_card"),
    ("hello I'd like to check the balance of account {account}", "balance"),
    ("block card {last4} please it was stolen", "lost_card"),
    ("can I have my transaction history for account {account}", "transactions"),
    ("I misplaced my credit card and its number ends in {last4}", "lost_card"),
    ("what's the available balance on {account}", "balance"),
    ("my card ending {last4} was taken from my bag", "lost_card"),
    ("account number {account} show me my recent transactions", "transactions"),
    ("I can't find my card ending in {last4} please block it", "lost_card"),
    ("how much do I have in account {account}", "balance"),
    ("my wallet is missing and the card ending {last4} was inside", "lost_card"),
    ("please tell me the last three transactions on account {account}", "transactions"),
    ("I think my card ending in {last4} was stolen at the station", "lost_card"),
    ("my account number is {account} I need my balance please", "balance"),
    ("the card that ends in {last4} is lost", "lost_card"),
    ("it's {account} and I want my recent charges", "transactions"),
    ("report stolen card ending {last4}", "lost_card"),
    ("can you check how much money is in account {account}", "balance"),
    ("my debit card the one ending {last4} has been lost", "lost_card"),
    ("I'd like the balance for account number {account} thanks", "balance"),
    ("somebody stole my card it ends with {last4}", "lost_card"),
    ("what are the latest payments on account {account}", "transactions"),
    ("lost card ending in {last4} please help", "lost_card"),
    ("on account {account} how much is left", "balance"),
)

Log = Callable[[str], None]


def halves(requests: Sequence[embedded.DigitRequest]) -> dict[str, list[embedded.DigitRequest]]:
    """The development half (even rows: cards) and the test half (odd rows: accounts)."""
    return {"dev": list(requests[0::2]), "test": list(requests[1::2])}


def banking77_with_digit_slots(work: Path) -> Path:
    """The benchmark flow with the banking flow's two digit slots (and their questions), so a
    compiler that treats flows with digit slots differently does so for it too."""
    text = BANKING77.read_text(encoding="utf-8")
    text = text.replace(
        "prompts:\n",
        'prompts:\n  ask_last4: "Please say or key in the last four digits of the card."\n'
        '  ask_account: "Please key in or say your eight digit account number."\n',
        1,
    )
    text += (
        "\nslots:\n  last4: {type: digits, length: 4, prompt: ask_last4}\n"
        "  account: {type: digits, length: 8, prompt: ask_account}\n"
    )
    work.mkdir(parents=True, exist_ok=True)
    out = work / "banking77-digits.yaml"
    out.write_text(text, encoding="utf-8")
    return out


def run(
    data_dir: Path,
    log: Log,
    halves_measured: Sequence[str] = ("dev", "test"),
    ordinary: int = 100,
    ordinary_voices: Sequence[str] = ("piper", "espeak:en-us:150"),
    fold: int = bench.DEV_FOLDS[0],
    snr_db: float = 30.0,
    nlu_cache: Path | None = None,
) -> dict[str, Any]:
    started = time.perf_counter()
    parts = banking_speech(nlu_cache)
    engine, renderer, flow, intent_model = parts.engine, parts.renderer, parts.flow, parts.intent_model
    out: dict[str, Any] = {"digits": {}, "ordinary": None}
    with tempfile.TemporaryDirectory(prefix="ivr-bench-embedded-") as tmp:
        work = Path(tmp)
        resources = Compiler(work / "asr-resources").compile(flow)
        log(f"banking: resources {resources.version} ({resources.words} words)")
        requests = halves(embedded.digit_requests(TEMPLATES, LENGTHS, SEED))
        for half in halves_measured:
            heard = embedded.hear_requests(
                requests[half], engine, resources.model(None), renderer, VOICES, SEED + len(half), snr_db
            )
            scored = embedded.score_requests(requests[half], heard, flow, STATE, intent_model)
            out["digits"][half] = scored
            log(f"{half}: digits {scored['digits']:.1%}, intent {scored['intent']:.1%}, "
                f"WER {scored['wer']:.1%}")  # fmt: skip
        if ordinary:
            out["ordinary"] = _ordinary(
                data_dir, work, fold, ordinary, ordinary_voices, snr_db, engine, renderer, resources,
                intent_model, nlu_cache, log,
            )  # fmt: skip
    return {
        "date": time.strftime("%Y-%m-%d"),
        "commit": commit(),
        "compiler": COMPILER_VERSION,
        "machine": f"{cores()} cores, Python {platform.python_version()}",
        "config": {
            "seed": SEED,
            "voices": VOICES,
            "snr_db": snr_db,
            "fold": fold,
            "ordinary": ordinary,
            "ordinary_voices": list(ordinary_voices),
        },  # fmt: skip
        **out,
        "seconds": round(time.perf_counter() - started, 1),
    }


def _ordinary(
    data_dir: Path,
    work: Path,
    fold: int,
    count: int,
    voices: Sequence[str],
    snr_db: float,
    engine: PocketSphinxEngine,
    renderer: Renderer,
    banking: Any,
    banking_model: Any,
    nlu_cache: Path | None,
    log: Log,
) -> dict[str, Any]:
    """Held-out banking77 requests of ``fold``, heard with the banking flow's open model and with
    the benchmark flow's (trained on the other folds, with digit slots)."""
    rows = bench.banking_rows(data_dir / "banking77" / "train.csv")
    held = bench.cv_folds(rows)[fold]
    picked = random.Random(SEED + fold).sample(sorted(held), min(count, len(held)))
    train = [r for i, r in enumerate(rows) if i not in set(held)]
    flow77 = load_flow(
        bench.fold_flow_file(banking77_with_digit_slots(work / "flow77"), train, work / "fold")
    )
    resources77 = Compiler(work / "asr-resources").compile(flow77)
    model77 = model_for_flow(flow77, cache_dir=nlu_cache)
    if model77 is None:
        raise NluError("the benchmark flow trained no intent model")
    log(f"fold {fold}: resources {resources77.version}")
    recordings = bench.speak(
        renderer, [(rows[i].text, rows[i].category) for i in picked], voices, SEED + fold, snr_db
    )
    as77 = recognize_all(recordings, engine, resources77.model(None))
    report = understand(as77, flow77, STATE, model77)
    as_banking = recognize_all(recordings, engine, banking.model(None))
    banking_side = embedded.score_ordinary(as_banking, banking_model)
    log(f"ordinary: banking77 flow spoken {report.spoken_accuracy:.1%} WER {report.wer:.1%}; "
        f"banking flow WER {banking_side['wer']:.1%} agree {banking_side['agree']:.1%}")  # fmt: skip
    return {
        "banking77_flow": {k: report.as_dict()[k] for k in ("utterances", "spoken_accuracy", "text_accuracy",
                                                             "wer", "wrong_actions", "voices")},
        "banking_flow": banking_side,
    }  # fmt: skip


def markdown(data: dict[str, Any], command: str, before: dict[str, Any] | None = None) -> str:
    """The page for one run; ``before``, another run's figures (an earlier compiler), as rows
    beside it."""

    def pct(x: float) -> str:
        return f"{x:.1%}"

    out = [
        "# Digits inside the opening request",
        "",
        f"Regenerate with `{command}`. {data['date']}, {data['machine']}, commit {data['commit']}, "
        f"compiler {data['compiler']}; whole run {data['seconds']:.0f} s.",
        "",
        "Banking flow (flows/banking.yaml), open question, PocketSphinx (accurate) with the flow's open "
        "model; each sentence said by two of "
        + ", ".join(data["config"]["voices"])
        + " through the simulated line "
        f"({data['config']['snr_db']:g} dB SNR).",
        "",
        "| half | recordings | digits exact | intent | both | WER |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    runs = [("", data), *([(" (before)", before)] if before else [])]
    if before:
        out[-2:-2] = [f"Rows marked before: commit {before['commit']}, compiler {before['compiler']}.", ""]
    for half in data["digits"]:
        for label, run_ in runs:
            if (h := run_["digits"].get(half)) is not None:
                out.append(
                    f"| {half}{label} | {h['recordings']} | {pct(h['digits'])} | {pct(h['intent'])} | "
                    f"{pct(h['both'])} | {pct(h['wer'])} |"
                )
    if data["ordinary"]:
        o = data["ordinary"]
        out += [
            "",
            f"Ordinary banking77 requests (fold {data['config']['fold']}, "
            f"{o['banking77_flow']['utterances']} held out, "
            + ", ".join(data["config"]["ordinary_voices"])
            + "):",
            "",
            "| heard with | WER | spoken accuracy (77 intents) | banking flow's intent as typed |",
            "|---|---:|---:|---:|",
        ]
        for label, run_ in runs:
            if (other := run_["ordinary"]) is not None:
                b77, b = other["banking77_flow"], other["banking_flow"]
                out += [
                    f"| banking77 flow + two digit slots{label} | {pct(b77['wer'])} | "
                    f"{pct(b77['spoken_accuracy'])} | |",
                    f"| banking flow{label} | {pct(b['wer'])} | | {pct(b['agree'])} |",
                ]
    out += ["", "<details><summary>Misheard</summary>", "", "```json"]
    out.append(json.dumps({h: s["mistakes"] for h, s in data["digits"].items()}, indent=1))
    out += ["```", "</details>", ""]
    return "\n".join(out)
