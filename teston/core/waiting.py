"""Waiting for an `asyncio.Event` with a time limit, without ever losing a cancellation.

On Python 3.11, `asyncio.wait_for` returns the inner result instead of raising `CancelledError` when the
task is cancelled at the moment the awaited event is set (python/cpython#86296, fixed in 3.12). A loop
that waits that way can then miss its own cancellation and run on for ever, and whoever awaits it after
cancelling it (a component being stopped) waits for ever too. `asyncio.timeout` has no such race.
"""

from __future__ import annotations

import asyncio


async def wait_event(event: asyncio.Event, seconds: float) -> bool:
    """Wait until `event` is set or `seconds` have passed; whether it was set."""
    try:
        async with asyncio.timeout(max(seconds, 0.0)):
            await event.wait()
    except TimeoutError:
        return event.is_set()
    return True
