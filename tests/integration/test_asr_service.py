"""The ASR service: real engines decoding off the event loop (worker processes for PocketSphinx,
threads for Vosk), several streams at once, and a worker that dies mid-stream.

Wideband (16 kHz) speech here: these tests are about the service, not telephone-band accuracy."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import signal
import time
from pathlib import Path

import numpy as np
import pytest
import structlog

from ivr_server.dialog.spec.loader import load_flow
from ivr_server.errors import AsrError
from ivr_server.media.g711 import Pcm
from ivr_server.speech.adapt.compile import Compiler, FlowResources
from ivr_server.speech.asr.base import grammar
from ivr_server.speech.asr.engines import load_engine
from ivr_server.speech.asr.pocketsphinx_engine import PocketSphinxEngine
from ivr_server.speech.asr.service import AsrService, AsrStream
from ivr_server.speech.asr.worker import EngineSpec
from tests.conftest import TEST_ASR_RESOURCES
from tests.integration.test_asr import korean_model, korean_speech
from tests.support.audio import piper

FLOWS = Path(__file__).resolve().parents[2] / "flows"


async def feed_live(stream: AsrStream, pcm: Pcm, rate: int, realtime: bool = False) -> None:
    step = rate // 50
    for i in range(0, len(pcm), step):
        stream.feed(pcm[i : i + step])
        await asyncio.sleep(0.02 if realtime else 0)


async def started(name: str, backend: str = "auto", workers: int = 2) -> AsrService:
    model = korean_model() if name == "vosk" else None
    engine = load_engine(name, model).engine
    service = AsrService(engine, EngineSpec(name, model), backend, workers)  # type: ignore[arg-type]
    await service.start()
    return service


@pytest.fixture(scope="module")
def banking() -> FlowResources:
    """flows/banking.yaml's compiled recognition resources (cached across test runs)."""
    return Compiler(TEST_ASR_RESOURCES).compile(load_flow(FLOWS / "banking.yaml"))


async def test_warm_builds_decoders_for_the_flows_models_over_the_workers(banking: FlowResources) -> None:
    engine = load_engine("pocketsphinx").engine
    assert isinstance(engine, PocketSphinxEngine)
    model = banking.model(None)
    assert model is not None
    service = AsrService(engine, EngineSpec("pocketsphinx", search="fast"), "processes", 2, warm_streams=3)
    await service.start()
    try:
        await service.warm([model, model])  # twice the same model: built once
        stream = service.open(8000, model=model)
        await feed_live(stream, piper("I lost my card.", 8000), 8000)
        assert (await stream.finish()).text.startswith("i lost my")
    finally:
        await service.close()
    threads = AsrService(engine, EngineSpec("pocketsphinx"), "threads", 2, warm_streams=3)
    await threads.start()
    assert engine.idle_decoders() == {"accurate": 0, "fast": 0, "grammar": 0}  # none before warm
    await threads.warm([model])
    await threads.close()
    assert engine.idle_decoders()["accurate"] + engine.idle_decoders()["fast"] == 3
    keys = [key for key, idle in engine._pool.items() if idle]
    assert {key[2] for key in keys} == {model}  # the flow's model, not the general one


