"""Roll-ups end to end: real captures through the real ingester, checked against a plain-Python count."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import re
import uuid
from collections import Counter, defaultdict
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pyarrow.parquet as pq
import pytest
from psycopg import sql
from typer.testing import CliRunner

from analytics import bookkeeping, day_files, jobs, layout, retention, rollup
from bot.queries import DayReading, read_day
from teston.cli import app
from teston.core.partitions import existing_partition_days
from teston.core.statuses import DayStatus, JobStatus
from tests.replays import ingest_path

DATA = Path(__file__).parent / "data"
CAPTURES = sorted(p.name for p in DATA.glob("*.jsonl"))
STATS_FIGURES = (
    "changes",
    "edits",
    "new_pages",
    "log_actions",
    "categorize",
    "other_types",
    "bot_changes",
    "anonymous_changes",
    "human_changes",
    "content_changes",
    "other_namespace_changes",
    "bytes_added",
    "bytes_removed",
    "net_bytes",
    "distinct_editors",
    "distinct_pages",
    "hourly_changes",
)


# --- The expected figures: a separate, deliberately plain pass over the JSON lines. -----------------


def _anonymous(user: str | None) -> bool:
    if user is None:
        return False
    if re.fullmatch(r"~[0-9]{4}-.*", user, flags=re.DOTALL):
        return True
    try:
        ipaddress.ip_address(user)
    except ValueError:
        return False
    return True


def expected_figures(path: Path) -> tuple[dict[tuple[date, str], dict[str, Any]], dict, dict]:
    """Per (day, wiki): every daily_wiki_stats figure; and the top-10 pages and editors."""
    stats: dict[tuple[date, str], dict[str, Any]] = {}
    titles: dict[tuple[date, str], set[str]] = defaultdict(set)
    users: dict[tuple[date, str], set[str]] = defaultdict(set)
    page_edits: dict[tuple[date, str], Counter[tuple[str, int]]] = defaultdict(Counter)
    editor_edits: dict[tuple[date, str], Counter[str]] = defaultdict(Counter)
    editor_bot: dict[tuple[date, str, str], bool] = defaultdict(bool)
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        e = json.loads(line)
        if (e.get("meta") or {}).get("domain") == "canary":
            continue
        moment = datetime.fromtimestamp(e["timestamp"], UTC)
        key = (moment.date(), e["wiki"])
        s = stats.setdefault(key, {name: 0 for name in STATS_FIGURES} | {"hourly_changes": [0] * 24})
        kind, user, bot = e["type"], e.get("user"), e["bot"]
        s["changes"] += 1
        s["hourly_changes"][moment.hour] += 1
        if kind in ("edit", "new"):
            s["edits"] += 1
            length = e.get("length") or {}
            if length.get("new") is not None:
                delta = length["new"] - (length.get("old") or 0)
                s["bytes_added"] += max(delta, 0)
                s["bytes_removed"] += max(-delta, 0)
            if e.get("title") is not None:
                page_edits[key][(e["title"], e.get("namespace"))] += 1
            if user is not None:
                editor_edits[key][user] += 1
                editor_bot[(*key, user)] |= bot
        if kind == "new":
            s["new_pages"] += 1
        elif kind == "log":
            s["log_actions"] += 1
        elif kind == "categorize":
            s["categorize"] += 1
        elif kind != "edit":
            s["other_types"] += 1
        if bot:
            s["bot_changes"] += 1
        elif _anonymous(user):
            s["anonymous_changes"] += 1
        else:
            s["human_changes"] += 1
        if e.get("namespace") == 0:
            s["content_changes"] += 1
        else:
            s["other_namespace_changes"] += 1
        if user is not None:
            users[key].add(user)
        if e.get("title") is not None:
            titles[key].add(e["title"])
    for key, s in stats.items():
        s["net_bytes"] = s["bytes_added"] - s["bytes_removed"]
        s["distinct_editors"] = len(users[key])
        s["distinct_pages"] = len(titles[key])
    top_pages = {
        key: [
            (rank, ns, title, n)
            for rank, ((title, ns), n) in enumerate(
                sorted(counter.items(), key=lambda item: (-item[1], item[0][0]))[:10], start=1
            )
        ]
        for key, counter in page_edits.items()
    }
    top_editors = {
        key: [
            (rank, user, editor_bot[(*key, user)], n)
            for rank, (user, n) in enumerate(sorted(counter.items(), key=lambda i: (-i[1], i[0]))[:10], 1)
        ]
        for key, counter in editor_edits.items()
    }
    return stats, top_pages, top_editors


# --- Reading the summary tables back. ---------------------------------------------------------------


def summary_rows(conn: psycopg.Connection) -> dict[str, list[tuple[Any, ...]]]:
    """Every summary row, without the computed_at stamps."""
    with conn.transaction():
        return {
            "stats": conn.execute(
                sql.SQL("SELECT day, wiki, {} FROM daily_wiki_stats ORDER BY day, wiki").format(
                    sql.SQL(", ").join(map(sql.Identifier, STATS_FIGURES))
                )
            ).fetchall(),
            "pages": conn.execute("SELECT * FROM daily_top_pages ORDER BY day, wiki, rank").fetchall(),
            "editors": conn.execute("SELECT * FROM daily_top_editors ORDER BY day, wiki, rank").fetchall(),
            "rollups": conn.execute(
                "SELECT day, status, incomplete, events, wikis, max_received_at FROM day_rollups ORDER BY day"
            ).fetchall(),
        }


@pytest.mark.parametrize("capture", CAPTURES)
def test_capture_figures_are_exact(
    capture: str, db_url: str, conn: psycopg.Connection, tmp_path: Path
) -> None:
    path = DATA / capture
    summary = ingest_path(db_url, path)
    assert summary.quarantined == 0
    export_dir = tmp_path / "exports"

    results = [rollup.rollup_day(conn, export_dir, day) for day in bookkeeping.raw_days(conn)]

    stats, top_pages, top_editors = expected_figures(path)
    expected_days = sorted({day for day, _ in stats})
    assert [r.day for r in results] == expected_days
    assert all(r.status == DayStatus.FINAL for r in results)
    got = summary_rows(conn)
    assert {(row[0], row[1]): dict(zip(STATS_FIGURES, row[2:], strict=True)) for row in got["stats"]} == stats
    got_pages: dict[tuple[date, str], list[tuple[Any, ...]]] = defaultdict(list)
    for day, wiki, rank, ns, title, n in got["pages"]:
        got_pages[(day, wiki)].append((rank, ns, title, n))
    assert got_pages == top_pages
    got_editors: dict[tuple[date, str], list[tuple[Any, ...]]] = defaultdict(list)
    for day, wiki, rank, user, bot, n in got["editors"]:
        got_editors[(day, wiki)].append((rank, user, bot, n))
    assert got_editors == top_editors
    for day, status, incomplete, events, wikis, _ in got["rollups"]:
        day_stats = [s for (d, _), s in stats.items() if d == day]
        assert (status, incomplete) == ("final", False)
        assert events == sum(s["changes"] for s in day_stats)
        assert wikis == len(day_stats)
        # The export holds the same events, as DuckDB and Polars count them.
        assert day_files.parquet_rows(layout.day_path(export_dir, day)) == events


def read_wiki_day(db_url: str, day: date, wiki: str) -> DayReading:
    """A wiki's day as the bot reads it (`!stats`), top ten pages included."""

    async def read() -> DayReading:
        async with await psycopg.AsyncConnection.connect(db_url) as connection:
            return await read_day(connection, wiki, day, pages=10)

    return asyncio.run(read())


