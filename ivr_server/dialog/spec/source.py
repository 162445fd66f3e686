"""YAML read into plain values that remember where each one was written.

PyYAML's composer gives every node its line and column; the values handed on are plain dicts,
lists and scalars, and ``Source.where(path)`` names the place of any of them (a path is the
keys and indexes from the top: ``("states", "start", "on", 0, "goto")``). Duplicate keys, which
YAML itself silently resolves to the last one, are problems here: an admin's typo should not
quietly replace a state.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

Path_ = tuple[str | int, ...]
MAX_FLOW_BYTES = 1_000_000  # a flow is hand-written; anything bigger is a mistake or an attack
MAX_FLOW_VALUES = 100_000
# libyaml's parser (PyYAML's C binding, in its wheels) is about 16x faster than the pure-Python
# one: a hostile megabyte parses in well under a second.
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
MAX_DEPTH = 64  # blocks inside blocks: a hand-written flow uses under ten
_YAML = "tag:yaml.org,2002:"
# What plain YAML resolves to; any other tag ("!include", "!!python/...", "!!binary") is refused.
ALLOWED_TAGS = frozenset(
    _YAML + t for t in ("str", "int", "float", "bool", "null", "map", "seq", "timestamp")
)


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a flow, at a place an editor can jump to."""

    file: str
    line: int  # 1-based
    column: int  # 1-based
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}: {self.message}"


@dataclass
class Source:
    file: str
    data: Any
    positions: dict[Path_, tuple[int, int]] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    version: str = ""  # sha256 of the text, 12 hex digits

    def where(self, path: Path_) -> tuple[int, int]:
        """Line and column of ``path``, or of its nearest ancestor that has one."""
        while path not in self.positions and path:
            path = path[:-1]
        return self.positions.get(path, (1, 1))

    def problem(self, path: Path_, message: str) -> None:
        line, column = self.where(path)
        self.problems.append(Problem(self.file, line, column, message))


def read_source(path: Path) -> Source:
    """The file's values and positions; YAML syntax errors become problems, not exceptions."""
    name = str(path)
    try:
        raw = path.read_bytes()
    except OSError as err:
        return Source(name, None, problems=[Problem(name, 1, 1, f"cannot read the file: {err.strerror}")])
    if len(raw) > MAX_FLOW_BYTES:
        return Source(name, None, problems=[Problem(name, 1, 1, f"file is over {MAX_FLOW_BYTES} bytes")])
    return parse_source(raw.decode("utf-8", errors="replace"), name)


def parse_source(text: str, name: str = "<flow>") -> Source:
    # surrogatepass: text from an API may hold lone surrogates (refused below, by place)
    source = Source(
        name, None, version=hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:12]
    )
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as err:  # lone surrogates (text from an API, not from a file)
        line = text.count("\n", 0, err.start) + 1
        column = err.start - (text.rfind("\n", 0, err.start) + 1) + 1
        source.problems.append(
            Problem(name, line, column, "not valid YAML: a character that is not Unicode text")
        )
        return source
    if _bracket_depth(text) > MAX_DEPTH:  # refused before PyYAML, which slows and then recurses
        source.problems.append(
            Problem(name, 1, 1, f"nested too deeply (a flow nests under {MAX_DEPTH} levels)")
        )
        return source
    try:
        node = yaml.compose(text, Loader=_LOADER)
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        line, column = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        source.problems.append(Problem(name, line, column, f"not valid YAML: {err.problem or err}"))
        return source
    except yaml.YAMLError as err:
        source.problems.append(Problem(name, 1, 1, f"not valid YAML: {err}"))
        return source
    except RecursionError:  # PyYAML's composer recurses per level of nesting
        source.problems.append(
            Problem(name, 1, 1, f"nested too deeply (a flow nests under {MAX_DEPTH} levels)")
        )
        return source
    if node is None:
        source.problems.append(Problem(name, 1, 1, "the file is empty"))
        return source
    try:
        source.data = _Reader(source).value(node, ())
    except yaml.MarkedYAMLError as err:  # a tag no safe constructor takes: "=", "!!python/..."
        mark = err.problem_mark or err.context_mark
        line, column = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        source.data = None
        source.problems.append(Problem(name, line, column, f"not valid here: {err.problem or err}"))
    return source


def _bracket_depth(text: str) -> int:
    """How deep [ and { nest outside quotes and comments (an upper bound is enough: a text with
    fewer brackets than MAX_DEPTH is not even scanned)."""
    if text.count("[") + text.count("{") <= MAX_DEPTH:
        return 0
    depth = deepest = 0
    quote, previous = "", "\n"
    chars = iter(text)
    for ch in chars:
        if quote:
            if ch == "\\" and quote == '"':
                next(chars, None)
            elif ch == quote:
                quote = ""
        elif ch == "#" and previous in " \t\n":
            for rest in chars:  # a comment runs to the end of its line
                if rest == "\n":
                    break
        elif ch in "'\"":
            quote = ch
        elif ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth = max(0, depth - 1)
        previous = ch
    return deepest


def _at(node: yaml.Node) -> tuple[int, int]:
    return node.start_mark.line + 1, node.start_mark.column + 1


class _Reader:
    """Nodes to plain values with positions; one scalar constructor for the whole file."""

    def __init__(self, source: Source) -> None:
        self.source = source
        self.loader = yaml.SafeLoader("")
        self.values = 0

    def value(self, node: yaml.Node, path: Path_) -> Any:
        self.values += 1
        if self.values > MAX_FLOW_VALUES:  # aliases can make a small file expand without end
            if self.values == MAX_FLOW_VALUES + 1:
                self.source.problem(path, f"more than {MAX_FLOW_VALUES} values (YAML aliases expanding?)")
            return None
        self.source.positions[path] = _at(node)
        if node.tag not in ALLOWED_TAGS:
            self.source.problem(path, f"YAML tag {node.tag[:60]!r} is not allowed in a flow file")
            return None
        if len(path) > MAX_DEPTH:
            self.source.problem(path, f"nested too deeply (a flow nests under {MAX_DEPTH} levels)")
            return None
        if isinstance(node, yaml.MappingNode):
            return self.mapping(node, path)
        if isinstance(node, yaml.SequenceNode):
            return [self.value(item, (*path, i)) for i, item in enumerate(node.value)]
        try:
            return self.loader.construct_object(node, deep=True)  # int, float, bool, null, str, date
        except (ValueError, OverflowError, TypeError) as err:  # 5000 digits, the 45th of month 13
            self.source.problem(path, f"{str(node.value)[:40]!r} cannot be read as a value: {str(err)[:120]}")
            return None

    def mapping(self, node: yaml.MappingNode, path: Path_) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            # Keys are names as written: YAML 1.1 would read `on:` or `no:` as a boolean.
            if not isinstance(key_node, yaml.ScalarNode):
                self.source.problems.append(Problem(self.source.file, *_at(key_node), "keys must be names"))
                continue
            key = str(key_node.value)
            if key in out:
                self.source.positions[(*path, key)] = _at(key_node)
                self.source.problem((*path, key), f"'{key}' is defined twice")
                continue
            out[key] = self.value(value_node, (*path, key))
            if not isinstance(value_node, yaml.ScalarNode):  # a block: point at its name
                self.source.positions[(*path, key)] = _at(key_node)
        return out
