"""How fast a live chart redraws: 50,000 steps of 2-3 series, at 80x24 and 160x48.

Run: .venv/bin/python bench/chart_draw.py [--draws 30] [--steps 50000]
Writes a table to stdout and to bench/RESULTS-charts.md. Each chart fills a headless Textual
app of the size given (the run screen shows two side by side, so each is narrower there),
which runs Python's garbage collector as resnet-tui does (resnet_tui/app/garbage.py);
a draw is timed from `MetricChart.draw()` on the app's thread until the picture the worker
thread built is in the widget (what the user waits for), and the worker's part alone
(`picture()`: decimate, smooth, scale, draw the dots, cut the lines) is timed beside it.
"new points": every draw has new lists of points (a live run's events came), so each series
is cut into buckets again; "same points": a key (`l`, `g`) or a resize redraws the series
it drew last, whose buckets the chart kept.
"""

import argparse
import asyncio
import random
import statistics
import sys
import time
from pathlib import Path

from results import machine, publish
from textual.app import App, ComposeResult

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from resnet_tui.app.garbage import YOUNG_EVERY_S, GarbageSchedule  # noqa: E402
from resnet_tui.app.widgets.charts import MetricChart, picture  # noqa: E402

SIZES = [(80, 24), (160, 48)]
GOAL_MS = 20.0


def step_losses(steps: int, steps_per_epoch: int, seed: int) -> list[tuple[float, float]]:
    """A noisy training loss by step, at fractional epochs, with the first steps' spike."""
    rng = random.Random(seed)
    return [
        (
            (step + 1) / steps_per_epoch,
            (8.0 if step < 50 else 0.05 + 2.3 / (1 + step / 2000)) * rng.uniform(0.7, 1.3),
        )
        for step in range(steps)
    ]


def accuracies(steps: int, steps_per_epoch: int, seed: int) -> list[tuple[float, float]]:
    """A noisy accuracy by step, rising towards 95 %."""
    rng = random.Random(seed)
    return [
        ((step + 1) / steps_per_epoch, min(1.0, 0.95 * step / (step + 3000) + rng.uniform(0, 0.1)))
        for step in range(steps)
    ]


CASES = {
    "loss, 1 run's steps, log, ema 0.8": ("loss", 0.8, step_losses, 1),
    "loss, 3 series, log, ema 0.8": ("loss", 0.8, step_losses, 3),
    "accuracy, 2 series, %": ("accuracy", 0.0, accuracies, 2),
}


class TimedChart(MetricChart):
    """The app's chart, telling when a picture asked for is in the widget."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.shown_event = asyncio.Event()

    def on_metric_chart_picture_ready(self, message: MetricChart.PictureReady) -> None:
        super().on_metric_chart_picture_ready(message)
        self.shown_event.set()


class ChartApp(App[None]):
    """The chart alone, the garbage collected on resnet-tui's schedule."""

    def __init__(self, chart: TimedChart) -> None:
        super().__init__()
        self.chart = chart
        self.garbage = GarbageSchedule()

    def compose(self) -> ComposeResult:
        yield self.chart

    def on_mount(self) -> None:
        self.call_after_refresh(self.garbage.start)  # as ResnetApp: after the first paint
        self.set_interval(YOUNG_EVERY_S, self.garbage.tick)

    def on_unmount(self) -> None:
        self.garbage.stop()


async def time_draws(
    case: str, size: tuple[int, int], draws: int, steps: int, new_points: bool
) -> dict:
    kind, smoothing, make, count = CASES[case]
    chart = TimedChart(kind, kind, id="chart")
    chart.smoothing = smoothing
    series = {f"run {i + 1}": make(steps, steps // 10, seed=i) for i in range(count)}
    chart.series = series
    app = ChartApp(chart)
    shown, worker = [], []
    async with app.run_test(size=size) as pilot:
        await pilot.pause()
        for attempt in range(draws + 2):  # two to warm up
            while chart.drawing:
                await asyncio.sleep(0.01)
            chart.shown_event.clear()
            if new_points:  # copied before the clock starts, as the run screen's are
                chart.series = {label: list(points) for label, points in series.items()}
            start = time.perf_counter()
            chart.draw()
            await chart.shown_event.wait()
            took = time.perf_counter() - start
            view = chart.view()
            if new_points:
                view.cuts = {}
            start = time.perf_counter()
            picture(view)
            alone = time.perf_counter() - start
            if attempt >= 2:
                shown.append(took * 1000)
                worker.append(alone * 1000)
    return {"shown": shown, "worker": worker}


def p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20)[-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--draws", type=int, default=30)
    parser.add_argument("--steps", type=int, default=50_000)
    args = parser.parse_args()
    lines = [
        f"Machine: {machine()}; {args.steps:,} steps a series, {args.draws} draws each after "
        f"two to warm up; goal: {GOAL_MS:.0f} ms.",
        "",
        "| chart | points | size | draw() to picture: median | p95 | worker alone: median | p95 |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for case in CASES:
        for new_points in (True, False):
            for size in SIZES:
                result = asyncio.run(time_draws(case, size, args.draws, args.steps, new_points))
                shown, worker = result["shown"], result["worker"]
                lines.append(
                    f"| {case} | {'new' if new_points else 'same'} | {size[0]}x{size[1]} "
                    f"| {statistics.median(shown):.1f} ms | {p95(shown):.1f} ms "
                    f"| {statistics.median(worker):.1f} ms | {p95(worker):.1f} ms |"
                )
    lines += [
        "",
        "Each series is cut to a bucket a column of dots before anything else (their means "
        "by `sum` over every point, their lows and highs over at most 32 points of each), so "
        "the smoothing, the range and the drawing work on a few hundred values, not 50,000; "
        "the EMA of a bucket weighs the past as its points would one by one (factor ** n). "
        "The app's thread only takes the view (a dict of the series); the rest is the "
        "worker's. The chart keeps each series' buckets while its list of points stays the "
        'same, so `l`, `g` and resizes skip the cutting ("same"). The dots are the chart\'s '
        "own: plotext, used before, took about 48 ms to build a 160x48 picture of 3 series "
        "and 25 ms more to turn its ANSI text into lines.",
        "",
        "The tail (p95 above the median) is the app's garbage collection of the young "
        "generations once a second, which lands in some draws, and the other work of a "
        "shared 2-core machine.",
    ]
    publish(__file__, "charts", "Chart redraw", lines)


if __name__ == "__main__":
    main()