def test_rolling_up_twice_gives_the_same_rows_and_bytes(
    db_url: str, conn: psycopg.Connection, tmp_path: Path
) -> None:
    ingest_path(db_url, DATA / "2021-08-27_all-wikis_1950.jsonl")
    day = date(2021, 8, 27)
    rollup.rollup_day(conn, tmp_path, day)
    first_rows = summary_rows(conn)
    first_bytes = layout.day_path(tmp_path, day).read_bytes()
    first_raw = layout.raw_day_path(tmp_path, day).read_bytes()

    rollup.rollup_day(conn, tmp_path, day)

    assert summary_rows(conn) == first_rows
    assert layout.day_path(tmp_path, day).read_bytes() == first_bytes
    assert layout.raw_day_path(tmp_path, day).read_bytes() == first_raw


def _late_copy(path: Path, **changes: Any) -> dict[str, Any]:
    """The first event of a capture as a new event (new id), with `changes` applied."""
    event = json.loads(path.read_text(encoding="utf-8").splitlines()[0])
    event["meta"]["id"] = str(uuid.uuid4())
    return event | changes


def _ingest_events(db_url: str, tmp_path: Path, events: list[dict[str, Any]]) -> None:
    path = tmp_path / f"late-{uuid.uuid4().hex}.jsonl"
    path.write_text("".join(json.dumps(e) + "\n" for e in events), encoding="utf-8")
    assert ingest_path(db_url, path).ingested == len(events)


