"""Adapting PocketSphinx's wideband model to the telephone channel, offline (scripts/adapt-acoustic).

The model was trained on 16 kHz microphone speech; a call brings 300-3400 Hz, 8 kHz, mu-law
audio, band-filled above 4 kHz by the front end (model_input.py). Everyday sentences (CLINC150's
training requests, none of banking77's) are spoken by a pool of voices that no benchmark here
tests with (``ADAPTATION_VOICES``: Flite's four, three of them models of real speakers), sent
through the simulated telephone line and through that same front end. SphinxTrain's ``bw``
(Debian's ``sphinxtrain``: the maintained trainer for this model) aligns them with their words
and accumulates statistics; MLLR with broad phone classes, then MAP, move the means (mllr.py).
The result is one ``means`` file and a manifest saying how it was made, bundled with the server.

Tools: ``sphinx_fe`` (``sphinxbase-utils``), ``bw`` (``sphinxtrain``), ``pocketsphinx_mdef_convert``
(``pocketsphinx``: SphinxTrain reads the model definition only as text).
"""

from __future__ import annotations

import csv
import hashlib
import json
import random
import re
import shutil
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from ivr_server.errors import ResourceError
from ivr_server.evaluation.channel import Line, telephone
from ivr_server.evaluation.voices import Renderer, Voice
from ivr_server.speech.acoustic import mllr
from ivr_server.speech.acoustic.sphinx_files import (
    read_counts,
    read_gaussians,
    read_sendump,
    write_gaussians,
    write_mixture_weights,
)
from ivr_server.speech.adapt.words import spoken
from ivr_server.speech.asr.cmn import TELEPHONE_CMN
from ivr_server.speech.asr.model_input import MODEL_RATE, ModelInput

Log = Callable[[str], None]
# Speakers no benchmark uses: Flite's CMU ARCTIC voices (slt, rms, awb) and its diphone voice,
# each at two speaking rates. Neither Piper nor espeak-ng is here: the spoken benchmark's voices
# are those, and an adaptation that had heard them would flatter it.
ADAPTATION_VOICES = (
    "flite:slt:1", "flite:rms:1.1", "flite:awb:0.95", "flite:kal16:1",
    "flite:slt:1.15", "flite:rms:0.9", "flite:awb:1.15", "flite:kal16:0.9",
)  # fmt: skip
TOOLS = {
    "sphinx_fe": ("sphinx_fe", "sphinxbase-utils"),
    "bw": ("/usr/lib/sphinxtrain/bw", "sphinxtrain"),
    "mdef_convert": ("pocketsphinx_mdef_convert", "pocketsphinx"),
}
TOOL_TIMEOUT_S = 3600.0
_LIKELIHOOD = re.compile(r"^overall>\s+\S+\s+(\d+)\s+\(-?\d+\)\s+(\S+)", re.M)


@dataclass(frozen=True)
class AdaptationPlan:
    voices: tuple[str, ...] = ADAPTATION_VOICES
    """Who speaks the adaptation sentences (evaluation/voices.py names), in turn."""
    sentences: int = 1500
    """How many sentences (about 80 minutes of speech at the default)."""
    seed: int = 5
    """Which sentences, and the line noise: the same plan builds the same model."""
    snr_db: float = 30.0
    """Line noise below the speech, as the spoken benchmark's line."""
    classes: str = "broad"
    """MLLR regression classes: broad (five phone groups) or global (one transform)."""
    map_tau: float = 300.0
    """MAP prior weight in frames (larger: means move less)."""


@dataclass(frozen=True)
class Pass:
    frames: int
    log_likelihood: float  # per frame, as bw reports it on the adaptation data


def tool(name: str) -> str:
    command, package = TOOLS[name]
    found = shutil.which(command)
    if found is None:
        raise ResourceError(
            f"{command} is not installed: apt-get install {package} (scripts/bootstrap does it)"
        )
    return found


def pick_sentences(corpus_csv: Path, words: set[str], count: int, seed: int) -> list[str]:
    """``count`` sentences of the CSV's ``text`` column in spoken form, 3 to 14 words, every
    word in the dictionary (an adaptation transcript must be pronounceable exactly)."""
    try:
        with corpus_csv.open(newline="", encoding="utf-8") as fh:
            texts = [row["text"] for row in csv.DictReader(fh)]
    except (OSError, KeyError, csv.Error) as err:
        raise ResourceError(f"{corpus_csv}: cannot read a text column: {err}") from err
    random.Random(seed).shuffle(texts)
    out: list[str] = []
    for text in texts:
        sentence = spoken(text)
        if 3 <= len(sentence.split()) <= 14 and all(w in words for w in sentence.split()):
            out.append(sentence)
            if len(out) == count:
                break
    if not out:
        raise ResourceError(f"{corpus_csv}: no sentence whose words the dictionary has")
    return out


