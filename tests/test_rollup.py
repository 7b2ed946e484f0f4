"""Roll-ups end to end: real captures through the real ingester, checked against a plain-Python count."""

from __future__ import annotations

import ipaddress
import json
import re
import uuid
from collections import Counter, defaultdict
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

from analytics import exports, jobs, rollup, summary
from ingestion.replay import ingest_path

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
                f"SELECT day, wiki, {', '.join(STATS_FIGURES)} FROM daily_wiki_stats ORDER BY day, wiki"
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
    assert summary.rejected == 0
    export_dir = tmp_path / "exports"

    results = rollup.rollup_days(conn, export_dir, rollup.raw_days(conn))

    stats, top_pages, top_editors = expected_figures(path)
    expected_days = sorted({day for day, _ in stats})
    assert [r.day for r in results] == expected_days
    assert all(r.status == rollup.FINAL for r in results)
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
        assert exports.parquet_rows(exports.day_path(export_dir, day)) == events


def test_rolling_up_twice_gives_the_same_rows_and_bytes(
    db_url: str, conn: psycopg.Connection, tmp_path: Path
) -> None:
    ingest_path(db_url, DATA / "2021-08-27_all-wikis_1950.jsonl")
    day = date(2021, 8, 27)
    rollup.rollup_day(conn, tmp_path, day)
    first_rows = summary_rows(conn)
    first_bytes = exports.day_path(tmp_path, day).read_bytes()
    first_raw = exports.raw_day_path(tmp_path, day).read_bytes()

    rollup.rollup_day(conn, tmp_path, day)

    assert summary_rows(conn) == first_rows
    assert exports.day_path(tmp_path, day).read_bytes() == first_bytes
    assert exports.raw_day_path(tmp_path, day).read_bytes() == first_raw


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
    assert rollup.stale_days(conn) == []
    before = summary_rows(conn)["stats"]

    _ingest_events(db_url, tmp_path, [_late_copy(capture, type="new", user="LateComer", bot=False)])

    assert rollup.stale_days(conn) == [day]
    result = jobs.intraday(conn, tmp_path)
    assert day.isoformat() in result.details["stale"]
    after = summary_rows(conn)
    changes = STATS_FIGURES.index("changes") + 2
    assert after["stats"][0][changes] == before[0][changes] + 1
    assert after["rollups"][0][1:4] == ("final", False, 101)
    assert exports.parquet_rows(exports.day_path(tmp_path, day)) == 101
    assert rollup.stale_days(conn) == []


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

    assert rollup.stale_days(conn) == [day]
    jobs.intraday(conn, tmp_path)

    assert summary_rows(conn)["rollups"][0][1:3] == ("final", True)


def test_today_is_partial_and_not_exported(db_url: str, conn: psycopg.Connection, tmp_path: Path) -> None:
    capture = DATA / "2023-07-29_enwiki_100.jsonl"
    now = datetime.now(UTC)
    _ingest_events(
        db_url, tmp_path, [_late_copy(capture, timestamp=int(now.timestamp()) - n) for n in range(3)]
    )
    today = now.date()

    result = jobs.intraday(conn, tmp_path)

    rolled = {d["day"]: d for d in result.details["days"]}
    assert rolled[today.isoformat()]["status"] == "partial"
    assert rolled[today.isoformat()]["events"] == sum(
        1 for n in range(3) if (now - timedelta(seconds=n)).date() == today
    )
    # Yesterday is refreshed as partial too (it had no events: zero, but rolled up).
    assert rolled[(today - timedelta(days=1)).isoformat()]["status"] == "partial"
    assert exports.exported_days(tmp_path) == []


def test_a_day_with_no_events_is_still_recorded(conn: psycopg.Connection, tmp_path: Path) -> None:
    day = date(2024, 2, 29)
    result = rollup.rollup_day(conn, tmp_path, day)
    assert (result.events, result.wikis) == (0, 0)
    assert summary_rows(conn)["rollups"] == [(day, "final", False, 0, 0, None)]


def test_days_to_finalize(db_url: str, conn: psycopg.Connection, tmp_path: Path) -> None:
    ingest_path(db_url, DATA / "2023-07-29_enwiki_100.jsonl")
    ingest_path(db_url, DATA / "2025-05-03_sample_144.jsonl")
    today = date.today()
    assert rollup.days_to_finalize(conn, today) == [date(2023, 7, 29), date(2025, 5, 3)]
    rollup.rollup_day(conn, tmp_path, date(2023, 7, 29))
    assert rollup.days_to_finalize(conn, today) == [date(2025, 5, 3)]


def test_the_bot_reads_a_wiki_day_in_one_call(db_url: str, conn: psycopg.Connection, tmp_path: Path) -> None:
    ingest_path(db_url, DATA / "2023-07-29_enwiki_100.jsonl")
    day = date(2023, 7, 29)
    assert summary.read_wiki_day(conn, day, "enwiki") is None  # no data yet
    rollup.rollup_day(conn, tmp_path, day)

    en = summary.read_wiki_day(conn, day, "enwiki")
    assert en is not None and en.final and not en.incomplete
    assert en.figures["changes"] == 100 == sum(en.hourly_changes)
    assert [p.rank for p in en.top_pages] == list(range(1, 11))
    quiet = summary.read_wiki_day(conn, day, "dewiki")  # collected, but nothing on that wiki
    assert quiet is not None and quiet.figures["changes"] == 0 and quiet.top_pages == []
