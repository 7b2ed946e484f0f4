"""Charts of the summary tables: the numbers to plot (pure), and a PNG drawn from them (matplotlib Agg).

`daily_by_kind`, `daily_by_wiki` and `hourly_by_wiki` turn `daily_wiki_stats` rows into a `ChartData`:
exactly the values plotted, so a test can compare them with the rows. `render_png` draws one without
pyplot (a `Figure` on an Agg canvas holds no global state), so it may run on a worker thread while the
bot's event loop carries on. Colours are chosen for Discord's dark theme.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta

from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import PolyCollection
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator, StrMethodFormatter

# 1000 × 500 pixels: wide enough for a year of days, and Discord shows it without scaling it down much.
WIDTH_INCHES = 10.0
HEIGHT_INCHES = 5.0
DPI = 100
HOURS = 24
# Up to about two months a stacked chart is drawn as bars, one per day; beyond, as stacked areas.
MAX_BARS = 62
BAR_WIDTH = 0.8
# The group id of each series' bars (one collection per series), for whoever reads a drawing back.
BARS_GID = "bars"

# Discord's dark theme: its message background, its text and divider greys, and its accent colours.
BACKGROUND = "#313338"
TEXT = "#dbdee1"
GRID = "#4e5058"
KIND_COLOURS = {"Bots": "#f0b232", "Registered humans": "#5865f2", "Anonymous": "#23a55a"}
LINE_COLOURS = ("#5865f2", "#f0b232", "#23a55a", "#eb459e", "#00a8fc")


@dataclass(frozen=True, slots=True)
class DailyCounts:
    """What a chart needs of one `daily_wiki_stats` row."""

    day: date
    wiki: str
    changes: int
    bot_changes: int
    human_changes: int
    anonymous_changes: int
    hourly_changes: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Series:
    label: str
    values: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class ChartData:
    """Everything drawn: one value per x position in each series; stacked series are bars."""

    title: str
    x_labels: tuple[str, ...]
    x_title: str
    y_title: str
    series: tuple[Series, ...]
    stacked: bool

    def total(self) -> int:
        return sum(sum(series.values) for series in self.series)


def days_from(first: date, last: date) -> list[date]:
    return [first + timedelta(days=n) for n in range((last - first).days + 1)]


def _period(first: date, last: date) -> str:
    return f"{first.isoformat()} to {last.isoformat()}"


def daily_by_kind(name: str, rows: Sequence[DailyCounts], first: date, last: date) -> ChartData:
    """One wiki's changes per day, stacked bots / registered humans / anonymous; a day without a row is 0."""
    by_day = {row.day: row for row in rows}
    days = days_from(first, last)

    def values(kind: str) -> tuple[int, ...]:
        return tuple(getattr(by_day[d], kind) if d in by_day else 0 for d in days)

    return ChartData(
        title=f"Changes per day on {name}, {_period(first, last)} (UTC)",
        x_labels=tuple(d.isoformat() for d in days),
        x_title="Day (UTC)",
        y_title="Changes per day",
        series=(
            Series("Bots", values("bot_changes")),
            Series("Registered humans", values("human_changes")),
            Series("Anonymous", values("anonymous_changes")),
        ),
        stacked=True,
    )


def daily_by_wiki(
    names: Mapping[str, str], rows: Sequence[DailyCounts], first: date, last: date
) -> ChartData:
    """Changes per day, one line per wiki (`names` maps database names to labels, in legend order)."""
    counts = {(row.wiki, row.day): row.changes for row in rows}
    days = days_from(first, last)
    return ChartData(
        title=f"Changes per day, {_period(first, last)} (UTC)",
        x_labels=tuple(d.isoformat() for d in days),
        x_title="Day (UTC)",
        y_title="Changes per day",
        series=tuple(
            Series(label, tuple(counts.get((wiki, d), 0) for d in days)) for wiki, label in names.items()
        ),
        stacked=False,
    )


def hourly_by_wiki(names: Mapping[str, str], rows: Sequence[DailyCounts], day: date) -> ChartData:
    """One day's changes per UTC hour: bars for one wiki, one line per wiki for several."""
    hourly = {row.wiki: row.hourly_changes for row in rows if row.day == day}
    series = tuple(
        Series(label, tuple(hourly.get(wiki, ())) or (0,) * HOURS) for wiki, label in names.items()
    )
    where = f" on {next(iter(names.values()))}" if len(names) == 1 else ""
    return ChartData(
        title=f"Changes per hour{where}, {day.isoformat()} (UTC)",
        x_labels=tuple(f"{hour:02d}" for hour in range(HOURS)),
        x_title="Hour (UTC)",
        y_title="Changes per hour",
        series=series,
        stacked=len(series) == 1,
    )