def render(plan: AdaptationPlan, sentences: Sequence[str], work: Path, log: Log) -> list[str]:
    """Each sentence spoken, sent down the line and through the recognizer's front end, written
    as 16 kHz raw audio; returns the utterance ids and writes the control and transcript files."""
    renderer = Renderer()
    (work / "raw").mkdir(parents=True, exist_ok=True)
    ids, transcripts = [], []
    for i, sentence in enumerate(sentences):
        pcm, rate = renderer.render(Voice.parse(plan.voices[i % len(plan.voices)]), sentence)
        line = telephone(pcm, rate, Line(snr_db=plan.snr_db, seed=plan.seed * 100_003 + i))
        uid = f"u{i:05d}"
        ModelInput(8000).whole(line).astype("<i2").tofile(work / "raw" / f"{uid}.raw")
        ids.append(uid)
        transcripts.append(f"<s> {sentence} </s> ({uid})")
        if (i + 1) % 250 == 0:
            log(f"rendered {i + 1}/{len(sentences)}")
    (work / "fileids").write_text("\n".join(ids) + "\n", encoding="utf-8")
    (work / "transcription").write_text("\n".join(transcripts) + "\n", encoding="utf-8")
    return ids


def feat_params(hmm: Path) -> dict[str, str]:
    params = {}
    for line in (hmm / "feat.params").read_text(encoding="utf-8").splitlines():
        key, _, value = line.strip().partition(" ")
        if key.startswith("-"):
            params[key] = value.strip()
    return params


def features(hmm: Path, work: Path) -> None:
    """Cepstra of every utterance with the model's own front-end settings (``sphinx_fe``)."""
    (work / "mfc").mkdir(exist_ok=True)
    _run(
        [
            tool("sphinx_fe"),
            "-argfile",
            str(hmm / "feat.params"),
            "-samprate",
            str(MODEL_RATE),
            "-c",
            str(work / "fileids"),
            "-di",
            str(work / "raw"),
            "-do",
            str(work / "mfc"),
            "-ei",
            "raw",
            "-eo",
            "mfc",
            "-raw",
            "yes",
            "-remove_silence",
            "no",
            "-dither",
            "no",
        ],  # fmt: skip
        work / "sphinx_fe.log",
    )


def prepare_model(hmm: Path, work: Path) -> None:
    """What bw needs and the pip model lacks: the model definition as text, and mixture
    weights as floats (decoded from the quantized ``sendump``)."""
    _run([tool("mdef_convert"), "-text", str(hmm / "mdef"), str(work / "mdef.txt")], work / "mdef.log")
    write_mixture_weights(work / "mixture_weights", read_sendump(hmm / "sendump"))


def ci_phones(mdef_text: Path) -> list[str]:
    """The context-independent phones in codebook order (the rows with no left/right context)."""
    phones = []
    for line in mdef_text.read_text(encoding="utf-8").splitlines():
        cols = line.split()
        if len(cols) > 6 and not line.startswith("#") and cols[1] == "-" and cols[2] == "-":
            phones.append(cols[0])
    return phones


def accumulate(hmm: Path, dictionary: Path, means: Path, work: Path, out: Path) -> Pass:
    """One Baum-Welch pass of ``bw`` over the adaptation data with ``means``: accumulators in
    ``out``; returns the frames and the average log-likelihood per frame."""
    params = feat_params(hmm)
    out.mkdir(parents=True, exist_ok=True)
    log_file = out / "bw.log"
    _run(
        [
            tool("bw"),
            "-hmmdir",
            str(hmm),
            "-moddeffn",
            str(work / "mdef.txt"),
            "-ts2cbfn",
            f".{params.get('-model', 'ptm')}.",
            "-feat",
            params.get("-feat", "1s_c_d_dd"),
            *(["-svspec", params["-svspec"]] if "-svspec" in params else []),
            "-cmn",
            "live",
            "-cmninit",
            TELEPHONE_CMN,
            "-agc",
            "none",
            "-dictfn",
            str(dictionary),
            "-fdictfn",
            str(hmm / "noisedict"),
            "-ctlfn",
            str(work / "fileids"),
            "-lsnfn",
            str(work / "transcription"),
            "-cepdir",
            str(work / "mfc"),
            "-cepext",
            "mfc",
            "-accumdir",
            str(out),
            "-mixwfn",
            str(work / "mixture_weights"),
            "-meanfn",
            str(means),
            "-varfn",
            str(hmm / "variances"),
            "-tmatfn",
            str(hmm / "transition_matrices"),
            "-timing",
            "no",
        ],  # fmt: skip
        log_file,
    )
    found = _LIKELIHOOD.findall(log_file.read_text(encoding="utf-8", errors="replace"))
    if not found or not (out / "gauden_counts").is_file():
        raise ResourceError(f"bw accumulated nothing (see {log_file})")
    frames, likelihood = found[-1]
    return Pass(int(frames), round(float(likelihood), 4))


