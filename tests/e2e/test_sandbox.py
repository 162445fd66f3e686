"""scripts/asterisk-sandbox: idempotent start/stop/status and clear errors."""

from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path

import pytest

from tests.conftest import SANDBOX, sandbox

pytestmark = pytest.mark.e2e


def run(
    *args: str, env: dict[str, str] | None = None, user: str | None = None
) -> subprocess.CompletedProcess[str]:
    argv = [str(SANDBOX), *args]
    if user:
        argv = ["runuser", "-u", user, "--", *argv]
    return subprocess.run(
        argv, capture_output=True, text=True, check=False, timeout=300, env={**os.environ, **(env or {})}
    )


@pytest.mark.usefixtures("asterisk")
def test_start_stop_and_status_are_idempotent() -> None:
    """start on a running sandbox and stop on a stopped one do nothing and succeed; status
    answers 0 when ARI answers and 3 (LSB "not running") otherwise; nothing stays mounted."""
    again = run("start")
    assert again.returncode == 0 and "already running" in again.stderr
    assert run("status").returncode == 0
    assert run("stop").returncode == 0
    root = Path(run("path").stdout.strip())
    assert not os.path.ismount(root / "proc") and not os.path.ismount(root / "dev")
    assert run("status").returncode == 3
    second = run("stop")
    assert second.returncode == 0 and "not running" in second.stderr
    assert run("start").returncode == 0
    assert run("status").returncode == 0


def test_a_taken_port_is_named() -> None:
    sandbox("stop")
    try:
        with socket.socket() as squatter:
            squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            squatter.bind(("127.0.0.1", 8088))
            squatter.listen()
            result = run("start")
        assert result.returncode == 1
        assert "TCP port 127.0.0.1:8088 (ARI/HTTP) is taken" in result.stderr
    finally:
        sandbox("start")


def test_not_root_is_refused_with_a_hint() -> None:
    result = run("start", user="nobody")
    assert result.returncode == 1 and "must run as root" in result.stderr


def test_an_unreachable_mirror_and_a_missing_debootstrap_are_named(tmp_path: Path) -> None:
    """Building a new root (an empty IVR_SANDBOX_HOME) checks its tools and the mirror first."""
    fresh = {"IVR_SANDBOX_HOME": str(tmp_path / "sandbox")}
    no_mirror = run("build", env={**fresh, "IVR_SANDBOX_MIRROR": "http://127.0.0.1:9/debian"})
    assert no_mirror.returncode == 1
    assert "cannot reach the Debian mirror http://127.0.0.1:9/debian" in no_mirror.stderr
    no_tool = run("build", env={**fresh, "PATH": "/usr/bin:/bin"})  # debootstrap lives in /usr/sbin
    assert no_tool.returncode == 1 and "debootstrap is not installed" in no_tool.stderr
    assert not (tmp_path / "sandbox" / "rootfs").exists()