def _style(figure: Figure) -> None:
    figure.set_facecolor(BACKGROUND)
    for axes in figure.axes:
        axes.set_facecolor(BACKGROUND)
        axes.tick_params(colors=TEXT, labelsize=9)
        for spine in axes.spines.values():
            spine.set_color(GRID)
        axes.yaxis.grid(True, color=GRID, linewidth=0.6)
        axes.set_axisbelow(True)
        axes.title.set_color(TEXT)
        axes.xaxis.label.set_color(TEXT)
        axes.yaxis.label.set_color(TEXT)


def _bars(axes: Axes, values: Sequence[int], bottom: Sequence[int], *, label: str, colour: str) -> None:
    """One series of bars as one collection of rectangles.

    What `axes.bar` draws, at a fraction of the cost: `bar` adds each bar as a patch of its own and
    updates the data limits once per bar, which took about a third of a 30-day chart's drawing.
    """
    half = BAR_WIDTH / 2
    rectangles = [
        [(x - half, low), (x + half, low), (x + half, low + value), (x - half, low + value)]
        for x, (value, low) in enumerate(zip(values, bottom, strict=True))
    ]
    bars = PolyCollection(rectangles, facecolors=colour, edgecolors="none", linewidths=0, label=label)
    bars.set_gid(BARS_GID)
    axes.add_collection(bars, autolim=False)


def draw(data: ChartData) -> Figure:
    """The chart as a matplotlib `Figure` on an Agg canvas (no pyplot, no display)."""
    figure = Figure(figsize=(WIDTH_INCHES, HEIGHT_INCHES), dpi=DPI)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    positions = range(len(data.x_labels))
    if data.stacked and len(data.x_labels) > MAX_BARS:
        # Hundreds of bars take seconds to draw; stacked areas show the same totals in a fraction of that.
        axes.stackplot(
            positions,
            *(series.values for series in data.series),
            labels=[series.label for series in data.series],
            colors=[KIND_COLOURS.get(series.label, LINE_COLOURS[0]) for series in data.series],
        )
    elif data.stacked:
        bottom = [0] * len(data.x_labels)
        for series in data.series:
            colour = KIND_COLOURS.get(series.label, LINE_COLOURS[0])
            _bars(axes, series.values, bottom, label=series.label, colour=colour)
            bottom = [b + v for b, v in zip(bottom, series.values, strict=True)]
        axes.set_ylim(top=max(1, max(bottom, default=0)) * 1.05)
    else:
        for series, colour in zip(data.series, LINE_COLOURS, strict=False):
            axes.plot(positions, series.values, label=series.label, color=colour, linewidth=2, marker=".")
    # At most ~12 labels along the axis, whatever the number of days.
    step = max(1, -(-len(data.x_labels) // 12))
    axes.set_xticks(list(positions)[::step], data.x_labels[::step], rotation=30, ha="right")
    axes.set_xlim(-0.6, len(data.x_labels) - 0.4)
    axes.set_ylim(bottom=0)
    axes.yaxis.set_major_locator(MaxNLocator(integer=True))
    axes.yaxis.set_major_formatter(StrMethodFormatter("{x:,.0f}"))
    # At an explicit height, so that drawing does not lay the ticks out once more to place the title.
    axes.set_title(data.title, fontsize=13, y=1.0)
    axes.set_xlabel(data.x_title)
    axes.set_ylabel(data.y_title)
    if len(data.series) > 1:
        legend = axes.legend(loc="upper left", facecolor=BACKGROUND, edgecolor=GRID, fontsize=9)
        for text in legend.get_texts():
            text.set_color(TEXT)
    _style(figure)
    figure.subplots_adjust(left=0.09, right=0.98, top=0.91, bottom=0.2)
    return figure


def render_png(data: ChartData) -> bytes:
    """The chart as PNG bytes, `WIDTH_INCHES × HEIGHT_INCHES` at `DPI` (1000 × 500 pixels)."""
    buffer = io.BytesIO()
    draw(data).savefig(buffer, format="png", facecolor=BACKGROUND)
    return buffer.getvalue()
