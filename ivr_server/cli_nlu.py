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
