"""The ``ivr-server`` command line: one module per command group (server: run, db, calls,
config; asr; speech: tts, prompts, models; flows; nlu; audit: audit, retention; privacy:
redact; logs: logs tail), common.py for what they share.

Exit codes: 0 success, 1 unexpected failure, 2 usage error, 3 invalid configuration (including
ARI credentials Asterisk refuses), 4 database unreachable or not migrated, 5 not found,
6 unusable input (an audio file, a grammar, a missing speech engine or model).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from ivr_server import __version__
from ivr_server.cli import asr, audit, console, doctor, flows, logs, nlu, privacy, probe, server, speech
from ivr_server.cli.common import EPILOG, ExitCode
from ivr_server.config import Settings, load_settings
from ivr_server.errors import (
    AriAuthError,
    AsrError,
    ConfigError,
    IvrError,
    MediaError,
    NluError,
    SpeechError,
    StoreError,
)

__all__ = ["ExitCode", "build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ivr-server",
        description="Agentic voice IVR application server for Asterisk (ARI + ExternalMedia RTP).",
        epilog=EPILOG,
    )
    parser.add_argument("--version", action="version", version=f"ivr-server {__version__}")
    parser.add_argument(
        "--config",
        type=Path,
        metavar="FILE",
        help="TOML settings file (default: $IVR_CONFIG_FILE); IVR_* variables override it",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    for group in (server, asr, speech, flows, nlu, audit, privacy, logs, doctor, console, probe):
        group.add_commands(commands, EPILOG)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = load_settings(args.config)
        from ivr_server.dialog.nlu.encoder import use_encoder

        use_encoder(settings.nlu_encoder, settings.nlu_encoder_dir)
        if args.command != "run":  # tools: warnings and errors only, on stderr (stdout is theirs)
            from ivr_server.observability.logging import configure_logging

            configure_logging(settings.log_format, "warning")
        handler: Callable[[argparse.Namespace, Settings], int] = args.handler
        return handler(args, settings)
    except (ConfigError, AriAuthError) as err:
        return _fail(ExitCode.CONFIG, err)
    except StoreError as err:
        return _fail(ExitCode.DATABASE, err)
    except (MediaError, AsrError, SpeechError, NluError) as err:
        return _fail(ExitCode.BAD_INPUT, err)
    except IvrError as err:
        return _fail(ExitCode.FAILURE, err)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `ivr-server calls list | head`: the reader left; not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return int(ExitCode.OK)


def _fail(code: ExitCode, err: BaseException) -> int:
    print(f"ivr-server: error: {err}", file=sys.stderr)
    return int(code)
