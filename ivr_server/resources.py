"""Where the files that ship beside the package live (prompts, migrations, asterisk_conf).

A source checkout or editable install keeps them next to ``ivr_server/``; a wheel installs
them under ``<prefix>/share/ivr-server/``.
"""

from __future__ import annotations

import sys
from pathlib import Path

_SOURCE_ROOT = Path(__file__).resolve().parent.parent


def resource_dir(name: str) -> Path:
    """The directory ``name`` (e.g. "prompts"); the checkout's copy wins over an installed one."""
    candidates = [_SOURCE_ROOT / name, Path(sys.prefix) / "share" / "ivr-server" / name]
    for candidate in candidates:
        if candidate.is_dir():
            return candidate
    return candidates[0]
