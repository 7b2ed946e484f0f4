"""The aggregate definitions on frames of three rows (no database, no files)."""

from __future__ import annotations

import ipaddress
from datetime import UTC, date, datetime
from typing import Any

import polars as pl
import pytest

from analytics import aggregates
from analytics.day_rows import TYPED_SCHEMA
from analytics.rollup import figures_of_day

DAY = date(2024, 5, 1)


def rows(*changes: dict[str, Any]) -> pl.LazyFrame:
    """A frame with every typed export column; unspecified fields are null (or false for `bot`)."""
    schema = pl.Schema(pl.from_arrow(TYPED_SCHEMA.empty_table()).schema)  # type: ignore[union-attr]
    filled = [
        {"event_id": f"id-{n}", "server_name": "x", "project": "wikipedia", "bot": False}
        | change
        | {"received_at": change["event_time"]}
        for n, change in enumerate(changes)
    ]
    return pl.DataFrame(filled, schema=schema).lazy()


def at(hour: int, minute: int = 0, day: date = DAY) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=UTC)


THREE = rows(
    {
        "event_time": at(1),
        "wiki": "enwiki",
        "type": "edit",
        "namespace": 0,
        "title": "Tea",
        "user_name": "Alice",
        "length_old": 100,
        "length_new": 150,
    },
    {
        "event_time": at(1, 30),
        "wiki": "enwiki",
        "type": "new",
        "namespace": 1,
        "title": "Talk:Tea",
        "user_name": "192.0.2.7",
        "length_new": 40,
    },
    {
        "event_time": at(23),
        "wiki": "dewiki",
        "type": "log",
        "namespace": 2,
        "title": "Benutzer:Bob",
        "user_name": "BobBot",
        "bot": True,
    },
)


def test_daily_wiki_stats_of_three_rows() -> None:
    stats = aggregates.daily_wiki_stats(THREE, DAY).collect()
    assert stats["wiki"].to_list() == ["dewiki", "enwiki"]
    en = stats.row(1, named=True)
    assert en | {"hourly_changes": None} == {
        "day": DAY,
        "wiki": "enwiki",
        "changes": 2,
        "edits": 2,
        "new_pages": 1,
        "log_actions": 0,
        "categorize": 0,
        "other_types": 0,
        "bot_changes": 0,
        "anonymous_changes": 1,
        "human_changes": 1,
        "content_changes": 1,
        "other_namespace_changes": 1,
        "bytes_added": 90,
        "bytes_removed": 0,
        "net_bytes": 90,
        "distinct_editors": 2,
        "distinct_pages": 2,
        "hourly_changes": None,
    }
    assert en["hourly_changes"] == [0, 2] + [0] * 22
    de = stats.row(0, named=True)
    assert (de["changes"], de["log_actions"], de["bot_changes"], de["edits"]) == (1, 1, 1, 0)
    assert (de["bytes_added"], de["bytes_removed"]) == (0, 0)
    assert de["hourly_changes"] == [0] * 23 + [1]


def test_bytes_removed_is_positive_and_net_is_signed() -> None:
    frame = rows(
        {"event_time": at(2), "wiki": "frwiki", "type": "edit", "length_old": 500, "length_new": 200},
        {"event_time": at(3), "wiki": "frwiki", "type": "edit", "length_old": 200, "length_new": 250},
        # A categorize event carries no length; were one present it would still not count.
        {"event_time": at(4), "wiki": "frwiki", "type": "categorize", "length_old": 1, "length_new": 9},
    )
    stats = aggregates.daily_wiki_stats(frame, DAY).collect().row(0, named=True)
    assert (stats["bytes_added"], stats["bytes_removed"], stats["net_bytes"]) == (50, 300, -250)
    assert (stats["categorize"], stats["edits"], stats["changes"]) == (1, 2, 3)


def test_other_types_and_null_namespace() -> None:
    frame = rows(
        {"event_time": at(0), "wiki": "frwiki", "type": "142", "user_name": "~2025-12345-67"},
        {"event_time": at(0), "wiki": "frwiki", "type": "external", "user_name": None},
        {"event_time": at(0), "wiki": "frwiki", "type": "edit", "namespace": 0, "user_name": "~Tilde"},
    )
    stats = aggregates.daily_wiki_stats(frame, DAY).collect().row(0, named=True)
    assert stats["other_types"] == 2
    assert (stats["content_changes"], stats["other_namespace_changes"]) == (1, 2)
    # A temporary account is anonymous; a registered name that merely starts with `~` is not;
    # a hidden (null) user name counts as registered.
    assert (stats["anonymous_changes"], stats["human_changes"]) == (1, 2)
    assert stats["distinct_editors"] == 2


def test_rows_of_other_days_are_ignored() -> None:
    frame = rows(
        {"event_time": at(23, 59), "wiki": "enwiki", "type": "edit"},
        {"event_time": at(0, 0, day=date(2024, 5, 2)), "wiki": "enwiki", "type": "edit"},
        {"event_time": at(23, 59, day=date(2024, 4, 30)), "wiki": "enwiki", "type": "edit"},
    )
    stats = aggregates.daily_wiki_stats(frame, DAY).collect()
    assert stats["changes"].to_list() == [1]


