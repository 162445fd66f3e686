"""Admission by load: the load meter's windows and the decision on a new call."""

from __future__ import annotations

from pathlib import Path

import pytest

from ivr_server.config.settings import Settings
from ivr_server.observability.load import LoadMeter, cpu_counters, percentile
from ivr_server.telephony.admission import Admission, overload_prompt


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def stat_file(tmp_path: Path, busy: int, idle: int) -> Path:
    """A /proc/stat first line with ``busy`` jiffies of user time and ``idle`` of idle."""
    path = tmp_path / "stat"
    path.write_text(f"cpu  {busy} 0 0 {idle} 0 0 0 0 0 0\ncpu0 1 2 3 4\n", encoding="ascii")
    return path


def test_this_machines_cpu_counters_are_read_and_rise() -> None:
    first = cpu_counters()
    assert first is not None and 0 <= first[0] <= first[1]
    sum(i * i for i in range(200_000))  # some work
    second = cpu_counters()
    assert second is not None and second[1] >= first[1]


@pytest.mark.parametrize("text", ["", "intr 1 2 3\n", "cpu  a b c d\n", "cpu 1 2\n"])
def test_an_unreadable_stat_file_is_unknown_not_zero(tmp_path: Path, text: str) -> None:
    (tmp_path / "stat").write_text(text, encoding="ascii")
    assert cpu_counters(tmp_path / "stat") is None
    assert cpu_counters(tmp_path / "missing") is None


def test_the_meter_keeps_recent_windows(tmp_path: Path) -> None:
    clock = Clock()
    stat = stat_file(tmp_path, 0, 0)
    meter = LoadMeter(clock, stat)
    assert meter.now().loop_lag_ms is None and meter.now().cpu is None  # nothing measured yet
    for i in range(40):  # 10 s of heartbeats; the machine 75 % busy
        stat.write_text(f"cpu  {300 * i} 0 0 {100 * i} 0 0 0 0\n", encoding="ascii")
        meter.beat(0.002 if i != 20 else 0.080)
        clock.t += 0.25
    load = meter.now()
    assert load.loop_lag_ms == pytest.approx(2.0)  # one late beat of 40 is not the 95th percentile
    assert load.cpu == pytest.approx(0.75)
    meter.asr_final(0.4)
    clock.t += 31
    meter.asr_final(0.9)
    assert meter.now().asr_final_ms == pytest.approx(900)  # the older one left the window
    assert meter.now().loop_lag_ms is None  # no heartbeat for 31 s: unknown
    assert percentile([3.0, 1.0, 2.0], 50) == 2.0 and percentile([], 95) is None


def admission(tmp_path: Path, **settings: object) -> tuple[Admission, LoadMeter, Clock, Path]:
    clock = Clock()
    stat = stat_file(tmp_path, 0, 0)
    meter = LoadMeter(clock, stat)
    return Admission(Settings(**settings), meter, clock), meter, clock, stat  # type: ignore[arg-type]


def test_a_call_is_declined_past_each_measured_limit_and_the_first_always_taken(tmp_path: Path) -> None:
    gate, meter, clock, stat = admission(tmp_path, admit_per_s=0)
    assert gate.verdict(3).reason is None
    meter.beat(0.3)  # a 300 ms stall
    verdict = gate.verdict(3)
    assert verdict.reason == "overload" and "event-loop lag 300 ms > 50 ms" in verdict.why
    assert verdict.load["loop_lag_ms"] == 300.0
    assert gate.verdict(0).reason is None  # nobody to protect
    clock.t += 11
    meter.asr_final(2.5)
    assert "recognition final 2500 ms" in gate.verdict(3).why
    clock.t += 31
    meter.beat(0.001)
    stat.write_text("cpu  960 0 0 40 0 0 0 0\n", encoding="ascii")
    clock.t += 1
    meter.beat(0.001)
    assert "cpu 0.96 > 0.90 with 3 calls" in gate.verdict(3).why


