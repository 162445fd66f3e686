"""An ASR worker process: loads the engine once and decodes many streams for the server.

Used for engines that hold the GIL while decoding (PocketSphinx): threads would serialize on
it, processes use every core. The protocol is tuples over a duplex pipe:

    parent -> worker: ("open", sid, rate, phrases, model) | ("feed", sid, bytes) | ("finish", sid)
                      | ("abort", sid) | ("warm", streams, models) | ("stop",)
    worker -> parent: ("ready", model_id) | ("partial", sid, text) | ("final", sid, AsrResult)
                      | ("error", sid, message) | ("warmed", error or None) | ("fatal", message)

The worker drains every message waiting before it decodes, so a stream that fell behind sends
one partial result for all its waiting audio instead of one per chunk.
"""

from __future__ import annotations

import os
import signal
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ivr_server.errors import AsrError, EngineUnavailable
from ivr_server.observability.logging import configure_logging
from ivr_server.speech.asr.base import Recognizer

if TYPE_CHECKING:
    from ivr_server.speech.asr.engines import Choice


@dataclass(frozen=True)
class EngineSpec:
    """What a worker needs to load the same engine the server chose (picklable)."""

    name: str
    vosk_model: Path | None = None
    vosk_language: str | None = None
    search: str = "auto"
    accurate_streams: int = 1
    telephone_model: str = "bundled"  # PocketSphinx: the telephone-channel adaptation for calls
    call_rate: int = 8000

    def load(self) -> Choice:
        from ivr_server.speech.asr.engines import load_engine

        return load_engine(
            self.name,
            self.vosk_model,
            self.vosk_language,
            search=self.search,
            accurate_streams=self.accurate_streams,
            telephone_model=self.telephone_model,
            call_rate=self.call_rate,
        )


def serve(conn: Connection, spec: EngineSpec, logs: tuple[str, str] = ("auto", "warning")) -> None:
    """Worker process entry point; ``logs`` is the server's (format, level)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the server decides when workers stop
    configure_logging(*logs)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    try:
        engine = spec.load().engine
    except (EngineUnavailable, AsrError, OSError) as err:
        conn.send(("fatal", str(err)))
        return
    conn.send(("ready", engine.model_id))
    # While the server loads the rest: what the first digits would otherwise wait for
    # (messages that come meanwhile wait in the pipe).
    if (preload := getattr(engine, "preload", None)) is not None:
        preload()
    streams: dict[int, Recognizer] = {}
    while True:
        try:
            batch = [conn.recv()]
            while conn.poll(0):
                batch.append(conn.recv())
        except (EOFError, OSError):
            return  # the server is gone
        pending: dict[int, list[bytes]] = {}
        for message in batch:
            if message[0] == "stop":
                return
            if message[0] == "warm":
                conn.send(("warmed", _warm(engine, message[1], message[2])))
                continue
            _handle(conn, engine, streams, pending, message)
        for sid, chunks in pending.items():
            _feed(conn, streams, sid, chunks)


def _warm(engine: Any, streams: int, models: tuple[Any, ...]) -> str | None:
    """Decoders built ahead for the models the flows use; a model that fails to load is named
    (the streams that need it will fail the same way, and fall back to keys)."""
    try:
        engine.warm(streams, models)
    except (AsrError, EngineUnavailable, OSError) as err:
        return str(err)
    return None


def _handle(
    conn: Connection,
    engine: Any,
    streams: dict[int, Recognizer],
    pending: dict[int, list[bytes]],
    message: tuple[Any, ...],
) -> None:
    kind, sid = message[0], message[1]
    if kind == "feed":
        pending.setdefault(sid, []).append(message[2])
        return
    # Anything else orders after the audio already received for the stream.
    if sid in pending:
        _feed(conn, streams, sid, pending.pop(sid))
    if kind == "open":
        try:
            streams[sid] = engine.recognizer(message[2], message[3], message[4])
        except (AsrError, EngineUnavailable) as err:
            conn.send(("error", sid, str(err)))
    elif kind == "finish":
        recognizer = streams.pop(sid, None)
        if recognizer is not None:
            try:
                conn.send(("final", sid, recognizer.finish()))
            except Exception as err:  # an engine fault ends this stream, not the worker
                conn.send(("error", sid, f"{type(err).__name__}: {err}"))
    elif kind == "abort":
        recognizer = streams.pop(sid, None)
        if recognizer is not None:
            try:
                recognizer.finish()  # gives pooled decoders back
            except Exception:  # the stream is being thrown away anyway
                pass


def _feed(conn: Connection, streams: dict[int, Recognizer], sid: int, chunks: list[bytes]) -> None:
    """Chunk by chunk as received (Vosk's endpointing depends on chunk boundaries, so joining
    them would change results); only the last partial is reported."""
    recognizer = streams.get(sid)
    if recognizer is None:
        return
    partial = None
    try:
        for data in chunks:
            partial = recognizer.feed(np.frombuffer(data, dtype=np.int16)) or partial
    except Exception as err:
        streams.pop(sid, None)
        conn.send(("error", sid, f"{type(err).__name__}: {err}"))
        return
    if partial is not None:
        conn.send(("partial", sid, partial.text))
