"""`wait_event`: a loop waiting on an event with a time limit ends when cancelled, whenever that comes."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import Awaitable, Callable

import pytest

from teston.core.waiting import wait_event

Waiter = Callable[[asyncio.Event, float], Awaitable[object]]


async def _with_wait_for(event: asyncio.Event, seconds: float) -> object:
    try:
        return await asyncio.wait_for(event.wait(), seconds)
    except TimeoutError:
        return False


async def _cancellations_lost(wait: Waiter, rounds: int = 200) -> int:
    """Cancel a waiting loop at the moment its event is set, `rounds` times; how many loops ran on."""

    async def loop(event: asyncio.Event) -> None:
        while True:
            await wait(event, 10.0)
            event.clear()

    lost = 0
    for _ in range(rounds):
        event = asyncio.Event()
        task = asyncio.create_task(loop(event))
        await asyncio.sleep(0)  # the loop is waiting
        event.set()
        task.cancel()
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        if not task.done():
            lost += 1
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    return lost


async def test_a_cancellation_that_meets_the_event_is_never_lost() -> None:
    assert await _cancellations_lost(wait_event) == 0


@pytest.mark.skipif(sys.version_info >= (3, 12), reason="asyncio.wait_for lost cancellations before 3.12")
async def test_the_race_it_avoids_is_real_with_wait_for() -> None:
    assert await _cancellations_lost(_with_wait_for) > 0


async def test_it_says_whether_the_event_was_set() -> None:
    event = asyncio.Event()
    assert await wait_event(event, 0.01) is False
    event.set()
    assert await wait_event(event, 0.01) is True
    assert await wait_event(event, 0) is True
    assert await wait_event(asyncio.Event(), -1) is False
