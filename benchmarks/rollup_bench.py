"""Figure 3: the roll-up of one closed day (Parquet export + every aggregate) against PostgreSQL's own read.

The day (1M synthetic events by default, 4M with `--size large`) is loaded through the real ingest path.
Then, interleaved, per round:

A. roll-up: `analytics.rollup.rollup_day` for the closed day, in a fresh child process (so its peak
   RSS is its own): export the typed and raw datasets to Parquet, verify them, compute the figures and
   replace the summary rows. Timed inside the child around that call only.
B. the read: the query the exporter sends, with its settings (`analytics.day_rows.READ_SETTINGS`),
   `COPY (SELECT <its columns> FROM recent_changes WHERE <the day> ORDER BY event_time, event_id) TO
   STDOUT (FORMAT CSV)`, drained by psycopg and thrown away.

Both run warm: one untimed read comes first, so neither pays for reading the table from disk.
"""

from __future__ import annotations

import shutil
import time
from datetime import UTC, date, datetime
from pathlib import Path

import psycopg
from psycopg import sql

from analytics.day_rows import READ_SETTINGS
from benchmarks.harness import (
    ChildFailed,
    Context,
    Figure,
    human_bytes,
    ingest_file,
    ratio,
    run_in_child,
    write_lines,
)
from benchmarks.synthetic import EventFactory
from teston.core.partitions import day_bounds
from teston.core.schema import RECENT_CHANGE_COLUMNS

DAY = date(2025, 5, 4)
# Median of the rounds, and no round above the second figure; a bigger day gets a little more.
TARGET_READ_MULTIPLE = 1.3
TARGET_READ_MULTIPLE_LARGE = 1.4
TARGET_WORST_ROUND = 1.5
LARGE_DAY = 4_000_000
# The day is streamed: the same peak RSS target from a 1M-event day up.
TARGET_PEAK_RSS = 600 << 20
PEAK_RSS_STATED_AT = 1_000_000

# The columns and order of `analytics.day_rows`: the typed columns, then the raw JSON as text.
_TYPED_COLUMNS = tuple(c for c in RECENT_CHANGE_COLUMNS if c != "raw")


def read_day_query(day: date) -> sql.Composed:
    """The exporter's read of a day: every column, raw as text, in key order, as CSV."""
    start, end = day_bounds(day)
    columns: list[sql.Composable] = [sql.Identifier(name) for name in _TYPED_COLUMNS]
    columns.append(sql.SQL("raw::text"))
    return sql.SQL(
        "COPY (SELECT {} FROM recent_changes WHERE event_time >= {} AND event_time < {}"
        " ORDER BY event_time, event_id) TO STDOUT (FORMAT CSV)"
    ).format(sql.SQL(", ").join(columns), sql.Literal(start), sql.Literal(end))


def drain_day(url: str, day: date) -> int:
    """PostgreSQL's read of the day with the exporter's settings, received and discarded; the bytes."""
    received = 0
    with psycopg.connect(url) as conn:
        for setting in READ_SETTINGS:
            conn.execute(setting)
        with conn.cursor().copy(read_day_query(day)) as copy:
            for chunk in copy:
                received += len(chunk)
    return received


def rollup_in_child(url: str, export_dir: str, day: date) -> dict[str, float]:
    """Runs in a spawned process: roll the day up (final, with its export); seconds and counts."""
    from analytics.rollup import rollup_day

    with psycopg.connect(url) as conn:
        started = time.perf_counter()
        result = rollup_day(conn, Path(export_dir), day, now=datetime.now(UTC))
        seconds = time.perf_counter() - started
    # A day with no rows comes back as a different outcome, without these fields.
    events = getattr(result, "events", None)
    if events is None:
        raise RuntimeError(f"nothing was rolled up: {result!r}")
    exported = getattr(result, "exported", None)
    return {
        "seconds": seconds,
        "events": float(events),
        "wikis": float(getattr(result, "wikis", 0)),
        "typed_bytes": float(exported.bytes if exported else 0),
        "raw_bytes": float(exported.raw_path.stat().st_size if exported and exported.raw_path else 0),
    }


def target_multiple(events: int) -> float:
    return TARGET_READ_MULTIPLE_LARGE if events >= LARGE_DAY else TARGET_READ_MULTIPLE


