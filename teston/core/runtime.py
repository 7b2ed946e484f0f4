"""Running long-lived components together: started in order, stopped in reverse on a signal or a failure.

`teston up` hands its components (ingestion today; the scheduler and the bot join later) to
`run_components`; each only has to offer async `start`, `wait` and `stop`.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
import sys
from collections.abc import Iterator, Sequence
from typing import Any, Protocol

log = logging.getLogger(__name__)


class Component(Protocol):
    """Something `teston up` runs: started once, stopped once, and awaitable until it ends by itself."""

    name: str

    async def start(self) -> None: ...

    async def wait(self) -> Any:
        """Return when the component has finished on its own; raise if it failed."""
        ...

    async def stop(self) -> None: ...


@contextlib.contextmanager
def stop_on_signals(stop: asyncio.Event) -> Iterator[None]:
    """Set `stop` on SIGINT or SIGTERM while inside the block (in the running event loop)."""
    loop = asyncio.get_running_loop()
    handled = []
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(signum, stop.set)
            handled.append(signum)
    try:
        yield
    finally:
        for signum in handled:
            loop.remove_signal_handler(signum)


def settle_heap() -> None:
    """Put what start-up built out of the garbage collector's reach (`gc.freeze`).

    Modules, the wiki catalog, pools and clients live as long as the process; a full collection would
    otherwise walk them all, 60 ms and more with the bot's libraries loaded, pausing every command in
    flight. Start-up's own garbage is collected first, so none of it is kept for ever.
    """
    gc.collect()
    gc.freeze()


# How long a thread may hold the interpreter lock while another waits for it, in a process that only
# ingests (`teston ingest`, `teston sink`): its writer thread, back from each round trip to PostgreSQL,
# waits for the parser on the event loop to let go, up to Python's default of 5 ms per round trip, and
# a commit makes four of them (BENCHMARKS.md, figure 1).
INGEST_SWITCH_INTERVAL = 0.001


@contextlib.contextmanager
def prompt_thread_switches(interval: float = INGEST_SWITCH_INTERVAL) -> Iterator[None]:
    """Meanwhile, threads waiting for the interpreter lock get it after `interval` s at most.

    Process-wide, so only for processes that ingest and nothing else: `teston up` keeps the default, as
    its bot and scheduler share the interpreter and were measured with it.
    """
    previous = sys.getswitchinterval()
    sys.setswitchinterval(interval)
    try:
        yield
    finally:
        sys.setswitchinterval(previous)


async def run_components(components: Sequence[Component], stop: asyncio.Event) -> None:
    """Run until `stop` is set or any component ends; then stop all, newest first.

    A component's failure is re-raised after every component has been stopped.
    """
    started: list[Component] = []
    failure: BaseException | None = None
    try:
        for component in components:
            await component.start()
            started.append(component)
            log.info("%s started", component.name)
        settle_heap()
        waiters = {asyncio.ensure_future(c.wait()): c for c in started}
        stopper = asyncio.ensure_future(stop.wait())
        try:
            done, _ = await asyncio.wait({stopper, *waiters}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopper.cancel()
            for waiter in waiters:
                waiter.cancel()
        for waiter in done:
            if waiter is stopper:
                continue
            name = waiters[waiter].name
            if not waiter.cancelled() and waiter.exception() is not None:
                failure = waiter.exception()
                log.error("%s failed: %s", name, failure)
            else:
                log.info("%s finished", name)
    finally:
        for component in reversed(started):
            try:
                await component.stop()
                log.info("%s stopped", component.name)
            except Exception as exc:
                log.exception("%s did not stop cleanly", component.name)
                failure = failure or exc
    if failure is not None:
        raise failure
