"""`ivr-server asr transcribe|eval`: a recording, or a manifest of them, through a recognizer."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ivr_server.config import Settings
from ivr_server.errors import MediaError

if TYPE_CHECKING:
    from ivr_server.speech.asr.engines import Choice


def add_commands(commands: Any, EPILOG: str) -> None:
    asr = commands.add_parser("asr", help="speech recognition", epilog=EPILOG)
    asr_commands = asr.add_subparsers(dest="asr_command", metavar="ACTION", required=True)
    transcribe = asr_commands.add_parser(
        "transcribe",
        help="transcribe a WAV file (16-bit mono PCM, 8-48 kHz)",
        description="Stream a WAV file through a recognizer in 20 ms chunks, as a call would.",
    )
    transcribe.add_argument("wav", type=Path, metavar="FILE.wav")
    transcribe.add_argument(
        "--engine", choices=["auto", "vosk", "pocketsphinx"], help="default: IVR_ASR_ENGINE"
    )
    transcribe.add_argument("--grammar", help='"digits", "yesno", or comma-separated phrases')
    transcribe.add_argument(
        "--search", choices=["auto", "accurate", "fast"], help="PocketSphinx search (default: IVR_ASR_SEARCH)"
    )
    transcribe.add_argument("--json", action="store_true", help="one JSON object with words and timings")
    transcribe.set_defaults(handler=cmd_asr_transcribe)
    evaluation = asr_commands.add_parser(
        "eval",
        help="word error rate, accuracy, speed over a manifest of recordings",
        description="Evaluate an engine on a CSV manifest with columns path,text (paths relative to "
        "the manifest): word error rate, utterance accuracy, real-time factor, p50/p95 decode latency.",
    )
    evaluation.add_argument("--manifest", type=Path, required=True, metavar="FILE.csv")
    evaluation.add_argument(
        "--engine", choices=["auto", "vosk", "pocketsphinx"], help="default: IVR_ASR_ENGINE"
    )
    evaluation.add_argument("--grammar", help='"digits", "yesno", or comma-separated phrases')
    evaluation.add_argument(
        "--search", choices=["auto", "accurate", "fast"], help="PocketSphinx search (default: IVR_ASR_SEARCH)"
    )
    evaluation.add_argument("--json", action="store_true", help="one JSON object")
    evaluation.set_defaults(handler=cmd_asr_eval)


def _asr_engine(args: argparse.Namespace, settings: Settings) -> Choice:
    """The engine the command line (else the settings) asks for."""
    from ivr_server.speech.asr.engines import load_engine

    return load_engine(
        args.engine or settings.asr_engine,
        settings.asr_vosk_model,
        settings.asr_vosk_language,
        search=args.search or settings.asr_search,
        accurate_streams=settings.asr_accurate_streams,
        telephone_model=settings.asr_telephone_model,
    )


def cmd_asr_transcribe(args: argparse.Namespace, settings: Settings) -> int:
    from ivr_server.media.audio import audio_warnings, read_wav
    from ivr_server.speech.asr.base import feed_all, grammar, require

    rate, pcm = read_wav(args.wav)
    if len(pcm) == 0:
        raise MediaError(f"{args.wav}: the file holds no audio")
    for warning in audio_warnings(pcm, rate):
        print(f"ivr-server: warning: {args.wav}: {warning}", file=sys.stderr)
    choice = _asr_engine(args, settings)
    require(choice.engine, rate)
    recognizer = choice.engine.recognizer(rate, grammar(args.grammar))
    feed_all(recognizer, pcm, rate)
    result = recognizer.finish()
    if args.json:
        print(
            json.dumps(
                {
                    "text": result.text,
                    "engine": result.engine,
                    "model": result.model,
                    "confidence": result.confidence,
                    "audio_s": round(len(pcm) / rate, 3),
                    "words": [vars(w) for w in result.words],
                },
                indent=1,
            )
        )
    elif result.text:
        print(result.text)
    else:
        print("ivr-server: no speech recognized", file=sys.stderr)
    return 0


def cmd_asr_eval(args: argparse.Namespace, settings: Settings) -> int:
    from ivr_server.speech.asr.base import grammar
    from ivr_server.speech.asr.evaluate import evaluate

    choice = _asr_engine(args, settings)
    report = evaluate(choice.engine, args.manifest, grammar(args.grammar), args.grammar)
    if args.json:
        print(json.dumps(report.as_dict()))
        return 0
    print(f"engine {report.engine} ({report.model}), grammar {report.grammar or 'none'}")
    print(f"utterances {report.utterances}, words {report.words}, audio {report.audio_s:.1f} s")
    accuracy = report.utterance_accuracy * 100
    print(f"word error rate {report.wer * 100:.2f} %   utterance accuracy {accuracy:.2f} %")
    print(
        f"real-time factor {report.rtf:.3f}   decode latency p50 {report.latency_p50_ms:.0f} ms, "
        f"p95 {report.latency_p95_ms:.0f} ms"
    )
    for mistake in report.mistakes[:10]:
        print(f"  {mistake['path']}: expected {mistake['expected']!r}, heard {mistake['heard']!r}")
    return 0
