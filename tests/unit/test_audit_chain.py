"""The audit hash chain as pure code: any single change to any row is found at that row or the
one after it (never later, never missed)."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from ivr_server.audit.chain import GENESIS, StoredRow, body, link, verify

T0 = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)


def trail(payloads: list[dict[str, object]], key: bytes | None = None) -> list[StoredRow]:
    rows, prev = [], GENESIS
    for seq, payload in enumerate(payloads, start=1):
        at = T0 + timedelta(milliseconds=seq)
        text = body(seq, f"e{seq}", at, "decision", "c1", payload)
        digest = link(prev, text, key)
        rows.append(StoredRow(seq, f"e{seq}", at.replace(tzinfo=None), "decision", "c1", text, prev, digest))
        prev = digest
    return rows


payload_lists = st.lists(
    st.dictionaries(
        st.text(max_size=8), st.one_of(st.integers(), st.text(max_size=20), st.none()), max_size=3
    ),
    min_size=2,
    max_size=12,
)


@given(payload_lists)
def test_an_untouched_trail_verifies(payloads: list[dict[str, object]]) -> None:
    verdict = verify(trail(payloads))
    assert verdict.intact and verdict.rows == len(payloads) and verdict.last_seq == len(payloads)


@settings(max_examples=300)
@given(payload_lists, st.data())
def test_any_single_change_is_found_where_it_was_made(
    payloads: list[dict[str, object]], data: st.DataObject
) -> None:
    rows = trail(payloads)
    i = data.draw(st.integers(0, len(rows) - 1), label="row")
    row = rows[i]
    change = data.draw(
        st.sampled_from(["body", "kind", "call_id", "at", "hash", "prev_hash", "delete", "swap"])
    )
    if change == "body":
        rows[i] = dataclasses.replace(
            row, body=row.body.replace('"payload":', '"payload":{"x":1,"was":') + "}"
        )
    elif change == "kind":
        rows[i] = dataclasses.replace(row, kind="transfer")
    elif change == "call_id":
        rows[i] = dataclasses.replace(row, call_id="c2")
    elif change == "at":
        rows[i] = dataclasses.replace(row, at=row.at + timedelta(seconds=1))
    elif change in ("hash", "prev_hash"):
        rows[i] = dataclasses.replace(row, **{change: "f" * 64})
    elif change == "delete":
        del rows[i]
    else:  # swap with the next row's place (its seq too)
        j = i + 1 if i + 1 < len(rows) else i - 1
        a, b = rows[min(i, j)], rows[max(i, j)]
        rows[min(i, j)], rows[max(i, j)] = (
            dataclasses.replace(b, seq=a.seq),
            dataclasses.replace(a, seq=b.seq),
        )
        i = min(i, j)
    verdict = verify(rows)
    if change == "delete" and i == len(rows):  # the last row cut off: a shorter, consistent chain
        assert verdict.intact and verdict.rows == len(rows)
        return
    assert verdict.broken is not None, change
    assert verdict.broken.position in (i + 1, i + 2), (change, i, verdict.broken)


def test_a_keyed_chain_needs_its_key() -> None:
    rows = trail([{"n": 1}, {"n": 2}], key=b"k")
    assert verify(rows, b"k").intact
    broken = verify(rows).broken
    assert broken is not None and broken.seq == 1 and "IVR_AUDIT_KEY" in broken.problem
    assert verify(rows, b"other").broken is not None