def test_a_late_event_changes_a_finalized_day_on_the_next_run(
    db_url: str, conn: psycopg.Connection, tmp_path: Path
) -> None:
    capture = DATA / "2023-07-29_enwiki_100.jsonl"
    ingest_path(db_url, capture)
    day = date(2023, 7, 29)
    rollup.rollup_day(conn, tmp_path, day)
    assert bookkeeping.stale_days(conn) == []
    before = summary_rows(conn)["stats"]

    _ingest_events(db_url, tmp_path, [_late_copy(capture, type="new", user="LateComer", bot=False)])

    assert bookkeeping.stale_days(conn) == [day]
    result = jobs.intraday(conn, tmp_path)
    assert day.isoformat() in result.details["stale"]
    after = summary_rows(conn)
    changes = STATS_FIGURES.index("changes") + 2
    assert after["stats"][0][changes] == before[0][changes] + 1
    assert after["rollups"][0][1:4] == ("final", False, 101)
    assert day_files.parquet_rows(layout.day_path(tmp_path, day)) == 101
    assert bookkeeping.stale_days(conn) == []


def test_a_recorded_gap_marks_the_day_incomplete(
    db_url: str, conn: psycopg.Connection, tmp_path: Path
) -> None:
    ingest_path(db_url, DATA / "2025-05-03_sample_144.jsonl")
    day = date(2025, 5, 3)
    rollup.rollup_day(conn, tmp_path, day)
    assert summary_rows(conn)["rollups"][0][2] is False
    conn.execute(
        "INSERT INTO ingest_gaps (stream, gap_from, gap_to) VALUES ('recentchange', %s, %s)",
        (datetime(2025, 5, 3, 23, 50, tzinfo=UTC), datetime(2025, 5, 4, 0, 10, tzinfo=UTC)),
    )
    conn.commit()

    assert bookkeeping.stale_days(conn) == [day]
    jobs.intraday(conn, tmp_path)

    assert summary_rows(conn)["rollups"][0][1:3] == ("final", True)


def test_today_is_partial_and_not_exported(db_url: str, conn: psycopg.Connection, tmp_path: Path) -> None:
    capture = DATA / "2023-07-29_enwiki_100.jsonl"
    now = datetime.now(UTC)
    _ingest_events(
        db_url, tmp_path, [_late_copy(capture, timestamp=int(now.timestamp()) - n) for n in range(3)]
    )
    today, yesterday = now.date(), now.date() - timedelta(days=1)
    collected_yesterday = any((now - timedelta(seconds=n)).date() == yesterday for n in range(3))

    result = jobs.intraday(conn, tmp_path, now=now)

    rolled = {d["day"]: d for d in result.details["days"]}
    assert rolled[today.isoformat()]["status"] == "partial"
    assert rolled[today.isoformat()]["events"] == sum(
        1 for n in range(3) if (now - timedelta(seconds=n)).date() == today
    )
    # Yesterday had no events and no arrivals: nobody collected it, so it gets no roll-up.
    if not collected_yesterday:
        assert yesterday.isoformat() not in rolled
        assert result.details["no_data"] == [yesterday.isoformat()]
        assert read_wiki_day(db_url, yesterday, "enwiki").rollup is None
    assert layout.exported_days(tmp_path) == []