async def test_a_model_that_fails_to_warm_is_logged_and_the_workers_keep_serving(
    banking: FlowResources, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    from ivr_server.observability import logging as logs

    good = banking.model(None)
    assert good is not None
    torn = dataclasses.replace(good, name="torn/open", version="x", arpa=tmp_path / "gone.arpa")
    logs.configure_logging("json", "info")
    engine = load_engine("pocketsphinx").engine
    service = AsrService(engine, EngineSpec("pocketsphinx", search="fast"), "processes", 1, warm_streams=1)
    try:
        await service.start()
        await service.warm([torn])
        stream = service.open(8000, model=good)
        await feed_live(stream, piper("What's my balance?", 8000), 8000)
        assert "balance" in (await stream.finish()).text
    finally:
        await service.close()
        structlog.reset_defaults()
        logs._configured.clear()
    lines = [json.loads(line) for line in capfd.readouterr().err.splitlines() if line.startswith("{")]
    failed = [line for line in lines if line["event"] == "asr.warm_failed"]
    assert failed and "gone.arpa" in failed[0]["error"]


async def test_workers_log_in_the_servers_format_and_level(capfd: pytest.CaptureFixture[str]) -> None:
    from ivr_server.observability import logging as logs

    logs.configure_logging("json", "debug")
    try:
        engine = load_engine("pocketsphinx").engine
        service = AsrService(
            engine, EngineSpec("pocketsphinx", search="fast"), "processes", 1, warm_streams=1
        )
        await service.start()
        await service.warm([None])
        await service.close()
    finally:
        structlog.reset_defaults()
        logs._configured.clear()
    lines = [json.loads(line) for line in capfd.readouterr().err.splitlines() if line.startswith("{")]
    warm = [line for line in lines if line["event"] == "asr.decoders_warm"]
    assert warm and warm[0]["level"] == "debug" and warm[0]["idle"]["fast"] == 1


async def test_pocketsphinx_runs_in_worker_processes_and_streams_partials() -> None:
    service = await started("pocketsphinx")
    assert service.backend == "processes"
    try:
        partials: list[str] = []
        audio = piper("seven five nine", 16000)
        stream = service.open(16000, grammar("digits"), on_partial=partials.append)
        await feed_live(stream, np.concatenate([audio, np.zeros(8000, np.int16)]), 16000, realtime=True)
        result = await stream.finish()
        assert result.text == "seven five nine" and result.engine == "pocketsphinx"
        assert partials and partials[-1] == "seven five nine"
        assert [w.word for w in result.words] == ["seven", "five", "nine"]
    finally:
        await service.close()


async def test_concurrent_streams_each_get_their_own_words() -> None:
    service = await started("pocketsphinx")
    try:
        phrases = [
            "one two three",
            "four five six",
            "seven eight nine",
            "two one five",
            "two zero four",
            "six six seven",
        ]
        streams = [service.open(16000, grammar("digits")) for _ in phrases]
        await asyncio.gather(
            *(feed_live(s, piper(p, 16000), 16000) for s, p in zip(streams, phrases, strict=True))
        )
        results = await asyncio.gather(*(s.finish(30) for s in streams))
        assert [r.text for r in results] == phrases
    finally:
        await service.close()


async def test_decoding_does_not_stall_the_event_loop() -> None:
    """A long decode finishing in a worker leaves the loop free: a 10 ms heartbeat keeps beating."""
    service = await started("pocketsphinx", workers=1)
    try:
        long_speech = np.tile(piper("I would like to check my account balance please.", 16000), 8)
        stream = service.open(16000)
        for i in range(0, len(long_speech), 160):
            stream.feed(long_speech[i : i + 160])  # all at once: the worker falls far behind
        gaps: list[float] = []
        done = asyncio.create_task(stream.finish(60))
        last = time.monotonic()
        while not done.done():
            await asyncio.sleep(0.01)
            now = time.monotonic()
            gaps.append(now - last)
            last = now
        assert (await done).text
        assert len(gaps) > 20, "the decode was too short to show anything"
        assert max(gaps) < 0.25, f"the event loop stalled for {max(gaps) * 1000:.0f} ms"
    finally:
        await service.close()


async def test_a_worker_that_dies_fails_its_streams_and_is_replaced() -> None:
    service = await started("pocketsphinx", workers=1)
    try:
        stream = service.open(16000, grammar("digits"))
        await feed_live(stream, piper("one two", 16000), 16000)
        pid = service._processes[0]._process.pid
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        with pytest.raises(AsrError, match="worker"):
            await stream.finish(10)
        for _ in range(100):
            if service._processes[0].dead:
                break
            await asyncio.sleep(0.05)
        fresh = service.open(16000, grammar("digits"))
        await feed_live(fresh, piper("three four five", 16000), 16000)
        assert (await fresh.finish(30)).text == "three four five"
    finally:
        await service.close()


async def test_vosk_runs_in_threads_with_one_shared_model() -> None:
    service = await started("vosk")
    assert service.backend == "threads"
    try:
        # Vosk dithers its features, so runs differ in detail (espeak's Korean is rough); the
        # last word, spoken clearly before silence, does not.
        rate, pcm = korean_speech()
        partials: list[str] = []
        numbers = ("하나", "둘", "셋", "넷", "다섯", "여섯")
        streams = [service.open(rate, numbers, partials.append if i == 0 else None) for i in range(4)]
        await asyncio.gather(*(feed_live(s, pcm, rate, realtime=True) for s in streams))
        results = await asyncio.gather(*(s.finish(30) for s in streams))
        for result in results:
            assert result.text.endswith("여섯") and set(result.text.split()) <= set(numbers)
        assert len(set(partials)) >= 2
    finally:
        await service.close()


async def test_aborted_and_unstarted_streams_say_what_happened() -> None:
    service = await started("pocketsphinx", workers=1)
    try:
        stream = service.open(16000)
        stream.feed(np.zeros(160, np.int16))
        stream.abort()
        with pytest.raises(AsrError, match="aborted"):
            await stream.finish(1)
        with pytest.raises(AsrError, match="does not take 4000 Hz"):
            service.open(4000)
        bad = service.open(16000, ("zero", "blorptastic"))
        with pytest.raises(AsrError, match="lacks: blorptastic"):
            await bad.finish(10)
    finally:
        await service.close()
    idle = AsrService(load_engine("pocketsphinx").engine, EngineSpec("pocketsphinx"))
    with pytest.raises(AsrError, match="not started"):
        idle.open(16000)


async def test_worker_processes_switch_between_a_flows_models_from_one_turn_to_the_next(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """The open question with the flow's open model, then a confirmation with its yes/no model,
    then the general model, in worker processes: each turn says which resources heard it."""
    from ivr_server.dialog.spec.loader import load_flow
    from ivr_server.speech.adapt.compile import Compiler

    flow = load_flow(FLOWS / "banking.yaml")
    resources = await asyncio.to_thread(Compiler(tmp_path_factory.mktemp("res")).compile, flow)
    service = await started("pocketsphinx", "processes", 1)
    try:
        turns = []
        for text, model in (("I lost my card.", resources.model(None)), ("Yes.", resources.model("yesno")),
                            ("I lost my card.", None)):  # fmt: skip
            stream = service.open(8000, model=model)
            await feed_live(stream, piper(text, 8000), 8000)
            turns.append(await stream.finish())
    finally:
        await service.close()
    assert turns[0].resources == resources.version and "+banking/open@" in turns[0].model
    assert "lost my card" in turns[0].text
    assert turns[1].text in ("yes", "yeah") and "+banking/yesno@" in turns[1].model
    assert turns[2].resources is None and "+banking" not in turns[2].model
    assert turns[0].alternatives and turns[0].alternatives[0].text == turns[0].text
