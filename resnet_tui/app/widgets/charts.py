"""Live charts of metrics in the terminal (braille dots), drawn off the app's thread.

One chart component serves the run screen and compare: loss on a log scale by default (`l`),
accuracy in percent, epochs along x (shared by the charts of a screen), an EMA of the noisy
step-level series with its factor in the title (`g`), and a legend above the plot.
"""

import time
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from rich.cells import cell_len
from rich.segment import Segment
from rich.style import Style
from textual.color import Color
from textual.message import Message
from textual.strip import Strip
from textual.widget import Widget

from resnet_tui.charts.scale import (
    LABEL_WIDTH,
    Buckets,
    Canvas,
    Points,
    axis_ticks,
    buckets,
    logged,
    positions,
    robust_range,
    widened,
)
from resnet_tui.display import safe

# Tableau's ten colours (W&B's too), readable on dark and light themes; series take them in
# the order of the chart's series.
_TABLEAU = "1f77b4ff7f0e2ca02cd627289467bd17becfe377c2bcbd228c564b7f7f7f"
PALETTE = [Color.parse(f"#{_TABLEAU[i : i + 6]}") for i in range(0, len(_TABLEAU), 6)]
GUTTER = LABEL_WIDTH + 1  # the y-axis: a tick label right-aligned, then the axis line
LONG_SERIES = 100  # points of a series whose spikes may be left out of its range
# `g` cycles the smoothing through these (0: off), as W&B's and TensorBoard's sliders do.
SMOOTHING_FACTORS = (0.0, 0.6, 0.8, 0.9, 0.95)


@dataclass
class ChartView:
    """Everything a picture is drawn from, taken on the app's thread for the worker's."""

    width: int
    height: int
    title: str
    percent: bool
    log_scale: bool
    smoothing: float
    noisy: Collection[str] | None
    series: dict[str, Points] = field(repr=False)
    x_range: tuple[float, float]
    base: Style = field(default_factory=Style)
    foreground: Color = field(default_factory=lambda: Color(224, 224, 224))
    background: Color = field(default_factory=lambda: Color(30, 30, 30))
    # Each series' buckets as last cut, by label: (its points, their number and the limit,
    # the buckets).
    cuts: dict[str, tuple[Points, tuple[int, int], Buckets]] = field(
        default_factory=dict, repr=False
    )


@dataclass
class Shown:
    """What a picture shows, as words and numbers (for tests and the curious)."""

    title: str
    legend: list[str]
    y_range: tuple[float, float]
    y_ticks: list[str]
    x_range: tuple[float, float]
    x_ticks: list[tuple[float, str]]


def share_x_range(charts: Iterable["MetricChart"]) -> None:
    """One x-range for all the charts (from 0 to the furthest point of any), set on each."""
    charts = list(charts)
    ends = [points[-1][0] for chart in charts for points in chart.series.values() if points]
    starts = [points[0][0] for chart in charts for points in chart.series.values() if points]
    low = min([0.0, *starts])
    high = max([*ends, low + 1.0])
    for chart in charts:
        chart.x_range = (low, high)


def next_smoothing(factor: float) -> float:
    """The smoothing after `factor` in the cycle off → 0.6 → 0.8 → 0.9 → 0.95 → off."""
    later = [f for f in SMOOTHING_FACTORS if f > factor]
    return later[0] if later else SMOOTHING_FACTORS[0]


