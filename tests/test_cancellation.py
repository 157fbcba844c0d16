"""Ending a task before what it uses is closed, without losing its failure. (That it ends for
certain, even when it swallows a cancel, is shown through a stop in test_sequencer.py.)"""

from __future__ import annotations

import asyncio

import pytest

from exchange.cancellation import cancel_and_wait


def test_a_failure_the_task_had_ended_with_is_said_not_raised(
    capsys: pytest.CaptureFixture[str],
) -> None:
    async def scenario() -> None:
        async def failing() -> None:
            raise ValueError("the sweep broke")

        task = asyncio.create_task(failing(), name="sweeper")
        await asyncio.sleep(0)
        await cancel_and_wait(task)
        quiet = asyncio.create_task(asyncio.sleep(10), name="sleeper")
        await cancel_and_wait(quiet)

    asyncio.run(scenario())
    said = capsys.readouterr().err
    assert "task sweeper had failed: ValueError('the sweep broke')" in said
    assert "sleeper" not in said  # cancelled, as asked: nothing to say
