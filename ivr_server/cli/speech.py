"""``ivr-server tts|prompts|models ...``: speech synthesis and speech models from the command line."""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from ivr_server.config import Settings
from ivr_server.errors import MediaError, SpeechError

TTS_ENGINES = ["auto", "piper", "espeak", "coqui"]
PROMPT_RATE = 16000  # prompts are kept wideband; calls convert once at start-up
STAMPS = ".rendered.json"


def add_commands(commands: Any, epilog: str) -> None:
    tts = commands.add_parser("tts", help="speech synthesis", epilog=epilog)
    tts_commands = tts.add_subparsers(dest="tts_command", metavar="ACTION", required=True)
    say = tts_commands.add_parser(
        "say",
        help="speak TEXT into a WAV file",
        description="Synthesize TEXT sentence by sentence, as a call hears it, into a 16-bit mono WAV.",
    )
    say.add_argument("text", metavar="TEXT")
    say.add_argument("-o", "--output", type=Path, required=True, metavar="FILE.wav")
    say.add_argument("--engine", choices=TTS_ENGINES, help="default: IVR_TTS_ENGINE")
    say.add_argument("--rate", type=int, default=8000, help="sample rate in Hz (default 8000, a call's)")
    say.add_argument("--json", action="store_true", help="one JSON object with timings")
    say.set_defaults(handler=cmd_tts_say)

    prompts = commands.add_parser("prompts", help="the prompts in prompts_dir", epilog=epilog)
    prompt_commands = prompts.add_subparsers(dest="prompts_command", metavar="ACTION", required=True)
    render = prompt_commands.add_parser(
        "render",
        help="speak prompts.toml into <id>.wav files",
        description="Render every prompt in prompts.toml whose text, engine or voice changed since its "
        "WAV was rendered (prompts/.rendered.json records that) into a 16 kHz WAV. Replace a WAV "
        "with a studio recording and remove its line from .rendered.json to keep it.",
    )
    render.add_argument("--engine", choices=TTS_ENGINES, help="default: IVR_TTS_ENGINE")
    render.add_argument("--force", action="store_true", help="render every prompt again")
    render.add_argument("--dir", type=Path, help="default: IVR_PROMPTS_DIR")
    render.set_defaults(handler=cmd_prompts_render)

    models = commands.add_parser("models", help="speech models to download", epilog=epilog)
    model_commands = models.add_subparsers(dest="models_command", metavar="ACTION", required=True)
    model_commands.add_parser("list", help="models `fetch` knows").set_defaults(handler=cmd_models_list)
    fetch = model_commands.add_parser(
        "fetch",
        help="download, check (SHA-256, loads) and unpack a model",
        description="Download a model over the internet, check its SHA-256 and that Vosk loads it, and "
        "unpack it into DIR (default: models/ in data_dir). Prints the setting that uses it.",
    )
    fetch.add_argument("name", metavar="NAME", help="e.g. vosk-small-en-us (see `models list`)")
    fetch.add_argument("--dir", type=Path, help="where models go (default: $IVR_DATA_DIR/models)")
    fetch.add_argument("--url", help="a mirror of the same archive (the SHA-256 is still checked)")
    fetch.add_argument("--sha256", help="expected SHA-256 when --url is a different archive")
    fetch.set_defaults(handler=cmd_models_fetch)


def _settings_with_engine(settings: Settings, engine: str | None) -> Settings:
    return settings.model_copy(update={"tts_engine": engine}) if engine else settings


