"""Text to speech for calls: sentence by sentence, from the prompt cache or a worker thread.

``stream`` splits the text (sentences.py), respells it (lexicon.py) and yields one
``SpeechChunk`` per piece at the call's rate. While the caller plays piece n, piece n+1 is
synthesized: the first audio is ready after one short piece, not the whole text. Engines block,
so they run in a small thread pool this object owns (the event loop never waits on one); cache
hits in memory are served on the loop.

When the primary engine raises, the stream logs ``tts.fallback`` and speaks that piece and the
rest with the fallback engine; when that fails too, or there is none, it raises SpeechError.
Stopping early (barge-in: ``aclose()`` on the iterator) cancels the piece in flight; a
synthesis already running in a thread finishes and lands in the cache.
"""

from __future__ import annotations

import asyncio
import contextvars
import time
from collections.abc import AsyncIterator, Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import structlog

from ivr_server.errors import SpeechError
from ivr_server.media.g711 import Pcm
from ivr_server.media.resample import StreamResampler
from ivr_server.speech.tts.base import SpeechChunk, TtsEngine
from ivr_server.speech.tts.cache import CacheKey, PromptCache
from ivr_server.speech.tts.lexicon import Lexicon
from ivr_server.speech.tts.sentences import FIRST_MAX_CHARS, MAX_CHARS, split_sentences

log = structlog.get_logger(__name__)

MAX_TEXT_CHARS = 10_000  # about ten minutes of speech: more is a bug upstream, not a prompt
MIN_RATE, MAX_RATE = 8000, 48000
HEAD_S = 0.4  # the first piece's head: resampled and sent while the rest of it is resampled


@dataclass
class _StreamState:
    engine: TtsEngine  # the primary until it fails, then the fallback, for the rest of the stream


