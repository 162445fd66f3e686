"""Speech commands on bad and odd input, and `models fetch` against a local HTTP server."""

from __future__ import annotations

import hashlib
import http.server
import json
import shutil
import subprocess
import sys
import threading
import time
import wave
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from ivr_server.media.audio import read_wav, write_wav
from tests.integration.test_asr import korean_model
from tests.support.audio import piper


def cli(*args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ivr_server", *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=timeout,
    )


def transcribe(path: Path, *extra: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return cli("asr", "transcribe", str(path), "--engine", "pocketsphinx", *extra, timeout=timeout)


def test_silence_noise_clipping_and_a_monologue_each_get_a_clear_outcome(tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    silence = tmp_path / "silence.wav"
    write_wav(silence, 8000, np.zeros(8000 * 3, np.int16))
    out = transcribe(silence)
    assert out.returncode == 0 and out.stdout == ""
    assert "the audio is silent" in out.stderr and "no speech recognized" in out.stderr

    noise = tmp_path / "noise.wav"
    write_wav(noise, 8000, (rng.standard_normal(8000 * 3) * 3000).astype(np.int16))
    out = transcribe(noise, "--grammar", "digits", "--json")
    assert out.returncode == 0, out.stderr
    heard = json.loads(out.stdout)["text"].split()
    assert len(heard) <= 3, f"white noise became a string of digits: {heard}"

    clipped = tmp_path / "clipped.wav"
    loud = np.clip(piper("one two three", 8000).astype(np.int32) * 8, -32768, 32767).astype(np.int16)
    write_wav(clipped, 8000, loud)
    out = transcribe(clipped, "--grammar", "digits")
    assert out.returncode == 0 and "the audio is clipped" in out.stderr

    monologue = tmp_path / "monologue.wav"
    sentence = piper("I would like to check my account balance please. ", 8000)
    long_pcm = np.tile(
        np.concatenate([sentence, np.zeros(4000, np.int16)]), 60 * 8000 // (len(sentence) + 4000) + 1
    )
    write_wav(monologue, 8000, long_pcm)
    started = time.monotonic()
    out = transcribe(monologue, timeout=120)
    assert out.returncode == 0 and "a call turn is cut" in out.stderr
    assert len(out.stdout.split()) > 50 and time.monotonic() - started < 120


def test_wrong_rates_and_formats_are_refused_with_the_reason(tmp_path: Path) -> None:
    for rate in (4000, 96000):
        path = tmp_path / f"r{rate}.wav"
        write_wav(path, rate, np.zeros(rate // 2, np.int16))
        out = transcribe(path)
        assert out.returncode == 6 and f"does not take {rate} Hz" in out.stderr
    not_wav = tmp_path / "notes.wav"
    not_wav.write_text("this is not audio")
    out = transcribe(not_wav)
    assert out.returncode == 6 and "not a PCM WAV file" in out.stderr
    eight_bit = tmp_path / "u8.wav"
    with wave.open(str(eight_bit), "wb") as w:
        w.setnchannels(1), w.setsampwidth(1), w.setframerate(8000)
        w.writeframes(bytes(800))
    out = transcribe(eight_bit)
    assert out.returncode == 6 and "need 16-bit mono PCM" in out.stderr


def test_tts_say_writes_speech_at_the_rate_asked(tmp_path: Path) -> None:
    out_path = tmp_path / "say.wav"
    out = cli(
        "tts", "say", "Your balance is twelve dollars.", "-o", str(out_path), "--rate", "8000", "--json"
    )
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    rate, pcm = read_wav(out_path)
    assert rate == 8000 and report["engine"] == "piper" and abs(report["audio_s"] - len(pcm) / 8000) < 0.01
    assert 1.0 < report["audio_s"] < 4.0 and np.abs(pcm).max() > 3000
    espeak = cli("tts", "say", "Goodbye.", "-o", str(tmp_path / "e.wav"), "--engine", "espeak", "--json")
    assert espeak.returncode == 0 and json.loads(espeak.stdout)["engine"] == "espeak"
    nothing = cli("tts", "say", "?!", "-o", str(tmp_path / "n.wav"))
    assert nothing.returncode == 6 and "nothing to say" in nothing.stderr
    assert cli("tts", "say", "hi", "-o", str(tmp_path / "r.wav"), "--rate", "4000").returncode == 6


def test_prompts_render_only_what_changed(tmp_path: Path) -> None:
    (tmp_path / "prompts.toml").write_text('[prompts]\nhello = "Hello there."\nbye = "Goodbye."\n')
    first = cli("prompts", "render", "--dir", str(tmp_path), "--engine", "espeak")
    assert first.returncode == 0 and "2 rendered" in first.stdout, first.stderr
    rate, pcm = read_wav(tmp_path / "hello.wav")
    assert rate == 16000 and np.abs(pcm).max() > 20000  # normalised to -3 dBFS
    again = cli("prompts", "render", "--dir", str(tmp_path), "--engine", "espeak")
    assert "0 rendered" in again.stdout
    (tmp_path / "prompts.toml").write_text('[prompts]\nhello = "Hello again."\nbye = "Goodbye."\n')
    assert "1 rendered" in cli("prompts", "render", "--dir", str(tmp_path), "--engine", "espeak").stdout
    (tmp_path / "prompts.toml").write_text("[prompts\n")
    broken = cli("prompts", "render", "--dir", str(tmp_path))
    assert broken.returncode == 6 and "not valid TOML" in broken.stderr


@pytest.fixture
def model_server(tmp_path: Path) -> Iterator[tuple[str, str]]:
    """A local HTTP server offering the Korean Vosk model as a zip, like the model host does."""
    archive = tmp_path / "serve" / "vosk-model-small-en-us-0.15.zip"
    archive.parent.mkdir()
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_STORED) as zf:
        for f in korean_model().rglob("*"):
            if f.is_file():
                zf.write(f, "vosk-model-small-en-us-0.15/" + str(f.relative_to(korean_model())))
    evil = archive.with_name("evil.zip")
    with zipfile.ZipFile(evil, "w") as zf:
        zf.writestr("../escaped.txt", "outside")
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args: object, **kw: object) -> None:
            super().__init__(*args, directory=str(archive.parent), **kw)  # type: ignore[arg-type]

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", digest
    finally:
        server.shutdown()
        server.server_close()


def test_models_fetch_checks_the_download_before_installing(
    model_server: tuple[str, str], tmp_path: Path
) -> None:
    base, digest = model_server
    models = tmp_path / "models"
    url = f"{base}/vosk-model-small-en-us-0.15.zip"
    wrong = cli("models", "fetch", "vosk-small-en-us", "--dir", str(models), "--url", url)
    assert wrong.returncode == 6 and "does not match the expected" in wrong.stderr
    assert not (models / "vosk-model-small-en-us-0.15").exists() and not list(models.glob(".fetch-*"))

    good = cli("models", "fetch", "vosk-small-en-us", "--dir", str(models), "--url", url, "--sha256", digest)
    assert good.returncode == 0, good.stderr
    installed = models / "vosk-model-small-en-us-0.15"
    assert f"IVR_ASR_VOSK_MODEL={installed}" in good.stdout and (installed / "am").is_dir()
    again = cli("models", "fetch", "vosk-small-en-us", "--dir", str(models), "--url", url, "--sha256", digest)
    assert again.returncode == 0  # already there and loadable: kept

    evil = hashlib.sha256((tmp_path / "serve" / "evil.zip").read_bytes()).hexdigest()
    other = tmp_path / "other"
    bad = cli(
        "models",
        "fetch",
        "vosk-small-en-us",
        "--dir",
        str(other),
        "--url",
        f"{base}/evil.zip",
        "--sha256",
        evil,
    )
    assert bad.returncode == 6 and "unsafe member" in bad.stderr and not (tmp_path / "escaped.txt").exists()
    missing = cli("models", "fetch", "vosk-small-en-us", "--dir", str(other), "--url", f"{base}/nope.zip")
    assert missing.returncode == 6 and "HTTP 404" in missing.stderr
    unknown = cli("models", "fetch", "whisper-huge")
    assert unknown.returncode == 6 and "unknown model 'whisper-huge'" in unknown.stderr
    assert "vosk-small-en-us" in cli("models", "list").stdout
    shutil.rmtree(models)
