"""Returning callers, the pure parts: the flow's ``returning:`` block and its prompts are checked
with their place, and a caller's number is kept only as a keyed hash (same caller, same hash;
without the key, no hash and no way back to the number)."""

from __future__ import annotations

import hashlib
import hmac
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ivr_server.config import caller_hash_key
from ivr_server.dialog.spec.loader import check_text
from ivr_server.dialog.spec.model import ReturningSpec
from ivr_server.privacy.caller_id import caller_hash, caller_id_key
from tests.conftest import server_settings

REPO = Path(__file__).resolve().parents[2]
BANKING = (REPO / "flows" / "banking.yaml").read_text()
TINY = "flow: x\nstates:\n  a: {end: true}\n"
KEY = b"k" * 32


def test_returning_is_off_unless_the_flow_has_the_block() -> None:
    flow, _ = check_text(TINY)
    assert flow is not None and flow.returning == ReturningSpec() and not flow.returning.enabled
    flow, _ = check_text("returning: {}\n" + TINY)
    assert flow is not None and flow.returning == ReturningSpec(True, 60, 24)
    flow, _ = check_text("returning: {window_min: 15, keep_hours: 1}\n" + TINY)
    assert flow is not None and flow.returning == ReturningSpec(True, 15, 1)


def test_the_shipped_banking_flow_offers_within_the_hour() -> None:
    flow, problems = check_text(BANKING, "banking.yaml")
    assert flow is not None, [str(p) for p in problems]
    assert flow.returning == ReturningSpec(True, 60, 24)
    offer = flow.prompts["returning_offer"].text["en"].render({"task": "balance"})
    assert offer.startswith("Welcome back.") and "balance request" in offer


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("returning: {window_min: 0}\n" + TINY, "1:25: window_min must be from 1 to 10080, not 0"),
        ("returning: {keep_hours: 1000}\n" + TINY, "1:25: keep_hours must be from 1 to 720, not 1000"),
        (
            "returning: {window_min: ten}\n" + TINY,
            "returning.window_min must be a whole number, not text 'ten'",
        ),
        ("returning: {window_min: 120, keep_hours: 1}\n" + TINY, "keep_hours (1) must cover window_min (120"),
        ("returning: {windw_min: 5}\n" + TINY, "unknown key 'windw_min' (did you mean 'window_min'?)"),
        ("returning: yes\n" + TINY, "returning must be a mapping (key: value), not true/false"),
        (
            'prompts: {returning_offer: "Finish {task}?"}\n' + TINY,
            "'returning_offer' words the offer to a returning caller, but the flow has no 'returning:' block",
        ),
        (
            'returning: {}\nprompts: {returning_offer_lost_crad: "Finish?"}\n' + TINY,
            "intent 'lost_crad' is not defined",
        ),
        ('returning: {}\nprompts: {returning_offer: "Finish {tsk}?"}\n' + TINY, "slot 'tsk' is not defined"),
        ("languages: [ko]\nreturning: {}\n" + TINY, "the built-in offer to a returning caller is English"),
    ],
)
def test_a_bad_returning_block_or_offer_is_named_with_its_place(text: str, expected: str) -> None:
    flow, problems = check_text(text, "x.yaml")
    assert flow is None
    assert any(expected in str(p) for p in problems), [str(p) for p in problems]


def test_the_offer_may_say_the_task() -> None:
    flow, problems = check_text('returning: {}\nprompts: {returning_offer: "Finish your {task}?"}\n' + TINY)
    assert flow is not None, [str(p) for p in problems]


def test_the_same_caller_gets_the_same_hash_however_the_number_is_written() -> None:
    written = ["+1 555-0100", "15550100", "(1) 555.0100", "+15550100"]
    assert len({caller_hash(n, KEY) for n in written}) == 1
    assert caller_hash("+15550101", KEY) != caller_hash("+15550100", KEY)


def test_the_hash_is_keyed() -> None:
    """An HMAC-SHA256 of the digits: another key, another hash; no key, no hash at all."""
    got = caller_hash("+15550100", KEY)
    assert got == hmac.new(KEY, b"15550100", hashlib.sha256).hexdigest()
    assert caller_hash("+15550100", b"other" * 8) != got
    assert caller_hash("+15550100", None) is None and caller_hash("+15550100", b"") is None


def test_without_the_key_the_number_cannot_be_found_by_hashing_every_number() -> None:
    """What makes a plain hash of a phone number reversible (hash all 10,000 endings and look the
    stored one up) finds nothing; with the key it does: the key is the secret."""
    stored = caller_hash("+15550142", KEY)
    plain = {hashlib.sha256(f"1555{n:04d}".encode()).hexdigest() for n in range(10_000)}
    assert stored not in plain
    assert stored in {caller_hash(f"1555{n:04d}", KEY) for n in range(10_000)}


@pytest.mark.parametrize("number", ["", None, "anonymous", "Restricted", "12", "+"])
def test_a_withheld_or_unusable_number_is_nobody(number: str | None) -> None:
    assert caller_hash(number, KEY) is None


def test_the_key_is_its_own_or_derived_from_the_audit_key() -> None:
    assert caller_id_key(b"own", b"audit") == b"own"
    derived = caller_id_key(None, b"audit")
    assert derived is not None and derived != b"audit" and len(derived) == 32
    assert caller_id_key(None, b"audit") == derived  # stable across restarts
    assert caller_id_key(None, None) is None


def test_the_settings_choose_the_key(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'x.sqlite3'}"
    assert caller_hash_key(server_settings(url)) is None  # neither key: returning callers are off
    audit_only = caller_hash_key(server_settings(url, audit_key="a-secret"))
    own = caller_hash_key(server_settings(url, audit_key="a-secret", returning_caller_key="mine"))
    assert audit_only is not None and audit_only != b"a-secret" and own == b"mine"


@given(st.text(alphabet="0123456789", min_size=3, max_size=15), st.sampled_from(["", " ", "-", "."]))
def test_separators_never_change_the_caller(digits: str, sep: str) -> None:
    spaced = sep.join(digits)
    assert caller_hash("+" + spaced, KEY) == caller_hash(digits, KEY)
    assert len(caller_hash(digits, KEY) or "") == 64
