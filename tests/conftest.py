"""Shared fixtures: real SQLite and PostgreSQL databases, the sandbox Asterisk, a running server."""

from __future__ import annotations

import asyncio
import os
import subprocess
import tempfile
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings as hypothesis_settings
from sqlalchemy.ext.asyncio import AsyncEngine

from ivr_server.app import IvrServer
from ivr_server.config import CONFIG_FILE_ENV, Settings, env_name
from ivr_server.store.database import create_engine, upgrade
from tests.support import postgres
from tests.support.pg_cluster import ThrowawayCluster
from tests.support.redis_server import Redis

# Shared machines: a slow example is load, not a bug; correctness is what the tests check.
hypothesis_settings.register_profile("ivr", deadline=None)
hypothesis_settings.load_profile("ivr")

REPO = Path(__file__).resolve().parent.parent
SANDBOX = REPO / "scripts" / "asterisk-sandbox"
# Ports for servers the tests start, apart from a demo server's default 40000-40999.
TEST_MEDIA_PORTS = (41000, 41199)


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests build their settings explicitly: the developer's server settings must not leak in.
    Variables of the scripts (IVR_SANDBOX_HOME, IVR_TEST_*) stay."""
    settings = {env_name(field) for field in Settings.model_fields} | {CONFIG_FILE_ENV}
    for key in list(os.environ):
        if key.upper() in settings:
            monkeypatch.delenv(key)


async def _migrated(url: str) -> str:
    await asyncio.to_thread(upgrade, url)
    return url


@asynccontextmanager
async def fresh_database(kind: str, tmp_path: Path) -> AsyncIterator[str]:
    """An empty database of ``kind`` ("sqlite" or "postgres"); PostgreSQL ones are dropped after."""
    if kind == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'ivr.sqlite3'}"
        return
    if os.environ.get("IVR_TEST_SKIP_POSTGRES") == "1":
        pytest.skip("IVR_TEST_SKIP_POSTGRES=1")
    try:
        url = await postgres.create_database()
    except OSError as err:  # not skipped: the suite promises both back ends
        pytest.fail(
            f"PostgreSQL on 127.0.0.1:5432 is unreachable ({err}); start it or set "
            "IVR_TEST_SKIP_POSTGRES=1 to skip deliberately"
        )
    try:
        yield url
    finally:
        await postgres.drop_database(url)


@pytest.fixture(params=["sqlite", "postgres"])
async def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """A migrated database, once on SQLite and once on PostgreSQL."""
    async with fresh_database(request.param, tmp_path) as url:
        yield await _migrated(url)


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    eng = create_engine(database_url)
    yield eng
    await eng.dispose()


def sandbox(*args: str, check: bool = True, instance: int = 0) -> subprocess.CompletedProcess[str]:
    """Run scripts/asterisk-sandbox (``instance``: another PBX beside the first); with ``check``,
    a failure shows what the script said."""
    env = {**os.environ, "IVR_SANDBOX_INSTANCE": str(instance)}
    result = subprocess.run(
        [str(SANDBOX), *args], capture_output=True, text=True, check=False, timeout=600, env=env
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"asterisk-sandbox {' '.join(args)} exited {result.returncode}:\n{result.stderr}"
        )
    return result


_CONF_CURRENT: list[bool] = []  # asterisk_conf installed and reloaded in this test session


@pytest.fixture
def asterisk() -> Iterator[None]:
    """The sandbox Asterisk, running (started if a test before stopped it) with this checkout's
    asterisk_conf (an Asterisk left running by an older checkout gets it and reloads)."""
    if sandbox("status", check=False).returncode != 0:
        result = sandbox("start", check=False)
        if result.returncode != 0:
            pytest.fail(f"the sandbox Asterisk does not start:\n{result.stderr}")
    elif not _CONF_CURRENT:  # restarted once per session: new modules load only at start
        sandbox("stop")
        result = sandbox("start", check=False)
        if result.returncode != 0:
            pytest.fail(f"the sandbox Asterisk does not start:\n{result.stderr}")
    _CONF_CURRENT.append(True)
    yield


# Shared by every server a test starts, in-process or not: each flow's recognition resources
# (and the general model's bigrams) are compiled once, then found by hash.
TEST_ASR_RESOURCES = Path(tempfile.gettempdir()) / "ivr-test-asr-resources"


def server_settings(database_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": database_url,
        "metrics_port": 0,
        "media_port_min": TEST_MEDIA_PORTS[0],
        "media_port_max": TEST_MEDIA_PORTS[1],
        "log_format": "json",
        # Shared across tests: prompts are rendered once, not at every server start.
        "tts_cache_dir": Path(tempfile.gettempdir()) / "ivr-test-tts-cache",
        "asr_resources_dir": TEST_ASR_RESOURCES,
        "outbox_path": Path(tempfile.mkdtemp(prefix="ivr-outbox-")) / "outbox.sqlite3",
        # A shared test machine's load is not the server's: tests of admission by load ask for it.
        "admission": "count",
    }
    values.update(overrides)
    return Settings(**values)


@asynccontextmanager
async def running_server(settings: Settings) -> AsyncIterator[IvrServer]:
    """An IvrServer in this process, connected and reconciled; stopped cleanly afterwards."""
    server = IvrServer(settings)
    task = asyncio.create_task(server.run(install_signal_handlers=False))
    try:
        async with asyncio.timeout(60):  # speech engines load first; shared machines are slow
            while server.manager is None or not server.manager.reconciled.is_set():
                if task.done():
                    task.result()  # raises what stopped it
                    raise AssertionError("server stopped during start-up")
                await asyncio.sleep(0.02)
        yield server
    finally:
        server.stop()
        server.stop()  # twice: callers still in a flow are handed back at once, not drained
        await asyncio.wait_for(task, 30)


async def settle(server: IvrServer, timeout_s: float = 15) -> None:
    """Wait until no call is in progress and the store has committed everything."""
    assert server.manager is not None and server.writer is not None
    async with asyncio.timeout(timeout_s):
        while server.manager.sessions:
            await asyncio.sleep(0.05)
    assert await server.writer.flush(timeout_s)


@pytest.fixture
async def bank() -> AsyncIterator[str]:
    """The demo bank (ivr-server demo-bank) on a free loopback port: its base URL."""
    from ivr_server.tools.demo_bank import serve

    runner, port = await serve("127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[Redis]:
    """A redis-server of the test's own (an event bus), which the test may stop and start."""
    server = Redis(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
async def cluster() -> AsyncIterator[ThrowawayCluster]:
    """A migrated database in a PostgreSQL cluster of its own, which the test may stop and start."""
    c = ThrowawayCluster()
    try:
        await c.create()
        await asyncio.to_thread(upgrade, c.url)
        yield c
    finally:
        c.destroy()