def test_a_burst_is_paced_and_max_calls_stays_a_cap(tmp_path: Path) -> None:
    gate, _, clock, _ = admission(tmp_path, admit_per_s=2, max_calls=4)
    assert [gate.verdict(n).reason for n in (1, 2, 3)] == [None, None, "overload"]
    clock.t += 1.01
    assert gate.verdict(3).reason is None
    assert gate.verdict(4).reason == "busy" and "max_calls 4" in gate.verdict(4).why


def test_counting_admission_ignores_the_load(tmp_path: Path) -> None:
    gate, meter, _, _ = admission(tmp_path, admission="count", max_calls=2)
    meter.beat(5.0)
    assert gate.verdict(1).reason is None and gate.verdict(2).reason == "busy"


def test_the_overload_prompt_is_the_servers_own_unless_the_admin_names_one() -> None:
    assert overload_prompt(Settings(metrics_port=9464)) == "http://127.0.0.1:9464/prompts/high_volume.wav"
    assert overload_prompt(Settings(metrics_port=9464, metrics_host="0.0.0.0")).startswith(
        "http://127.0.0.1:"
    )
    assert overload_prompt(Settings(metrics_port=9464, metrics_host="::1")).startswith("http://[::1]:9464/")
    remote = Settings(metrics_port=9464, metrics_host="0.0.0.0", media_advertise_host="10.0.0.7")
    assert overload_prompt(remote) == "http://10.0.0.7:9464/prompts/high_volume.wav"  # Asterisk's view
    assert overload_prompt(Settings(metrics_port=0)) == ""
    assert overload_prompt(Settings(overload_prompt_url="custom/high-volume")) == "custom/high-volume"


def test_the_metrics_listener_serves_the_high_volume_prompt_as_asterisk_plays_wav() -> None:
    """8 kHz 16-bit mono (Asterisk's ``.wav``), the prompt rendered from prompts.toml's text."""
    import io
    import urllib.request
    import wave

    from ivr_server.media.audio import wav_bytes
    from ivr_server.media.prompts import PromptLibrary
    from ivr_server.observability.metrics import Metrics, serve_metrics
    from ivr_server.resources import resource_dir
    from ivr_server.telephony.admission import OVERLOAD_PROMPT, OVERLOAD_PROMPT_PATH

    prompts = PromptLibrary(resource_dir("prompts"))
    assert "high volume of calls" in prompts.texts[OVERLOAD_PROMPT]
    files = {OVERLOAD_PROMPT_PATH: wav_bytes(8000, prompts.audio(OVERLOAD_PROMPT, 8000))}
    server = serve_metrics(Metrics(), "127.0.0.1", 0, files=files)
    try:
        port = server.server_address[1]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{OVERLOAD_PROMPT_PATH}", timeout=5) as answer:
            assert answer.headers["Content-Type"] == "audio/wav"
            body = answer.read()
        with wave.open(io.BytesIO(body)) as wav:
            assert (wav.getframerate(), wav.getsampwidth(), wav.getnchannels()) == (8000, 2, 1)
            assert 3.0 < wav.getnframes() / 8000 < 10.0
        with pytest.raises(urllib.error.HTTPError):
            urllib.request.urlopen(f"http://127.0.0.1:{port}/prompts/../etc/passwd.wav", timeout=5)
    finally:
        server.shutdown()


def test_doctor_warns_when_asterisk_cannot_fetch_the_overload_prompt() -> None:
    from ivr_server.ops.doctor_asterisk import overload_prompt_finding

    s = Settings(metrics_port=9464)
    missing = overload_prompt_finding(s, {"res_ari", "res_curl"})
    assert missing.status == "warn" and "res_http_media_cache" in missing.finding and missing.fix
    assert overload_prompt_finding(s, {"res_curl", "res_http_media_cache"}).status == "ok"
    assert overload_prompt_finding(Settings(admission="count"), set()).status == "ok"
    assert overload_prompt_finding(Settings(overload_prompt_url="custom/busy"), set()).status == "ok"


def test_counting_admission_keeps_no_growing_record_of_calls(tmp_path: Path) -> None:
    """The rate limit's record is the last second's calls, whatever the admission mode."""
    gate, _, clock, _ = admission(tmp_path, admission="count")
    for _ in range(50):
        assert gate.verdict(0).reason is None
        clock.t += 0.1
    assert len(gate._taken) <= 11