def adapt(
    plan: AdaptationPlan, hmm: Path, dictionary: Path, corpus: Path, out: Path, work: Path, log: Log
) -> dict[str, object]:
    """The whole adaptation: ``out/means`` and ``out/manifest.json``; returns the manifest."""
    started = time.perf_counter()
    words = {
        line.split()[0].split("(")[0]
        for line in dictionary.read_text(encoding="utf-8").splitlines()
        if line.strip()
    }
    sentences = pick_sentences(corpus, words, plan.sentences, plan.seed)
    log(f"{len(sentences)} sentences, {len(plan.voices)} voices")
    ids = render(plan, sentences, work, log)
    audio_s = sum((work / "raw" / f"{u}.raw").stat().st_size for u in ids) / 2 / MODEL_RATE
    features(hmm, work)
    prepare_model(hmm, work)
    classes = mllr.phone_classes(ci_phones(work / "mdef.txt"), plan.classes)
    base = read_gaussians(hmm / "means")
    variances = read_gaussians(hmm / "variances")

    before = accumulate(hmm, dictionary, hmm / "means", work, work / "pass1")
    log(f"pass 1 (base model): {before.frames} frames, log-likelihood {before.log_likelihood}/frame")
    transforms = mllr.solve(base, variances, read_counts(work / "pass1" / "gauden_counts"), classes)
    write_gaussians(work / "means.mllr", mllr.apply(base, transforms, classes))
    after_mllr = accumulate(hmm, dictionary, work / "means.mllr", work, work / "pass2")
    log(f"pass 2 (MLLR): log-likelihood {after_mllr.log_likelihood}/frame")
    adapted = mllr.map_means(
        read_gaussians(work / "means.mllr"), read_counts(work / "pass2" / "gauden_counts"), plan.map_tau
    )
    out.mkdir(parents=True, exist_ok=True)
    write_gaussians(out / "means", adapted)
    after_map = accumulate(hmm, dictionary, out / "means", work, work / "pass3")
    log(f"pass 3 (MLLR + MAP): log-likelihood {after_map.log_likelihood}/frame")

    manifest: dict[str, object] = {
        "name": "telephone-en-us",
        "version": sha256(out / "means")[:12],
        "about": "PocketSphinx en-us means adapted to the telephone channel (300-3400 Hz, 8 kHz, mu-law, "
        "band-filled above 4 kHz); everything else is the base model's",
        "base": {"model": str(hmm.name), "means_sha256": sha256(hmm / "means")},
        "plan": asdict(plan),
        "corpus": f"{corpus.parent.name}/{corpus.name}",
        "data": {"utterances": len(ids), "audio_s": round(audio_s, 1), "frames": before.frames},
        "log_likelihood_per_frame": {
            "base": before.log_likelihood,
            "mllr": after_mllr.log_likelihood,
            "mllr_map": after_map.log_likelihood,
        },  # fmt: skip
        "mllr_classes": {
            name: sorted(p for p in ci_phones(work / "mdef.txt") if p in members)
            for name, members in mllr.BROAD_CLASSES.items()
        }
        if plan.classes == "broad"
        else "global",  # fmt: skip
        "built": time.strftime("%Y-%m-%d"),
        "seconds": round(time.perf_counter() - started, 1),
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
    return manifest


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _run(command: list[str], log_file: Path) -> None:
    try:
        with log_file.open("w", encoding="utf-8") as fh:
            result = subprocess.run(
                command, stdout=fh, stderr=subprocess.STDOUT, timeout=TOOL_TIMEOUT_S, check=False
            )
    except (OSError, subprocess.TimeoutExpired) as err:
        raise ResourceError(f"{Path(command[0]).name} failed: {err}") from err
    if result.returncode != 0:
        tail = log_file.read_text(encoding="utf-8", errors="replace").strip().splitlines()[-3:]
        raise ResourceError(
            f"{Path(command[0]).name} exited {result.returncode}: {' | '.join(tail)} (log: {log_file})"
        )
