"""Where the shared public data sets are (FSDD, banking77, CLINC150): ``IVR_SHARED_DATA``, else
``../shared/data`` beside the checkout, else the workplace's ``/work/shared/data`` (a CI clone may
live anywhere)."""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def shared_data() -> Path:
    if env := os.environ.get("IVR_SHARED_DATA"):
        return Path(env)
    for candidate in (REPO.parent / "shared" / "data", Path("/work/shared/data")):
        if candidate.is_dir():
            return candidate
    return REPO.parent / "shared" / "data"


FSDD = shared_data() / "fsdd" / "recordings"
