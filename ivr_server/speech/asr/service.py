"""Recognition off the event loop, on every core.

The engine's own measurement picks the backend (``scripts/bench-speech``, README):
- engines that release the GIL while decoding (Vosk: 2 threads ran 1.95-2.00x one) run in a
  thread pool shared by all calls, with one shared model;
- engines that hold it (PocketSphinx: 0.97-0.99x) run in worker processes, each with its own
  copy of the model, streams spread over them by load.

A call only ever calls ``feed()`` (never blocks) and awaits ``finish()``. A worker that dies
fails its streams with ``AsrError`` (the caller falls back) and is replaced for new streams.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import multiprocessing
import os
import queue
import threading
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Literal

import structlog

from ivr_server.errors import AsrError, EngineUnavailable
from ivr_server.media.g711 import Pcm
from ivr_server.observability.logging import child_logging
from ivr_server.speech.asr.base import AsrEngine, AsrResult, LanguageModel, Recognizer
from ivr_server.speech.asr.worker import EngineSpec, serve

log = structlog.get_logger(__name__)

Backend = Literal["auto", "threads", "processes"]
# Measured per engine (scripts/bench-speech): does decoding release the GIL?
RELEASES_GIL = {"vosk": True, "pocketsphinx": False}
WORKER_START_TIMEOUT_S = 30.0
WARM_STEP = 4  # open-vocabulary streams a worker builds decoders for between other work

PartialCallback = Callable[[str], None]


class AsrStream(ABC):
    """One caller utterance being recognized."""

    def __init__(self, on_partial: PartialCallback | None) -> None:
        self.partial = ""
        self.error: str | None = None
        self._on_partial = on_partial
        self._final: asyncio.Future[AsrResult] = asyncio.get_running_loop().create_future()
        self._closed = False

    def feed(self, pcm: Pcm) -> None:
        """Queue audio; never blocks. Ignored once the stream failed or finished."""
        if not self._closed and self.error is None:
            self._send_audio(pcm)

    async def finish(self, timeout_s: float = 10.0) -> AsrResult:
        """The final result; AsrError if the engine failed or took longer than ``timeout_s``."""
        if not self._closed:
            self._closed = True
            if self.error is None:
                self._send_finish()
        try:
            async with asyncio.timeout(timeout_s):
                return await asyncio.shield(self._final)
        except TimeoutError as err:
            self.abort()
            raise AsrError(f"no final ASR result within {timeout_s}s") from err

    def abort(self) -> None:
        """Throw the stream away (hangup, barge-in of a different kind)."""
        if not self._final.done():
            self._final.set_exception(AsrError("stream aborted"))
            self._final.exception()  # retrieved: nobody may be waiting
        self._closed = True
        if self.error is None:
            self._send_abort()

    # --- results, from the backend, on the loop ---
    def _got_partial(self, text: str) -> None:
        self.partial = text
        if self._on_partial is not None:
            self._on_partial(text)

    def _got_final(self, result: AsrResult) -> None:
        if not self._final.done():
            self._final.set_result(result)

    def _got_error(self, message: str) -> None:
        self.error = message
        if not self._final.done():
            self._final.set_exception(AsrError(message))
            self._final.exception()

    # --- what each backend does with the stream's requests ---
    @abstractmethod
    def _send_audio(self, pcm: Pcm) -> None: ...

    @abstractmethod
    def _send_finish(self) -> None: ...

    @abstractmethod
    def _send_abort(self) -> None: ...


class AsrService:
    """Hands out streams for one loaded engine."""

    def __init__(
        self,
        engine: AsrEngine,
        spec: EngineSpec,
        backend: Backend = "auto",
        workers: int = 0,
        warm_streams: int = 0,
    ) -> None:
        """``warm_streams``: open-vocabulary streams to build decoders for when ``warm`` is
        called (once the flows, and so the models calls will use, are known), spread over the
        workers as open() spreads streams."""
        self.engine = engine
        if backend == "auto":
            backend = "threads" if RELEASES_GIL.get(engine.name, False) else "processes"
        self.backend: Literal["threads", "processes"] = backend
        self.workers = workers or os.cpu_count() or 2
        self.warm_streams = warm_streams
        self.spec = spec
        self._warm_models: tuple[LanguageModel | None, ...] = ()
        self._threads: ThreadPoolExecutor | None = None
        self._processes: list[_Worker] = []
        self._ids = itertools.count(1)

    @property
    def model_id(self) -> str:
        return self.engine.model_id

    async def start(self) -> None:
        """Start the workers now, so the first call does not wait for a model to load."""
        if self.backend == "threads":
            self._threads = ThreadPoolExecutor(self.workers, thread_name_prefix="asr")
        else:
            loop = asyncio.get_running_loop()
            self._processes = [_Worker(self.spec, loop) for _ in range(self.workers)]
            try:
                async with asyncio.timeout(WORKER_START_TIMEOUT_S):
                    await asyncio.gather(*(w.ready for w in self._processes))
            except TimeoutError as err:
                await self.close()
                raise EngineUnavailable(f"ASR workers not ready within {WORKER_START_TIMEOUT_S}s") from err
            except EngineUnavailable:
                await self.close()
                raise
        log.info(
            "asr.started",
            engine=self.engine.name,
            model=self.model_id,
            backend=self.backend,
            workers=self.workers,
        )

    async def warm(self, models: Sequence[LanguageModel | None]) -> None:
        """Build decoders for ``warm_streams`` open-vocabulary streams with each of ``models``
        (None: the engine's general model) before returning, over the workers. A model that
        fails to load is logged: its calls fail over to keys as they would anyway."""
        self._warm_models = tuple(dict.fromkeys(models))
        if self.warm_streams == 0 or not self._warm_models:
            return
        started = asyncio.get_running_loop().time()
        if self.backend == "threads":
            try:
                await asyncio.to_thread(self.engine.warm, self.warm_streams, self._warm_models)
            except (AsrError, EngineUnavailable, OSError) as err:
                log.error("asr.warm_failed", error=str(err))
        else:
            errors: list[str | None] = []
            per = self._warm_per_process()
            # A few streams' decoders at a time: a worker builds them between the audio of calls
            # already up, which waits at most one step (WARM_STEP x models x ~16 ms).
            for upto in [*range(WARM_STEP, per, WARM_STEP), per]:
                answers = [w.warm(upto, self._warm_models) for w in self._processes]
                try:
                    async with asyncio.timeout(WORKER_START_TIMEOUT_S):
                        errors += await asyncio.gather(*answers)
                except TimeoutError:
                    errors.append(f"not warmed within {WORKER_START_TIMEOUT_S}s")
            for error in {e for e in errors if e is not None}:
                log.error("asr.warm_failed", error=error)
        names = [m.name if m else "general" for m in self._warm_models]
        seconds = round(asyncio.get_running_loop().time() - started, 2)
        log.info("asr.warmed", streams=self.warm_streams, models=names, seconds=seconds)

    def _warm_per_process(self) -> int:
        """Each worker's share of warm_streams (open() spreads streams evenly over them)."""
        return math.ceil(self.warm_streams / max(1, len(self._processes)))

    def worker_pids(self) -> list[int]:
        """Worker processes (none with threads): for operators' and benchmarks' memory figures."""
        return [pid for w in self._processes if (pid := w.pid) is not None]

    async def close(self) -> None:
        if self._threads is not None:
            self._threads.shutdown(wait=False, cancel_futures=True)
            self._threads = None
        workers, self._processes = self._processes, []
        await asyncio.gather(*(asyncio.to_thread(w.stop) for w in workers))

    def open(
        self,
        sample_rate: int,
        phrases: Sequence[str] | None = None,
        on_partial: PartialCallback | None = None,
        model: LanguageModel | None = None,
    ) -> AsrStream:
        """A stream recognized with ``phrases``, a flow's ``model`` or the engine's own. The
        recognizer is built off the loop (in the pool or the worker), from decoders kept per
        model, so switching models between turns costs the audio nothing."""
        if not self.engine.accepts_rate(sample_rate):
            raise AsrError(f"ASR engine {self.engine.name} does not take {sample_rate} Hz audio")
        if self.backend == "threads":
            if self._threads is None:
                raise AsrError("ASR service not started")
            engine = self.engine
            return _ThreadStream(
                lambda: engine.recognizer(sample_rate, phrases, model), self._threads, on_partial
            )
        worker = self._least_loaded()
        return _ProcessStream(worker, next(self._ids), sample_rate, phrases, on_partial, model)

    def _least_loaded(self) -> _Worker:
        if not self._processes:
            raise AsrError("ASR service not started")
        for i, worker in enumerate(self._processes):
            if worker.dead:
                log.warning("asr.worker_replaced", worker=i, reason=worker.dead)
                self._processes[i] = _Worker(self.spec, worker.loop)
                if self.warm_streams and self._warm_models:  # in the background: streams are waiting
                    self._processes[i].warm(self._warm_per_process(), self._warm_models)
        return min(self._processes, key=lambda w: len(w.streams))


class _ThreadStream(AsrStream):
    """Feeds run one at a time per stream (a recognizer is not thread-safe); audio that arrived
    while the previous job ran goes in one job, chunk by chunk (results depend on boundaries)."""

    def __init__(
        self, make: Callable[[], Recognizer], pool: ThreadPoolExecutor, on_partial: PartialCallback | None
    ) -> None:
        super().__init__(on_partial)
        # Built in the pool by the first job: a Vosk recognizer takes ~60 ms to build, which the
        # event loop (and every call's media) must not wait for.
        self._make = make
        self._recognizer: Recognizer | None = None
        self._pool = pool
        self._pending: deque[Pcm] = deque()
        self._finish_asked = False
        self._aborted = False
        self._finished = False
        self._task: asyncio.Task[None] | None = None

    def _send_audio(self, pcm: Pcm) -> None:
        self._pending.append(pcm)
        self._kick()

    def _send_finish(self) -> None:
        self._finish_asked = True
        self._kick()

    def _send_abort(self) -> None:
        self._aborted = True
        self._pending.clear()
        self._finish_asked = True
        self._kick()

    def _kick(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._drain())

    def _feed_all(self, chunks: list[Pcm]) -> AsrResult | None:
        recognizer = self._built()
        partial = None
        for chunk in chunks:
            partial = recognizer.feed(chunk) or partial
        return partial

    def _built(self) -> Recognizer:
        if self._recognizer is None:
            self._recognizer = self._make()
        return self._recognizer

    def _finish(self) -> AsrResult:
        return self._built().finish()

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self._pending:
                chunks = list(self._pending)
                self._pending.clear()
                partial = await loop.run_in_executor(self._pool, self._feed_all, chunks)
                if partial is not None and not self._aborted:
                    self._got_partial(partial.text)
            if self._finish_asked and not self._finished:
                self._finished = True  # also on abort: gives a pooled decoder back
                result = await loop.run_in_executor(self._pool, self._finish)
                if not self._aborted:
                    self._got_final(result)
        except Exception as err:  # the engine died on this stream: the call falls back
            log.error("asr.stream_failed", engine="thread", error=f"{type(err).__name__}: {err}")
            self._got_error(f"{type(err).__name__}: {err}")


class _ProcessStream(AsrStream):
    def __init__(
        self,
        worker: _Worker,
        sid: int,
        rate: int,
        phrases: Sequence[str] | None,
        on_partial: PartialCallback | None,
        model: LanguageModel | None = None,
    ) -> None:
        super().__init__(on_partial)
        self._worker = worker
        self._sid = sid
        worker.streams[sid] = self
        worker.send(("open", sid, rate, tuple(phrases) if phrases else None, model))

    def _send_audio(self, pcm: Pcm) -> None:
        self._worker.send(("feed", self._sid, pcm.astype("=i2").tobytes()))

    def _send_finish(self) -> None:
        self._worker.send(("finish", self._sid))

    def _send_abort(self) -> None:
        self._worker.streams.pop(self._sid, None)
        self._worker.send(("abort", self._sid))

    def _got_final(self, result: AsrResult) -> None:
        self._worker.streams.pop(self._sid, None)
        super()._got_final(result)

    def _got_error(self, message: str) -> None:
        self._worker.streams.pop(self._sid, None)
        super()._got_error(message)


class _Worker:
    """One worker process, with a writer thread (pipe writes may block; the loop must not) and
    a reader thread that hands results to the loop."""

    def __init__(self, spec: EngineSpec, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.streams: dict[int, _ProcessStream] = {}
        self.dead: str | None = None
        self._stopping = False
        self.ready: asyncio.Future[str] = loop.create_future()
        self._warming: deque[asyncio.Future[str | None]] = deque()  # answered in order
        ctx = multiprocessing.get_context("spawn")  # no forked copy of the server's loop and sockets
        self._conn, child = ctx.Pipe(duplex=True)
        self._process = ctx.Process(
            target=serve, args=(child, spec, child_logging()), name="ivr-asr-worker", daemon=True
        )
        self._process.start()
        child.close()
        self._outbox: queue.SimpleQueue[tuple[Any, ...] | None] = queue.SimpleQueue()
        threading.Thread(target=self._write, name="asr-writer", daemon=True).start()
        threading.Thread(target=self._read, name="asr-reader", daemon=True).start()

    @property
    def pid(self) -> int | None:
        return self._process.pid

    def send(self, message: tuple[Any, ...]) -> None:
        if self.dead is None:
            self._outbox.put(message)
        elif message[0] in ("open", "finish"):
            sid = message[1]
            stream = self.streams.get(sid)
            if stream is not None:
                stream._got_error(f"ASR worker unavailable: {self.dead}")

    def warm(self, streams: int, models: tuple[LanguageModel | None, ...]) -> asyncio.Future[str | None]:
        """Ask the worker to build decoders ahead; the future gives its error, or None."""
        answer: asyncio.Future[str | None] = self.loop.create_future()
        if self.dead is not None:
            answer.set_result(f"ASR worker unavailable: {self.dead}")
            return answer
        self._warming.append(answer)
        self._outbox.put(("warm", streams, models))
        return answer

    def stop(self) -> None:
        self._stopping = True
        self._outbox.put(("stop",))
        self._outbox.put(None)
        self._process.join(timeout=5)
        if self._process.is_alive():
            self._process.kill()
            self._process.join(timeout=5)
        self._conn.close()

    def _write(self) -> None:
        while (message := self._outbox.get()) is not None:
            try:
                self._conn.send(message)
            except (OSError, ValueError):
                return

    def _read(self) -> None:
        while True:
            try:
                message = self._conn.recv()
            except (EOFError, OSError):
                code = self._process.exitcode
                self._post(self._died, f"worker process exited (code {code})")
                return
            self._post(self._on_message, message)

    def _post(self, fn: Callable[..., None], *args: Any) -> None:
        try:
            self.loop.call_soon_threadsafe(fn, *args)
        except RuntimeError:
            pass  # the loop is closed: the server has stopped

    def _on_message(self, message: tuple[Any, ...]) -> None:
        kind = message[0]
        if kind == "ready":
            if not self.ready.done():
                self.ready.set_result(message[1])
            return
        if kind == "fatal":
            self._died(message[1])
            return
        if kind == "warmed":
            if self._warming and not (answer := self._warming.popleft()).done():
                answer.set_result(message[1])
            return
        stream = self.streams.get(message[1])
        if stream is None:
            return  # aborted meanwhile
        if kind == "partial":
            stream._got_partial(message[2])
        elif kind == "final":
            stream._got_final(message[2])
        elif kind == "error":
            stream._got_error(message[2])

    def _died(self, reason: str) -> None:
        if self.dead is None:
            self.dead = reason
            if not self._stopping:
                log.error("asr.worker_died", reason=reason, streams=len(self.streams))
        if not self.ready.done():
            self.ready.set_exception(EngineUnavailable(f"ASR worker did not start: {reason}"))
            self.ready.exception()  # a replacement worker's start is not awaited
        while self._warming:
            if not (answer := self._warming.popleft()).done():
                answer.set_result(f"ASR worker died: {reason}")
        for stream in list(self.streams.values()):
            stream._got_error(f"ASR worker died: {reason}")
        self.streams.clear()
        self._outbox.put(None)
