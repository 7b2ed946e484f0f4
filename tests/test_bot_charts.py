"""Charts, ranges and top lists, on the recorded captures ingested and rolled up by the real pipeline.

Expected figures come from a plain pass over the captures' JSON lines (or, for chart data, from the
summary rows read back with plain SQL), never from the code under test.
"""

from __future__ import annotations

import io
import json
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
import pytest
from matplotlib.collections import Collection, LineCollection
from matplotlib.colors import to_hex
from matplotlib.text import Text
from PIL import Image
from typer.testing import CliRunner

from analytics import bookkeeping, rollup
from bot import charts
from bot.charts import DailyCounts
from teston.cli import app
from tests.bot_fixtures import CATALOG
from tests.replays import ingest_path

DATA = Path(__file__).parent / "data"
CAPTURES = [
    DATA / "2021-08-27_all-wikis_1950.jsonl",
    DATA / "2023-07-29_enwiki_100.jsonl",
    DATA / "2025-05-03_sample_144.jsonl",
]
DAY = date(2021, 8, 27)


def capture_rows() -> list[dict[str, Any]]:
    return [
        json.loads(line)
        for path in CAPTURES
        for line in path.read_text(encoding="utf-8").splitlines()
        if line.strip()
    ]


def day_of(row: dict[str, Any]) -> date:
    return datetime.fromtimestamp(row["timestamp"], UTC).date()


@pytest.fixture(scope="module")
def rows() -> list[dict[str, Any]]:
    return capture_rows()


