"""`ivr-server doctor` against the real sandbox Asterisk, real databases and real sockets."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from ivr_server.config import Settings
from ivr_server.ops.doctor import DoctorOptions, Finding, Status, exit_ok, run_checks
from ivr_server.ops.doctor_asterisk import check_asterisk, stasis_routes
from ivr_server.ops.doctor_host import check_flows, check_store, port_range_finding
from tests.conftest import REPO, SANDBOX, TEST_MEDIA_PORTS, fresh_database

SANDBOX_ARI = {"ari_url": "http://127.0.0.1:8088", "ari_username": "ivr", "ari_password": "ivr-sandbox"}


def doctor(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("IVR_") or k.startswith("IVR_TEST_")}
    return subprocess.run(
        [sys.executable, "-m", "ivr_server", "doctor", *args],
        check=False, capture_output=True, text=True, env={**clean, **env}, timeout=60,
    )  # fmt: skip


def by_check(findings: list[Finding]) -> dict[str, Finding]:
    return {f.check: f for f in findings}


def settings(**values: Any) -> Settings:
    return Settings(**{**SANDBOX_ARI, **values})


@pytest.mark.e2e
@pytest.mark.usefixtures("asterisk")
async def test_a_sound_deployment_passes_with_the_dialplan_read(tmp_path: Path) -> None:
    """With a migrated store, valid flows, a free port range and the sandbox's ARI, doctor
    exits 0; --json lists every finding, and --asterisk-cli reads the routes into the app."""
    async with fresh_database("sqlite", tmp_path) as url:
        from ivr_server.store.database import upgrade

        await asyncio.to_thread(upgrade, url)
        env = {"IVR_DATABASE_URL": url, "IVR_ARI_PASSWORD": "ivr-sandbox", "IVR_FLOWS_DIR": str(REPO / "flows"),
               "IVR_DATA_DIR": str(tmp_path), "IVR_MEDIA_PORT_MIN": str(TEST_MEDIA_PORTS[0] + 150),
               "IVR_MEDIA_PORT_MAX": str(TEST_MEDIA_PORTS[1])}  # fmt: skip
        started = time.monotonic()
        result = doctor("--json", "--asterisk-cli", f"{SANDBOX} cli", env=env)
        elapsed = time.monotonic() - started
    report = json.loads(result.stdout)
    found = {f["check"]: f for f in report["findings"]}
    assert result.returncode == 0, result.stdout
    assert report["ok"] and elapsed < 30  # the checks run side by side
    assert found["ari"]["status"] == "ok" and "Asterisk 2" in found["ari"]["finding"]
    assert "400@ivr-inbound->banking" in found["dialplan"]["finding"]
    assert found["store"]["status"] == found["flows"]["status"] == found["rtp ports"]["status"] == "ok"
    assert {"modules", "codecs", "clock", "asr", "tts", "disk", "stasis app"} <= found.keys()
    assert found["stasis app"]["status"] in ("ok", "warn")  # warn: no server connected right now
    assert found["overload prompt"]["status"] == "ok", found["overload prompt"]  # the shipped modules.conf


@pytest.mark.e2e
@pytest.mark.usefixtures("asterisk")
def test_a_refused_password_fails_naming_the_fix(tmp_path: Path) -> None:
    """The wrong ARI password is a FAIL that says which settings to check; exit code 1, and the
    password itself is never printed."""
    env = {"IVR_ARI_PASSWORD": "wrong-password", "IVR_DATA_DIR": str(tmp_path)}
    result = doctor(env=env)
    assert result.returncode == 1
    (line,) = [x for x in result.stdout.splitlines() if x.startswith("FAIL  ari")]
    assert "refused user 'ivr'" in line
    assert "fix: check IVR_ARI_USERNAME/IVR_ARI_PASSWORD against ari.conf" in result.stdout
    assert "wrong-password" not in result.stdout + result.stderr


async def test_an_ari_that_never_answers_fails_within_the_timeout() -> None:
    """A host that accepts the connection and then says nothing costs one deadline, not a hang;
    a closed port fails at once. The checks that need ARI say they were not run."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        started = time.monotonic()
        findings = await check_asterisk(
            settings(ari_url=url, ari_request_timeout_s=30), DoctorOptions(timeout_s=1.5)
        )
        assert time.monotonic() - started < 5
    found = by_check(findings)
    assert found["ari"].status == Status.FAIL and "does not answer" in found["ari"].finding
    assert "IVR_ARI_URL" in found["ari"].fix
    assert found["dialplan"].status == Status.WARN and "not checked" in found["dialplan"].finding
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    started = time.monotonic()
    findings = await check_asterisk(settings(ari_url=f"http://127.0.0.1:{port}"), DoctorOptions(timeout_s=5))
    assert time.monotonic() - started < 2 and findings[0].status == Status.FAIL


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
async def test_a_store_not_migrated_fails_with_run_db_upgrade(kind: str, tmp_path: Path) -> None:
    """An empty database (and for SQLite a missing file, which doctor must not create) is a FAIL
    whose fix is `ivr-server db upgrade`."""
    async with fresh_database(kind, tmp_path) as url:
        if kind == "sqlite":
            (missing,) = await check_store(settings(database_url=url), DoctorOptions())
            assert missing.status == Status.FAIL and "no database file" in missing.finding
            assert not (tmp_path / "ivr.sqlite3").exists()
            (tmp_path / "ivr.sqlite3").touch()  # an empty SQLite database
        (empty, *_) = await check_store(settings(database_url=url), DoctorOptions())
    assert empty.status == Status.FAIL and "revision none" in empty.finding
    assert empty.fix == "run: ivr-server db upgrade"


