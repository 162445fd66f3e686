"""scripts/bench-trust's measuring code (benchmarks.trust) on the real redactor, outbox and a
small real SQLite store."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from benchmarks.common import REPO
from benchmarks.trust import (
    CARD,
    EVENTS_PER_CALL,
    call_ops,
    outbox,
    per_call_us,
    redaction,
    render,
    store,
)
from ivr_server.privacy.redact import Redactor, SecureValues
from ivr_server.store.audit_append import AuditEvent
from ivr_server.store.database import upgrade
from ivr_server.store.writer import CallEvent, CallStarted


def test_per_call_us_calls_n_times_and_gives_microseconds() -> None:
    """fn runs exactly n times; the figure is the mean per call in µs (a 1 ms sleep: >= 1000)."""
    import time

    calls: list[int] = []
    assert per_call_us(lambda: calls.append(1), 250) > 0
    assert len(calls) == 250
    assert per_call_us(lambda: time.sleep(0.001), 3) >= 1000


def test_redaction_measures_a_turn_that_really_is_redacted() -> None:
    """The card-number turn is rewritten by the redactor (the benchmark times the redacting path,
    not a miss); each figure is a positive median in µs."""
    assert "[card]" in Redactor(SecureValues()).text(CARD).text
    figures = redaction(runs=2, n=200)
    assert set(figures) == {"log_line_us", "turn_plain_us", "turn_with_card_us"}
    assert all(v is not None and v > 0 for v in figures.values())


def test_outbox_journals_in_a_fresh_file_per_run() -> None:
    """Append-and-done on a real SQLite outbox: a positive median in µs."""
    figures = outbox(runs=2, n=50)
    assert list(figures) == ["append_and_done_us"] and (figures["append_and_done_us"] or 0) > 0


def test_call_ops_are_a_start_then_audited_events_per_call() -> None:
    """Each call: its start, then each event followed by its audit event, numbered from 1."""
    ops = call_ops(3, calls=2, events=2)
    assert [type(op) for op in ops] == [CallStarted, CallEvent, AuditEvent, CallEvent, AuditEvent] * 2
    assert [op.call_id for op in ops[:5]] == ["bench-3-0"] * 5
    assert [op.seq for op in ops if isinstance(op, CallEvent)] == [1, 2, 1, 2]


async def test_store_writes_then_verifies_the_whole_chain(tmp_path: Path) -> None:
    """Writer runs with and without the outbox commit every op (the chain verify walks holds
    every audit event of both), and report whole writes and rows per second."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'bench.sqlite3'}"
    await asyncio.to_thread(upgrade, url)
    figures = await store(url, 1, "sqlite", calls=2)
    assert list(figures) == ["writer_sqlite", "writer_sqlite_no_outbox", "verify_sqlite"]
    for key in ("writer_sqlite", "writer_sqlite_no_outbox"):
        assert isinstance(figures[key]["writes_per_s"], int) and figures[key]["writes_per_s"] > 0
    assert figures["verify_sqlite"]["rows"] == 2 * 2 * EVENTS_PER_CALL
    assert isinstance(figures["verify_sqlite"]["rows_per_s"], int)


def test_render_lists_each_database_measured() -> None:
    """trust.md: the command with --runs, one row per figure; a database's rows only when it
    was measured."""
    figures = {
        "runs": 3,
        "redaction": {"log_line_us": 15.9, "turn_plain_us": 17.4, "turn_with_card_us": 28.3},
        "outbox": {"append_and_done_us": 48.2},
        "writer_sqlite": {"writes_per_s": 9083},
        "writer_sqlite_no_outbox": {"writes_per_s": 14238},
        "verify_sqlite": {"rows": 20000, "rows_per_s": 58646},
    }
    text = render(figures)
    assert text.startswith(
        "# What the trust features cost\n\n`nice scripts/bench-trust --runs 3` (medians of 3 runs;"
    )
    assert "| redacting a caller turn with a spoken card number | 28.3 µs |" in text
    assert (
        "| store writer, sqlite: call events + chained audit events, with / without the outbox "
        "| 9083 / 14238 writes/s |"
    ) in text
    assert "| `audit verify`, sqlite: walking 20000 chained events | 58646 rows/s |" in text
    assert "postgres" not in text
    figures |= {
        "writer_postgres": {"writes_per_s": 7932},
        "writer_postgres_no_outbox": {"writes_per_s": 12097},
        "verify_postgres": {"rows": 20000, "rows_per_s": 56515},
    }
    assert "| `audit verify`, postgres: walking 20000 chained events | 56515 rows/s |" in render(figures)


def test_committed_trust_md_is_the_rendering_of_trust_json() -> None:
    """benchmarks/trust.md is exactly what render makes of benchmarks/trust.json: the committed
    report is regenerable from its figures."""
    figures = json.loads((REPO / "benchmarks" / "trust.json").read_text())
    assert render(figures) == (REPO / "benchmarks" / "trust.md").read_text()
