"""`ivr-server run` as a process against the sandbox Asterisk: signals, exit codes, logs."""

from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path

import pytest

from tests.conftest import REPO, fresh_database
from tests.support.server_process import migrate, read_until, start
from tests.support.sipp import Keys, SippCall, scenario

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("asterisk")]


async def test_run_serves_a_call_logs_json_and_exits_0_on_sigterm(tmp_path: Path) -> None:
    """The server process answers a call, writes JSON lines with the call's id on each call
    line and no password anywhere, on SIGHUP reloads its flows (a file broken meanwhile, with a
    Python tag and a 5000-digit number, keeps its last good version; a new file nested 10,000
    deep is refused by name), and on SIGTERM stops cleanly with exit code 0."""
    flows = tmp_path / "flows"
    flows.mkdir()
    (flows / "phone-tree.yaml").write_text((REPO / "flows" / "phone-tree.yaml").read_text())
    async with fresh_database("sqlite", tmp_path) as url:
        env = {
            "IVR_FLOWS_DIR": str(flows),
            "IVR_DATABASE_URL": url,
            "IVR_METRICS_PORT": "0",
            "IVR_MEDIA_PORT_MIN": "41200",
            "IVR_MEDIA_PORT_MAX": "41299",
            "IVR_ARI_PASSWORD": "ivr-sandbox",
        }
        await migrate(env)
        proc = await start(env)
        lines: list[dict] = []
        await read_until(proc, "ari.reconciled", lines)
        call = SippCall(scenario([Keys("7#")], tmp_path), service="100", workdir=tmp_path)
        assert await call.run() == 0, call.errors()
        await read_until(proc, "call.ended", lines)
        (flows / "phone-tree.yaml").write_text(
            "flow: phone-tree\nstates: !!python/object/apply:os.system ['true']\nv: " + "9" * 5000 + "\n"
        )
        (flows / "nested.yaml").write_text("flow: nested\nstates: " + "[" * 10_000 + "]" * 10_000 + "\n")
        proc.send_signal(signal.SIGHUP)
        await read_until(proc, "flows.reloaded", lines)
        assert "phone-tree" in lines[-1]["flows"] and "nested" not in lines[-1]["flows"]
        (kept,) = [line for line in lines if line["event"] == "flows.kept_last_good"]
        assert kept["flow"] == "phone-tree" and kept["file"] == str(flows / "phone-tree.yaml")
        invalid = {line["file"]: line["problems"] for line in lines if line["event"] == "flows.invalid"}
        assert any("python/object/apply" in p for p in invalid[str(flows / "phone-tree.yaml")])
        assert "nested too deeply" in invalid[str(flows / "nested.yaml")][0]
        proc.send_signal(signal.SIGTERM)
        _, rest = await asyncio.wait_for(proc.communicate(), 20)
        lines += [json.loads(line) for line in rest.decode().splitlines()]
    assert proc.returncode == 0
    assert lines[-1]["event"] == "server.stopped"
    call_lines = [line for line in lines if line["event"].startswith(("call.", "flow."))]
    assert call_lines and all("call_id" in line and "channel_id" in line for line in call_lines)
    assert all({"timestamp", "level", "event"} <= line.keys() for line in lines)
    assert "ivr-sandbox" not in json.dumps(lines)


async def test_run_exits_3_when_asterisk_refuses_the_password(tmp_path: Path) -> None:
    async with fresh_database("sqlite", tmp_path) as url:
        env = {"IVR_DATABASE_URL": url, "IVR_METRICS_PORT": "0", "IVR_ARI_PASSWORD": "wrong-password"}
        await migrate(env)
        proc = await start(env)
        _, err = await asyncio.wait_for(proc.communicate(), 20)
    assert proc.returncode == 3
    final = json.loads(err.decode().splitlines()[-1])
    assert final["event"] == "server.config_error" and "IVR_ARI_PASSWORD" in final["error"]
    assert "wrong-password" not in err.decode()
