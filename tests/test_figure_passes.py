"""A large day's figures computed in passes over its Parquet file equal its figures computed whole."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import polars as pl
import psycopg
import pytest

from analytics import exports, figure_passes, rollup
from analytics.rollup import figures_of_day, figures_of_parquet
from tests.replays import ingest_path

DATA = Path(__file__).parent / "data"
DAY = date(2021, 8, 27)


@pytest.fixture
def day_file(db_url: str, conn: psycopg.Connection, tmp_path: Path) -> Path:
    """The real capture of 1,950 changes on every kind of wiki, exported as its day's Parquet file."""
    ingest_path(db_url, DATA / "2021-08-27_all-wikis_1950.jsonl")
    path = tmp_path / "day.parquet"
    exports.write_day(conn, DAY, path)
    return path


@pytest.mark.parametrize(("batch_rows", "shards"), [(100, 2), (333, 5), (5000, 3), (64, 17)])
def test_passes_give_the_figures_of_the_whole_day(
    day_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, batch_rows: int, shards: int
) -> None:
    monkeypatch.setattr(figure_passes, "BATCH_ROWS", batch_rows)
    whole = figures_of_day(pl.scan_parquet(day_file), DAY)
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    stats, pages, editors = figure_passes.figures_in_passes(day_file, DAY, shards=shards, scratch_dir=scratch)
    assert stats.equals(whole.wiki_stats)
    assert pages.equals(whole.top_pages)
    assert editors.equals(whole.top_editors)
    # The capture's own figures, so that equal cannot mean equally empty.
    assert int(stats["changes"].sum()) == 1950
    assert stats.height == 73
    assert pages.height > 0
    assert editors.height > 0
    # The spilled shards are gone with the pass.
    assert list(scratch.iterdir()) == []


def test_a_day_over_one_shard_is_rolled_up_in_passes(day_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    real = figure_passes.figures_in_passes

    def counted(*args: object, shards: int, **kwargs: object) -> object:
        calls.append(shards)
        return real(*args, shards=shards, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(figure_passes, "figures_in_passes", counted)
    whole = figures_of_parquet(day_file, DAY)
    assert calls == []  # 1,950 rows: one shard, computed whole
    monkeypatch.setattr(rollup, "ROWS_PER_SHARD", 500)
    sharded = figures_of_parquet(day_file, DAY)
    assert calls == [4]
    assert sharded.wiki_stats.equals(whole.wiki_stats)
    assert sharded.top_pages.equals(whole.top_pages)
    assert sharded.top_editors.equals(whole.top_editors)


def test_rows_of_other_days_in_the_file_are_not_counted(tmp_path: Path) -> None:
    frame = pl.DataFrame(
        {
            "event_time": pl.Series(
                ["2021-08-26T23:59:59", "2021-08-27T00:00:00", "2021-08-27T23:59:59", "2021-08-28T00:00:00"]
            ).str.to_datetime(time_unit="us", time_zone="UTC"),
            "wiki": ["enwiki"] * 4,
            "type": ["edit"] * 4,
            "bot": [False] * 4,
            "user_name": ["A", "B", None, "C"],
            "title": ["P", None, "Q", "R"],
            "namespace": pl.Series([0, 0, 1, 0], dtype=pl.Int32),
            "length_old": pl.Series([1, 1, None, 1], dtype=pl.Int32),
            "length_new": pl.Series([2, 5, 7, 2], dtype=pl.Int32),
        }
    )
    path = tmp_path / "edges.parquet"
    frame.write_parquet(path)
    stats, pages, editors = figure_passes.figures_in_passes(path, DAY, shards=3, scratch_dir=tmp_path)
    whole = figures_of_day(frame.lazy(), DAY)
    assert stats.equals(whole.wiki_stats)
    assert stats.select("changes", "distinct_pages", "distinct_editors", "bytes_added").row(0) == (
        2,
        1,
        1,
        11,
    )
    assert pages["title"].to_list() == ["Q"]
    assert editors["user_name"].to_list() == ["B"]
