"""What the console shows, kept up to date by the event loop and read by the listener's threads.

The loop feeds it what the store writer is given (``StoreWriter.tap``), so it only ever holds
what the store keeps: redacted, secure answers already ``[secure]``. Everything is bounded: a
transcript ring per call, rings of recent calls and errors, a queue per transcript subscriber
that drops its oldest entry when full. One lock guards it all; every hold is a few dict updates,
so the loop never waits on a reader for long.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, MutableMapping
from dataclasses import dataclass, field
from typing import Any

from ivr_server.observability.metrics import flow_outcome
from ivr_server.privacy.redact import Redactor
from ivr_server.store.deployments import Deployment
from ivr_server.store.writer import CallEnded, CallEvent, CallStarted, Op, Turn

TRANSCRIPT_TURNS = 200
RECENT_CALLS = 50
RECENT_ERRORS = 50
MAX_LIVE_CALLS = 2000  # past max_calls anyway; a guard against a call whose end was never seen
SUBSCRIBER_QUEUE = 100
ERROR_TEXT = 300
STATE_EVENTS = {"answered": "answered", "agent_ringing": "agent ringing", "agent_bridged": "with agent",
                "handoff": "handing off"}  # fmt: skip


def mask_caller(number: str | None) -> str:
    """Only the last two digits: enough to tell two callers apart on the screen."""
    digits = "".join(ch for ch in number or "" if ch.isdigit())
    return "•" * max(0, min(len(digits), 10) - 2) + digits[-2:] if digits else "unknown"


@dataclass
class LiveCall:
    call_id: str
    caller: str
    flow: str
    started: float
    version: str | None = None
    canary: bool = False
    state: str = "starting"
    state_since: float = 0.0
    outcome: str | None = None
    last_utterance: str = ""
    turns: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=TRANSCRIPT_TURNS))
    seqs: set[int] = field(default_factory=set)

    def summary(self, now: float, with_words: bool) -> dict[str, Any]:
        out = {"call_id": self.call_id, "caller": self.caller, "flow": self.flow, "version": self.version,
               "canary": self.canary, "state": self.state, "in_state_s": round(now - self.state_since, 1),
               "duration_s": round(now - self.started, 1)}  # fmt: skip
        if with_words:
            out["last_utterance"] = self.last_utterance
        return out


class Subscriber:
    """One transcript stream's queue: filled on the loop, emptied by its listener thread."""

    def __init__(self, call_id: str) -> None:
        self.call_id = call_id
        self.queue: deque[dict[str, Any]] = deque(maxlen=SUBSCRIBER_QUEUE)
        self.dropped = 0
        self.ended = False


