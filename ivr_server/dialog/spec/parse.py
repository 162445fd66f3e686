"""A flow file's structure, field by field: every problem is collected with its place, so an
admin sees all of them at once (``ivr-server flows validate``), not the first one only."""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable
from dataclasses import fields
from pathlib import Path
from typing import Any, TypeVar

import regex

from ivr_server.dialog.context import condition_problem
from ivr_server.dialog.spec.model import (
    HTTP_METHODS,
    REPAIRS,
    Action,
    Flow,
    Intent,
    NluSpec,
    Prompt,
    RecognitionSpec,
    RepairSpec,
    ReturningSpec,
    Settings,
    Slot,
    State,
    Tool,
    Transition,
)
from ivr_server.dialog.spec.source import Path_, Source
from ivr_server.dialog.spec.template import Template, parse_template
from ivr_server.errors import FlowError
from ivr_server.speech.adapt.lexicon import PHONES

T = TypeVar("T")
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_DTMF = re.compile(r"^[0-9*#]{1,4}$")
TOP = (
    "flow",
    "handoff",
    "description",
    "start",
    "languages",
    "settings",
    "prompts",
    "intents",
    "slots",
    "tools",
    "states",
    "nlu",
    "recognition",
    "repair",
    "returning",
)
NLU = ("data", "out_of_scope", "generic_out_of_scope", "heard_per_intent")
MAX_HEARD_PER_INTENT = 100
RECOGNITION = ("pronunciations",)
REPAIR = ("off", "hold_s", "max_restarts", "max_corrections", "phrases")
MAX_REPAIR_PHRASES = 200  # per repair: a flow's own ways of asking, not a data set
RETURNING = ("window_min", "keep_hours")
MAX_WINDOW_MIN = 7 * 24 * 60  # a week
MAX_KEEP_HOURS = 30 * 24  # a month: a caller's unfinished task is not kept longer
_SPOKEN_WORD = re.compile(r"^[a-z][a-z']*$")
SETTINGS = tuple(f.name for f in fields(Settings))
_OPTIONAL_INTS = {"end_silence_ms"}  # unset: the server's own default applies
STATE = ("say", "listen", "collect", "do", "on", "end", *SETTINGS)
TRANSITION = ("intent", "event", "dtmf", "when", "do", "goto")
INTENT = ("examples", "keywords", "patterns", "dtmf", "confirm")
SLOT = ("type", "prompt", "length", "sensitive", "secure")
TOOL = (
    "method",
    "service",
    "path",
    "body",
    "timeout_s",
    "retries",
    "idempotent",
    "critical",
    "filler_after_ms",
    "filler",
    "result",
)
ACTIONS = ("say", "call", "set", "transfer", "hangup", "flow")
TRANSFER = (
    "context",
    "extension",
    "queue",
    "priority",
    "warm",
    "endpoint",
    "ring_s",
    "accept_s",
    "hold_announce_s",
)
_ENDPOINT = re.compile(r"^[A-Za-z][A-Za-z0-9]*/[A-Za-z0-9@._:+/-]{1,200}$")
_FLOW_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")


def suggest(word: str, choices: Any) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


