"""A back end's answer, decoded and mapped into slots: any bytes give slots or ToolBadAnswer."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ivr_server.dialog.spec.model import Tool
from ivr_server.dialog.spec.template import Template
from ivr_server.errors import ToolBadAnswer
from ivr_server.tools.client import decode_answer, map_answer

TOOL = Tool("t", "GET", "svc", Template(("/x",)), result={"balance": "available", "first": "items.0.amount"})
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=10),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.sampled_from(["available", "items", "amount", "0"]), inner, max_size=3)
    ),
    max_leaves=20,
)


def read(body: bytes) -> dict[str, str]:
    return map_answer(TOOL, decode_answer(TOOL, body))


@given(st.binary(max_size=200) | json_values.map(lambda v: json.dumps(v).encode()))
def test_any_answer_gives_slots_or_a_bad_answer(body: bytes) -> None:
    try:
        slots = read(body)
    except ToolBadAnswer:
        return
    assert set(slots) == {"balance", "first"} and all(isinstance(v, str) for v in slots.values())


def test_the_mapping_reads_dotted_paths_and_names_what_is_missing() -> None:
    assert read(b'{"available": 12.5, "items": [{"amount": "4.50"}]}') == {"balance": "12.5", "first": "4.50"}
    with pytest.raises(ToolBadAnswer, match="no 'items.0.amount'"):
        read(b'{"available": 1, "items": []}')
    with pytest.raises(ToolBadAnswer, match="'available' is not a single value"):
        read(b'{"available": {"x": 1}, "items": [{"amount": 1}]}')
    with pytest.raises(ToolBadAnswer, match="nested too deeply"):
        read(b"[" * 100_000 + b"]" * 100_000)
    with pytest.raises(ToolBadAnswer, match="not JSON"):
        read(b'{"available": ' + b"9" * 5000 + b"}")
