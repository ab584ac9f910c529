"""A learning-rate range test's chart as lines of text: loss against learning rate (log
scale) in braille dots, the suggested rates marked, for the command line and the app.

Drawn with the app's chart pieces (resnet_tui/charts/scale.py, which needs no
Textual): each row is a list of (text, ink) runs, ink saying what the cells show (AXIS,
LOSS, SMOOTHED or a mark's own), so that a caller colours them as it likes.
"""

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial

from resnet_tui.charts.scale import (
    LABEL_WIDTH,
    Canvas,
    axis_ticks,
    positions,
    robust_range,
    widened,
)

# What a cell shows: the axes and labels, each step's loss, the smoothed loss, then marks.
AXIS, LOSS, SMOOTHED = 0, 1, 2
GUTTER = LABEL_WIDTH + 1  # the y-axis: a tick label right-aligned, then the axis line
Row = list[tuple[str, int]]


@dataclass
class Mark:
    """A learning rate to point at under the chart: its name and ink (above SMOOTHED)."""

    name: str
    lr: float
    ink: int


def lr_chart(
    lrs: Sequence[float],
    losses: Sequence[float | None],
    smoothed: Sequence[float | None],
    marks: Sequence[Mark],
    width: int,
    height: int,
) -> list[Row]:
    """The chart in `width` cells by `height` rows of plot, then the axis of learning rates
    and a row (or two) naming the marks, each under a dotted line at its rate. Losses that
    are None or not finite are left out; the range of the loss leaves out a final spike."""
    columns, rows = max(width - GUTTER - 1, 4), max(height, 2)
    xs_log = [math.log10(lr) for lr in lrs]
    x_low, x_high = widened(min(xs_log, default=0.0), max(xs_log, default=1.0))
    raw = [(x, y) for x, y in zip(xs_log, losses, strict=True) if _finite(y)]
    smooth = [(x, y) for x, y in zip(xs_log, smoothed, strict=True) if _finite(y)]
    y_low, y_high = robust_range([y for _, y in raw + smooth], [y for _, y in smooth[:1]])
    canvas = Canvas(columns, rows)
    dots_x, dots_y = 2 * columns - 1, 4 * rows - 1
    place_x = partial(positions, start=x_low, end=x_high, last=dots_x)
    place_y = partial(positions, start=y_high, end=y_low, last=dots_y)
    if smooth:
        canvas.line(place_x([x for x, _ in smooth]), place_y([y for _, y in smooth]), SMOOTHED)
    canvas.under = True  # marks and raw losses only in the cells the smoothed line left
    for mark, x in zip(marks, place_x([math.log10(mark.lr) for mark in marks]), strict=True):
        canvas.spans([x] * rows, range(0, dots_y, 4), range(0, dots_y, 4), mark.ink)
    if raw:
        ys = place_y([y for _, y in raw])
        canvas.spans(place_x([x for x, _ in raw]), ys, ys, LOSS)

    y_ticks = axis_ticks(y_low, y_high, max(2, rows // 3), "linear") if raw or smooth else []
    labels: dict[int, str] = {}
    for dot, (_, label) in zip(place_y([value for value, _ in y_ticks]), y_ticks, strict=True):
        labels.setdefault(dot // 4, label)
    lines: list[Row] = []
    for row in range(rows):
        label = labels.get(row)
        axis = f"{label or '':>{GUTTER - 1}}{'┤' if label is not None else '│'}"
        lines.append([(axis, AXIS), *canvas.runs(row)])
    x_ticks = axis_ticks(x_low, x_high, max(2, columns // 8), "log")
    cells = positions([value for value, _ in x_ticks], x_low, x_high, dots_x / 2)
    lines.append([(f"{'lr':>{GUTTER - 1}}└" + _labelled(x_ticks, cells, columns), AXIS)])
    mark_cells = [x // 2 for x in place_x([math.log10(mark.lr) for mark in marks])]
    lines += _mark_names(marks, mark_cells, columns)
    return lines


def plain(rows: list[Row]) -> list[str]:
    """The chart's rows as plain text, without the trailing blanks."""
    return ["".join(text for text, _ in row).rstrip() for row in rows]


def _finite(value: float | None) -> bool:
    return value is not None and math.isfinite(value)


def _labelled(ticks: list[tuple[float, str]], cells: list[int], columns: int) -> str:
    """The x-axis line with each tick's label written into it at its cell, where it fits."""
    line = ["─"] * columns
    free_from = 0
    for cell, (_, label) in zip(cells, ticks, strict=True):
        start = max(0, min(cell - len(label) // 2, columns - len(label)))
        if start < free_from:
            continue
        line[start : start + len(label)] = list(label)
        free_from = start + len(label) + 1
    return "".join(line)


def _mark_names(marks: Sequence[Mark], cells: list[int], columns: int) -> list[Row]:
    """Under the axis, `▲ name` at each mark's cell (`name ▲` where it would run off the
    chart); a name that would touch one before it goes on a row of its own."""
    rows: list[Row] = []
    used: list[int] = []  # the cells each row has written
    for mark, cell in sorted(zip(marks, cells, strict=True), key=lambda pair: pair[1]):
        text = f"▲ {mark.name}" if cell + len(mark.name) + 2 <= columns else f"{mark.name} ▲"
        start = cell if text.startswith("▲") else max(0, cell - len(mark.name) - 1)
        index = next((i for i, end in enumerate(used) if end < start), len(rows))
        if index == len(rows):
            rows.append([(" " * GUTTER, AXIS)])
            used.append(0)
        rows[index] += [(" " * (start - used[index]), AXIS), (text, mark.ink)]
        used[index] = start + len(text)
    return rows