class Builder:
    def __init__(self, source: Source) -> None:
        self.src = source
        self.has_data = False  # the flow names CSV data sets: intents may take their examples from them

    # --- typed readers: a wrong value is a problem and the default is used ----------------------
    def mapping(self, value: Any, path: Path_, allowed: tuple[str, ...] | None = None) -> dict[str, Any]:
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.src.problem(path, f"{_what(path)} must be a mapping (key: value), not {_kind(value)}")
            return {}
        for key in value:
            if allowed is not None and key not in allowed:
                expected = ", ".join(allowed)
                self.src.problem(
                    (*path, key), f"unknown key '{key}'{suggest(key, allowed)}; expected one of: {expected}"
                )
        return value

    def name_map(self, value: Any, path: Path_) -> dict[str, Any]:
        out = self.mapping(value, path)
        for key in out:
            if not _NAME.match(key):
                self.src.problem((*path, key), f"'{key}' is not a valid name (lower case letters, digits, _)")
        return out

    def typed(self, value: Any, path: Path_, kind: type[T], default: T, what: str) -> T:
        if value is None:
            return default
        ok = isinstance(value, kind) and not (kind in (int, float) and isinstance(value, bool))
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            return float(value)  # type: ignore[return-value]
        if not ok:
            self.src.problem(path, f"{_what(path)} must be {what}, not {_kind(value)} {value!r}")
            return default
        return value  # type: ignore[no-any-return]

    def strings(self, value: Any, path: Path_) -> tuple[str, ...]:
        if value is None:
            return ()
        if isinstance(value, str):
            return (value,)
        if not isinstance(value, list):
            self.src.problem(path, f"{_what(path)} must be a list of text, not {_kind(value)}")
            return ()
        out = []
        for i, item in enumerate(value):
            if isinstance(item, str | int) and not isinstance(item, bool):
                out.append(str(item))
            else:
                self.src.problem((*path, i), f"{_what(path)} items must be text, not {_kind(item)}")
        return tuple(out)

    def template(self, value: Any, path: Path_) -> Template | None:
        if not isinstance(value, str):
            self.src.problem(path, f"{_what(path)} must be text, not {_kind(value)}")
            return None
        try:
            return parse_template(value)
        except FlowError as err:
            self.src.problem(path, str(err))
            return None

    def dtmf(self, value: Any, path: Path_) -> str | None:
        if value is None:
            return None
        key = str(value) if isinstance(value, int | str) and not isinstance(value, bool) else ""
        if not _DTMF.match(key):
            self.src.problem(path, f'dtmf must be 1-4 keys of 0-9, * and # (quote it: "1"), not {value!r}')
            return None
        return key

    # --- the parts of a flow ------------------------------------------------------------------
    def settings(
        self, value: Any, path: Path_, base: Settings, allowed: tuple[str, ...] = SETTINGS
    ) -> Settings:
        raw = self.mapping(value, path, allowed)
        changes: dict[str, Any] = {}
        for f in fields(Settings):
            if f.name in raw:
                kind = int if f.name in _OPTIONAL_INTS else type(getattr(base, f.name))
                what = {bool: "true or false", int: "a whole number", float: "a number"}[kind]
                got = self.typed(raw[f.name], (*path, f.name), kind, getattr(base, f.name), what)
                if got is not None and kind is not bool and got < 0:
                    self.src.problem((*path, f.name), f"{f.name} must not be negative")
                    continue
                changes[f.name] = got
        merged = Settings(**{**base.__dict__, **changes})
        if not 0 <= merged.confirm_above <= merged.act_above <= 1:
            self.src.problem(path, "need 0 <= confirm_above <= act_above <= 1")
        if not 0 <= merged.asr_confirm_below <= 1:
            self.src.problem((*path, "asr_confirm_below"), "asr_confirm_below must be between 0 and 1")
        return merged

    def prompt(self, name: str, value: Any, path: Path_, languages: tuple[str, ...]) -> Prompt:
        texts = {languages[0]: value} if isinstance(value, str) else self.mapping(value, path)
        out = {}
        for lang, text in texts.items():
            if lang not in languages:
                self.src.problem(
                    (*path, lang),
                    f"language '{lang}' is not in the flow's languages ({', '.join(languages)})",
                )
                continue
            if (t := self.template(text, (*path, lang) if isinstance(value, dict) else path)) is not None:
                out[lang] = t
        for lang in languages:
            if lang not in texts:
                self.src.problem(path, f"prompt '{name}' has no '{lang}' text")
        return Prompt(name, out)

    def intent(self, name: str, value: Any, path: Path_) -> Intent:
        raw = self.mapping(value, path, INTENT)
        patterns = self.strings(raw.get("patterns"), (*path, "patterns"))
        for i, pattern in enumerate(patterns):
            try:
                regex.compile(pattern)  # what decide.py matches with (it has a timeout)
            except regex.error as err:
                self.src.problem(
                    (*path, "patterns", i), f"pattern {pattern!r} is not a regular expression: {err}"
                )
        examples = self.strings(raw.get("examples"), (*path, "examples"))
        keywords = self.strings(raw.get("keywords"), (*path, "keywords"))
        dtmf = self.dtmf(raw.get("dtmf"), (*path, "dtmf"))
        if not (examples or keywords or patterns or dtmf or self.has_data):  # data: checked at training
            self.src.problem(path, f"intent '{name}' needs examples, keywords, patterns or dtmf")
        confirm = self.typed(raw.get("confirm"), (*path, "confirm"), str, None, "a prompt name")
        return Intent(name, examples, tuple(k.lower() for k in keywords), patterns, dtmf, confirm)

    def slot(self, name: str, value: Any, path: Path_) -> Slot:
        raw = self.mapping(value, path, SLOT)
        kind = self.typed(raw.get("type"), (*path, "type"), str, "", "a slot type")
        length = self.typed(raw.get("length"), (*path, "length"), int, None, "a whole number")
        return Slot(
            name,
            kind,
            self.typed(raw.get("prompt"), (*path, "prompt"), str, None, "a prompt name"),
            length,
            self.typed(raw.get("sensitive"), (*path, "sensitive"), bool, False, "true or false"),
            self.typed(raw.get("secure"), (*path, "secure"), bool, False, "true or false"),
        )

    def tool(self, name: str, value: Any, path: Path_) -> Tool | None:
        raw = self.mapping(value, path, TOOL)
        method = str(raw.get("method", "GET")).upper()
        if method not in HTTP_METHODS:
            self.src.problem((*path, "method"), f"method '{method}' is not one of {', '.join(HTTP_METHODS)}")
        service = self.typed(raw.get("service"), (*path, "service"), str, "", "a service name")
        if not _NAME.match(service):
            self.src.problem(
                path, f"tool '{name}' needs 'service: NAME' (its base URL and secrets are in config)"
            )
        if "path" not in raw:
            self.src.problem(path, f"tool '{name}' needs a path (e.g. /cards/block)")
            return None
        url_path = self.template(raw["path"], (*path, "path"))
        if url_path is None:
            return None
        if not raw["path"].startswith("/"):
            self.src.problem(
                (*path, "path"), "path must start with / (the service's base URL comes from config)"
            )
        body = {
            k: t
            for k, v in self.mapping(raw.get("body"), (*path, "body")).items()
            if (t := self.template(v, (*path, "body", k))) is not None
        }
        result = {str(k): str(v) for k, v in self.name_map(raw.get("result"), (*path, "result")).items()}
        tool = Tool(
            name,
            method,
            service,
            url_path,
            body,
            self.typed(raw.get("timeout_s"), (*path, "timeout_s"), float, 3.0, "a number of seconds"),
            self.typed(raw.get("retries"), (*path, "retries"), int, 0, "a whole number"),
            self.typed(
                raw.get("idempotent"),
                (*path, "idempotent"),
                bool,
                method in ("GET", "PUT", "DELETE"),
                "true or false",
            ),
            self.typed(raw.get("critical"), (*path, "critical"), bool, False, "true or false"),
            self.typed(raw.get("filler_after_ms"), (*path, "filler_after_ms"), int, 1000, "a whole number"),
            self.typed(raw.get("filler"), (*path, "filler"), str, None, "a prompt name"),
            result,
        )
        if tool.retries and not tool.idempotent:
            self.src.problem(
                (*path, "retries"),
                f"tool '{name}' retries but is not idempotent: a retried {method} could act twice "
                "(set idempotent: true only if the service de-duplicates, e.g. by an idempotency key)",
            )
        if not 0 < tool.timeout_s <= 60:
            self.src.problem((*path, "timeout_s"), "timeout_s must be more than 0 and at most 60")
        return tool

    def actions(self, value: Any, path: Path_) -> tuple[Action, ...]:
        items = value if isinstance(value, list) else ([] if value is None else [value])
        out = []
        for i, item in enumerate(items):
            here = (*path, i) if isinstance(value, list) else path
            if isinstance(item, str) and item == "hangup":
                out.append(Action("hangup"))
                continue
            raw = self.mapping(item, here, (*ACTIONS, "in"))
            languages: tuple[str, ...] = ()
            if "in" in raw and "say" in raw:  # {say: choose_language, in: [en, ko]}
                languages = self.strings(raw.pop("in"), (*here, "in"))
            if len(raw) != 1:
                self.src.problem(here, f"an action is one of {', '.join(ACTIONS)} (one per list item)")
                continue
            ((kind, arg),) = raw.items()
            if kind == "say":
                out.append(Action("say", prompt=str(arg), languages=languages))
            elif kind == "flow":
                if not isinstance(arg, str) or not _FLOW_NAME.match(arg):
                    self.src.problem((*here, "flow"), f"a flow name (letters, digits, - and _), not {arg!r}")
                else:
                    out.append(Action("flow", flow=arg))
            elif kind == "call":
                out.append(Action("call", tool=str(arg)))
            elif kind == "set":
                out.append(
                    Action(
                        "set", values={str(k): str(v) for k, v in self.mapping(arg, (*here, "set")).items()}
                    )
                )
            elif kind == "transfer":
                out.append(Action("transfer", transfer=self.transfer(arg, (*here, "transfer"))))
            elif kind == "hangup":
                out.append(Action("hangup"))
        return tuple(out)

    def transfer(self, value: Any, path: Path_) -> dict[str, str]:
        """A blind transfer (a dialplan place: queue, or context and extension) or a warm one
        (``warm: true``, the agent's ``endpoint``; the caller comes back if nobody takes it)."""
        target = self.mapping(value, path, TRANSFER)
        warm = self.typed(target.get("warm"), (*path, "warm"), bool, False, "true or false")
        if warm:
            endpoint = target.get("endpoint")
            if not isinstance(endpoint, str) or not _ENDPOINT.match(endpoint):
                self.src.problem(
                    (*path, "endpoint"),
                    "a warm transfer needs the agent's endpoint as Asterisk dials it, e.g. PJSIP/agent "
                    f"or PJSIP/100@agents, not {str(endpoint)[:60]!r}",
                )
            for key, low, high in (("ring_s", 3, 300), ("accept_s", 3, 120), ("hold_announce_s", 5, 300)):
                if key in target:
                    got = self.typed(target[key], (*path, key), int, low, "a whole number of seconds")
                    if not low <= got <= high:
                        self.src.problem((*path, key), f"{key} must be from {low} to {high}, not {got}")
        elif not ("queue" in target or {"context", "extension"} <= target.keys()):
            self.src.problem(path, "transfer needs a queue, or a context and an extension (or warm: true)")
        return {str(k): str(v).lower() if isinstance(v, bool) else str(v) for k, v in target.items()}

    def transition(self, value: Any, path: Path_) -> Transition:
        raw = self.mapping(value, path, TRANSITION)
        for key in ("intent", "event", "goto"):
            if isinstance(raw.get(key), bool):  # YAML 1.1 reads yes/no/on/off as true/false
                self.src.problem((*path, key), f"{key} was read as {raw.pop(key)} (YAML): quote the name")
        triggers = [k for k in ("intent", "event", "dtmf") if k in raw]
        if len(triggers) > 1:
            self.src.problem(path, f"a transition has one trigger, not {' and '.join(triggers)}")
        when_raw = self.mapping(raw.get("when"), (*path, "when"))
        for key, wanted in when_raw.items():
            if str(key).startswith("ctx.") and (why := condition_problem(str(key)[4:], wanted)) is not None:
                self.src.problem((*path, "when", key), why)
        when = {str(k): (v if isinstance(v, bool) else str(v)) for k, v in when_raw.items()}
        goto = self.typed(raw.get("goto"), (*path, "goto"), str, None, "a state name")
        actions = self.actions(raw.get("do"), (*path, "do"))
        if goto is None and not actions:
            self.src.problem(path, "a transition needs goto or do")
        return Transition(
            self.typed(raw.get("intent"), (*path, "intent"), str, None, "an intent name"),
            self.typed(raw.get("event"), (*path, "event"), str, None, "an event name"),
            self.dtmf(raw.get("dtmf"), (*path, "dtmf")),
            when,
            actions,
            goto,
        )

    def state(self, name: str, value: Any, path: Path_, defaults: Settings) -> State:
        raw = self.mapping(value, path, STATE)
        on = raw.get("on")
        if on is not None and not isinstance(on, list):
            self.src.problem((*path, "on"), "on must be a list of transitions")
            on = []
        return State(
            name,
            self.strings(raw.get("say"), (*path, "say")),
            self.strings(raw.get("listen"), (*path, "listen")),
            self.strings(raw.get("collect"), (*path, "collect")),
            self.actions(raw.get("do"), (*path, "do")),
            tuple(self.transition(t, (*path, "on", i)) for i, t in enumerate(on or [])),
            self.settings({k: v for k, v in raw.items() if k in SETTINGS}, path, defaults, SETTINGS),
            self.typed(raw.get("end"), (*path, "end"), bool, False, "true or false"),
        )

    def nlu(self, value: Any, path: Path_) -> NluSpec:
        raw = self.mapping(value, path, NLU) if value is not None else {}
        data = self.strings(raw.get("data"), (*path, "data"))
        base = Path(self.src.file).parent
        for i, name in enumerate(data):
            if Path(name).is_absolute() or ".." in Path(name).parts:
                self.src.problem(
                    (*path, "data", i),
                    f"data file '{name[:80]}' must be a path inside the flow file's folder",
                )
            elif not (base / name).is_file():
                self.src.problem(
                    (*path, "data", i), f"data file '{name}' not found (paths are relative to the flow file)"
                )
        return NluSpec(
            data,
            self.strings(raw.get("out_of_scope"), (*path, "out_of_scope")),
            self.typed(
                raw.get("generic_out_of_scope"), (*path, "generic_out_of_scope"), bool, True, "true or false"
            ),
            self.heard_per_intent(raw.get("heard_per_intent"), (*path, "heard_per_intent")),
        )

    def heard_per_intent(self, value: Any, path: Path_) -> int:
        got = self.typed(value, path, int, 0, "a whole number")
        if not 0 <= got <= MAX_HEARD_PER_INTENT:
            self.src.problem(path, f"heard_per_intent must be from 0 to {MAX_HEARD_PER_INTENT}, not {got}")
            return 0
        return got

    def recognition(self, value: Any, path: Path_) -> RecognitionSpec:
        raw = self.mapping(value, path, RECOGNITION) if value is not None else {}
        own: dict[str, str] = {}
        for word, phones in self.mapping(raw.get("pronunciations"), (*path, "pronunciations")).items():
            where = (*path, "pronunciations", word)
            if not isinstance(word, str) or not _SPOKEN_WORD.match(word):
                self.src.problem(where, f"'{word}' is not a lower-case word (letters and ')")
                continue
            seq = phones.upper().split() if isinstance(phones, str) else []
            bad = [p for p in seq if p not in PHONES]
            if not seq or bad:
                self.src.problem(
                    where,
                    f"pronunciation of '{word}' must be ARPAbet phones separated by spaces "
                    f"(e.g. R EH V AH L UW T){'; unknown: ' + ', '.join(bad) if bad else ''}",
                )
                continue
            own[word] = " ".join(seq)
        return RecognitionSpec(own)

    def repair(self, value: Any, path: Path_) -> RepairSpec:
        raw = self.mapping(value, path, REPAIR) if value is not None else {}
        off = self.strings(raw.get("off"), (*path, "off"))
        for i, name in enumerate(off):
            if name not in REPAIRS:
                self.src.problem((*path, "off", i), f"unknown repair '{name}'{suggest(name, REPAIRS)}; "
                                 f"expected one of: {', '.join(REPAIRS)}")  # fmt: skip
        numbers = {}
        for key, default, low, high in (("hold_s", 30, 1, 600), ("max_restarts", 3, 0, 20),
                                        ("max_corrections", 3, 0, 20)):  # fmt: skip
            got = self.typed(raw.get(key), (*path, key), int, default, "a whole number")
            if not low <= got <= high:
                self.src.problem((*path, key), f"{key} must be from {low} to {high}, not {got}")
                got = default
            numbers[key] = got
        phrases: dict[str, tuple[str, ...]] = {}
        for name, listed in self.mapping(raw.get("phrases"), (*path, "phrases"), REPAIRS).items():
            got_phrases = self.strings(listed, (*path, "phrases", name))
            if len(got_phrases) > MAX_REPAIR_PHRASES:
                many = f"at most {MAX_REPAIR_PHRASES} phrases per repair, not {len(got_phrases)}"
                self.src.problem((*path, "phrases", name), many)
                got_phrases = got_phrases[:MAX_REPAIR_PHRASES]
            phrases[name] = got_phrases
        return RepairSpec(frozenset(off) & frozenset(REPAIRS), phrases=phrases, **numbers)

    def returning(self, value: Any, path: Path_) -> ReturningSpec:
        """Off when absent; ``returning: {window_min: 60, keep_hours: 24}`` turns it on."""
        if value is None:
            return ReturningSpec()
        raw = self.mapping(value, path, RETURNING)
        window = self.bounded(raw.get("window_min"), (*path, "window_min"), 60, 1, MAX_WINDOW_MIN)
        keep = self.bounded(raw.get("keep_hours"), (*path, "keep_hours"), 24, 1, MAX_KEEP_HOURS)
        if keep * 60 < window:
            self.src.problem((*path, "keep_hours"), f"keep_hours ({keep}) must cover window_min ({window} "
                             "minutes): a task deleted before its window ends is never offered")  # fmt: skip
        return ReturningSpec(True, window, keep)

    def bounded(self, value: Any, path: Path_, default: int, low: int, high: int) -> int:
        """A whole number from ``low`` to ``high`` (``default`` when absent or wrong)."""
        got = self.typed(value, path, int, default, "a whole number")
        if not low <= got <= high:
            self.src.problem(path, f"{path[-1]} must be from {low} to {high}, not {got}")
            return default
        return got

    def flow(self) -> Flow | None:
        if self.src.data is None:
            if not self.src.problems:
                self.src.problem((), "the file holds no flow: it needs 'flow: NAME' and 'states'")
            return None
        top = self.mapping(self.src.data, (), TOP)
        if not top:
            if isinstance(self.src.data, dict):
                self.src.problem((), "the file holds no flow: it needs 'flow: NAME' and 'states'")
            return None
        name = self.typed(top.get("flow"), ("flow",), str, "", "the flow's name")
        if not name:
            self.src.problem((), "the file needs 'flow: NAME' at the top")
        nlu_raw = top.get("nlu")
        self.has_data = isinstance(nlu_raw, dict) and bool(nlu_raw.get("data"))  # examples from CSV files
        languages = self.strings(top.get("languages", ["en"]), ("languages",)) or ("en",)
        settings = self.settings(top.get("settings"), ("settings",), Settings())
        built: dict[str, dict[str, Any]] = {}
        makers: dict[str, Callable[[str, Any, Path_], Any]] = {
            "prompts": lambda n, v, p: self.prompt(n, v, p, languages),
            "intents": self.intent,
            "slots": self.slot,
            "tools": self.tool,
            "states": lambda n, v, p: self.state(n, v, p, settings),
        }
        for part, make in makers.items():
            built[part] = {}
            for key, value in self.name_map(top.get(part), (part,)).items():
                if (item := make(key, value, (part, key))) is not None:
                    built[part][key] = item
        if not built["states"]:
            self.src.problem(("states",), "the flow needs at least one state")
            return None
        start = self.typed(top.get("start"), ("start",), str, next(iter(built["states"])), "a state name")
        handoff = self.typed(top.get("handoff"), ("handoff",), str, None, "a state name")
        nlu = self.nlu(top.get("nlu"), ("nlu",))
        recognition = self.recognition(top.get("recognition"), ("recognition",))
        repair = self.repair(top.get("repair"), ("repair",))
        returning = self.returning(top.get("returning"), ("returning",))
        return Flow(
            name,
            start,
            languages,
            settings,
            built["prompts"],
            built["intents"],
            built["slots"],
            built["tools"],
            built["states"],
            self.src.file,
            handoff,
            nlu,
            self.src.version,
            recognition,
            repair,
            returning=returning,
        )


def _what(path: Path_) -> str:
    return ".".join(str(p) for p in path) or "the file"


def _kind(value: Any) -> str:
    return {
        dict: "a mapping",
        list: "a list",
        str: "text",
        bool: "true/false",
        int: "a number",
        float: "a number",
        type(None): "nothing",
    }.get(type(value), type(value).__name__)
