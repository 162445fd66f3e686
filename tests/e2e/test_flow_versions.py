"""Versioned flows in real calls: the server picks up a deployment without a restart, a call
keeps the version it started with, and a rollback sends the next call back at once."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from ivr_server.dialog.declarative import CanaryFlow
from ivr_server.store.database import create_engine
from ivr_server.store.deployments import deploy, rollback
from ivr_server.store.queries import call_events_of, list_calls
from tests.conftest import running_server, server_settings, settle
from tests.e2e.test_call import wait_for_event
from tests.integration.test_deployments import version
from tests.support.sipp import Keys, Pause, SippCall, scenario

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("asterisk")]


async def serving_version(server: object, number: int) -> None:
    """Until the running server routes new phone-tree calls to version ``number``."""
    async with asyncio.timeout(15):
        while True:
            router = server.manager.deps.flows.get("phone-tree")  # type: ignore[attr-defined]
            if isinstance(router, CanaryFlow) and router.active and router.active[0].version_number == number:
                return
            await asyncio.sleep(0.05)


async def test_a_rollback_reaches_new_calls_while_a_call_in_progress_keeps_its_version(
    database_url: str, tmp_path: Path
) -> None:
    engine = create_engine(database_url)
    try:
        async with running_server(server_settings(database_url, flows_poll_s=0.2)) as server:
            await deploy(engine, *version(1), None, None)
            await serving_version(server, 1)
            await deploy(engine, *version(2), None, None)  # picked up without a restart
            await serving_version(server, 2)
            long_call = SippCall(
                scenario([Pause(9000), Keys("0")], tmp_path), service="401", workdir=tmp_path
            )
            first = asyncio.create_task(long_call.run())
            assert (await wait_for_event(database_url, "deployment"))["version_number"] == 2
            await rollback(engine, "phone-tree", None)
            await serving_version(server, 1)
            short_call = SippCall(
                scenario([Pause(3000), Keys("0")], tmp_path), service="401", workdir=tmp_path
            )
            assert await short_call.run() == 0, short_call.errors()
            assert not first.done(), "the first call should still be in progress"
            assert await first == 0, long_call.errors()
            await settle(server)
        calls = sorted(await list_calls(engine, 5), key=lambda c: c.started_at)
        got = []
        for call in calls:
            events = {e.type: e.payload for e in await call_events_of(engine, call.id)}
            got.append(
                (
                    events["deployment"]["version_number"],
                    events["flow_ended"]["flow_version"],
                    call.end_reason,
                )
            )
    finally:
        await engine.dispose()
    assert got == [(2, version(2)[1], "transferred"), (1, version(1)[1], "transferred")]
