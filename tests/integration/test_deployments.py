"""Versioned flows in the store (SQLite and PostgreSQL): deploy, canary, promote, rollback, each
audited; the canary share of new calls; the CLI."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from ivr_server.dialog.declarative import CanaryFlow, FlowLibrary
from ivr_server.dialog.spec.loader import check_text
from ivr_server.store.audit_trail import recent, verify_store
from ivr_server.store.deployments import DeploymentError, deploy, list_deployments, promote, rollback, serving
from ivr_server.tools.client import ToolClient
from tests.conftest import REPO
from tests.integration.test_cli import cli

TREE = (REPO / "flows" / "phone-tree.yaml").read_text()


def version(n: int) -> tuple[str, str, str]:
    """The phone-tree flow with a welcome that names version ``n``: (name, hash, text)."""
    text = TREE.replace(
        'welcome: "Welcome to Example Bank."', f'welcome: "Welcome to Example Bank, version {n}."'
    )
    spec, problems = check_text(text)
    assert spec is not None, problems
    return spec.name, spec.version, text


async def statuses(engine: AsyncEngine) -> list[tuple[int, str, int]]:
    return [
        (d.version_number, d.status, d.canary_percent) for d in await list_deployments(engine, "phone-tree")
    ]


async def test_deploy_canary_promote_rollback(engine: AsyncEngine) -> None:
    await deploy(engine, *version(1), None, None)
    with pytest.raises(DeploymentError, match="already has this content"):
        await deploy(engine, *version(1), None, None)
    await deploy(engine, *version(2), 20, None)
    assert await statuses(engine) == [(1, "active", 0), (2, "candidate", 20)]
    await deploy(engine, *version(3), 30, None)  # a new candidate replaces the old one
    assert await statuses(engine) == [(1, "active", 0), (2, "replaced", 20), (3, "candidate", 30)]
    back = await rollback(engine, "phone-tree", None)  # withdraws the candidate
    assert back is not None and back.version_number == 1
    assert await statuses(engine) == [(1, "active", 0), (2, "replaced", 20), (3, "rolled_back", 30)]
    with pytest.raises(DeploymentError, match="no candidate to promote"):
        await promote(engine, "phone-tree", None)
    await deploy(engine, *version(4), 50, None)
    await promote(engine, "phone-tree", None)
    assert [s for s in await statuses(engine) if s[1] in ("active", "candidate")] == [(4, "active", 0)]
    back = await rollback(engine, "phone-tree", None)  # no candidate: the previous active returns
    assert back is not None and back.version_number == 1
    assert [(d.version_number, d.status) for d in await serving(engine)] == [(1, "active")]
    changes = [e.payload["change"] for e in await recent(engine, 50, kind="config_change")]
    assert changes == ["flow_deployed"] * 3 + [
        "flow_rolled_back",
        "flow_deployed",
        "flow_promoted",
        "flow_rolled_back",
    ]
    assert (await verify_store(engine, None)).intact


async def test_a_fifth_of_new_calls_get_a_20_percent_canary(engine: AsyncEngine, tmp_path: Path) -> None:
    await deploy(engine, *version(1), None, None)
    await deploy(engine, *version(2), 20, None)
    library = FlowLibrary(tmp_path, ToolClient({}), set(), tmp_path / "nlu-cache")
    router = library.deployed(await serving(engine))["phone-tree"]
    assert isinstance(router, CanaryFlow)
    chosen = [router.choose(f"call-{i}")[0] for i in range(100)]
    candidates = sum(1 for d in chosen if d is not None and d.version_number == 2)
    assert 15 <= candidates <= 25, candidates  # ~20 (the split is a hash of the call id)
    assert all(d is not None and d.version_number in (1, 2) for d in chosen)
    assert router.choose("call-7") == router.choose("call-7")  # a call id always gets the same
    await rollback(engine, "phone-tree", None)
    after = library.deployed(await serving(engine))["phone-tree"]
    assert isinstance(after, CanaryFlow)
    assert {after.choose(f"call-{i}")[0].version_number for i in range(100)} == {1}  # type: ignore[union-attr]


async def test_the_cli(database_url: str, engine: AsyncEngine, tmp_path: Path) -> None:
    env = {"IVR_DATABASE_URL": database_url}
    for n in (1, 2):
        (tmp_path / f"v{n}.yaml").write_text(version(n)[2])
    first = cli("flows", "deploy", str(tmp_path / "v1.yaml"), env=env)
    assert first.returncode == 0, first.stderr
    assert first.stdout.startswith("deployed phone-tree v1 (") and "as active" in first.stdout
    canary = cli("flows", "deploy", str(tmp_path / "v2.yaml"), "--canary", "20", env=env)
    assert "as candidate, canary 20% of new calls" in canary.stdout
    assert cli("flows", "deploy", str(tmp_path / "v2.yaml"), "--canary", "120", env=env).returncode == 2
    (tmp_path / "bad.yaml").write_text("flow: phone-tree\nstates: [oops\n")
    assert cli("flows", "deploy", str(tmp_path / "bad.yaml"), env=env).returncode == 6
    listed = cli("flows", "list", env=env).stdout.splitlines()
    assert [line.split()[:3] for line in listed] == [
        ["phone-tree", "v1", "active"],
        ["phone-tree", "v2", "candidate"],
    ]
    promoted = cli("flows", "promote", "phone-tree", env=env)
    assert promoted.stdout.strip() == "phone-tree v2 is now active for every new call"
    rolled = cli("flows", "rollback", "phone-tree", env=env)
    assert rolled.stdout.strip() == "rolled back: new phone-tree calls get v1"
    nothing = cli("flows", "promote", "phone-tree", env=env)
    assert nothing.returncode == 1 and "no candidate" in nothing.stderr
