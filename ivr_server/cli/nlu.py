"""`ivr-server nlu ...`: the intent model on labelled data sets (CSV text,category)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from ivr_server.config import Settings


def add_commands(commands: Any, epilog: str) -> None:
    nlu = commands.add_parser("nlu", help="the intent model", epilog=epilog)
    nlu_commands = nlu.add_subparsers(dest="nlu_command", metavar="ACTION", required=True)
    evaluation = nlu_commands.add_parser(
        "eval",
        help="train on one CSV, score on another",
        description="Train the intent model on --train (columns text,category; category 'oos' "
        "is out of scope) and score it on --test: accuracy, macro-F1, in-scope accuracy, "
        "out-of-scope recall, calibration error (ECE), p50/p95 milliseconds to classify one "
        "utterance. Exit 6 when a file is unusable (the message names the file and row).",
        epilog=epilog,
    )
    evaluation.add_argument("--train", type=Path, required=True, metavar="FILE.csv")
    evaluation.add_argument("--test", type=Path, required=True, metavar="FILE.csv")
    evaluation.add_argument("--shots", type=_positive, metavar="N", help="train on N examples per category")
    evaluation.add_argument("--seed", type=int, default=0, help="draws the --shots examples (default 0)")
    evaluation.add_argument("--json", action="store_true", help="one JSON object")
    evaluation.set_defaults(handler=cmd_nlu_eval)
    spoken = nlu_commands.add_parser(
        "eval-spoken",
        help="the path a call takes: recordings through the recognizer, then the intent model",
        description="Each recording of --manifest (columns path,text,category; paths relative to "
        "the manifest; WAV at 8 or 16 kHz) goes through the recognizer with the resources the flow "
        "compiles for --state, then through the flow's intent model and the state's thresholds. "
        "Prints utterances, text accuracy (the same model on the manifest's text), spoken "
        "accuracy, word error rate and the recognizer's real-time factor. Exit 6 when the flow, the "
        "state or a recording is unusable.",
        epilog=epilog,
    )
    spoken.add_argument("--flow", type=Path, required=True, metavar="FILE.yaml")
    spoken.add_argument("--state", required=True, help="the state whose question the recordings answer")
    spoken.add_argument("--manifest", type=Path, required=True, metavar="FILE.csv")
    spoken.add_argument("--engine", choices=("auto", "vosk", "pocketsphinx"), help="default: IVR_ASR_ENGINE")
    spoken.add_argument(
        "--nbest", action="store_true",
        help="average the intent model over the recognizer's 5 best hypotheses (calls understand the "
        "best one; no better so far: see README, Flow-adapted recognition)",
    )  # fmt: skip
    spoken.add_argument("--json", action="store_true", help="one JSON object")
    spoken.set_defaults(handler=cmd_nlu_eval_spoken)


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number of 1 or more, not {text!r}")
    return int(text)


def cmd_nlu_eval(args: argparse.Namespace, _settings: Settings) -> int:
    from ivr_server.dialog.nlu.classifier import NluSettings
    from ivr_server.dialog.nlu.data import read_csv, take_shots
    from ivr_server.dialog.nlu.evaluate import evaluate

    train_rows, test_rows = read_csv(args.train), read_csv(args.test)
    if args.shots is not None:
        train_rows = take_shots(train_rows, args.shots, args.seed)
    figures = evaluate(train_rows, test_rows, NluSettings(seed=args.seed))
    figures = {
        "train": str(args.train),
        "test": str(args.test),
        "shots": args.shots,
        "seed": args.seed,
        **figures,
    }
    if args.json:
        print(json.dumps(figures))
        return 0
    width = max(len(k) for k in figures)
    for key, value in figures.items():
        shown = f"{value:.2%}" if key.endswith(("accuracy", "recall")) and value is not None else value
        if key == "macro_f1":
            shown = f"{value:.4f}"
        print(f"{key:<{width}}  {shown}")
    return 0


def cmd_nlu_eval_spoken(args: argparse.Namespace, settings: Settings) -> int:
    import sys

    from ivr_server.dialog.call_port import listening_for
    from ivr_server.dialog.nlu.flow_model import model_for_flow
    from ivr_server.dialog.nlu.heard_cache import heard_phrases
    from ivr_server.dialog.spec.loader import load_flow
    from ivr_server.errors import FlowError, NluError
    from ivr_server.evaluation.spoken import evaluate_spoken, kind_for_state, read_manifest
    from ivr_server.speech.adapt.compile import Compiler
    from ivr_server.speech.asr.engines import load_engine

    try:
        flow = load_flow(args.flow)
    except FlowError as err:
        print(f"ivr-server: {err}", file=sys.stderr)
        return 6
    grammar = kind_for_state(flow, args.state)
    recordings = read_manifest(args.manifest)
    resources = Compiler(settings.asr_resources_path).compile(flow) if settings.asr_adapt else None
    cache = settings.data_dir / "nlu-cache"
    # As a call's model: with the flow's phrases as heard when it asks for them (nlu.heard_per_intent)
    heard = heard_phrases(flow, resources, cache) if flow.nlu.heard_per_intent and resources else []
    model = model_for_flow(flow, cache_dir=cache, extra=heard)
    if model is None:
        raise NluError(f"{args.flow}: fewer than two intents have examples, so it has no intent model")
    phrases, language_model = listening_for(resources, grammar)
    engine = load_engine(
        args.engine or settings.asr_engine,
        settings.asr_vosk_model,
        settings.asr_vosk_language,
        search=settings.asr_search,
        accurate_streams=settings.asr_accurate_streams,
        telephone_model=settings.asr_telephone_model,
    ).engine
    report = evaluate_spoken(
        recordings, engine, flow, args.state, model, language_model, phrases, nbest=args.nbest
    )
    figures = report.as_dict()
    if args.json:
        print(json.dumps(figures))
        return 0
    print(f"flow {flow.name} ({flow.version}), state {args.state}, recognizer {report.model}")
    print(f"utterances       {report.utterances}")
    print(f"text accuracy    {report.text_accuracy:.2%}")
    print(f"spoken accuracy  {report.spoken_accuracy:.2%}")
    print(f"word error rate  {report.wer:.2%}")
    print(f"asr real-time    {report.asr_rtf:.3f}")
    shares = ", ".join(f"{k} {v:.0%}" for k, v in report.actions.items())
    print(f"decisions        {shares}; acted on the wrong intent {report.wrong_actions:.0%}")
    for mistake in report.mistakes[:10]:
        print(f"  said {mistake['text']!r}, heard {mistake['heard']!r} -> {mistake['spoken_intent']}")
    return 0