def test_a_day_nobody_collected_gets_no_rollup(db_url: str, conn: psycopg.Connection, tmp_path: Path) -> None:
    day = date(2024, 2, 29)
    assert not bookkeeping.day_has_data(conn, day)

    result = rollup.rollup_day(conn, tmp_path, day)

    assert result == rollup.NoData(day)
    assert summary_rows(conn)["rollups"] == []
    assert layout.exported_days(tmp_path) == []
    assert read_wiki_day(db_url, day, "enwiki").rollup is None


def test_a_fresh_home_has_no_stats_until_something_arrives(
    db_url: str, conn: psycopg.Connection, tmp_path: Path
) -> None:
    # The first `teston up`: the schedule runs before any event is stored.
    now = datetime(2026, 11, 27, 9, 30, tzinfo=UTC)
    today, yesterday = now.date(), now.date() - timedelta(days=1)
    first = jobs.intraday(conn, tmp_path, now=now)
    assert first.details["days"] == []
    assert first.details["no_data"] == [today.isoformat(), yesterday.isoformat()]
    assert summary_rows(conn)["rollups"] == []
    night = jobs.nightly(conn, tmp_path, retention_days=30, now=now)
    assert night.details["days"] == []
    assert summary_rows(conn)["rollups"] == []

    # Events of today arrive: today is rolled up partial; yesterday stays without data.
    capture = DATA / "2023-07-29_enwiki_100.jsonl"
    stamp = int((now - timedelta(hours=1)).timestamp())
    _ingest_events(db_url, tmp_path, [_late_copy(capture, timestamp=stamp) for _ in range(2)])
    jobs.intraday(conn, tmp_path, now=now)
    assert [(row[0], row[1], row[3]) for row in summary_rows(conn)["rollups"]] == [(today, "partial", 2)]
    assert read_wiki_day(db_url, yesterday, "enwiki").rollup is None
    # Collected, but nothing on that wiki: zero, not "no data".
    quiet = read_wiki_day(db_url, today, "dewiki")
    assert quiet.rollup is not None
    assert quiet.figures is None

    # The next night finalizes the day that has data, and only that one.
    later = now + timedelta(days=1)
    night = jobs.nightly(conn, tmp_path, retention_days=30, now=later)
    assert [d["day"] for d in night.details["days"]] == [today.isoformat()]
    assert [(row[0], row[1], row[3]) for row in summary_rows(conn)["rollups"]] == [(today, "final", 2)]


def test_empty_rollups_of_days_nobody_collected_are_removed(
    db_url: str, conn: psycopg.Connection, tmp_path: Path
) -> None:
    ingest_path(db_url, DATA / "2023-07-29_enwiki_100.jsonl")
    day = date(2023, 7, 29)
    # Zero roll-ups, as earlier versions wrote them for days before and after the capture.
    for empty, status in ((day - timedelta(days=1), "partial"), (day + timedelta(days=1), "final")):
        conn.execute(
            "INSERT INTO day_rollups (day, status, incomplete, events, wikis, computed_at)"
            " VALUES (%s, %s, false, 0, 0, now())",
            (empty, status),
        )
    conn.commit()

    outcome = jobs.nightly(conn, tmp_path, retention_days=30, now=datetime(2026, 1, 1, tzinfo=UTC))

    assert [d["day"] for d in outcome.details["days"]] == [day.isoformat()]
    assert outcome.details["no_data"] == [(day - timedelta(days=1)).isoformat(), "2023-07-30"]
    assert [row[0] for row in summary_rows(conn)["rollups"]] == [day]
    assert bookkeeping.days_to_finalize(conn, date(2026, 1, 1)) == []


def test_days_to_finalize(db_url: str, conn: psycopg.Connection, tmp_path: Path) -> None:
    ingest_path(db_url, DATA / "2023-07-29_enwiki_100.jsonl")
    ingest_path(db_url, DATA / "2025-05-03_sample_144.jsonl")
    today = date.today()
    assert bookkeeping.days_to_finalize(conn, today) == [date(2023, 7, 29), date(2025, 5, 3)]
    rollup.rollup_day(conn, tmp_path, date(2023, 7, 29))
    assert bookkeeping.days_to_finalize(conn, today) == [date(2025, 5, 3)]
    # A partial roll-up of a closed day that has data is finalized.
    rollup.rollup_day(conn, tmp_path, date(2025, 5, 3), partial=True)
    assert bookkeeping.days_to_finalize(conn, today) == [date(2025, 5, 3)]