async def test_a_migrated_store_passes_and_postgres_clock_is_compared(database_url: str) -> None:
    findings = await check_store(settings(database_url=database_url), DoctorOptions())
    assert [f.status for f in findings] == [Status.OK] * len(findings)
    if database_url.startswith("postgresql"):
        assert findings[1].check == "database clock" and "PostgreSQL" in findings[1].finding


def test_ports_held_by_another_program_are_reported() -> None:
    """A held port in the range is a warning naming it; too few free ports for IVR_MAX_CALLS fail."""
    low, high = TEST_MEDIA_PORTS[1] - 9, TEST_MEDIA_PORTS[1]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as held:
        held.bind(("127.0.0.1", low + 4))
        warned = port_range_finding("127.0.0.1", low, high, 0)
        failed = port_range_finding("127.0.0.1", low, high, 10)
    assert warned.status == Status.WARN and f"({low + 4})" in warned.finding and "ss -ulpn" in warned.fix
    assert failed.status == Status.FAIL and "9 free for IVR_MAX_CALLS=10" in failed.finding
    assert port_range_finding("127.0.0.1", low, high, 10).status == Status.OK
    assert port_range_finding("192.0.2.1", low, high, 0).status == Status.FAIL  # not this host's


async def test_an_invalid_flow_file_fails_naming_it(tmp_path: Path) -> None:
    (tmp_path / "good.yaml").write_text((REPO / "flows" / "phone-tree.yaml").read_text())
    (tmp_path / "broken.yaml").write_text("flow: broken\nstates: [\n")
    (finding,) = await check_flows(settings(flows_dir=tmp_path), DoctorOptions())
    assert finding.status == Status.FAIL and finding.finding.startswith("broken.yaml")
    assert "ivr-server flows check" in finding.fix


async def test_a_check_past_its_deadline_is_a_fail_and_strict_counts_warnings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """One hung check does not hold up the run or hide the other findings."""
    import ivr_server.ops.doctor_asterisk as asterisk_checks
    import ivr_server.ops.doctor_host as host_checks

    async def hangs(s: Settings, o: DoctorOptions) -> list[Finding]:
        await asyncio.sleep(3600)
        return []

    async def warns(s: Settings, o: DoctorOptions) -> list[Finding]:
        return [Finding("w", Status.WARN, "a warning", "do something")]

    monkeypatch.setattr(asterisk_checks, "ASTERISK_CHECKS", [("ari", hangs)])
    monkeypatch.setattr(host_checks, "HOST_CHECKS", [("w", warns)])
    started = time.monotonic()
    findings = await run_checks(settings(), DoctorOptions(timeout_s=0.5))
    assert time.monotonic() - started < 2
    assert [(f.check, f.status) for f in findings] == [("ari", Status.FAIL), ("w", Status.WARN)]
    assert not exit_ok(findings[1:], strict=True) and exit_ok(findings[1:], strict=False)


def test_stasis_routes_are_read_from_dialplan_show() -> None:
    dialplan = """[ Context 'stasis-ivr-server' created by 'res_stasis' ]
  '_.' =>           1. Stasis(ivr-server)                         [res_stasis]

[ Context 'ivr-inbound' created by 'pbx_config' ]
  '100' =>          1. NoOp(digits)                               [extensions.conf:14]
                    2. Stasis(ivr-server,digits)                  [extensions.conf:15]
  '500' =>          1. Stasis(other-app,x)                        [extensions.conf:20]
  '_+1555XXXX' =>   1. Stasis(ivr-server)                         [extensions.conf:21]
"""
    assert stasis_routes(dialplan, "ivr-server") == [
        ("ivr-inbound", "100", "digits"),
        ("ivr-inbound", "_+1555XXXX", ""),
    ]
