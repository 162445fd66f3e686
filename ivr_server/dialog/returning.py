"""Returning callers: a caller who hung up in the middle of a task is offered, when they call the
same flow again within its window, to finish it ("Welcome back. Do you want to finish reporting
your lost card?"). Yes takes them back to the question they left, with what they had already
given (those slots are not asked again); anything else starts the flow as usual. A saved task
is offered once: it is deleted when offered, whatever the answer.

In the middle of a task: an intent was acted on and the caller hung up while asked for one of
its slots (a question, or the confirmation of an answer). A caller who hangs up at an open
question ("anything else?"), or while a back-end call runs, has nothing left to finish.

Off unless the flow has ``returning:`` and the server a caller-ID key: the caller is known only
by a keyed hash of their number (privacy/caller_id.py). Kept per caller and flow: the flow's
version, the state and intent, and the task's answers that are neither secure slots nor
personal data to the redaction step (a phone number given is asked again); never the caller's
words, nor what back-end calls or other tasks of the call filled in. Each
step is an audit event ``returning`` with its reason: kept, offered, resumed, declined,
not_offered (too old, or the flow changed), lookup_failed.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

import structlog

from ivr_server.dialog.repair import YES_NO, Ask
from ivr_server.dialog.session import CallerInput, Session
from ivr_server.dialog.slots.parsers import parse_heard
from ivr_server.dialog.spec.model import Flow, State
from ivr_server.privacy.redact import Redactor

log = structlog.get_logger(__name__)
OFFER = "Welcome back. Do you want to finish your {task} request from your last call?"
_PERSONAL = Redactor()  # what it would mask in a slot's value is not kept


@dataclass(frozen=True)
class SavedTask:
    """What is kept of a task the caller hung up in the middle of."""

    flow: str
    flow_version: str
    state: str  # the state whose question the caller left: where a yes takes them back
    intent: str
    slots: dict[str, str]  # the task's answers so far: no secure slot, no personal data
    saved_at: datetime


class TaskMemory(Protocol):
    """Where saved tasks are kept: the store (store/saved_tasks.py), or a dict (flow tests)."""

    async def find(self, caller: str, flow: str) -> SavedTask | None:
        """The caller's saved task in ``flow``, however old; raises when it cannot be read in time."""
        ...

    def keep(self, caller: str, task: SavedTask, expires_at: datetime) -> None:
        """Keep the task (replacing the caller's last one in the flow) until ``expires_at``."""
        ...

    def forget(self, caller: str, flow: str) -> None:
        """Remove the caller's saved task in ``flow``, if there is one."""
        ...


class MemoryTasks:
    """Saved tasks in a dict, for flow tests."""

    def __init__(self) -> None:
        self.tasks: dict[tuple[str, str], SavedTask] = {}

    async def find(self, caller: str, flow: str) -> SavedTask | None:
        return self.tasks.get((caller, flow))

    def keep(self, caller: str, task: SavedTask, expires_at: datetime) -> None:
        self.tasks[caller, task.flow] = task

    def forget(self, caller: str, flow: str) -> None:
        self.tasks.pop((caller, flow), None)


