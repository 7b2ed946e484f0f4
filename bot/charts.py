"""Charts of the summary tables: the numbers to plot (pure), and a PNG drawn from them (matplotlib Agg).

`daily_by_kind`, `daily_by_wiki` and `hourly_by_wiki` turn `daily_wiki_stats` rows into a `ChartData`:
exactly the values plotted, so a test can compare them with the rows. `render_png` draws one without
pyplot, on a `Figure` kept from one chart to the next (an Agg canvas, no display), under a lock, so it may
run on a worker thread while the bot's event loop carries on. Colours are chosen for Discord's dark theme.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import date, timedelta
from typing import cast

from matplotlib import rc_context
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import Collection, LineCollection, PolyCollection
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from matplotlib.text import Text
from matplotlib.ticker import MaxNLocator, StrMethodFormatter
from matplotlib.transforms import Affine2D, Affine2DBase, ScaledTranslation

from bot import png

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
AREAS_GID = "areas"
# The legend's labels and handles; its geometry in pixels, as matplotlib's legend draws it at 9 points.
LEGEND_GID = "legend"
LEGEND_MARGIN = 6
LEGEND_PADDING = 5
LEGEND_ROW = 18
LEGEND_HANDLE = 25
LEGEND_GAP = 10
LEGEND_ZORDER = 5

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


def _kind_colour(label: str) -> str:
    """The colour of an editor kind's series (the first line colour for a kind without one)."""
    return KIND_COLOURS.get(label, LINE_COLOURS[0])


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


def _text_settings() -> AbstractContextManager[None]:
    """Text rasterised without hinting: half the cost of FreeType's hinting at these sizes."""
    return rc_context({"text.hinting": "no_hinting"})


def _legend(axes: Axes, entries: Sequence[tuple[str, str]], *, lines: bool = False) -> None:
    """Each series' colour and label, on a box in the upper left corner over the plot.

    What `axes.legend` draws, without its general layout (nested boxes), which measured each label six
    times per drawing: a fifth of a chart's time.
    """
    # Pixels (x rightwards, y downwards) from the corner, then moved to the axes' upper left corner.
    corner = ScaledTranslation(0, 1, cast(Affine2DBase, axes.transAxes))
    place = Affine2D().scale(1, -1).translate(LEGEND_MARGIN, -LEGEND_MARGIN) + corner
    rows = [LEGEND_PADDING + LEGEND_ROW * (n + 0.5) for n in range(len(entries))]
    left, right = LEGEND_PADDING, LEGEND_PADDING + LEGEND_HANDLE
    colours = [colour for _, colour in entries]
    handles: Collection
    if lines:
        handles = LineCollection([[(left, y), (right, y)] for y in rows], colors=colours, linewidths=2)
    else:
        half = LEGEND_ROW / 4
        squares = [[(left, y - half), (right, y - half), (right, y + half), (left, y + half)] for y in rows]
        handles = PolyCollection(squares, facecolors=colours, edgecolors="none", linewidths=0)
    frame = Rectangle(
        (0, 0),
        0,
        2 * LEGEND_PADDING + LEGEND_ROW * len(entries),
        facecolor=BACKGROUND,
        edgecolor=GRID,
        alpha=0.8,
    )
    texts = [
        Text(right + LEGEND_GAP, y, label, color=TEXT, fontsize=9, va="center")
        for (label, _), y in zip(entries, rows, strict=True)
    ]
    # Added in drawing order, over the plot.
    for artist in (frame, handles, *texts):
        artist.set(transform=place, zorder=LEGEND_ZORDER, gid=LEGEND_GID)
        axes.add_artist(artist)
    renderer = cast(FigureCanvasAgg, cast(Figure, axes.get_figure(root=True)).canvas).get_renderer()
    frame.set_width(
        right + LEGEND_GAP + max(text.get_window_extent(renderer).width for text in texts) + LEGEND_PADDING
    )


