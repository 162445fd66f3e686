"""The hash chain over audit events, as pure code.

Each event's ``body`` is a canonical JSON text (sorted keys, no spaces, UTF-8) of its position,
id, time, kind, call and payload; its ``hash`` covers the previous event's hash and that text.
Verifying needs only the stored text, so nothing depends on how a database round-trips times or
JSON. With a key (``IVR_AUDIT_KEY``) the hash is an HMAC: whoever can write the table but does not
hold the key cannot forge a row that verifies.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

GENESIS = "0" * 64
FIELDS = ("seq", "event_id", "at", "kind", "call_id")


def canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def iso(at: datetime) -> str:
    """UTC with microseconds and a Z; a naive time (SQLite gives those back) is UTC already."""
    if at.tzinfo is not None:
        at = at.astimezone(UTC).replace(tzinfo=None)
    return at.isoformat(timespec="microseconds") + "Z"


def body(seq: int, event_id: str, at: datetime, kind: str, call_id: str | None, payload: Any) -> str:
    return canonical(
        {
            "seq": seq,
            "event_id": event_id,
            "at": iso(at),
            "kind": kind,
            "call_id": call_id,
            "payload": payload,
        }
    )


def link(prev_hash: str, text: str, key: bytes | None = None) -> str:
    data = prev_hash.encode("ascii") + b"\n" + text.encode("utf-8")
    if key:
        return hmac.new(key, data, hashlib.sha256).hexdigest()
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class StoredRow:
    seq: int
    event_id: str
    at: datetime
    kind: str
    call_id: str | None
    body: str
    prev_hash: str
    hash: str


@dataclass(frozen=True)
class Break:
    seq: int  # the row (by its stored seq) where the chain first fails
    position: int  # 1-based place of that row when read in seq order
    problem: str


@dataclass(frozen=True)
class Verdict:
    rows: int
    last_seq: int | None
    last_hash: str
    broken: Break | None

    @property
    def intact(self) -> bool:
        return self.broken is None


class Walker:
    """Verifies rows one at a time, in seq order, so a long trail needs no memory."""

    def __init__(self, key: bytes | None = None) -> None:
        self.key = key
        self.prev_hash, self.expected_seq, self.count = GENESIS, 1, 0
        self.last_seq: int | None = None
        self.broken: Break | None = None

    def step(self, row: StoredRow) -> bool:
        """False once the chain is broken (here or before)."""
        if self.broken is not None:
            return False
        self.count += 1
        problem = _check(row, self.prev_hash, self.expected_seq, self.key)
        if problem is not None:
            self.broken = Break(row.seq, self.count, problem)
            return False
        self.prev_hash, self.expected_seq, self.last_seq = row.hash, row.seq + 1, row.seq
        return True

    def verdict(self) -> Verdict:
        return Verdict(self.count, self.last_seq, self.prev_hash, self.broken)


def verify(rows: Iterable[StoredRow], key: bytes | None = None) -> Verdict:
    """Walk the rows in seq order; the first one that does not follow from its predecessor."""
    walker = Walker(key)
    for row in rows:
        if not walker.step(row):
            break
    return walker.verdict()


def _check(row: StoredRow, prev_hash: str, expected_seq: int, key: bytes | None) -> str | None:
    if row.seq != expected_seq:
        what = "missing (deleted)" if row.seq > expected_seq else "out of order"
        return f"seq {row.seq} where {expected_seq} was expected: a row is {what}"
    if row.prev_hash != prev_hash:
        return (
            f"prev_hash {row.prev_hash[:12]}... is not the hash of the row before ({prev_hash[:12]}...): "
            "a row was inserted, removed or reordered before this one"
        )
    try:
        content = json.loads(row.body)
    except ValueError:
        return "body is not JSON: the row was edited"
    if not isinstance(content, dict) or canonical(content) != row.body:
        return "body is not in canonical form: the row was edited"
    if link(prev_hash, row.body, key) != row.hash:
        return "hash does not match the row's content: the row was edited" + (
            "" if key else " (or the trail was written with IVR_AUDIT_KEY and verified without it)"
        )
    stored = {"seq": row.seq, "event_id": row.event_id, "at": iso(row.at), "kind": row.kind,
              "call_id": row.call_id}  # fmt: skip
    for name in FIELDS:
        if content.get(name) != stored[name]:
            return f"column {name} ({stored[name]!r}) differs from the hashed body ({content.get(name)!r})"
    return None
