"""Ending a task for certain before what it uses is closed under it."""

from __future__ import annotations

import asyncio
import sys
from typing import Any

CANCEL_RETRY_SECONDS = 0.05  # a task still running after a cancel is cancelled again this soon


async def cancel_and_wait(task: asyncio.Task[Any]) -> None:
    """Cancel `task` until it has ended. Once may not be enough: on Python 3.11 a cancellation
    that arrives as the future an `asyncio.wait_for` awaits completes is swallowed (CPython
    gh-86296), and stream followers await one (`next_msg`), so a follower cancelled just as a
    message arrived would take it and go on following, and whoever waits for it would wait for
    ever.

    A failure the task had already ended with is not the caller's to raise (it is stopping
    the task, not running it), but it is said, not swallowed: nobody else will retrieve it."""
    while not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=CANCEL_RETRY_SECONDS)
    if not task.cancelled() and task.exception() is not None:
        print(f"hogx: task {task.get_name()} had failed: {task.exception()!r}", file=sys.stderr)
