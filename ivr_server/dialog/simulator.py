"""``ivr-server simulate FLOW``: a flow in the terminal. Type what the caller says; ``#123``
presses keys; an empty line is silence; ``/quit`` hangs up. Prompts, states, slots and every
decision are printed as they happen."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Mapping
from typing import TextIO

from ivr_server.dialog.engine import Engine
from ivr_server.dialog.session import CallerInput
from ivr_server.dialog.spec.model import Settings


class Hangup(Exception):
    pass


class TerminalPort:
    def __init__(self, out: TextIO = sys.stdout, read: TextIO = sys.stdin) -> None:
        self.out, self.read = out, read
        self.engine: Engine | None = None
        self._decisions = 0

    def _print(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    async def say(self, text: str, barge_in: bool, expect: str | None = None) -> None:
        self._print(f"  IVR: {text}")

    async def hear(
        self, settings: Settings, secure: bool, max_keys: int | None, grammar: str | None
    ) -> CallerInput:
        if self.engine is not None:
            s = self.engine.session
            for record in s.decisions[self._decisions :]:
                d = record.decision
                self._print(f"  [decision: {d.kind} {d.intent or ''} by {d.source} ({d.reason})]")
            self._decisions = len(s.decisions)
            slots = ", ".join(
                f"{k}={'*' * len(v) if s.flow.slots[k].secure else v}" for k, v in s.slots.items()
            )
            self._print(f"  [state {s.state}; slots: {slots or 'none'}{'; secure input' if secure else ''}]")
        self.out.write("caller> ")
        self.out.flush()
        line = await asyncio.to_thread(self.read.readline)
        if not line or line.strip() == "/quit":
            raise Hangup
        line = line.strip()
        return CallerInput(keyed=line[1:]) if line.startswith("#") else CallerInput(said=line)

    async def transfer(self, target: Mapping[str, str], variables: Mapping[str, str]) -> None:
        self._print(f"  [transfer to {dict(target)} with {dict(variables)}]")

    async def warm_transfer(
        self, target: Mapping[str, str], variables: Mapping[str, str], whisper: str
    ) -> str:
        """You play the agent: the whisper is printed, and you say how the agent leg ends."""
        self._print(f"  [ringing {target.get('endpoint')}; the agent hears: {whisper}]")
        self.out.write("agent (accept, busy, no_answer, declined)> ")
        self.out.flush()
        line = (await asyncio.to_thread(self.read.readline)).strip()
        outcome = "bridged" if line in ("", "accept") else line
        self._print(f"  [agent leg: {outcome}]")
        return outcome

    def use_language(self, language: str) -> bool:
        self._print(f"  [speaking {language}]")
        return True

    def switch_flow(self, name: str) -> bool:
        self._print(f"  [the call goes on in flow {name}]")
        return True

    async def hangup(self) -> None:
        self._print("  [the IVR hangs up]")
