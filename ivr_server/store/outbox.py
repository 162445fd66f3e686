"""The durable local outbox: every store write is journaled on local disk before it is queued,
and removed once the database has committed it. A database that is down for minutes, or a
process that dies meanwhile, loses nothing: the next start replays the journal in order, and the
writer's idempotent inserts (and audit event ids) keep replays from duplicating anything.

One SQLite file (stdlib ``sqlite3``, WAL), locked to one process, tied to one database: a
journal left for another database is set aside under a new name, never replayed into this one.
"""

from __future__ import annotations

import dataclasses
import fcntl
import hashlib
import json
import os
import sqlite3
import time
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

import structlog

from ivr_server.errors import ConfigError, StoreError

log = structlog.get_logger(__name__)


def _encode(value: Any) -> Any:
    if isinstance(value, datetime):
        return {"$dt": value.isoformat()}
    if isinstance(value, dict):
        return {k: _encode(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_encode(v) for v in value]
    return value


def _decode(value: Any) -> Any:
    if isinstance(value, dict):
        if value.keys() == {"$dt"}:
            return datetime.fromisoformat(value["$dt"])
        return {k: _decode(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_decode(v) for v in value]
    return value


class Outbox:
    def __init__(self, path: Path, database_url: str, kinds: Mapping[str, type]) -> None:
        self.path, self.kinds = path, dict(kinds)
        self.database = hashlib.sha256(database_url.encode()).hexdigest()[:16]
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = open(f"{path}.lock", "w")  # noqa: SIM115 (held for the outbox's lifetime)
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            self._lock.close()
            raise ConfigError(
                f"IVR_OUTBOX_PATH {path} is in use by another ivr-server process; give each its own"
            ) from err
        try:
            self._db = self._open()
        except sqlite3.Error as err:
            self.close()
            raise StoreError(f"the outbox {path} cannot be opened: {err}") from err

    def _open(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")  # survives a process crash; fsync at checkpoints
        db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        db.execute(
            "CREATE TABLE IF NOT EXISTS ops (id INTEGER PRIMARY KEY AUTOINCREMENT, kind TEXT, body TEXT)"
        )
        db.execute(
            "CREATE TABLE IF NOT EXISTS unreadable (id INTEGER PRIMARY KEY, kind TEXT, body TEXT, error TEXT)"
        )
        row = db.execute("SELECT value FROM meta WHERE key = 'database'").fetchone()
        if row is not None and row[0] != self.database:
            left = db.execute("SELECT count(*) FROM ops").fetchone()[0]
            db.close()
            if left:
                aside = self.path.with_name(f"{self.path.name}.other-database.{int(time.time())}")
                os.replace(self.path, aside)
                for suffix in ("-wal", "-shm"):
                    if Path(f"{self.path}{suffix}").exists():
                        os.replace(f"{self.path}{suffix}", f"{aside}{suffix}")
                hint = "writes for another IVR_DATABASE_URL: move it back with that database set to replay"
                log.error("store.outbox_set_aside", file=str(aside), ops=left, hint=hint)
            else:
                self.path.unlink(missing_ok=True)
            return self._open()
        db.execute("INSERT OR REPLACE INTO meta VALUES ('database', ?)", (self.database,))
        return db

    def append(self, op: Any) -> int:
        body = json.dumps(_encode({f.name: getattr(op, f.name) for f in dataclasses.fields(op)}))
        cursor = self._db.execute("INSERT INTO ops (kind, body) VALUES (?, ?)", (type(op).__name__, body))
        return int(cursor.lastrowid or 0)

    def done(self, upto: int) -> None:
        self._db.execute("DELETE FROM ops WHERE id <= ?", (upto,))

    def load(self) -> list[tuple[int, Any]]:
        """What a previous run left, oldest first. A row that cannot be read (written by another
        version?) is logged and moved to the table ``unreadable`` of the same file, not dropped."""
        out = []
        for op_id, kind, body in self._db.execute("SELECT id, kind, body FROM ops ORDER BY id").fetchall():
            try:
                out.append((op_id, self.kinds[kind](**_decode(json.loads(body)))))
            except (KeyError, TypeError, ValueError) as err:
                log.error(
                    "store.outbox_unreadable",
                    op_id=op_id,
                    kind=kind,
                    error=str(err)[:200],
                    file=str(self.path),
                )
                self._db.execute(
                    "INSERT OR REPLACE INTO unreadable VALUES (?, ?, ?, ?)", (op_id, kind, body, str(err))
                )
                self._db.execute("DELETE FROM ops WHERE id = ?", (op_id,))
        return out

    def count(self) -> int:
        return int(self._db.execute("SELECT count(*) FROM ops").fetchone()[0])

    def close(self) -> None:
        if getattr(self, "_db", None) is not None:
            self._db.close()
            self._db = None  # type: ignore[assignment]
        self._lock.close()
