"""The ``ivr-server`` command line.

Exit codes: 0 success, 1 unexpected failure, 2 usage error, 3 invalid configuration (including
ARI credentials Asterisk refuses), 4 database unreachable or not migrated, 5 not found,
6 unusable input (an audio file, a grammar, a missing speech engine or model).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Callable, Sequence
from enum import IntEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ivr_server import __version__, cli_audit, cli_flows, cli_nlu, cli_privacy, cli_speech
from ivr_server.config import (
    Settings,
    config_file_path,
    effective_settings,
    load_settings,
    mask_url,
    unknown_env_vars,
)
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

if TYPE_CHECKING:
    from ivr_server.speech.asr.engines import Choice


class ExitCode(IntEnum):
    OK = 0
    FAILURE = 1
    USAGE = 2
    CONFIG = 3
    DATABASE = 4
    NOT_FOUND = 5
    BAD_INPUT = 6


PAYLOAD_WIDTH = 140
EPILOG = """exit codes: 0 ok, 1 failure, 2 usage, 3 invalid configuration, 4 database unreachable
or not migrated, 5 not found, 6 unusable input (audio, grammar, engine). Settings come from
IVR_* environment variables and --config FILE (TOML); see `ivr-server config show`."""


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

    run = commands.add_parser(
        "run",
        help="answer calls: connect to Asterisk and serve the flows",
        description="Connect to Asterisk over ARI and serve calls until "
        "SIGTERM/SIGINT. SIGHUP reads the flow files again (a file that has turned invalid keeps "
        "its last good version). Refuses an un-migrated database.",
        epilog=EPILOG,
    )
    run.set_defaults(handler=cmd_run)

    db = commands.add_parser("db", help="database schema", epilog=EPILOG)
    db_commands = db.add_subparsers(dest="db_command", metavar="ACTION", required=True)
    upgrade = db_commands.add_parser(
        "upgrade",
        help="apply migrations up to the code's schema",
        description="Create or migrate the database's tables (Alembic).",
    )
    upgrade.add_argument("--revision", default="head", help="target revision (default: head)")
    upgrade.set_defaults(handler=cmd_db_upgrade)
    current = db_commands.add_parser("current", help="show the database's and the code's revision")
    current.set_defaults(handler=cmd_db_current)

    calls = commands.add_parser("calls", help="calls in the store", epilog=EPILOG)
    calls_commands = calls.add_subparsers(dest="calls_command", metavar="ACTION", required=True)
    listing = calls_commands.add_parser("list", help="the most recent calls, newest first")
    listing.add_argument("--limit", type=int, default=20, help="how many (default 20)")
    listing.add_argument("--json", action="store_true", help="one JSON array")
    listing.set_defaults(handler=cmd_calls_list)
    show = calls_commands.add_parser("show", help="one call, its turns and all its events")
    show.add_argument("call_id", metavar="ID", help="call id, or a unique prefix of it")
    show.add_argument("--json", action="store_true", help="one JSON object")
    show.set_defaults(handler=cmd_calls_show)

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

    cli_speech.add_commands(commands, EPILOG)
    cli_flows.add_commands(commands, EPILOG)
    cli_nlu.add_commands(commands, EPILOG)
    cli_audit.add_commands(commands, EPILOG)
    cli_privacy.add_commands(commands, EPILOG)

    config = commands.add_parser("config", help="settings", epilog=EPILOG)
    config_commands = config.add_subparsers(dest="config_command", metavar="ACTION", required=True)
    config_show = config_commands.add_parser("show", help="effective settings, secrets masked")
    config_show.add_argument("--json", action="store_true", help="one JSON object")
    config_show.set_defaults(handler=cmd_config_show)
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


# --- Commands -------------------------------------------------------------------------------
def cmd_run(_args: argparse.Namespace, settings: Settings) -> int:
    import structlog

    from ivr_server.app import IvrServer
    from ivr_server.observability.logging import configure_logging

    configure_logging(settings.log_format, settings.log_level)
    log = structlog.get_logger("ivr_server")
    for name in unknown_env_vars(os.environ):
        log.warning("config.unknown_variable", variable=name, hint="not a setting; typo?")
    try:
        asyncio.run(IvrServer(settings).run())
    except (ConfigError, AriAuthError) as err:
        log.error("server.config_error", code=err.code, error=str(err))
        return int(ExitCode.CONFIG)
    except StoreError as err:
        log.error("server.store_error", code=err.code, error=str(err))
        return int(ExitCode.DATABASE)
    except IvrError as err:
        log.error("server.failed", code=err.code, error=str(err))
        return int(ExitCode.FAILURE)
    return int(ExitCode.OK)


def cmd_db_upgrade(args: argparse.Namespace, settings: Settings) -> int:
    from ivr_server.store.database import create_engine, current_revision, upgrade

    url = settings.effective_database_url
    upgrade(url, args.revision)

    async def show() -> int:
        engine = create_engine(url)
        try:
            print(f"database {mask_url(url)} is at revision {await current_revision(engine)}")
        finally:
            await engine.dispose()
        return 0

    return asyncio.run(show())


def cmd_db_current(_args: argparse.Namespace, settings: Settings) -> int:
    from ivr_server.store.database import create_engine, current_revision, head_revision

    async def show() -> int:
        engine = create_engine(settings.effective_database_url)
        try:
            current, head = await current_revision(engine), head_revision()
        finally:
            await engine.dispose()
        print(f"database: {current or 'empty'}\ncode:     {head}")
        if current != head:
            print("not current; run: ivr-server db upgrade")
            return int(ExitCode.DATABASE)
        return 0

    return asyncio.run(show())


def cmd_calls_list(args: argparse.Namespace, settings: Settings) -> int:
    from ivr_server.store.queries import list_calls

    async def show() -> int:
        engine = await _open_store(settings)
        try:
            records = await list_calls(engine, max(1, args.limit))
        finally:
            await engine.dispose()
        if args.json:
            print(json.dumps([r.as_dict() for r in records], indent=1))
            return 0
        rows = [["CALL ID", "STARTED (UTC)", "CALLER", "DIALED", "FLOW", "SECONDS", "END REASON", "EVENTS"]]
        for r in records:
            rows.append(
                [
                    r.id,
                    r.started_at.strftime("%Y-%m-%d %H:%M:%S"),
                    r.caller_number or "-",
                    r.dialed_number or "-",
                    r.flow,
                    "-" if r.duration_s is None else f"{r.duration_s:.1f}",
                    r.end_reason or "(in progress)",
                    str(r.event_count),
                ]
            )
        _print_table(rows)
        if not records:
            print("(no calls yet)")
        return 0

    return asyncio.run(show())


def cmd_calls_show(args: argparse.Namespace, settings: Settings) -> int:
    from ivr_server.store.queries import CallNotFound, call_events_of, find_call, turns_of

    async def show() -> int:
        engine = await _open_store(settings)
        try:
            try:
                record = await find_call(engine, args.call_id)
            except CallNotFound as err:
                print(f"ivr-server: {err}", file=sys.stderr)
                return int(ExitCode.NOT_FOUND)
            events = await call_events_of(engine, record.id)
            turns = await turns_of(engine, record.id)
        finally:
            await engine.dispose()
        if args.json:
            out = {
                "call": record.as_dict(),
                "turns": [t.as_dict() for t in turns],
                "events": [e.as_dict() for e in events],
            }
            print(json.dumps(out, indent=1))
            return 0
        for key, value in record.as_dict().items():
            if key != "event_count":
                print(f"{key + ':':15} {'-' if value in (None, '', []) else value}")
        if turns:
            print(f"\n{len(turns)} turns:")
            table = [["SEQ", "WHO", "OUTCOME", "LATENCY", "ENGINE", "TEXT"]]
            for t in turns:
                latency = "-" if t.latency_ms is None else f"{t.latency_ms} ms"
                engine_desc = (t.engine or "-") + (" (cached)" if t.cached else "")
                table.append([str(t.seq), t.role, t.outcome, latency, engine_desc, t.text or "(nothing)"])
            _print_table(table)
        print(f"\n{len(events)} events:")
        rows = [["SEQ", "+SECONDS", "TYPE", "PAYLOAD"]]
        shortened = False
        for e in events:
            offset = (e.at - record.started_at).total_seconds()
            payload = json.dumps(e.payload, separators=(",", ":"))
            if len(payload) > PAYLOAD_WIDTH:
                payload, shortened = payload[: PAYLOAD_WIDTH - 1] + "…", True
            rows.append([str(e.seq), f"{offset:.3f}", e.type, payload])
        _print_table(rows)
        if shortened:
            print("(long payloads shortened; --json shows them whole)")
        return 0

    return asyncio.run(show())


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


def cmd_config_show(args: argparse.Namespace, settings: Settings) -> int:
    rows = effective_settings(settings, config_file_path(args.config))
    if args.json:
        print(
            json.dumps({name: {"value": value, "source": source} for name, value, source in rows}, indent=1)
        )
    else:
        _print_table([["SETTING", "VALUE", "SOURCE"], *[list(r) for r in rows]])
    return 0


# --- Helpers --------------------------------------------------------------------------------
async def _open_store(settings: Settings) -> Any:
    from ivr_server.store.database import create_engine, require_current_schema

    engine = create_engine(settings.effective_database_url)
    try:
        await require_current_schema(engine)
    except BaseException:
        await engine.dispose()
        raise
    return engine


def _print_table(rows: list[list[str]]) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        cells = [cell.ljust(widths[i]) for i, cell in enumerate(row[:-1])] + [row[-1]]
        print("  ".join(cells).rstrip())