class Returning:
    """The engine's returning-caller behaviour (mixed into Engine, which provides what is declared here)."""

    flow: Flow
    session: Session
    audit: Callable[[str, dict[str, Any]], None]
    language: str
    _asks: list[Ask]
    _task_slots: list[str]

    if TYPE_CHECKING:

        def _task(self, intent: str | None) -> str: ...

        async def _say_text(self, text: str, state: State, expect: str | None = None) -> None: ...

        async def _hear(
            self, state: State, secure: bool = False, max_keys: int | None = 1, grammar: str | None = None
        ) -> CallerInput: ...

    def _init_returning(self, caller: str | None, memory: TaskMemory | None) -> None:
        on = self.flow.returning.enabled and caller is not None and memory is not None
        self._caller, self._memory = (caller, memory) if on else (None, None)
        self._looked_up = False  # the saved task was looked up (and offered, if there was one)
        self._lookup_failed = False  # whether one is kept is unknown: the call's end removes it

    async def _welcome_back(self) -> str:
        """The state the call starts in: the start state, or, for a caller who says yes to
        finishing the task they left, the state whose question they left."""
        start = self.flow.start
        if self._caller is None or self._memory is None:
            return start
        try:
            saved = await self._memory.find(self._caller, self.flow.name)
        except Exception as err:  # a database that is down or slow: no offer, and no wait
            self._looked_up = self._lookup_failed = True
            why = f"{type(err).__name__}: {err}"[:300]
            log.warning("returning.lookup_failed", flow=self.flow.name, error=why)
            self._returning_event("lookup_failed", None, why)
            return start
        self._looked_up = True
        if saved is None:
            return start
        self._memory.forget(self._caller, self.flow.name)  # offered once at most, whatever the answer
        why_not = self._unusable(saved)
        if why_not is not None:
            self._returning_event("not_offered", saved, why_not)
            return start
        state = self.flow.states[start]
        self.session.returning = "offered"
        self._returning_event("offered", saved, f"saved {self._minutes_since(saved)} minutes ago")
        await self._say_text(self._offer(saved), state, "yesno")
        answer = await self._hear(state, grammar="yesno")
        if parse_heard(YES_NO, answer.said, answer.alternatives, answer.keyed).value != "yes":
            self.session.returning = "declined"
            self._returning_event("declined", saved, "not a yes", answer)
            return start
        restored = {
            k: v for k, v in saved.slots.items() if k in self.flow.slots and not self.flow.slots[k].secure
        }
        self.session.slots.update(restored)
        self.session.intent = saved.intent
        self._task_slots[:] = list(restored)  # "cancel" drops them like answers given in this call
        self.session.returning = "resumed"
        self._returning_event("resumed", saved, "said yes", answer)
        return saved.state

    def _unusable(self, saved: SavedTask) -> str | None:
        """Why a saved task is not offered (None: it is)."""
        window = self.flow.returning.window_min
        if self._minutes_since(saved) > window:
            return f"saved {self._minutes_since(saved)} minutes ago, the window is {window}"
        state = self.flow.states.get(saved.state)
        if state is None or state.terminal or saved.intent not in self.flow.intents:
            return f"this flow version has no state {saved.state} or intent {saved.intent} to go on with"
        return None

    def _offer(self, saved: SavedTask) -> str:
        values: Mapping[str, str] = {**saved.slots, "task": self._task(saved.intent)}
        for name in (f"returning_offer_{saved.intent}", "returning_offer"):
            if (prompt := self.flow.prompts.get(name)) is not None:
                return prompt.text[self.language].render(values)
        return OFFER.format(task=values["task"])

    def _remember(self) -> None:
        """At the call's end: the task the caller hung up in the middle of is kept for their next
        call; after any other end, a task the store may still hold (the lookup failed) is removed."""
        if self._caller is None or self._memory is None or not self._looked_up:
            return  # off, or gone before the lookup ended: what is kept stays for the next call
        task, reason = self._unfinished() if self.session.outcome == "abandoned" else (None, "")
        if task is None:
            if self._lookup_failed:
                self._memory.forget(self._caller, self.flow.name)
            return
        self._memory.keep(self._caller, task, task.saved_at + timedelta(hours=self.flow.returning.keep_hours))
        self._returning_event("kept", task, reason)

    def _unfinished(self) -> tuple[SavedTask | None, str]:
        """The task the caller left, and why it counts as unfinished."""
        s = self.session
        ask = self._asks[-1] if self._asks else None
        if s.intent is None or ask is None or ask.slot is None or ask.slot in s.slots:
            return None, ""
        given = {k: s.slots[k] for k in self._task_slots if k in s.slots and not self.flow.slots[k].secure}
        slots = {k: v for k, v in given.items() if _PERSONAL.text(v).text == v}
        left = sorted(set(given) - set(slots))
        reason = f"hung up while asked for {ask.slot}" + (f"; not kept: {', '.join(left)}" if left else "")
        return SavedTask(self.flow.name, self.flow.version, ask.state, s.intent, slots, _utcnow()), reason

    def _minutes_since(self, saved: SavedTask) -> int:
        return int((_utcnow() - saved.saved_at).total_seconds() // 60)

    def _returning_event(
        self, action: str, task: SavedTask | None, reason: str, answer: CallerInput | None = None
    ) -> None:
        payload: dict[str, Any] = {
            "flow": self.flow.name,
            "flow_version": self.flow.version,
            "action": action,
            "reason": reason,
        }
        if task is not None:
            payload.update(state=task.state, intent=task.intent, saved_version=task.flow_version,
                           saved_at=task.saved_at.isoformat(), slots=sorted(task.slots))  # fmt: skip
        if answer is not None:
            payload["inputs"] = {"said": answer.said, "keyed": answer.keyed}
        self.audit("returning", payload)
        log.info("flow.returning", flow=self.flow.name, action=action, reason=reason,
                 intent=task.intent if task is not None else None)  # fmt: skip


def _utcnow() -> datetime:
    return datetime.now(UTC)
