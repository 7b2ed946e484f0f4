"""Where a roll-up's time goes: `python -m benchmarks.rollup_stages [--events N] [--url URL]`.

One roll-up of a closed synthetic day (figure 3's day), timed stage by stage, beside PostgreSQL's own
read of the same day (its wait for the first byte, then the stream). Without `--url` it starts a
PostgreSQL of its own and loads the day through the ingest path; with `--url` it uses a server that
already holds figure 3's day. A profiling aid: it prints one table and asserts nothing.

Stages of the roll-up, each from the end of the one before:
  wait      the read's start until the first batch of rows is parsed
  stream    the rest of the day: parsed, split and handed to the two Parquet writers
  files     the writers finish (last row groups, fsync), the files are checked, renamed and recorded
  figures   every aggregate, from the typed file (a large day in two passes, `analytics.figure_passes`)
  record    the summary rows replaced in PostgreSQL
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pyarrow as pa

from analytics import day_rows, rollup
from benchmarks.harness import human_bytes, ingest_file, postgres, write_lines
from benchmarks.rollup_bench import DAY, drain_day, read_day_query
from benchmarks.synthetic import EventFactory, learn_profile
from teston.core.partitions import day_bounds


class Marks:
    """Timestamps of named moments, in order."""

    def __init__(self) -> None:
        self.moments: list[tuple[str, float]] = [("start", time.perf_counter())]

    def mark(self, name: str) -> None:
        self.moments.append((name, time.perf_counter()))

    def stages(self) -> list[tuple[str, float]]:
        return [
            (name, at - before)
            for (_, before), (name, at) in zip(self.moments, self.moments[1:], strict=False)
        ]


def _instrument(marks: Marks) -> Callable[[], None]:
    """Mark the stages of `rollup.rollup_day`; the function that undoes it."""
    original_iter = day_rows.DayStream.__iter__
    original_figures = rollup.figures_of_parquet
    original_record = rollup.record_figures

    def timed_iter(self: day_rows.DayStream) -> Iterator[Any]:
        first = True
        for item in original_iter(self):
            if first:
                marks.mark("wait")
                first = False
            yield item
        marks.mark("stream")

    def timed_figures(*args: Any, **kwargs: Any) -> Any:
        marks.mark("files")
        figures = original_figures(*args, **kwargs)
        marks.mark("figures")
        return figures

    def timed_record(*args: Any, **kwargs: Any) -> Any:
        result = original_record(*args, **kwargs)
        marks.mark("record")
        return result

    day_rows.DayStream.__iter__ = timed_iter  # type: ignore[method-assign]
    rollup.figures_of_parquet = timed_figures
    rollup.record_figures = timed_record

    def undo() -> None:
        day_rows.DayStream.__iter__ = original_iter  # type: ignore[method-assign]
        rollup.figures_of_parquet = original_figures
        rollup.record_figures = original_record

    return undo


def read_stages(url: str) -> list[tuple[str, float]]:
    """PostgreSQL's read of the day with the exporter's settings: its wait, then its stream."""
    marks = Marks()
    with psycopg.connect(url) as conn:
        for setting in day_rows.READ_SETTINGS:
            conn.execute(setting)
        first = True
        with conn.cursor().copy(read_day_query(DAY)) as copy:
            for _chunk in copy:
                if first:
                    marks.mark("wait")
                    first = False
        marks.mark("stream")
    return marks.stages()


def rollup_stages(url: str, export_dir: Path) -> tuple[list[tuple[str, float]], int]:
    marks = Marks()
    undo = _instrument(marks)
    try:
        with psycopg.connect(url) as conn:
            result = rollup.rollup_day(conn, export_dir, DAY, now=datetime.now(UTC))
    finally:
        undo()
    return marks.stages(), int(getattr(result, "events", 0))


def report(url: str) -> None:
    drain_day(url, DAY)  # warm: both read from memory
    cpu_before = resource.getrusage(resource.RUSAGE_SELF)
    with tempfile.TemporaryDirectory(prefix="teston-stages-") as directory:
        stages, events = rollup_stages(url, Path(directory))
    cpu_after = resource.getrusage(resource.RUSAGE_SELF)
    read = read_stages(url)
    total = sum(seconds for _, seconds in stages)
    read_total = sum(seconds for _, seconds in read)
    print(
        f"roll-up of {events:,} events: {total:.2f} s; the read: {read_total:.2f} s "
        f"({total / read_total:.2f}×)"
    )
    print("| stage | roll-up (s) | share | the read (s) |")
    print("|---|---|---|---|")
    read_of = dict(read)
    for name, seconds in stages:
        print(f"| {name} | {seconds:.2f} | {seconds / total:.0%} | {read_of.get(name, 0.0):.2f} |")
    cpu = (cpu_after.ru_utime - cpu_before.ru_utime) + (cpu_after.ru_stime - cpu_before.ru_stime)
    print(
        f"CPU of this process during the roll-up: {cpu:.1f} s; peak RSS "
        f"{human_bytes(cpu_after.ru_maxrss * 1024)}; Arrow's pool peak "
        f"{human_bytes(pa.default_memory_pool().max_memory())}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--url", help="a server already holding the day (figure 3's DAY)")
    args = parser.parse_args(argv)
    if args.url:
        report(args.url)
        return 0
    start, end = day_bounds(DAY)
    with tempfile.TemporaryDirectory(prefix="teston-stages-work-") as work, postgres() as server:
        jsonl = Path(work) / "day.jsonl"
        write_lines(jsonl, EventFactory(learn_profile(seed=1), seed=1).events(args.events, start, end))
        print(f"loading {args.events:,} events …", file=sys.stderr, flush=True)
        ingest_file(server.url, jsonl)
        jsonl.unlink()
        report(server.url)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