def test_the_bot_reads_a_wiki_day_in_one_call(db_url: str, conn: psycopg.Connection, tmp_path: Path) -> None:
    ingest_path(db_url, DATA / "2023-07-29_enwiki_100.jsonl")
    day = date(2023, 7, 29)
    assert read_wiki_day(db_url, day, "enwiki").rollup is None  # no data yet
    rollup.rollup_day(conn, tmp_path, day)

    en = read_wiki_day(db_url, day, "enwiki")
    assert en.rollup is not None
    assert en.rollup.status is DayStatus.FINAL
    assert not en.rollup.incomplete
    assert en.figures is not None
    assert en.figures.changes == 100 == sum(en.figures.hourly_changes)
    assert [p.rank for p in en.top_pages] == list(range(1, 11))
    quiet = read_wiki_day(db_url, day, "dewiki")  # collected, but nothing on that wiki
    assert quiet.rollup is not None
    assert quiet.figures is None
    assert quiet.top_pages == []


# --- Late events for a day whose raw partition retention dropped. -----------------------------------


# Retention counts from the day and from the rows' arrival (now): a clock past both.
AFTER_ARRIVALS = datetime.now(UTC).date() + timedelta(days=31)


def _row_keys(path: Path) -> list[tuple[datetime, str]]:
    table = pq.read_table(path, columns=["event_time", "event_id"])
    return list(zip(table["event_time"].to_pylist(), table["event_id"].to_pylist(), strict=True))


def test_a_late_event_after_retention_is_merged_into_the_export(
    db_url: str, conn: psycopg.Connection, tmp_path: Path
) -> None:
    capture = DATA / "2021-08-27_all-wikis_1950.jsonl"
    day = date(2021, 8, 27)
    export_dir = tmp_path / "exports"
    ingest_path(db_url, capture)
    exported = rollup.rollup_day(conn, export_dir, day)
    assert isinstance(exported, rollup.DayRollup)
    assert exported.events == 1950
    dropped = retention.drop_expired_partitions(conn, export_dir, today=AFTER_ARRIVALS, retention_days=30)
    assert dropped.dropped == [day], dropped.kept

    late = _late_copy(capture, type="new", user="LateComer", bot=False, title="Late page")
    _ingest_events(db_url, tmp_path, [late])
    assert bookkeeping.stale_days(conn) == [day]

    connect = lambda: psycopg.connect(db_url)  # noqa: E731
    run = jobs.run_recorded(connect, "intraday", lambda c: jobs.intraday(c, export_dir))

    assert run.status == JobStatus.SUCCEEDED, run.error
    assert day.isoformat() in run.details["stale"]
    # The figures are those of the capture plus the late event, exactly.
    everything = tmp_path / "capture-and-late.jsonl"
    everything.write_text(capture.read_text(encoding="utf-8") + json.dumps(late) + "\n", encoding="utf-8")
    stats, top_pages, _ = expected_figures(everything)
    got = summary_rows(conn)
    assert {(row[0], row[1]): dict(zip(STATS_FIGURES, row[2:], strict=True)) for row in got["stats"]} == stats
    late_wiki = (day, late["wiki"])
    assert [row[2:] for row in got["pages"] if (row[0], row[1]) == late_wiki] == top_pages[late_wiki]
    assert got["rollups"][0][:4] == (day, "final", False, 1951)
    typed, raw = layout.day_path(export_dir, day), layout.raw_day_path(export_dir, day)
    assert day_files.parquet_rows(typed) == day_files.parquet_rows(raw) == 1951
    keys = _row_keys(typed)
    assert keys == sorted(keys)
    assert len(set(keys)) == 1951
    assert late["meta"]["id"] in {event_id for _, event_id in keys}
    assert _row_keys(raw) == keys  # the raw file pairs with the typed one row by row
    assert bookkeeping.recorded_export(conn, export_dir, day) is not None
    assert bookkeeping.stale_days(conn) == []

    # Idempotent: rolling the day up again changes neither the files nor the figures.
    typed_bytes, raw_bytes, rows = typed.read_bytes(), raw.read_bytes(), summary_rows(conn)
    again = jobs.run_recorded(connect, "rollup", jobs.rollup_job(export_dir, [day]))
    assert again.status == JobStatus.SUCCEEDED, again.error
    assert (typed.read_bytes(), raw.read_bytes(), summary_rows(conn)) == (typed_bytes, raw_bytes, rows)

    # The re-created partition holds only rows the export has: retention drops it again.
    dropped = retention.drop_expired_partitions(conn, export_dir, today=AFTER_ARRIVALS, retention_days=30)
    assert dropped.dropped == [day], dropped.kept
    with conn.transaction():
        assert day not in existing_partition_days(conn)
    result = rollup.rollup_day(conn, export_dir, day)
    assert isinstance(result, rollup.DayRollup)
    assert result.events == 1951

    # A replay of the capture (events the export already holds) re-creates the partition and adds nothing.
    _ingest_events(db_url, tmp_path, [json.loads(line) for line in capture.read_text("utf-8").splitlines()])
    with conn.transaction():
        assert day in existing_partition_days(conn)
    result = rollup.rollup_day(conn, export_dir, day)
    assert isinstance(result, rollup.DayRollup)
    assert result.events == 1951
    assert typed.read_bytes() == typed_bytes
    assert bookkeeping.stale_days(conn) == []
    dropped = retention.drop_expired_partitions(conn, export_dir, today=AFTER_ARRIVALS, retention_days=30)
    assert dropped.dropped == [day], dropped.kept


