"""A pronunciation lexicon: domain words respelled so every engine says them right.

Loaded from a TOML file with one table, ``[lexicon]``, of ``word = "respelling"`` lines
(prompts/lexicon.toml ships with the server). Matching is whole-word and case-insensitive; a
key may be several words or contain dots ("e.g."). Longer keys win over their prefixes. The
respelled text is what the engines see and what the prompt cache is keyed by, so editing the
lexicon re-renders exactly the prompts it affects.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from pathlib import Path

from ivr_server.errors import ConfigError


class Lexicon:
    def __init__(self, entries: Mapping[str, str] | None = None) -> None:
        self.entries: dict[str, str] = {}
        for word, spoken in (entries or {}).items():
            key = " ".join(str(word).split()).lower()
            if not key or not isinstance(spoken, str) or not spoken.strip():
                raise ConfigError(
                    f"lexicon entry {word!r} = {spoken!r}: need a word and a non-empty respelling"
                )
            self.entries[key] = spoken.strip()
        self._pattern: re.Pattern[str] | None = None
        if self.entries:
            keys = sorted(self.entries, key=len, reverse=True)
            alternatives = "|".join(re.escape(k).replace(r"\ ", r"\s+") for k in keys)
            # Lookarounds, not \b: a key may start or end with a dot ("e.g.").
            self._pattern = re.compile(rf"(?<![\w.])(?:{alternatives})(?!\w)", re.IGNORECASE)

    @classmethod
    def load(cls, path: Path) -> Lexicon:
        """The lexicon in ``path``; ConfigError names the file and what is wrong with it."""
        try:
            with path.open("rb") as fh:
                table = tomllib.load(fh).get("lexicon", {})
        except OSError as err:
            raise ConfigError(f"lexicon {path} cannot be read ({err})") from err
        except tomllib.TOMLDecodeError as err:
            raise ConfigError(f"lexicon {path} is not valid TOML: {err}") from err
        if not isinstance(table, dict):
            raise ConfigError(f'lexicon {path}: [lexicon] must be a table of word = "respelling" lines')
        try:
            return cls(table)
        except ConfigError as err:
            raise ConfigError(f"lexicon {path}: {err}") from err

    def __len__(self) -> int:
        return len(self.entries)

    def apply(self, text: str) -> str:
        """``text`` with every lexicon word replaced by its respelling."""
        if self._pattern is None:
            return text
        return self._pattern.sub(lambda m: self.entries[" ".join(m.group().split()).lower()], text)