def cmd_tts_say(args: argparse.Namespace, settings: Settings) -> int:
    from ivr_server.media.audio import write_wav
    from ivr_server.speech.voice_services import load_synthesizer

    if not 8000 <= args.rate <= 48000:
        raise SpeechError(f"--rate {args.rate}: choose 8000..48000 Hz")
    synth = load_synthesizer(_settings_with_engine(settings, args.engine))

    async def speak() -> dict[str, Any]:
        started = time.perf_counter()
        first: float | None = None
        chunks = []
        async for chunk in synth.stream(args.text, args.rate):
            first = first if first is not None else time.perf_counter() - started
            chunks.append(chunk)
        elapsed = time.perf_counter() - started
        pcm = np.concatenate([c.pcm for c in chunks])
        write_wav(args.output, args.rate, pcm)
        audio_s = len(pcm) / args.rate
        return {
            "output": str(args.output),
            "engine": "+".join(sorted({c.engine for c in chunks})),
            "voice": synth.engine.voice,
            "sentences": len(chunks),
            "cached": all(c.cached for c in chunks),
            "audio_s": round(audio_s, 3),
            "first_audio_ms": round((first or 0.0) * 1000, 1),
            "rtf": round(elapsed / audio_s, 4) if audio_s else None,
        }

    try:
        out = asyncio.run(speak())
    finally:
        synth.close()
    if args.json:
        print(json.dumps(out, indent=1))
    else:
        print(
            f"{out['output']}: {out['audio_s']} s of speech, {out['sentences']} sentence(s) "
            f"by {out['engine']}"
            f"{' (cached)' if out['cached'] else ''}; first audio after {out['first_audio_ms']} ms, "
            f"real-time factor {out['rtf']}"
        )
    return 0


def cmd_prompts_render(args: argparse.Namespace, settings: Settings) -> int:
    from ivr_server.media.audio import write_wav
    from ivr_server.media.prompts import read_texts
    from ivr_server.speech.voice_services import load_synthesizer

    directory: Path = args.dir or settings.prompts_dir
    texts = read_texts(directory)
    synth = load_synthesizer(_settings_with_engine(settings, args.engine))
    stamp_file = directory / STAMPS
    stamps: dict[str, str] = json.loads(stamp_file.read_text()) if stamp_file.exists() else {}
    voice = f"{synth.engine.name}/{synth.engine.version}"

    async def render_all() -> int:
        rendered = 0
        for pid, text in texts.items():
            stamp = hashlib.sha256(f"{voice}\n{text}".encode()).hexdigest()[:16]
            wav = directory / f"{pid}.wav"
            if not args.force and wav.exists() and stamps.get(pid) == stamp:
                continue
            pcm, _ = await synth.render(str(text), PROMPT_RATE)
            write_wav(wav, PROMPT_RATE, _normalized(pcm))
            stamps[pid] = stamp
            rendered += 1
        return rendered

    try:
        rendered = asyncio.run(render_all())
    finally:
        synth.close()
    stamp_file.write_text(json.dumps(stamps, indent=1, sort_keys=True) + "\n")
    print(f"prompts: {rendered} rendered with {voice}, {len(texts) - rendered} up to date in {directory}")
    return 0


def _normalized(pcm: np.ndarray[Any, np.dtype[np.int16]]) -> np.ndarray[Any, np.dtype[np.int16]]:
    """Peak at -3 dBFS, so every prompt plays at the same level whatever the engine."""
    peak = int(np.abs(pcm.astype(np.int32)).max()) if len(pcm) else 0
    if peak == 0:
        return pcm
    scaled = pcm.astype(np.float64) * (0.708 * 32767 / peak)
    return np.clip(np.round(scaled), -32768, 32767).astype(np.int16)


def cmd_models_list(_args: argparse.Namespace, _settings: Settings) -> int:
    from ivr_server.speech.asr.models import CATALOG

    for source in CATALOG.values():
        print(f"{source.name:20} {source.about}\n{'':20} {source.url}")
    return 0


def cmd_models_fetch(args: argparse.Namespace, settings: Settings) -> int:
    from dataclasses import replace

    from ivr_server.speech.asr.models import CATALOG, fetch, remove_partial

    if args.name not in CATALOG:
        raise SpeechModelUnknown(f"unknown model {args.name!r}; known: {', '.join(CATALOG)}")
    source = CATALOG[args.name]
    if args.url:
        source = replace(source, url=args.url)
    if args.sha256:
        source = replace(source, sha256=args.sha256.lower())
    models_dir: Path = args.dir or settings.data_dir / "models"
    remove_partial(models_dir)
    model = fetch(source, models_dir)
    print(f"{model}\nuse it with: IVR_ASR_VOSK_MODEL={model}  (or [asr] vosk_model in the config file)")
    return 0


class SpeechModelUnknown(MediaError):
    code = "model_unknown"
