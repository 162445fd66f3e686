"""speech.png: the distribution of reply latency over every call measured, caller side and the
server's own, and where each call's time went (endpointing, ASR final, TTS first packet)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.speech import log
from benchmarks.speech.call import measured
from benchmarks.speech.report import TARGET_P50_MS, TARGET_P95_MS

PARTS = (
    ("endpoint_detect_ms", "endpoint detection"),
    ("asr_final_ms", "ASR final"),
    ("tts_first_audio_ms", "TTS first packet"),
)


def plot(out: Path, data: dict[str, Any]) -> None:
    """Writes ``out``/speech.png when the runs placed calls (and matplotlib is installed)."""
    calls = [c for r in data["runs"] if "call" in r for c in r["call"]["calls"]]
    if not calls:
        return
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log("matplotlib not installed; no plot (pip install -e '.[bench]')")
        return
    caller = sorted(c["reply_first_loud_ms"] for c in calls if measured(c))
    server = sorted(c["server_latency_ms"] for c in calls if c.get("server_latency_ms") is not None)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.8))
    for values, label in ((caller, "caller side (RTP capture)"), (server, "server (turns.latency_ms)")):
        if values:
            ax1.step(
                values,
                np.arange(1, len(values) + 1) / len(values),
                where="post",
                label=f"{label}, n={len(values)}",
            )
    ax1.axvline(
        TARGET_P50_MS,
        color="grey",
        ls="--",
        lw=1,
        label=f"targets: p50 {TARGET_P50_MS}, p95 {TARGET_P95_MS} ms",
    )
    ax1.axvline(TARGET_P95_MS, color="grey", ls=":", lw=1)
    ax1.axhline(0.5, color="lightgrey", lw=0.8)
    ax1.axhline(0.95, color="lightgrey", lw=0.8)
    ax1.set_xlabel("end of caller speech → first reply audio (ms)")
    ax1.set_ylabel("fraction of calls")
    ax1.set_ylim(0, 1.02)
    ax1.legend(fontsize=8, loc="lower right")
    rows = [c for c in calls if all(c.get(k) is not None for k, _ in PARTS)]
    if rows:
        rows.sort(key=lambda c: c.get("server_latency_ms") or 0)
        x = np.arange(len(rows))
        bottom = np.zeros(len(rows))
        for key, label in PARTS:
            heights = np.array([c[key] for c in rows], dtype=float)
            ax2.bar(x, heights, bottom=bottom, label=label, width=0.85)
            bottom += heights
        ax2.plot(x, [c.get("server_latency_ms") for c in rows], "k.", ms=4, label="server latency")
        ax2.plot(x, [c.get("reply_first_loud_ms") for c in rows], "rx", ms=4, label="caller-side latency")
        ax2.set_xlabel("calls, by server latency")
        ax2.set_ylabel("ms")
        top = max(*bottom, *(c.get("reply_first_loud_ms") or 0 for c in rows))
        ax2.set_ylim(0, top * 1.45)
        ax2.legend(fontsize=7, loc="upper left", ncol=2)
        ax2.set_title("where the time goes (server log events)", fontsize=9)
    fig.suptitle("ivr-server reply latency, voice flow via Asterisk 22 (loopback)", fontsize=10)
    fig.tight_layout()
    fig.savefig(out / "speech.png", dpi=110)
    plt.close(fig)