# --- `teston rollup`. ------------------------------------------------------------------------------


@pytest.fixture
def cli_env(db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("DB_ADDR", db_url)
    monkeypatch.setenv("EXPORT_DIR", str(tmp_path / "exports"))
    return tmp_path / "exports"


def test_rollup_command_reports_days_without_data(
    db_url: str, conn: psycopg.Connection, cli_env: Path
) -> None:
    ingest_path(db_url, DATA / "2021-08-27_all-wikis_1950.jsonl")

    result = CliRunner().invoke(app, ["rollup", "--from", "2021-08-26", "--to", "2021-08-28"])

    assert result.exit_code == 0, result.output
    # The summary lists the days in order.
    rows = [result.output.index(day) for day in ("2021-08-26", "2021-08-27", "2021-08-28")]
    assert rows == sorted(rows)
    assert "no data for 2021-08-26" in result.output
    assert "no data for 2021-08-28" in result.output
    assert "1 of 3 days rolled up, 1,950 events" in result.output
    assert [row[:4] for row in summary_rows(conn)["rollups"]] == [(date(2021, 8, 27), "final", False, 1950)]
    assert layout.exported_days(cli_env) == [date(2021, 8, 27)]
    with conn.transaction():
        details = conn.execute("SELECT status, details->'no_data' FROM job_runs").fetchone()
    assert details == ("succeeded", ["2021-08-26", "2021-08-28"])


@pytest.mark.parametrize(
    ("arguments", "names"),
    [
        (["--date", "{tomorrow}"], ["--date", "after today"]),
        (["--date", "2030-01-01"], ["--date", "after today"]),
        (["--from", "2021-08-26", "--to", "{tomorrow}"], ["--to", "after today"]),
        (["--from", "2021-08-28", "--to", "2021-08-26"], ["--from", "--to"]),
    ],
)
def test_rollup_command_refuses_future_and_reversed_days(
    arguments: list[str], names: list[str], conn: psycopg.Connection, cli_env: Path
) -> None:
    tomorrow = (datetime.now(UTC) + timedelta(days=1)).date().isoformat()

    result = CliRunner().invoke(app, ["rollup", *(a.format(tomorrow=tomorrow) for a in arguments)])

    assert result.exit_code == 2, result.output
    for name in names:
        assert name in result.output
    assert summary_rows(conn)["rollups"] == []
    with conn.transaction():
        assert conn.execute("SELECT count(*) FROM job_runs").fetchone() == (0,)
