"""Charts of metrics in the terminal (plotext), drawn off the app's thread."""

import io
import time
from contextlib import suppress
from functools import partial
from typing import Any

from rich.console import Console
from rich.text import Text
from textual.message import Message
from textual.strip import Strip
from textual_plotext import PlotextPlot


def decimate(points: list[tuple[float, float]], limit: int) -> list[tuple[float, float]]:
    """Every n-th point, so a chart never draws more than `limit` (plotext redraws it all)."""
    if len(points) <= limit:
        return points
    stride = -(-len(points) // limit)
    return points[::stride] + [points[-1]]


class MetricChart(PlotextPlot):
    """A plotext chart of named series, drawn only when asked, in a thread of its own.

    `draw()` hands a copy of the series (each cut to about as many points as there are dots
    across) to a worker thread, which builds the picture and cuts it into lines; the widget
    shows those lines until the next picture is ready. The app's thread never waits for
    plotext, so key presses are not held up by a chart, and repaints for other reasons cost
    nothing here. A draw asked for while one is under way follows when it is done.
    """

    def __init__(self, title: str, y_label: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.title = title
        self.y_label = y_label
        self.log_scale = False
        self.series: dict[str, list[tuple[float, float]]] = {}
        self.dirty = False
        self.drawing = False  # a picture is being built in the worker thread
        self.drawn_at = 0.0
        self.lines: list[Strip] = []

    def on_mount(self) -> None:
        self.app.theme_changed_signal.subscribe(self, lambda _theme: self.draw())

    def on_resize(self) -> None:
        self.draw()

    def render_line(self, y: int) -> Strip:
        width = self.size.width
        if y < len(self.lines):
            return self.lines[y].crop_extend(0, width, None)
        return Strip.blank(width)

    def draw(self) -> None:
        """Build the picture again from the series, in the worker thread."""
        width, height = self.size
        if self.drawing or not width or not height:
            self.dirty = True
            return
        self.dirty = False
        self.drawing = True
        self.drawn_at = time.monotonic()
        limit = max(100, 2 * width)
        series = {label: decimate(points, limit) for label, points in self.series.items()}
        # The library's own name for the app's theme, as its render() would use.
        theme = self._get_plotext_theme_name(self.app.theme)
        self.run_worker(
            partial(self._picture, series, width, height, theme, self.log_scale),
            thread=True,
            group="charts",
        )

    def _picture(
        self,
        series: dict[str, list[tuple[float, float]]],
        width: int,
        height: int,
        theme: str,
        log_scale: bool,
    ) -> None:
        """In the worker thread: plotext's picture of `series`, as lines, then shown."""
        plt = self.plt
        plt.clear_data()
        plt.clear_figure()
        plt.plotsize(width, height)
        plt._set_size(width, height)  # as PlotextPlot.render does: an empty plot needs both
        plt.theme(theme)
        plt.title(self.title)
        plt.xlabel("epoch")
        plt.yscale("log" if log_scale else "linear")
        for label, points in series.items():
            if points:
                plt.plot(
                    [x for x, _ in points], [y for _, y in points], label=label, marker="braille"
                )
        console = Console(width=width, height=height, color_system="truecolor", file=io.StringIO())
        options = console.options.update_dimensions(width, height)
        lines = console.render_lines(Text.from_ansi(plt.build()), options, pad=True)
        # Posted, not called: the thread never waits for the app's thread, which may be
        # closing; one that has closed its event loop has no use for the picture.
        with suppress(RuntimeError):
            self.post_message(self.PictureReady([Strip(line, width) for line in lines]))

    class PictureReady(Message):
        """A picture built in the worker thread, as lines to show."""

        def __init__(self, lines: list[Strip]) -> None:
            super().__init__()
            self.lines = lines

    def on_metric_chart_picture_ready(self, message: PictureReady) -> None:
        self.lines = message.lines
        self.drawing = False
        self.refresh()