class Synthesizer:
    def __init__(
        self,
        engine: TtsEngine,
        fallback: TtsEngine | None = None,
        cache: PromptCache | None = None,
        lexicon: Lexicon | None = None,
        *,
        workers: int = 2,
        first_max_chars: int = FIRST_MAX_CHARS,
        max_chars: int = MAX_CHARS,
        max_text_chars: int = MAX_TEXT_CHARS,
    ) -> None:
        self.engine = engine
        self.fallback = fallback
        self.cache = cache
        self.lexicon = lexicon or Lexicon()
        self._split = {"first_max_chars": first_max_chars, "max_chars": max_chars}
        split_sentences("", **self._split)  # bad limits fail here, not in a call
        self.max_text_chars = max_text_chars
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="tts")

    def close(self) -> None:
        """Stop the worker threads (a running synthesis finishes; queued ones are dropped)."""
        self._executor.shutdown(wait=False, cancel_futures=True)

    def pieces(self, text: str) -> list[str]:
        """The pieces ``stream`` would speak; SpeechError when there is nothing to say."""
        if len(text) > self.max_text_chars:
            raise SpeechError(f"text of {len(text)} characters exceeds max_text_chars={self.max_text_chars}")
        pieces = split_sentences(text, **self._split)
        if not pieces:
            shown = text if len(text) <= 40 else text[:40] + "..."
            raise SpeechError(f"nothing to say: text {shown!r} has no letter or digit")
        return pieces

    async def stream(self, text: str, rate: int) -> AsyncIterator[SpeechChunk]:
        """``text`` as speech at ``rate`` Hz: one chunk per sentence-sized piece, the first one
        in two (its head leaves as soon as the engine is done, before the rest is resampled)."""
        if not MIN_RATE <= rate <= MAX_RATE:
            raise SpeechError(f"sample rate {rate} Hz is outside {MIN_RATE}..{MAX_RATE}")
        pieces = self.pieces(text)
        state = _StreamState(self.engine)
        tail: asyncio.Future[SpeechChunk] | None = None
        upcoming: asyncio.Task[tuple[SpeechChunk, asyncio.Future[SpeechChunk] | None]] | None = None
        try:
            first, tail = await self._piece(pieces[0], rate, state, head=True)
            # Each piece starts before the one before it is handed over: it synthesizes while that plays.
            upcoming = self._start(pieces, 1, rate, state)
            yield first
            if tail is not None:
                yield await tail
            for index in range(1, len(pieces)):
                assert upcoming is not None
                chunk, _ = await upcoming
                upcoming = self._start(pieces, index + 1, rate, state)
                yield chunk
        finally:
            for future in (tail, upcoming):
                if future is not None:
                    future.cancel()

    def _start(
        self, pieces: list[str], index: int, rate: int, state: _StreamState
    ) -> asyncio.Task[tuple[SpeechChunk, asyncio.Future[SpeechChunk] | None]] | None:
        if index >= len(pieces):
            return None
        return asyncio.create_task(self._piece(pieces[index], rate, state, head=False))

    async def render(self, text: str, rate: int) -> tuple[Pcm, bool]:
        """A whole prompt: (samples at ``rate``, whether every piece came from the cache)."""
        chunks = [chunk async for chunk in self.stream(text, rate)]
        pcm: Pcm = np.concatenate([c.pcm for c in chunks])
        return pcm, all(c.cached for c in chunks)

    async def prerender(self, texts: Iterable[str], rate: int) -> int:
        """Render ``texts`` into the cache now (start-up), so calls find them there; returns how
        many were synthesized rather than found. SpeechError names the text that failed."""
        started = time.perf_counter()
        rendered = total = 0
        for text in texts:
            total += 1
            try:
                _, cached = await self.render(text, rate)
            except SpeechError as err:
                raise SpeechError(f"prompt {text!r} cannot be rendered: {err}") from err
            rendered += not cached
        log.info(
            "tts.prerendered",
            prompts=total,
            synthesized=rendered,
            rate=rate,
            engine=self.engine.name,
            seconds=round(time.perf_counter() - started, 3),
        )
        return rendered

    def _key(self, engine: TtsEngine, spoken: str, rate: int) -> CacheKey:
        return CacheKey(spoken, engine.name, engine.version, engine.voice, rate)

    async def _piece(
        self, sentence: str, rate: int, state: _StreamState, *, head: bool
    ) -> tuple[SpeechChunk, asyncio.Future[SpeechChunk] | None]:
        """The piece's chunk; with ``head``, only its first HEAD_S and a future for the rest."""
        spoken = self.lexicon.apply(sentence)
        loop = asyncio.get_running_loop()
        while True:
            engine = state.engine
            key = self._key(engine, spoken, rate)
            if self.cache is not None and (hit := self.cache.get(key, disk=False)) is not None:
                return SpeechChunk(hit, rate, sentence, engine.name, cached=True), None
            context = contextvars.copy_context()  # the call's bound log context, in the worker
            try:
                pcm, cached, finish = await loop.run_in_executor(
                    self._executor, context.run, self._synthesize, engine, spoken, key, head
                )
            except Exception as err:  # an engine may fail in any way; CancelledError is not caught
                self._fall_back(state, engine, sentence, err)
                continue
            chunk = SpeechChunk(pcm, rate, sentence, engine.name, cached, final=finish is None)
            if finish is None:
                return chunk, None
            rest = loop.run_in_executor(self._executor, contextvars.copy_context().run, finish)
            return chunk, asyncio.ensure_future(self._tail(rest, rate, sentence, state))

    def _synthesize(
        self, engine: TtsEngine, spoken: str, key: CacheKey, head: bool
    ) -> tuple[Pcm, bool, Callable[[], Pcm] | None]:
        """In a worker thread: the disk cache, else the engine, resampled and stored. With
        ``head``, only the engine's first chunk (at most HEAD_S of it) is taken now; ``finish``
        synthesizes and resamples the rest, and stores the whole."""
        if self.cache is not None and (hit := self.cache.get(key)) is not None:
            return hit, True, None
        started = time.perf_counter()
        chunks = iter(engine.synthesize(spoken))
        taken: list[Pcm] = []
        for chunk in chunks:  # with head: up to the first chunk that is not silence
            taken.append(chunk)
            if head and chunk.any():
                break
        first_native: Pcm = np.concatenate(taken) if taken else np.zeros(0, dtype=np.int16)
        if not first_native.any():
            raise SpeechError(f"{engine.name} produced no audio for {spoken[:60]!r}")
        split = min(len(first_native), int(HEAD_S * engine.native_rate)) if head else len(first_native)
        resampler = StreamResampler(engine.native_rate, key.rate)
        first = resampler.process(first_native[:split])

        def finish() -> Pcm:
            native = np.concatenate([first_native[split:], *chunks])
            log.debug(
                "tts.synthesized",
                engine=engine.name,
                chars=len(spoken),
                audio_s=round((split + len(native)) / engine.native_rate, 3),
                seconds=round(time.perf_counter() - started, 3),
            )
            rest: Pcm = np.concatenate([resampler.process(native), resampler.flush()])
            if self.cache is not None:
                self.cache.put(key, np.concatenate([first, rest]))
            return rest

        if head:
            return first, False, finish
        return np.concatenate([first, finish()]), False, None

    async def _tail(
        self, rest: asyncio.Future[Pcm], rate: int, sentence: str, state: _StreamState
    ) -> SpeechChunk:
        """The rest of a piece whose head has left. If the engine fails now, the fallback
        speaks the whole piece again: a repeated start is better than half a sentence."""
        engine = state.engine
        try:
            return SpeechChunk(await rest, rate, sentence, engine.name, cached=False)
        except Exception as err:  # as in _piece: any engine failure; CancelledError passes
            self._fall_back(state, engine, sentence, err, after_head=True)
            chunk, _ = await self._piece(sentence, rate, state, head=False)
            return chunk

    def _fall_back(
        self, state: _StreamState, engine: TtsEngine, sentence: str, err: Exception, **context: object
    ) -> None:
        """Switch the stream to the fallback engine and log why; SpeechError when there is none."""
        fallback = self.fallback
        if fallback is None or engine is fallback:
            raise SpeechError(f"TTS engine {engine.name} failed on {sentence[:60]!r}: {err}") from err
        log.warning(
            "tts.fallback",
            engine=engine.name,
            fallback=fallback.name,
            error=f"{type(err).__name__}: {err}",
            sentence=sentence[:60],
            **context,
        )
        state.engine = fallback