@pytest.fixture
def captured(db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    for path in CAPTURES:
        ingest_path(db_url, path, catalog=CATALOG)
    with psycopg.connect(db_url) as conn:
        for day in bookkeeping.raw_days(conn):
            rollup.rollup_day(conn, tmp_path / "exports", day)
    monkeypatch.setenv("DB_ADDR", db_url)
    monkeypatch.setenv("EXPORT_DIR", str(tmp_path / "exports"))
    return db_url


def ask(*arguments: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["ask", *arguments])
    return result.exit_code, result.stdout


def summary_rows(url: str, wikis: list[str]) -> list[DailyCounts]:
    """`daily_wiki_stats` read back with plain SQL."""
    with psycopg.connect(url) as conn:
        found = conn.execute(
            "SELECT day, wiki, changes, bot_changes, human_changes, anonymous_changes, hourly_changes"
            " FROM daily_wiki_stats WHERE wiki = ANY(%s) ORDER BY day, wiki",
            (wikis,),
        ).fetchall()
    return [DailyCounts(d, w, c, b, h, a, tuple(hours)) for d, w, c, b, h, a, hours in found]


# --- charts -------------------------------------------------------------------------------------


def bar_heights(figure: Any) -> list[list[float]]:
    """Each series' bar heights, read back from the rectangles drawn."""
    [axes] = figure.axes
    heights = []
    for collection in axes.collections:
        if collection.get_gid() == charts.BARS_GID:
            ys = [[float(y) for _, y in path.vertices] for path in collection.get_paths()]
            heights.append([max(y) - min(y) for y in ys])
    return heights


def legend_entries(figure: Any) -> list[tuple[str, str]]:
    """The legend's labels, each with the colour of its handle, read back from the artists drawn."""
    [axes] = figure.axes
    drawn = [artist for artist in axes.get_children() if artist.get_gid() == charts.LEGEND_GID]
    labels = [artist.get_text() for artist in drawn if isinstance(artist, Text)]
    [handles] = [artist for artist in drawn if isinstance(artist, Collection)]
    colours = handles.get_edgecolor() if isinstance(handles, LineCollection) else handles.get_facecolor()
    return list(zip(labels, (to_hex(colour) for colour in colours), strict=True))


def bar_bottoms(figure: Any) -> list[list[float]]:
    [axes] = figure.axes
    return [
        [float(min(y for _, y in path.vertices)) for path in collection.get_paths()]
        for collection in axes.collections
        if collection.get_gid() == charts.BARS_GID
    ]


def test_chart_data_and_drawing_equal_the_summary_rows(captured: str) -> None:
    summary = summary_rows(captured, ["enwiki", "dewiki"])
    en = [row for row in summary if row.wiki == "enwiki"]
    first, last = date(2021, 8, 25), date(2021, 8, 28)

    data = charts.daily_by_kind("en.wikipedia.org", en, first, last)

    assert data.x_labels == ("2021-08-25", "2021-08-26", "2021-08-27", "2021-08-28")
    [row] = [row for row in en if row.day == DAY]
    assert [s.label for s in data.series] == ["Bots", "Registered humans", "Anonymous"]
    assert [s.values for s in data.series] == [
        (0, 0, row.bot_changes, 0),
        (0, 0, row.human_changes, 0),
        (0, 0, row.anonymous_changes, 0),
    ]
    assert data.total() == row.changes == 210
    assert bar_heights(charts.draw(data)) == [list(s.values) for s in data.series]
    # Stacked: each series' bars stand on the ones below.
    bots, humans, _ = data.series
    assert bar_bottoms(charts.draw(data)) == [
        [0, 0, 0, 0],
        list(bots.values),
        [b + h for b, h in zip(bots.values, humans.values, strict=True)],
    ]
    assert legend_entries(charts.draw(data)) == [
        ("Bots", charts.KIND_COLOURS["Bots"]),
        ("Registered humans", charts.KIND_COLOURS["Registered humans"]),
        ("Anonymous", charts.KIND_COLOURS["Anonymous"]),
    ]

    hourly = charts.hourly_by_wiki({"enwiki": "en.wikipedia.org"}, en, DAY)
    assert hourly.series[0].values == row.hourly_changes
    assert bar_heights(charts.draw(hourly)) == [list(row.hourly_changes)]

    lines = charts.daily_by_wiki({"enwiki": "en", "dewiki": "de"}, summary, first, last)
    [de] = [r for r in summary if r.wiki == "dewiki" and r.day == DAY]
    assert [(s.label, s.values) for s in lines.series] == [
        ("en", (0, 0, row.changes, 0)),
        ("de", (0, 0, de.changes, 0)),
    ]
    figure = charts.draw(lines)
    [axes] = figure.axes
    assert [list(line.get_ydata()) for line in axes.get_lines()] == [[0, 0, 210, 0], [0, 0, de.changes, 0]]
    assert [to_hex(line.get_color()) for line in axes.get_lines()] == list(charts.LINE_COLOURS[:2])
    assert legend_entries(figure) == [("en", charts.LINE_COLOURS[0]), ("de", charts.LINE_COLOURS[1])]
    # Every data point is within the axes.
    low, high = axes.get_ylim()
    assert low == 0
    assert high >= max(row.changes, de.changes)


def test_a_long_period_is_drawn_as_stacked_areas_of_the_same_values() -> None:
    first = date(2021, 1, 1)
    rows = [
        DailyCounts(first + timedelta(days=n), "enwiki", 6 * n, n, 2 * n, 3 * n, (0,) * 24)
        for n in range(100)
    ]
    data = charts.daily_by_kind("en.wikipedia.org", rows, first, first + timedelta(days=99))
    assert data.series[0].values == tuple(range(100))
    [axes] = charts.draw(data).axes
    assert bar_heights(charts.draw(data)) == []
    # The top edge of the last area is the day's total: bots + registered humans + anonymous.
    areas = [collection for collection in axes.collections if collection.get_gid() == charts.AREAS_GID]
    assert len(areas) == 3
    tops: dict[float, float] = {}
    for x, y in areas[-1].get_paths()[0].vertices:
        tops[float(x)] = max(tops.get(float(x), 0.0), float(y))
    assert [tops[float(n)] for n in range(100)] == [6.0 * n for n in range(100)]


def test_chart_png_decodes_at_its_size() -> None:
    rows = [DailyCounts(DAY, "enwiki", 6, 1, 2, 3, (1,) * 6 + (0,) * 18)]
    png = charts.render_png(charts.daily_by_kind("en.wikipedia.org", rows, DAY, DAY))
    image = Image.open(io.BytesIO(png))
    image.load()
    assert image.format == "PNG"
    assert image.size == (charts.WIDTH_INCHES * charts.DPI, charts.HEIGHT_INCHES * charts.DPI) == (1000, 500)


def test_the_png_holds_the_pixels_drawn() -> None:
    rows = [DailyCounts(DAY, "enwiki", 6, 1, 2, 3, (1,) * 6 + (0,) * 18)]
    figure = charts.draw(charts.daily_by_kind("en.wikipedia.org", rows, DAY - timedelta(days=6), DAY))
    png = charts.figure_png(figure)
    drawn = np.asarray(figure.canvas.buffer_rgba())
    with Image.open(io.BytesIO(png)) as image:
        assert image.mode == "RGB"
        assert (np.asarray(image) == drawn[:, :, :3]).all()
    # Opaque: nothing is lost with the alpha channel.
    assert (drawn[:, :, 3] == 255).all()


def test_a_chart_drawn_on_the_kept_figure_is_the_one_drawn_on_a_new_figure() -> None:
    """`render_png` draws every chart on one kept figure: nothing of the charts before it stays."""
    first = date(2021, 1, 1)
    rows = [
        DailyCounts(first + timedelta(days=n), wiki, 6 * n + k, n, 2 * n + k, 3 * n, tuple(range(24)))
        for n in range(100)
        for k, wiki in enumerate(["enwiki", "dewiki", "frwiki"])
    ]
    names = {"enwiki": "en", "dewiki": "de", "frwiki": "fr"}
    en = [row for row in rows if row.wiki == "enwiki"]
    chosen = [
        charts.daily_by_kind("en.wikipedia.org", en, first, first + timedelta(days=29)),
        charts.daily_by_wiki(names, rows, first, first + timedelta(days=6)),
        charts.daily_by_kind("en.wikipedia.org", en, first, first + timedelta(days=99)),
        charts.hourly_by_wiki({"enwiki": "en.wikipedia.org"}, rows, first + timedelta(days=50)),
        charts.hourly_by_wiki(names, rows, first + timedelta(days=50)),
    ]
    on_new_figures = [charts.figure_png(charts.draw(data)) for data in chosen]
    assert len(set(on_new_figures)) == len(chosen)
    assert [charts.render_png(data) for data in chosen + chosen[::-1]] == on_new_figures + on_new_figures[
        ::-1
    ]


def test_ask_writes_the_chart_and_prints_its_path(captured: str, tmp_path: Path, rows: list[Any]) -> None:
    out_dir = tmp_path / "charts"
    code, out = ask("!chart en 2021-08-27", "--attachments", str(out_dir))

    assert code == 0, out
    caption, path_line = out.splitlines()
    expected = sum(1 for row in rows if row["wiki"] == "enwiki" and day_of(row) == DAY)
    assert caption == f"Changes on en.wikipedia.org on 2021-08-27, per UTC hour: {expected} in all."
    path = Path(path_line)
    assert path == out_dir / "teston-enwiki-2021-08-27.png"
    with Image.open(path) as image:
        assert image.size == (1000, 500)

    code, out = ask("!chart en,de,wikidata 2021-08-20..2021-08-27", "--attachments", str(out_dir))
    assert code == 0, out
    assert Path(out.splitlines()[-1]).exists()
    assert out.splitlines()[-1].endswith("teston-enwiki-dewiki-wikidatawiki-2021-08-20_2021-08-27.png")

    # Without --attachments, into the current directory.
    code, out = ask("!chart wikidata 2021-08-25..2021-08-27")
    assert code == 0, out
    assert out.splitlines()[-1] == "teston-wikidatawiki-2021-08-25_2021-08-27.png"
    assert (Path.cwd() / "teston-wikidatawiki-2021-08-25_2021-08-27.png").stat().st_size > 0

    assert ask("!chart en 2021-08-26", "--attachments", str(out_dir)) == (
        0,
        "No figures for en on 2021-08-26: nothing to chart.\n",
    )


# --- ranges -------------------------------------------------------------------------------------


def test_range_sums_equal_a_plain_pass_over_the_captures(captured: str, rows: list[Any]) -> None:
    first, last = date(2021, 8, 1), date(2025, 5, 3)
    chosen = [row for row in rows if row["wiki"] == "enwiki" and first <= day_of(row) <= last]
    edits = [row for row in chosen if row["type"] in ("edit", "new")]
    deltas = [row["length"]["new"] - (row["length"].get("old") or 0) for row in edits if "length" in row]
    assert {day_of(row) for row in chosen} == {date(2021, 8, 27), date(2023, 7, 29), date(2025, 5, 3)}

    code, out = ask("!stats 2021-08-01..2025-05-03 en")

    assert code == 0, out
    lines = out.splitlines()
    days = (last - first).days + 1
    assert lines[0] == (
        f"From 2021-08-01 to 2025-05-03 ({days} days), there were {len(chosen)} changes for language 'en'."
    )
    figures = dict(line.strip().split(": ", 1) for line in lines if line.startswith("  "))
    assert figures["Edits"] == f"{len(edits):,}"
    assert figures["New pages"] == f"{sum(1 for r in chosen if r['type'] == 'new'):,}"
    assert figures["Bots"] == f"{sum(1 for r in chosen if r['bot']):,}"
    assert figures["Bytes added"] == f"+{sum(d for d in deltas if d > 0):,}"
    assert figures["Bytes removed"] == f"−{sum(-d for d in deltas if d < 0):,}"
    # Not sums: counted over the raw rows of the whole range.
    assert figures["Editors (distinct over the range)"] == f"{len({r['user'] for r in chosen}):,}"
    assert figures["Pages changed (distinct over the range)"] == f"{len({r['title'] for r in chosen}):,}"


def test_range_labels_distinct_figures_it_cannot_count(captured: str, rows: list[Any]) -> None:
    # Retention dropped the raw rows of 2021-08-27: the summaries remain, the distinct counts cannot be made.
    with psycopg.connect(captured) as conn:
        conn.execute("DELETE FROM recent_changes WHERE event_time < '2022-01-01'")
    code, out = ask("!stats 2021-08-01..2023-07-29 en")
    assert code == 0, out
    expected = sum(1 for r in rows if r["wiki"] == "enwiki" and day_of(r) <= date(2023, 7, 29))
    assert f"there were {expected} changes for language 'en'." in out.splitlines()[0]
    assert "Editors and pages over the whole range cannot be counted" in out
    assert "  Editors, pages (distinct): not counted, see note" in out.splitlines()


# --- top lists ----------------------------------------------------------------------------------


def expected_top(rows: list[Any], wiki: str, key: str) -> list[tuple[str, int]]:
    counts = Counter(
        row[key]
        for row in rows
        if row["wiki"] == wiki and day_of(row) == DAY and row["type"] in ("edit", "new")
    )
    return sorted(counts.items(), key=lambda item: (-item[1], item[0]))[:10]


def test_top_pages_and_editors(captured: str, rows: list[Any]) -> None:
    for kind, key in (("pages", "title"), ("editors", "user")):
        expected = expected_top(rows, "wikidatawiki", key)
        assert len(expected) == 10
        code, out = ask(f"!top wikidata 2021-08-27 {kind}")
        assert code == 0, out
        heading, *entries = out.splitlines()
        what = "most edited pages" if kind == "pages" else "most active editors"
        assert heading == f"The 10 {what} on www.wikidata.org on 2021-08-27 (UTC), by number of edits."
        shown = [entry.split(". ", 1)[1].replace(" (bot)", "").rsplit(" — ", 1) for entry in entries]
        assert [(name, int(n.replace(",", ""))) for name, n in shown] == expected

    assert ask("!top en 2021-08-26") == (
        0,
        "No top list for en on 2021-08-26: that day is not counted (yet).\n",
    )
