"""Intent training data: CSV files with columns ``text,category`` (``oos`` = out of scope)."""

from __future__ import annotations

import csv
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ivr_server.errors import NluError

OUT_OF_SCOPE = "oos"
MAX_TEXT_CHARS = 500
MAX_ROWS = 200_000


@dataclass(frozen=True)
class Example:
    text: str
    category: str


def read_csv(path: Path) -> list[Example]:
    """Every row, or NluError naming the file and the first bad row."""
    try:
        with path.open(newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            missing = {"text", "category"} - set(reader.fieldnames or ())
            if missing:
                columns = ", ".join(sorted(missing))
                raise NluError(f"{path}: the header must name the columns text,category (missing: {columns})")
            rows = []
            for row in reader:
                line = reader.line_num
                text, category = (row.get("text") or "").strip(), (row.get("category") or "").strip()
                if not text or not category:
                    raise NluError(f"{path}:{line}: a row needs both text and category")
                if len(text) > MAX_TEXT_CHARS:
                    raise NluError(f"{path}:{line}: text longer than {MAX_TEXT_CHARS} characters")
                rows.append(Example(text, category))
                if len(rows) > MAX_ROWS:
                    raise NluError(f"{path}: more than {MAX_ROWS} rows")
    except OSError as err:
        raise NluError(f"{path}: cannot read: {err.strerror or err}") from err
    except (UnicodeDecodeError, csv.Error) as err:
        raise NluError(f"{path}: not a UTF-8 CSV file: {err}") from err
    if not rows:
        raise NluError(f"{path}: no rows")
    return rows


def take_shots(examples: Sequence[Example], shots: int, seed: int) -> list[Example]:
    """``shots`` examples per category, drawn with ``seed`` (all of a smaller category)."""
    by_category: dict[str, list[Example]] = defaultdict(list)
    for example in examples:
        by_category[example.category].append(example)
    rng = np.random.default_rng(seed)
    out: list[Example] = []
    for category in sorted(by_category):
        pool = by_category[category]
        picked = rng.choice(len(pool), size=min(shots, len(pool)), replace=False)
        out.extend(pool[i] for i in sorted(picked))
    return out
