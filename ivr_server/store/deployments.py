"""Versioned flows in the store: deploy (active at once, or as a canary candidate), promote,
roll back, list. Each change is one transaction with its audit event (``config_change``), so
the trail says who put which version in front of callers, and when."""

from __future__ import annotations

import getpass
import socket
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from ivr_server.errors import IvrError, StoreError
from ivr_server.store.audit_append import AuditEvent, append_audit
from ivr_server.store.schema import flow_deployments

SERVING = ("active", "candidate")


class DeploymentError(IvrError):
    """A deployment command that cannot be done as asked (nothing to promote, ...)."""

    code = "deployment"


@dataclass(frozen=True)
class Deployment:
    id: int
    flow: str
    version_number: int
    content_hash: str
    source: str
    status: str
    canary_percent: int
    deployed_at: datetime
    deployed_by: str
    changed_at: datetime

    def as_dict(self, with_source: bool = False) -> dict[str, Any]:
        out = {k: v.isoformat() if isinstance(v, datetime) else v for k, v in vars(self).items()}
        if not with_source:
            out.pop("source")
        return out


def who() -> str:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{user}@{socket.gethostname()}"[:128]


async def deploy(
    engine: AsyncEngine,
    flow: str,
    content_hash: str,
    source: str,
    canary_percent: int | None,
    key: bytes | None,
) -> Deployment:
    """A new version: active at once, or (``canary_percent``) the candidate for that share of
    new calls. The text already deployed as the active version is not deployed again."""
    now = datetime.now(UTC)
    async with _transaction(engine) as conn:
        current = await _serving(conn, flow)
        active = current.get("active")
        if active is not None and active.content_hash == content_hash:
            raise DeploymentError(
                f"{flow} v{active.version_number} already has this content ({content_hash})"
            )
        t = flow_deployments.c
        latest = select(func.coalesce(func.max(t.version_number), 0)).where(t.flow == flow)
        number = (await conn.execute(latest)).scalar_one() + 1
        status = "candidate" if canary_percent else "active"
        replaced = current.get(status)
        if replaced is not None:  # "retired" only for what was active: rollback may bring it back
            await _set(conn, replaced.id, "retired" if status == "active" else "replaced", now)
        await conn.execute(flow_deployments.insert().values(
            flow=flow, version_number=number, content_hash=content_hash, source=source, status=status,
            canary_percent=canary_percent or 0, deployed_at=now, deployed_by=who(), changed_at=now,
        ))  # fmt: skip
        await _audit(conn, key, now, change="flow_deployed", flow=flow, version_number=number,
                     content_hash=content_hash, status=status, canary_percent=canary_percent or 0,
                     replaced=None if replaced is None else replaced.version_number)  # fmt: skip
        return (await _serving(conn, flow))[status]


async def promote(engine: AsyncEngine, flow: str, key: bytes | None) -> Deployment:
    """The candidate becomes the active version for every new call."""
    now = datetime.now(UTC)
    async with _transaction(engine) as conn:
        current = await _serving(conn, flow)
        candidate = current.get("candidate")
        if candidate is None:
            raise DeploymentError(f"{flow} has no candidate to promote (flows deploy FILE --canary P)")
        if "active" in current:
            await _set(conn, current["active"].id, "retired", now)
        await conn.execute(
            update(flow_deployments).where(flow_deployments.c.id == candidate.id)
            .values(status="active", canary_percent=0, changed_at=now)
        )  # fmt: skip
        replaced = current["active"].version_number if "active" in current else None
        number = candidate.version_number
        await _audit(
            conn, key, now, change="flow_promoted", flow=flow, version_number=number, replaced=replaced
        )
        return (await _serving(conn, flow))["active"]


async def rollback(engine: AsyncEngine, flow: str, key: bytes | None) -> Deployment | None:
    """Withdraw the candidate if there is one; else put the previous active version back.
    Returns what new calls get now (None: the flow file, as before any deployment)."""
    now = datetime.now(UTC)
    async with _transaction(engine) as conn:
        current = await _serving(conn, flow)
        if "candidate" in current:
            withdrawn = current["candidate"]
        elif "active" in current:
            withdrawn = current["active"]
            t = flow_deployments.c
            before = select(t.id).where(
                t.flow == flow, t.status == "retired", t.version_number < withdrawn.version_number
            )
            previous = (
                await conn.execute(before.order_by(t.version_number.desc()).limit(1))
            ).scalar_one_or_none()
            if previous is not None:
                await _set(conn, previous, "active", now)
        else:
            raise DeploymentError(f"{flow} has no deployed version to roll back")
        await _set(conn, withdrawn.id, "rolled_back", now)
        after = await _serving(conn, flow)
        await _audit(conn, key, now, change="flow_rolled_back", flow=flow, withdrawn=withdrawn.version_number,
                     now_serving=after["active"].version_number if "active" in after else None)  # fmt: skip
        return after.get("active")


async def list_deployments(engine: AsyncEngine, flow: str | None = None) -> list[Deployment]:
    query = select(flow_deployments).order_by(flow_deployments.c.flow, flow_deployments.c.version_number)
    if flow:
        query = query.where(flow_deployments.c.flow == flow)
    try:
        async with engine.connect() as conn:
            return [Deployment(**row) for row in (await conn.execute(query)).mappings()]
    except (SQLAlchemyError, OSError) as err:
        raise StoreError(f"reading flow deployments failed: {err}") from err


async def serving(engine: AsyncEngine) -> list[Deployment]:
    """The versions new calls may get: every flow's active one and its candidate."""
    query = (
        select(flow_deployments).where(flow_deployments.c.status.in_(SERVING)).order_by(flow_deployments.c.id)
    )
    async with engine.connect() as conn:
        return [Deployment(**row) for row in (await conn.execute(query)).mappings()]


# --- internals ------------------------------------------------------------------------------------
class _transaction:
    """``engine.begin()`` with store failures as StoreError, a lost race as a clear message."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._cm = engine.begin()

    async def __aenter__(self) -> AsyncConnection:
        try:
            return await self._cm.__aenter__()
        except (SQLAlchemyError, OSError) as err:
            raise StoreError(f"the store is unreachable: {err}") from err

    async def __aexit__(self, *exc: Any) -> None:
        try:
            await self._cm.__aexit__(*exc)
        except IntegrityError as err:
            raise DeploymentError(
                f"another deployment of this flow happened at the same time; retry: {err}"
            ) from err
        except (SQLAlchemyError, OSError) as err:
            raise StoreError(f"the deployment was not stored: {err}") from err


async def _serving(conn: AsyncConnection, flow: str) -> dict[str, Deployment]:
    rows = await conn.execute(
        select(flow_deployments).where(
            flow_deployments.c.flow == flow, flow_deployments.c.status.in_(SERVING)
        )
    )
    return {row["status"]: Deployment(**row) for row in rows.mappings()}


async def _set(conn: AsyncConnection, deployment_id: int, status: str, now: datetime) -> None:
    await conn.execute(
        update(flow_deployments)
        .where(flow_deployments.c.id == deployment_id)
        .values(status=status, changed_at=now)
    )


async def _audit(conn: AsyncConnection, key: bytes | None, now: datetime, **what: Any) -> None:
    await append_audit(
        conn, [AuditEvent("config_change", now, {**what, "by": who()}, None, str(uuid.uuid4()))], key
    )
