"""ARI over TLS: the sandbox's https listener (a self-signed certificate), trusted through
IVR_ARI_TLS_CA_FILE; without it the server refuses to talk and says why (exit 3)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from tests.conftest import fresh_database, running_server, sandbox, server_settings, settle
from tests.e2e.test_call import stored_call
from tests.support.server_process import migrate, start
from tests.support.sipp import Keys, Pause, SippCall, scenario

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("asterisk")]

TLS_URL = "https://127.0.0.1:8089"


async def test_a_call_over_tls(database_url: str, tmp_path: Path) -> None:
    ca = Path(sandbox("ca").stdout.strip())
    settings = server_settings(database_url, ari_url=TLS_URL, ari_tls_ca_file=ca)
    call = SippCall(scenario([Pause(1500), Keys("5#")], tmp_path), service="100", workdir=tmp_path)
    async with running_server(settings) as server:
        assert await call.run() == 0, call.errors()
        await settle(server)
    record, events = await stored_call(database_url)
    assert record.end_reason == "completed"
    assert [e.payload["digits"] for e in events if e.type == "dtmf_collected"] == ["5"]


async def test_an_untrusted_certificate_is_refused_with_exit_3(tmp_path: Path) -> None:
    async with fresh_database("sqlite", tmp_path) as url:
        env = {
            "IVR_DATABASE_URL": url,
            "IVR_METRICS_PORT": "0",
            "IVR_ARI_URL": TLS_URL,
            "IVR_ARI_PASSWORD": "ivr-sandbox",
        }
        await migrate(env)
        proc = await start(env)
        _, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 3
    final = json.loads(err.decode().splitlines()[-1])
    assert final["event"] == "server.config_error"
    assert "TLS certificate is not trusted" in final["error"] and "IVR_ARI_TLS_CA_FILE" in final["error"]