class ConsoleState:
    def __init__(self, max_subscribers: int = 20, clock: Any = time.time) -> None:
        self.max_subscribers = max_subscribers
        self._clock = clock
        self._cond = threading.Condition()
        self._live: dict[str, LiveCall] = {}
        self._recent: deque[dict[str, Any]] = deque(maxlen=RECENT_CALLS)
        self._errors: deque[dict[str, Any]] = deque(maxlen=RECENT_ERRORS)
        self._deployments: list[Deployment] = []
        self._outcomes: dict[tuple[str, str], dict[str, int]] = {}  # (flow, version) -> outcome -> n
        self._subscribers: set[Subscriber] = set()
        self._redactor = Redactor()
        self.closed = False
        self.failures = 0

    # --- fed on the event loop ------------------------------------------------------------
    def observe(self, op: Op) -> None:
        """``StoreWriter.tap``: what a call stores, already redacted."""
        try:
            self._observe(op)
        except Exception:  # a console bug must never fail a call's store write
            self.failures += 1

    def _observe(self, op: Op) -> None:
        with self._cond:
            if isinstance(op, CallStarted):
                now = self._clock()
                if len(self._live) < MAX_LIVE_CALLS:
                    self._live[op.call_id] = LiveCall(op.call_id, mask_caller(op.caller_number), op.flow,
                                                      now, state_since=now)  # fmt: skip
            elif isinstance(op, CallEvent):
                call = self._live.get(op.call_id)
                if call is not None:
                    self._event(call, op.type, op.payload)
            elif isinstance(op, Turn):
                call = self._live.get(op.call_id)
                if call is not None and op.seq not in call.seqs and op.text:
                    self._turn(call, op)
            elif isinstance(op, CallEnded):
                self._ended(op)

    def set_deployments(self, versions: Iterable[Deployment]) -> None:
        with self._cond:
            self._deployments = list(versions)

    def error(self, event_dict: MutableMapping[str, Any]) -> None:
        """An error-level log event (any thread): its name, call and message, redacted."""
        detail = event_dict.get("error") or event_dict.get("exception") or ""
        entry = {"at": self._clock(), "event": str(event_dict.get("event", ""))[:100],
                 "call_id": event_dict.get("call_id"), "level": event_dict.get("level", "error"),
                 "detail": self._redactor.value(str(detail)[:ERROR_TEXT])}  # fmt: skip
        with self._cond:
            self._errors.append(entry)

    def close(self) -> None:
        with self._cond:
            self.closed = True
            self._cond.notify_all()

    def _event(self, call: LiveCall, kind: str, payload: dict[str, Any]) -> None:
        state = payload.get("state") if kind == "decision" else STATE_EVENTS.get(kind)
        if kind == "deployment":
            call.version, call.canary = (
                f"v{payload.get('version_number')}",
                payload.get("role") == "candidate",
            )
        elif kind == "flow_switched":
            call.flow, call.version = str(payload.get("flow")), None
        elif kind == "flow_ended":
            call.outcome = flow_outcome(payload.get("outcome"))
            key = (str(payload.get("flow")), call.version or "file")
            counts = self._outcomes.setdefault(key, {})
            counts[call.outcome] = counts.get(call.outcome, 0) + 1
        if state and state != call.state:
            call.state, call.state_since = str(state), self._clock()

    def _turn(self, call: LiveCall, op: Turn) -> None:
        call.seqs.add(op.seq)
        if len(call.seqs) > 4 * TRANSCRIPT_TURNS:
            call.seqs = {t["seq"] for t in call.turns}
        entry = {"seq": op.seq, "role": op.role, "text": op.text, "at": op.at.timestamp(),
                 "outcome": op.outcome}  # fmt: skip
        call.turns.append(entry)
        if op.role == "caller":
            call.last_utterance = op.text
        self._publish(call.call_id, entry)

    def _ended(self, op: CallEnded) -> None:
        call = self._live.pop(op.call_id, None)
        if call is None:
            return
        now = self._clock()
        self._recent.appendleft({"call_id": call.call_id, "caller": call.caller, "flow": call.flow,
                                 "version": call.version, "end_reason": op.end_reason,
                                 "outcome": call.outcome, "ended": now,
                                 "duration_s": round(now - call.started, 1)})  # fmt: skip
        self._publish(call.call_id, {"ended": op.end_reason})

    def _publish(self, call_id: str, entry: dict[str, Any]) -> None:
        for sub in self._subscribers:
            if sub.call_id == call_id:
                if len(sub.queue) == sub.queue.maxlen:
                    sub.dropped += 1
                sub.queue.append(entry)
        self._cond.notify_all()

    # --- read by the listener's threads -----------------------------------------------------
    def overview(self, with_words: bool) -> dict[str, Any]:
        with self._cond:
            now = self._clock()
            calls = [c.summary(now, with_words) for c in self._live.values()]
            return {"now": now, "calls": calls, "recent": list(self._recent), "flows": self._flows(),
                    "errors": list(reversed(self._errors))}  # fmt: skip

    def _flows(self) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = []
        seen = set()
        for d in self._deployments:
            key = (d.flow, f"v{d.version_number}")
            seen.add(key)
            rates = _rates(self._outcomes.get(key, {}))
            rows.append({"flow": d.flow, "version": key[1], "status": d.status,
                         "canary_percent": d.canary_percent, **rates})  # fmt: skip
        for (flow, version), counts in sorted(self._outcomes.items()):
            if (flow, version) not in seen:
                rows.append({"flow": flow, "version": version, "status": "file" if version == "file"
                             else "retired", "canary_percent": None, **_rates(counts)})  # fmt: skip
        return rows

    def transcript(self, call_id: str) -> list[dict[str, Any]] | None:
        with self._cond:
            call = self._live.get(call_id)
            return None if call is None else list(call.turns)

    def known(self, call_id: str) -> bool:
        with self._cond:
            return call_id in self._live

    def subscribe(self, call_id: str) -> tuple[Subscriber | None, list[dict[str, Any]]]:
        """A queue for the call's new turns, and its turns so far; (None, []) when the call is
        not in progress or ``max_subscribers`` streams are open."""
        with self._cond:
            call = self._live.get(call_id)
            if call is None or len(self._subscribers) >= self.max_subscribers:
                return None, []
            sub = Subscriber(call_id)
            self._subscribers.add(sub)
            return sub, list(call.turns)

    def unsubscribe(self, sub: Subscriber) -> None:
        with self._cond:
            self._subscribers.discard(sub)

    def wait(self, sub: Subscriber, timeout_s: float) -> list[dict[str, Any]]:
        """What arrived for ``sub`` (waiting up to ``timeout_s`` for something)."""
        with self._cond:
            if not sub.queue and not self.closed:
                self._cond.wait_for(lambda: bool(sub.queue) or self.closed, timeout_s)
            out = list(sub.queue)
            sub.queue.clear()
            return out

    @property
    def subscribers(self) -> int:
        with self._cond:
            return len(self._subscribers)


def _rates(counts: dict[str, int]) -> dict[str, Any]:
    total = sum(counts.values())
    contained, transferred = counts.get("contained", 0), counts.get("transferred", 0)
    pct = (lambda n: round(100 * n / total, 1)) if total else (lambda _n: None)
    return {"calls": total, "containment_pct": pct(contained), "transfer_pct": pct(transferred)}


def install_error_tap(state: ConsoleState) -> Callable[[], None]:
    """Copy error-level log events into ``state`` (after the log's own redaction, before it is
    rendered); returns what removes the tap again."""
    import structlog

    def tap(_logger: Any, method: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
        if method in ("error", "exception", "critical", "fatal"):
            state.error(event_dict)
        return event_dict

    processors = list(structlog.get_config()["processors"])
    structlog.configure(processors=[*processors[:-1], tap, processors[-1]])

    def remove() -> None:
        now = [p for p in structlog.get_config()["processors"] if p is not tap]
        structlog.configure(processors=now)

    return remove
