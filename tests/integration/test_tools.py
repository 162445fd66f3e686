"""Back-end tools against the real demo bank on loopback: answers into slots, a filler when
slow, retries then an open circuit when failing, and a clear error for a bad answer."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import httpx
import pytest
from structlog.testing import capture_logs

from ivr_server.dialog.spec.loader import load_flow
from ivr_server.errors import ToolBadAnswer, ToolRefused, ToolTimeout, ToolUnavailable
from ivr_server.observability.metrics import Metrics
from ivr_server.tools.client import Service, ToolClient

FLOW = load_flow(Path(__file__).resolve().parents[2] / "flows" / "banking.yaml")
BALANCE, TRANSACTIONS, BLOCK = (FLOW.tools[n] for n in ("get_balance", "get_transactions", "block_card"))


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


async def calls(bank: str) -> list[dict[str, object]]:
    async with httpx.AsyncClient() as http:
        return list((await http.get(f"{bank}/_calls")).json())


async def fault(bank: str, **spec: object) -> None:
    async with httpx.AsyncClient() as http:
        (await http.post(f"{bank}/_faults", json=spec)).raise_for_status()


def client(bank: str, clock: Clock | None = None) -> ToolClient:
    service = Service(bank, {"X-Api-Key": "demo"}, breaker_failures=3, breaker_reset_s=30)
    return ToolClient({"bank": service}, clock=clock or Clock())


async def test_answers_are_mapped_into_slots(bank: str) -> None:
    tools = client(bank)
    try:
        assert (await tools.call(BALANCE, {"account": "12345678"})).slots == {"balance": "1234.56"}
        recent = (await tools.call(TRANSACTIONS, {"account": "12345678"})).slots["recent"]
        assert recent.startswith("Coffee Corner, 4.50 dollars out; Salary, 2500.00 dollars in")
        blocked = await tools.call(BLOCK, {"last4": "4421"})
        assert blocked.slots == {"block_ref": "BLK-000001"} and blocked.attempts == 1
    finally:
        await tools.aclose()
    made = await calls(bank)
    assert made[-1]["path"] == "/cards/block" and made[-1]["body"] == {"last4": "4421"}


async def test_a_callers_words_cannot_change_the_url(bank: str) -> None:
    tools = client(bank)
    try:
        with pytest.raises(ToolRefused, match="refused it \\(404\\)"):
            await tools.call(BALANCE, {"account": "../../_calls"})
    finally:
        await tools.aclose()
    assert (await calls(bank))[-1]["path"] == "/accounts/..%2F..%2F_calls/balance"


async def test_a_slow_answer_plays_the_filler_and_still_arrives(bank: str) -> None:
    await fault(bank, delay_ms=700)
    heard: list[str] = []

    async def filler() -> None:
        heard.append(FLOW.prompts[BALANCE.filler or ""].name)

    tools = client(bank)
    try:
        slow = dataclasses.replace(BALANCE, filler_after_ms=200)
        result = await tools.call(slow, {"account": "12345678"}, on_slow=filler)
        fast = await tools.call(slow, {"account": "12345678"}, on_slow=filler)
    finally:
        await tools.aclose()
    assert result.slow and result.slots == {"balance": "1234.56"} and result.elapsed_ms >= 650
    assert heard == ["fetching"] and not fast.slow


async def test_a_failing_service_is_retried_then_its_circuit_opens(bank: str) -> None:
    await fault(bank, status=503, times=10)
    clock = Clock()
    tools = client(bank, clock)
    tools.metrics = metrics = Metrics()
    try:
        with capture_logs() as logs, pytest.raises(ToolUnavailable, match="answered 503"):
            await tools.call(BALANCE, {"account": "12345678"})
        assert len(await calls(bank)) == 3  # 1 + retries: 2
        assert tools.breaker_state("bank") == "open"
        with pytest.raises(ToolUnavailable, match="circuit for service 'bank' is open"):
            await tools.call(BALANCE, {"account": "12345678"})
        assert len(await calls(bank)) == 3  # not even tried: the caller is offered an agent at once
        failed = [e for e in logs if e["event"] == "tool.failed"]
        assert failed and failed[0]["code"] == "tool_unavailable" and failed[0]["attempts"] == 3
        clock.t += 31  # half open: one trial call
        with pytest.raises(ToolUnavailable, match="answered 503"):
            await tools.call(dataclasses.replace(BALANCE, retries=0), {"account": "12345678"})
        assert tools.breaker_state("bank") == "open"
        errors = metrics.registry.get_sample_value("ivr_tool_errors_total", {"code": "tool_unavailable"})
        assert errors == 3  # one per failed call, not per attempt
    finally:
        await tools.aclose()


async def test_a_call_that_is_not_idempotent_is_not_retried(bank: str) -> None:
    await fault(bank, status=502, times=5)
    tools = client(bank)
    try:
        with pytest.raises(ToolUnavailable):
            await tools.call(BLOCK, {"last4": "4421"})
    finally:
        await tools.aclose()
    assert len(await calls(bank)) == 1


async def test_a_timeout_is_named_and_retried_for_an_idempotent_tool(bank: str) -> None:
    await fault(bank, delay_ms=800, times=2)
    tools = client(bank)
    try:
        quick = dataclasses.replace(BALANCE, timeout_s=0.3, retries=2)
        result = await tools.call(quick, {"account": "87654321"})  # third attempt answers
        assert result.attempts == 3 and result.slots == {"balance": "12.05"}
        await fault(bank, delay_ms=800, times=3)
        with pytest.raises(ToolTimeout, match="no answer within 0.3 s"):
            await tools.call(quick, {"account": "87654321"})
    finally:
        await tools.aclose()


async def test_a_malformed_answer_is_a_clear_error_not_a_crash(bank: str) -> None:
    await fault(bank, malformed=True)
    tools = client(bank)
    try:
        with (
            capture_logs() as logs,
            pytest.raises(ToolBadAnswer, match="tool get_balance: the answer is not JSON"),
        ):
            await tools.call(dataclasses.replace(BALANCE, retries=0), {"account": "12345678"})
        missing = dataclasses.replace(BALANCE, result={"balance": "account.available"})
        with pytest.raises(ToolBadAnswer, match="has no 'account.available' \\(for slot balance\\)"):
            await tools.call(missing, {"account": "12345678"})
        assert (await tools.call(BALANCE, {"account": "12345678"})).slots == {"balance": "1234.56"}
    finally:
        await tools.aclose()
    assert [e["code"] for e in logs if e["event"] == "tool.failed"] == ["tool_bad_answer"]
    assert all("12345678" not in str(e) for e in logs)  # slot values are not logged


async def test_an_unconfigured_service_is_named() -> None:
    tools = ToolClient({})
    try:
        with pytest.raises(ToolUnavailable, match="service 'bank' is not configured"):
            await tools.call(BALANCE, {"account": "12345678"})
    finally:
        await tools.aclose()


@pytest.mark.parametrize(
    ("answer", "named"),
    [("huge", "the answer is over 1000000 bytes"), ("nested", "the answer is nested too deeply to read")],
)
async def test_a_hostile_answer_is_a_bad_answer_read_no_further_than_the_cap(
    bank: str, answer: str, named: str
) -> None:
    """5 MB streamed (the client stops one byte past 1 MB) or an array nested 100,000 deep."""
    await fault(bank, answer=answer)
    tools = client(bank)
    try:
        with pytest.raises(ToolBadAnswer, match=named):
            await tools.call(dataclasses.replace(BALANCE, retries=0), {"account": "12345678"})
        assert (await tools.call(BALANCE, {"account": "12345678"})).slots == {"balance": "1234.56"}
    finally:
        await tools.aclose()


async def test_the_demo_bank_refuses_a_malformed_fault_order(bank: str) -> None:
    async with httpx.AsyncClient() as http:
        for spec in ([1, 2], {"delay_ms": "soon"}, {"answer": "../../etc"}, {"unknown": 1}):
            resp = await http.post(f"{bank}/_faults", json=spec)
            assert resp.status_code == 400 and "error" in resp.json()
