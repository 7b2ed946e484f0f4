"""The production ingester (`python -m teston ingest`, its own process) on a paced local stream.

Figure 7 times it; figure 11 runs it beside the bot, so that the bot's kept answers are dropped by real
commits as they are in production.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import IO

import psycopg

from benchmarks.harness import Context
from benchmarks.local_stream import PacedStream
from benchmarks.synthetic import EventFactory
from teston.core.partitions import ensure_partitions

# Events generated for a live stream: enough for this long at its rate.
LIVE_SECONDS = 600.0


def start_ingester(
    context: Context, url: str, source: str, name: str, log: IO[str]
) -> subprocess.Popen[bytes]:
    """`teston ingest --source <source>` with default settings, its output in `log`."""
    home = context.workdir / f"{name}-home"
    home.mkdir(exist_ok=True)
    environment = {**os.environ, "DATABASE_URL": url, "TESTON_HOME": str(home), "LOG_LEVEL": "WARNING"}
    return subprocess.Popen(
        [sys.executable, "-m", "teston", "ingest", "--source", source, "--metrics-port", "0"],
        env=environment,
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=Path(__file__).resolve().parent.parent,
    )


def stop_ingester(ingester: subprocess.Popen[bytes]) -> None:
    """Stop it as an operator would (Ctrl-C), killing it if it does not end within 30 s."""
    stop_process(ingester, signal.SIGINT, timeout=30)


def stop_process(process: subprocess.Popen[bytes], signum: int, *, timeout: float) -> None:
    """Send `signum` to a running process, and kill it if it has not ended `timeout` s later."""
    if process.poll() is None:
        process.send_signal(signum)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


class LiveIngest:
    """Synthetic events of the profile's wikis, timed now, sent at `rate` and stored by the ingester."""

    def __init__(self, context: Context, url: str, rate: float) -> None:
        now = datetime.now(UTC)
        count = int(rate * LIVE_SECONDS)
        factory = EventFactory(context.profile, seed=context.seed + 11)
        lines = list(factory.events(count, now, now + timedelta(seconds=LIVE_SECONDS)))
        with psycopg.connect(url) as conn:
            ensure_partitions(conn, [now.date(), (now + timedelta(days=1)).date()])
            conn.commit()
        self._context, self._url, self._start = context, url, now
        self._stream = PacedStream(lines, rate)
        self._log_path = context.workdir / "live-ingest.log"

    def __enter__(self) -> LiveIngest:
        self._stream.__enter__()
        self._log = self._log_path.open("w")
        self._ingester = start_ingester(self._context, self._url, self._stream.url, "live", self._log)
        return self

    @property
    def sent(self) -> int:
        return len(self._stream.sent)

    def stored(self) -> int:
        """How many of the stream's events the ingester has committed so far."""
        with psycopg.connect(self._url) as conn:
            row = conn.execute(
                "SELECT count(*) FROM recent_changes WHERE event_time >= %s", (self._start,)
            ).fetchone()
        return int(row[0]) if row else 0

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        try:
            stop_ingester(self._ingester)
        finally:
            self._log.close()
            self._stream.__exit__(kind, error, trace)


async def until(condition: Callable[[], bool], what: str, seconds: float = 30.0) -> None:
    """Wait until `condition()` holds (checked every 10 ms), or fail after `seconds` saying `what`."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not happen within {seconds:.0f} s")
        await asyncio.sleep(0.01)
