"""A coroutine run beside a block of test or benchmark code, cancelled when the block ends."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Coroutine
from contextlib import asynccontextmanager
from typing import Any


@asynccontextmanager
async def alongside(work: Coroutine[Any, Any, object]) -> AsyncIterator[asyncio.Task[object]]:
    """``work`` as a task for the block's duration; cancelled and awaited after it (its own
    exception, if it failed, stays in the task for the block to check)."""
    task = asyncio.create_task(work)
    try:
        yield task
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