def test_top_pages_count_edits_and_break_ties_by_title() -> None:
    frame = rows(
        {"event_time": at(1), "wiki": "enwiki", "type": "edit", "namespace": 0, "title": "B"},
        {"event_time": at(2), "wiki": "enwiki", "type": "new", "namespace": 0, "title": "A"},
        {"event_time": at(3), "wiki": "enwiki", "type": "categorize", "namespace": 14, "title": "Category:C"},
    )
    top = aggregates.top_pages(frame, DAY).collect()
    assert top.rows() == [(DAY, "enwiki", 1, 0, "A", 1), (DAY, "enwiki", 2, 0, "B", 1)]


def test_top_editors_rank_per_wiki_and_keep_the_bot_flag() -> None:
    frame = rows(
        {"event_time": at(1), "wiki": "enwiki", "type": "edit", "user_name": "Zed", "title": "P"},
        {"event_time": at(2), "wiki": "enwiki", "type": "edit", "user_name": "Zed", "title": "Q"},
        {"event_time": at(3), "wiki": "dewiki", "type": "new", "user_name": "Bot", "bot": True, "title": "R"},
    )
    top = aggregates.top_editors(frame, DAY).collect().sort("wiki", "rank")
    assert top.rows() == [(DAY, "dewiki", 1, "Bot", True, 1), (DAY, "enwiki", 1, "Zed", False, 2)]


def test_top_lists_stop_at_ten() -> None:
    frame = rows(
        *[
            {
                "event_time": at(0, n),
                "wiki": "enwiki",
                "type": "edit",
                "title": f"P{n:02d}",
                "user_name": f"U{n:02d}",
            }
            for n in range(12)
        ]
    )
    pages = aggregates.top_pages(frame, DAY).collect()
    assert pages["rank"].to_list() == list(range(1, 11))
    assert pages["title"].to_list() == [f"P{n:02d}" for n in range(10)]
    assert aggregates.top_editors(frame, DAY).collect().height == 10


def test_top_lists_of_a_wiki_with_more_pages_and_editors_than_a_smallint() -> None:
    # A busy wiki edits far more than 32,767 distinct pages in a day; only the top ten are ranked.
    many = 40_000
    frame = rows(
        *[
            {
                "event_time": at(n % 24, n % 60),
                "wiki": "wikidatawiki",
                "type": "edit",
                "title": f"Q{n:05d}",
                "user_name": f"U{n:05d}",
            }
            for n in range(many)
        ],
        {
            "event_time": at(5),
            "wiki": "wikidatawiki",
            "type": "edit",
            "title": "Q39999",
            "user_name": "U39999",
        },
    )
    pages = aggregates.top_pages(frame, DAY).collect()
    assert pages["rank"].to_list() == list(range(1, 11))
    assert pages["title"].to_list()[:2] == ["Q39999", "Q00000"]
    assert pages["changes"].to_list()[:2] == [2, 1]
    editors = aggregates.top_editors(frame, DAY).collect()
    assert editors["user_name"].to_list()[0] == "U39999"
    assert editors.height == 10


@pytest.mark.parametrize(
    "name",
    [
        "1.2.3.4",
        "255.255.255.255",
        "256.1.1.1",
        "01.2.3.4",
        "1.2.3",
        "::",
        "::1",
        "2001:DB8:0:0:0:0:0:1",
        "2001:db8::1",
        "1:2:3:4:5:6:7:8:9",
        "::ffff:192.0.2.1",
        "1::1.2.3.4",
        "1:2:3:4:5:6:1.2.3.4",
        "1::2::3",
        "12345::",
        "fe80::1%eth0",
        "Example",
        "User 1.2.3.4",
        " 1.2.3.4",
    ],
)
def test_ip_user_names_match_ipaddress(name: str) -> None:
    try:
        ipaddress.ip_address(name)
        expected = True
    except ValueError:
        expected = False
    got = pl.select(aggregates.is_anonymous(pl.lit(name))).item()
    assert got is expected


@pytest.mark.parametrize(
    ("name", "expected"),
    [("~2025-12345-67", True), ("~2026-1", True), ("~25-1", False), ("~Name", False), (None, False)],
)
def test_temporary_accounts_are_anonymous(name: str | None, expected: bool) -> None:
    got = pl.select(aggregates.is_anonymous(pl.lit(name, dtype=pl.String))).item()
    assert got is expected


@pytest.mark.parametrize("shards", [2, 3, 7])
def test_figures_computed_in_shards_equal_figures_computed_whole(shards: int) -> None:
    # Many ties and repeated names across wikis, so a shard boundary would show in the top tens.
    frame = rows(
        *[
            {
                "event_time": at(n % 24, n % 60),
                "wiki": ("enwiki", "dewiki", "wikidatawiki")[n % 3],
                "type": ("edit", "new", "log", "categorize")[n % 4],
                "namespace": n % 3,
                "title": f"Page {n % 97}",
                "user_name": f"User {n % 41}" if n % 5 else f"192.0.2.{n % 11}",
                "bot": n % 7 == 0,
                "length_old": 100,
                "length_new": 100 + (n % 13) - 6,
            }
            for n in range(3000)
        ]
    )
    whole = figures_of_day(frame, DAY, shards=1)
    sharded = figures_of_day(frame, DAY, shards=shards)
    assert sharded.wiki_stats.equals(whole.wiki_stats)
    assert sharded.top_pages.equals(whole.top_pages)
    assert sharded.top_editors.equals(whole.top_editors)
    assert whole.wiki_stats["distinct_pages"].to_list() == [97, 97, 97]