def target_text(events: int) -> str:
    text = f"≤ {target_multiple(events)} × the read (no round over {TARGET_WORST_ROUND}×)"
    text += f"; peak RSS ≤ {TARGET_PEAK_RSS >> 20} MiB"
    if events < PEAK_RSS_STATED_AT:
        text += " (RSS target not applicable at this size)"
    return text


def _failed(events: int, error: str) -> Figure:
    first_line = error.strip().splitlines()[0] if error.strip() else "unknown error"
    return Figure(
        number=3,
        what=f"roll-up of one day (export + all aggregates), {events:,} events",
        result=f"failed: {first_line}",
        target=target_text(events),
        met=False,
        values={"ratio": float("nan")},
        notes=f"`analytics.rollup.rollup_day` raised: {error.strip()[:500]}",
    )


def run(context: Context) -> list[Figure]:
    size = context.size
    start, end = day_bounds(DAY)
    events = size.rollup_events
    jsonl = context.workdir / "rollup-day.jsonl"
    context.log(f"rollup: generating {events:,} events")
    json_bytes = write_lines(
        jsonl, EventFactory(context.profile, seed=context.seed).events(events, start, end)
    )
    with context.postgres() as server:
        context.log("rollup: loading them through the ingest path")
        load_started = time.monotonic()
        stored = ingest_file(server.url, jsonl)
        context.log(f"rollup: {stored:,} rows loaded in {time.monotonic() - load_started:.0f}s")
        jsonl.unlink()
        export_dir = context.workdir / "exports"

        drain_day(server.url, DAY)  # warm-up: both sides then read from memory
        rollup_seconds: list[float] = []
        read_seconds: list[float] = []
        peaks: list[int] = []
        last: dict[str, float] = {}
        for round_no in range(size.rollup_rounds):
            shutil.rmtree(export_dir, ignore_errors=True)
            try:
                last, peak = run_in_child(rollup_in_child, server.url, str(export_dir), DAY)
            except ChildFailed as exc:
                context.log(f"rollup: the roll-up failed: {exc}")
                return [_failed(stored, str(exc))]
            rollup_seconds.append(last["seconds"])
            peaks.append(peak)
            started = time.perf_counter()
            drain_day(server.url, DAY)
            read_seconds.append(time.perf_counter() - started)
            context.log(
                f"rollup round {round_no + 1}: roll-up {rollup_seconds[-1]:.2f}s (peak RSS "
                f"{human_bytes(peak)}), read {read_seconds[-1]:.2f}s"
            )
        shutil.rmtree(export_dir, ignore_errors=True)

    if int(last.get("events", -1)) != stored:
        raise RuntimeError(f"the roll-up counted {last.get('events')} events, {stored} were stored")
    multiple = ratio([a / b for a, b in zip(rollup_seconds, read_seconds, strict=True)])
    peak = max(peaks)
    rss_applies = events >= PEAK_RSS_STATED_AT
    met = (
        multiple.median <= target_multiple(stored)
        and multiple.high <= TARGET_WORST_ROUND
        and (peak <= TARGET_PEAK_RSS or not rss_applies)
    )
    median_rollup = sorted(rollup_seconds)[len(rollup_seconds) // 2]
    median_read = sorted(read_seconds)[len(read_seconds) // 2]
    return [
        Figure(
            number=3,
            what=f"roll-up of one day (export + all aggregates), {stored:,} events",
            result=f"{median_rollup:.2f} s ({stored / median_rollup:,.0f} events/s), "
            f"peak RSS {human_bytes(peak)}",
            baseline=f"PostgreSQL's COPY (SELECT …) TO STDOUT of the day, drained: {median_read:.2f} s",
            ratio=str(multiple),
            target=target_text(stored),
            met=met,
            values={
                "rollup_s": median_rollup,
                "read_s": median_read,
                "ratio": multiple.median,
                "ratio_low": multiple.low,
                "ratio_high": multiple.high,
                "peak_rss_bytes": float(peak),
                "events": float(stored),
                "json_bytes": float(json_bytes),
            },
            notes=(
                f"{size.rollup_rounds} rounds A/B; {int(last.get('wikis', 0))} wikis; Parquet export "
                f"{human_bytes(last.get('typed_bytes', 0))} typed + {human_bytes(last.get('raw_bytes', 0))}"
                " raw."
            ),
        )
    ]