def picture(view: ChartView) -> tuple[list[Strip], Shown]:
    """The chart's picture, as lines of `view.width` cells, and what it shows."""
    width, height = view.width, view.height
    muted = view.base + Style(color=view.foreground.blend(view.background, 0.45).rich_color)
    title_style = view.base + Style(bold=True, color=view.foreground.rich_color)
    inks = [view.base]
    faint = []
    for paint in PALETTE:
        inks.append(view.base + Style(color=paint.rich_color))
        faint.append(view.base + Style(color=paint.blend(view.background, 0.6).rich_color))
    inks += faint
    colour = {label: i % len(PALETTE) + 1 for i, label in enumerate(view.series)}
    legend = [label for label, points in view.series.items() if points]
    entries = [(f"━ {safe(label)}", inks[colour[label]]) for label in legend]
    header = _header(safe(view.title), entries, title_style, width, 2 if height >= 16 else 1)
    columns, rows = width - GUTTER - 1, height - len(header) - 1
    x_low, x_high = widened(*view.x_range)
    if columns < 4 or rows < 2:
        shown = Shown(view.title, legend, (0.0, 1.0), [], (x_low, x_high), [])
        blank: list[list[Segment]] = [[] for _ in range(height - len(header))]
        return _lines(header[:height] + blank, width, view.base, len(header)), shown

    # Each series cut to a bucket a column of dots (cut again only where its points or
    # the width changed: a key or a resize redraws at once), put on the axis's scale.
    cut: dict[str, Buckets] = {}
    for label in set(view.cuts) - set(view.series):
        del view.cuts[label]
    for label, points in view.series.items():
        held, sizes = view.cuts.get(label), (len(points), 2 * columns)
        if held is None or held[0] is not points or held[1] != sizes:
            held = view.cuts[label] = (points, sizes, buckets(points, 2 * columns))
        if points:
            cut[label] = _scaled(held[2], view)
    trimmed, kept = [], []
    for label, series in cut.items():
        long = len(view.series[label]) >= LONG_SERIES
        values = [*series.lows, *series.highs] if series.size > 1 else series.means
        (trimmed if long else kept).extend(values)
        kept.extend(series.means[-1:])
    y_low, y_high = robust_range(trimmed, kept)
    if view.percent and max(y_low, 0.0) < min(y_high, 100.0):  # cut to 0-100 %, if any is left
        y_low, y_high = widened(max(y_low, 0.0), min(y_high, 100.0))

    canvas = Canvas(columns, rows)
    dots_x, dots_y = 2 * columns - 1, 4 * rows - 1
    place_x = partial(positions, start=x_low, end=x_high, last=dots_x)
    place_y = partial(positions, start=y_high, end=y_low, last=dots_y)

    noisy = cut if view.noisy is None else view.noisy
    smoothed = {label for label in cut if view.smoothing and label in noisy}
    # The noisy series, then the few points of an epoch's on top (a val loss), then the
    # raw points of the smoothed ones, faint, in the cells left empty.
    for layer in ("line", "faint"):
        canvas.under = layer == "faint"
        for label, series in sorted(cut.items(), key=lambda item: item[0] not in noisy):
            if canvas.under and label not in smoothed:
                continue
            ink, xs = colour[label] + canvas.under * len(PALETTE), place_x(series.xs)
            if not canvas.under and label in smoothed:
                canvas.line(xs, place_y(series.smoothed(view.smoothing)), ink)
            elif series.size > 1:  # many points a column: the spread of each bucket
                tops, bottoms, means = map(place_y, (series.highs, series.lows, series.means))
                canvas.band(xs, tops, bottoms, means, ink)
            else:
                canvas.line(xs, place_y(series.means), ink)

    scale = "log" if view.log_scale and not view.percent else "percent" if view.percent else ""
    y_ticks = axis_ticks(y_low, y_high, max(2, rows // 3), scale or "linear") if cut else []
    labels: dict[int, str] = {}
    for dot, (_, label) in zip(place_y([value for value, _ in y_ticks]), y_ticks, strict=True):
        labels.setdefault(dot // 4, label)
    lines = list(header)
    for row in range(rows):
        label = labels.get(row)
        axis = [
            Segment(f"{label or '':>{GUTTER - 1}}", muted),
            Segment("┤" if label is not None else "│", muted),
        ]
        if not cut and row == rows // 2:
            lines.append([*axis, Segment(f"{'no points yet':^{columns}}", muted)])
            continue
        lines.append([*axis, *(Segment(text, inks[ink]) for text, ink in canvas.runs(row))])
    x_ticks = axis_ticks(x_low, x_high, max(2, columns // 8), "epochs")
    cells = positions([value for value, _ in x_ticks], x_low, x_high, dots_x / 2)
    lines.append(_x_axis(x_ticks, cells, columns, muted))
    y_labels = [label for _, label in y_ticks]
    shown = Shown(view.title, legend, (y_low, y_high), y_labels, (x_low, x_high), x_ticks)
    return _lines(lines, width, view.base, len(header)), shown


def _scaled(series: Buckets, view: ChartView) -> Buckets:
    """The series in the axis's units: percent of accuracy, log10 of loss on a log axis."""
    if view.percent:
        return Buckets(
            series.size,
            series.xs,
            [100 * v for v in series.lows],
            [100 * v for v in series.highs],
            [100 * v for v in series.means],
        )
    return logged(series) if view.log_scale else series


def _header(
    title: str, entries: list[tuple[str, Style]], title_style: Style, width: int, most: int
) -> list[list[Segment]]:
    """The title, and the legend (each series' colour and name) beside it where both fit,
    else below it on up to `most` rows, cut short with "+N" where it does not fit."""
    rows: list[list[Segment]] = [[Segment(f" {title}", title_style)]]
    used = 1 + cell_len(title)
    if used + sum(cell_len(text) + 2 for text, _ in entries) > width:
        rows.append([])
        used = -1
    for i, (text, style) in enumerate(entries):
        if used + 2 + cell_len(text) > width:
            if len(rows) > most:
                rows[-1].append(Segment(f"  +{len(entries) - i}", style))
                break
            rows.append([])
            used = -1
        rows[-1] += [Segment("  " if used > 0 else " ", style), Segment(text, style)]
        used += 2 + cell_len(text)
    return rows


def _x_axis(ticks: list[tuple[float, str]], cells: list[int], columns: int, style: Style):
    """The x-axis: its unit in the corner, then a line with the epochs written into it, each
    at its cell."""
    line = ["─"] * columns
    free_from = 0
    for cell, (_, label) in zip(cells, ticks, strict=True):
        start = cell - len(label) // 2
        start = max(0, min(start, columns - len(label)))
        if start < free_from:
            continue
        line[start : start + len(label)] = list(label)
        free_from = start + len(label) + 1
    return [Segment(f"{'epoch':>{GUTTER - 1}}└" + "".join(line), style)]


def _lines(rows: list[list[Segment]], width: int, style: Style, header: int) -> list[Strip]:
    """The rows as lines of exactly `width` cells: the first `header` (names, maybe of wide
    characters) measured, the others (all one cell a character) counted."""
    lines = [Strip(segments).crop_extend(0, width, style) for segments in rows[:header]]
    for segments in rows[header:]:
        length = sum(len(segment.text) for segment in segments)
        if length < width:
            segments.append(Segment(" " * (width - length), style))
        lines.append(Strip(segments, width) if length <= width else Strip(segments).crop(0, width))
    return lines


class MetricChart(Widget):
    """A chart of named series, drawn only when asked, in a thread of its own.

    `draw()` hands the series (which callers replace, never change in place) to a worker
    thread, which cuts each to a bucket a column of dots, smooths, scales and draws
    them, and cuts the picture into lines; the widget shows those lines until the next
    picture is ready. The app's thread never waits for a picture, so key presses are not
    held up by a chart. A draw asked for while one is under way follows when it is done.

    `kind` is "loss" (log scale by default, `toggle_log`) or "accuracy" (percent, never
    log); `smoothing` is the EMA factor (0: off, `cycle_smoothing`) of the series named in
    `noisy` (None: all), their raw points drawn faint behind it.
    """

    DEFAULT_CSS = """
    MetricChart {
        width: 1fr;
        height: 1fr;
    }
    """

    def __init__(
        self, title: str, kind: str = "loss", noisy: Collection[str] | None = None, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.title = title
        self.kind = kind
        self.log_scale = kind == "loss"
        self.smoothing = 0.0
        self.noisy = noisy
        self.series: dict[str, Points] = {}
        self.x_range: tuple[float, float] | None = None
        self.dirty = False
        self.drawing = False  # a picture is being built in the worker thread
        self.drawn_at = 0.0
        self.lines: list[Strip] = []
        self.shown: Shown | None = None
        self.cuts: dict[str, tuple[Points, tuple[int, int], Buckets]] = {}  # the worker's
        self.next_view: ChartView | None = None

    @property
    def shown_title(self) -> str:
        """The title with the scale and the smoothing: "loss · log · ema 0.8"."""
        parts = [self.title]
        if self.kind == "loss":
            parts.append("log" if self.log_scale else "linear")
        if self.smoothing and (self.noisy is None or self.noisy):
            parts.append(f"ema {self.smoothing:g}")
        return " · ".join(part for part in parts if part)

    def toggle_log(self) -> bool:
        """Loss between a log and a linear scale (accuracy stays in percent); whether it
        changed."""
        if self.kind != "loss":
            return False
        self.log_scale = not self.log_scale
        self.draw()
        return True

    def cycle_smoothing(self) -> float:
        """The next smoothing of the cycle off → 0.6 → 0.8 → 0.9 → 0.95 → off."""
        self.smoothing = next_smoothing(self.smoothing)
        self.draw()
        return self.smoothing

    def on_mount(self) -> None:
        self.app.theme_changed_signal.subscribe(self, lambda _theme: self.draw())

    def on_resize(self) -> None:
        self.draw()

    def render_line(self, y: int) -> Strip:
        width = self.size.width
        if y < len(self.lines):
            return self.lines[y].crop_extend(0, width, None)
        return Strip.blank(width, self.rich_style)

    def view(self) -> ChartView:
        """What the next picture is drawn from, as things are now."""
        width, height = self.size
        x_range = self.x_range
        if x_range is None:
            ends = [p[-1][0] for p in self.series.values() if p]
            x_range = (0.0, max([*ends, 1.0]))
        background = self.background_colors[1]
        return ChartView(
            width=width,
            height=height,
            title=self.shown_title,
            percent=self.kind == "accuracy",
            log_scale=self.log_scale and self.kind == "loss",
            smoothing=self.smoothing,
            noisy=None if self.noisy is None else frozenset(self.noisy),
            series=dict(self.series),
            x_range=x_range,
            base=Style(bgcolor=background.rich_color),
            foreground=Color.parse(self.app.theme_variables.get("foreground", "#e0e0e0")),
            background=background,
            cuts=self.cuts,
        )

    def draw(self) -> None:
        """Build the picture again from the series, in the worker thread."""
        width, height = self.size
        if self.drawing or not width or not height:
            self.dirty = True
            return
        self.dirty = False
        self.drawing = True
        self.drawn_at = time.monotonic()
        # Handed over, not bound to the work: a finished worker lives on until a pass of the
        # garbage collector, which would have the series to walk through.
        self.next_view = self.view()
        self.run_worker(self._picture, thread=True, group="charts")

    def _picture(self) -> None:
        """In the worker thread: the picture, posted to the widget to be shown."""
        view, self.next_view = self.next_view, None
        if view is None:
            return
        lines, shown = picture(view)
        # Posted, not called: the thread never waits for the app's thread, which may be
        # closing; one that has closed its event loop has no use for the picture.
        try:
            self.post_message(self.PictureReady(lines, shown))
        except RuntimeError:
            return

    class PictureReady(Message):
        """A picture built in the worker thread, as lines to show."""

        def __init__(self, lines: list[Strip], shown: Shown) -> None:
            super().__init__()
            self.lines = lines
            self.shown = shown

    def on_metric_chart_picture_ready(self, message: PictureReady) -> None:
        self.lines = message.lines
        self.shown = message.shown
        self.drawing = False
        self.refresh()
        if self.dirty:  # asked for while this one was drawn
            self.draw()