def _blank() -> Figure:
    """A styled figure with its axes and nothing plotted: what every chart shares."""
    figure = Figure(figsize=(WIDTH_INCHES, HEIGHT_INCHES), dpi=DPI, facecolor=BACKGROUND)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    axes.set_facecolor(BACKGROUND)
    axes.tick_params(colors=TEXT, labelsize=9)
    for spine in axes.spines.values():
        spine.set_color(GRID)
    axes.yaxis.grid(True, color=GRID, linewidth=0.6)
    axes.set_axisbelow(True)
    axes.title.set_color(TEXT)
    axes.title.set_fontsize(13)
    axes.xaxis.label.set_color(TEXT)
    axes.yaxis.label.set_color(TEXT)
    axes.yaxis.set_major_locator(MaxNLocator(nbins=6, integer=True))
    axes.yaxis.set_major_formatter(StrMethodFormatter("{x:,.0f}"))
    figure.subplots_adjust(left=0.09, right=0.98, top=0.91, bottom=0.2)
    # Axis titles at fixed places (in the axes' coordinates: 15 px from the left edge, 33 px from the
    # bottom), so that drawing does not measure every tick label once more to move them clear of the labels.
    axes.yaxis.set_label_coords(-0.084, 0.5)
    axes.xaxis.set_label_coords(0.5, -0.19)
    return figure


def _plot(figure: Figure, data: ChartData) -> None:
    """Draw `data` on a blank figure, or on one that held another chart (whose data goes first)."""
    [axes] = figure.axes
    for artist in [*axes.collections, *axes.lines, *axes.patches, *axes.texts]:
        artist.remove()
    positions = range(len(data.x_labels))
    top = 0
    if data.stacked and len(data.x_labels) > MAX_BARS:
        # Hundreds of bars take seconds to draw; stacked areas show the same totals in a fraction of that.
        areas = axes.stackplot(
            positions,
            *(series.values for series in data.series),
            colors=[_kind_colour(series.label) for series in data.series],
        )
        for area in areas:
            area.set_gid(AREAS_GID)
        top = max((sum(day) for day in zip(*(s.values for s in data.series), strict=True)), default=0)
    elif data.stacked:
        bottom = [0] * len(data.x_labels)
        for series in data.series:
            colour = _kind_colour(series.label)
            _bars(axes, series.values, bottom, label=series.label, colour=colour)
            bottom = [b + v for b, v in zip(bottom, series.values, strict=True)]
        top = max(bottom, default=0)
    else:
        for series, colour in zip(data.series, LINE_COLOURS, strict=False):
            axes.plot(positions, series.values, label=series.label, color=colour, linewidth=2, marker=".")
            top = max(top, *series.values)
    # At most 8 labels along the axis, whatever the number of days.
    step = max(1, -(-len(data.x_labels) // 8))
    axes.set_xticks(list(positions)[::step], data.x_labels[::step], rotation=30, ha="right")
    axes.set_xlim(-0.6, len(data.x_labels) - 0.4)
    axes.set_ylim(0, max(1, top) * 1.05)
    # At an explicit height, so that drawing does not lay the ticks out once more to place the title.
    axes.set_title(data.title, fontsize=13, y=1.0, color=TEXT)
    axes.set_xlabel(data.x_title)
    axes.set_ylabel(data.y_title)
    if len(data.series) > 1:
        if data.stacked:
            _legend(axes, [(s.label, _kind_colour(s.label)) for s in data.series])
        else:
            _legend(axes, list(zip((s.label for s in data.series), LINE_COLOURS, strict=False)), lines=True)


def draw(data: ChartData) -> Figure:
    """The chart as a matplotlib `Figure` on an Agg canvas (no pyplot, no display)."""
    figure = _blank()
    with _text_settings():
        _plot(figure, data)
    return figure


def figure_png(figure: Figure) -> bytes:
    """The figure drawn and encoded as PNG (with `_text_settings`)."""
    with _text_settings():
        figure.canvas.draw()
    return png.encode_rgb(cast(FigureCanvasAgg, figure.canvas).buffer_rgba())


class _KeptFigure:
    """One blank figure drawn on again and again: building a figure took a third of a chart's time.

    Charts are drawn on worker threads: one at a time, under a lock (drawing holds the GIL anyway),
    which also keeps `_text_settings`, set in matplotlib's global parameters while a chart is drawn,
    from being undone by one thread while another draws.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._figure: Figure | None = None

    def render(self, data: ChartData) -> bytes:
        with self._lock:
            if self._figure is None:
                self._figure = _blank()
            with _text_settings():
                _plot(self._figure, data)
            return figure_png(self._figure)


_KEPT = _KeptFigure()


def render_png(data: ChartData) -> bytes:
    """The chart as PNG bytes, `WIDTH_INCHES × HEIGHT_INCHES` at `DPI` (1000 × 500 pixels)."""
    return _KEPT.render(data)
