"""What a chart shows, worked out without Textual: a run's curves and how far it got, decimated
and smoothed series, robust y-ranges, axis ticks and labels, the braille canvas of the lines."""

import math
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import groupby, islice
from operator import itemgetter, sub

from resnet_tui.runs.compare import smooth
from resnet_tui.runs.state import RunState

# The share of a long series' points its range may leave out, at the bottom and at the top:
# the first steps' loss (many times the rest) must not squash the curve into the bottom row.
TRIM_LOW = 0.01
TRIM_HIGH = 0.05
# Fewer points than this are all shown: too few to tell a spike from the curve.
TRIM_FROM = 20
MARGIN = 0.08  # of the range's span, added above and below
ENVELOPE_SAMPLES = 32  # points of a bucket looked at for its lowest and highest
# The narrowest range, and of its size: dots and steps stay finite, labels tell ticks apart.
MIN_SPAN, RESOLUTION = 1e-300, 1e-4
LABEL_WIDTH = 7  # a tick's label at most
LOG_RANGE, BIGGEST = (-307.0, 308.25), sys.float_info.max  # 10 ** t a normal float; the largest
_second = itemgetter(1)
Points = list[tuple[float, float]]


class RunCurves:
    """A run's loss and accuracy curves (by epoch, steps at fractional epochs) from its
    state; what a resume undid is left out. The step loss grows by what is new: a long run
    has tens of thousands of steps, too many to list again four times a second."""

    def __init__(self) -> None:
        self.steps: Points = []
        self.taken = 0  # progress reports of the state in `steps` so far
        self.last_seq = 0
        self.made_for: tuple[int, int] = (0, 0)  # (steps an epoch, resumed starts)

    def update(self, state: RunState) -> tuple[dict[str, Points], dict[str, Points]]:
        """The loss chart's and the accuracy chart's series, train and val first in both
        (so they have the same colours in both)."""
        loss: dict[str, Points] = {"train loss": [], "val loss": [], "step loss": []}
        accuracy: dict[str, Points] = {"train": [], "val": []}
        for event in state.epochs:
            loss["train loss"].append((event.epoch, event.train_loss))
            loss["val loss"].append((event.epoch, event.val_loss))
            accuracy["train"].append((event.epoch, event.train_acc))
            accuracy["val"].append((event.epoch, event.val_acc))
            for part, value in (("ce", event.train_ce_loss), ("kd", event.train_kd_loss)):
                if value is not None:  # a distilled run's loss, in its two parts
                    loss.setdefault(f"train {part}", []).append((event.epoch, value))
        loss["step loss"] = self.step_loss(state)
        return loss, accuracy

    def step_loss(self, state: RunState) -> Points:
        """The step loss at fractional epochs: the last list and what came since, or all
        again after a resume."""
        per_epoch = state.started.steps_per_epoch if state.started else 0
        if not per_epoch:
            return []
        reports = state.step_losses  # by sequence number, in the order they were read
        new = list(islice(reports.values(), self.taken, None))
        seqs = [report.seq for report in new]
        in_order = all(a < b for a, b in zip([self.last_seq, *seqs], seqs, strict=False))
        made_for = (per_epoch, len(state.restarts))
        if made_for != self.made_for or not in_order or len(reports) < self.taken:
            # a new start (what it undid goes), or reports out of order: all again
            self.made_for, self.steps, self.last_seq = made_for, [], 0
            new, seqs = state.step_loss_points, list(reports)
        else:
            new = [report for report in new if not state.superseded(report.seq, report.epoch)]
        self.taken = len(reports)
        self.last_seq = max([self.last_seq, *seqs])
        # A new list, not the old one grown: a picture may be being drawn from the old one.
        self.steps = self.steps + [(r.global_step / per_epoch, r.loss) for r in new]
        return self.steps


def ended_words(status: str, state: RunState) -> str | None:
    """How far a run that ended early got ("stopped in epoch 4/10 at step 120/390");
    None while it is live, or once it completed. `status` is the store's word, the
    engine's where the store still has it live."""
    if status in ("queued", "running") and state.ended:
        status = state.status or status
    if status not in ("stopped", "pruned", "failed", "crashed"):
        return None
    started, progress = state.started, state.progress
    if started is None:
        return f"{status} before training started"
    if started.fusion:
        return f"{status} after {len(state.fusion_steps)}/{started.fusion['steps']} candidates"
    done = state.epochs_done
    if progress and not state.superseded(progress.seq, progress.epoch) and state.position > done:
        at = f"step {progress.step}/{progress.steps}"
        return f"{status} in epoch {done + 1}/{started.epochs} at {at}"
    return f"{status} after epoch {done}/{started.epochs}"


@dataclass
class Buckets:
    """A series cut into buckets of `size` consecutive points: each bucket's middle x and
    its lowest, highest and mean y (what a column of the chart can show of it)."""

    size: int
    xs: list[float]
    lows: list[float]
    highs: list[float]
    means: list[float]

    def smoothed(self, factor: float) -> list[float]:
        """The means smoothed by an exponential moving average of `factor` per point: a
        bucket of n points weighs the past as n points one by one would (factor ** n)."""
        return smooth(self.means, factor**self.size) if factor else self.means


def buckets(points: Sequence[tuple[float, float]], limit: int) -> Buckets:
    """At most about `limit` buckets of `points`, which are in order of x; points whose y
    is not finite are left out. The work per point and per bucket is done by builtins,
    not Python code: the means are of every point, the lows and highs of at most
    ENVELOPE_SAMPLES evenly spread points of each bucket (the noise, not every outlier)."""
    count = len(points)
    size = max(1, -(-count // max(limit, 1)))
    stride = max(1, size // ENVELOPE_SAMPLES)
    starts = range(0, count, size)
    # Slices of the points, each let go at once: no list of them all for the collector.
    means = [
        sum(map(_second, points[start : start + size])) / (min(start + size, count) - start)
        for start in starts
    ]
    if not all(map(math.isfinite, means)):  # a NaN or infinite loss, or too big a sum
        return _finite_buckets(points, size)
    samples = [list(map(_second, points[start : start + size : stride])) for start in starts]
    middles = range(size // 2, count + size // 2, size)
    return Buckets(
        size,
        [points[min(i, count - 1)][0] for i in middles],
        list(map(min, map(min, samples), means)),
        list(map(max, map(max, samples), means)),
        means,
    )


def _finite_buckets(points: Sequence[tuple[float, float]], size: int) -> Buckets:
    """`buckets` of a series with values not finite (or too big to add up): those left out."""
    cut = Buckets(size, [], [], [], [])
    for start in range(0, len(points), size):
        chunk = [y for _, y in points[start : start + size] if math.isfinite(y)]
        if chunk:
            mean = math.fsum(y / len(chunk) for y in chunk)
            cut.xs.append(points[min(start + size // 2, len(points) - 1)][0])
            cut.lows.append(min(mean, *chunk))
            cut.highs.append(max(mean, *chunk))
            cut.means.append(mean)
    return cut


def logged(series: Buckets) -> Buckets:
    """The series on a log10 scale: buckets with no positive value are left out."""
    if min(series.lows, default=1.0) > 0:  # a loss: all positive
        log = math.log10
        return Buckets(
            series.size,
            series.xs,
            list(map(log, series.lows)),
            list(map(log, series.highs)),
            list(map(log, series.means)),
        )
    kept = Buckets(series.size, [], [], [], [])
    for x, low, high, mean in zip(series.xs, series.lows, series.highs, series.means, strict=True):
        if high <= 0:
            continue
        if mean <= 0:
            mean = high
        kept.xs.append(x)
        kept.lows.append(math.log10(low if low > 0 else mean))
        kept.highs.append(math.log10(high))
        kept.means.append(math.log10(mean))
    return kept


def quantile(ordered: Sequence[float], q: float) -> float:
    """The q-quantile of sorted values, interpolated linearly between neighbours."""
    at = q * (len(ordered) - 1)
    below = int(at)
    above = min(below + 1, len(ordered) - 1)
    return ordered[below] + (at - below) * 2 * (ordered[above] / 2 - ordered[below] / 2)


def robust_range(
    values: Iterable[float], keep: Iterable[float] = (), margin: float = MARGIN
) -> tuple[float, float]:
    """A y-range (`widened`) holding most of the finite `values` and all of `keep`.

    Of 20 values or more, the lowest 1 % and the highest 5 % may fall outside (they are
    drawn at the edge): an early spike, not the curve. `keep` (the newest value of each
    series, the few points of an epoch-level series) is always inside. A margin of
    `margin` of the span is added on both sides; a single value gets a range around it.
    """
    ordered = sorted(v for v in values if math.isfinite(v))
    kept = [v for v in keep if math.isfinite(v)]
    if len(ordered) >= TRIM_FROM:
        ordered = [quantile(ordered, TRIM_LOW), quantile(ordered, 1 - TRIM_HIGH)]
    ends = ordered + kept
    if not ends:
        return 0.0, 1.0
    low, high = min(ends), max(ends)
    span = high / 2 - low / 2  # half the span: finite for any finite ends
    pad = span * 2 * margin if span > 0 else abs(low) * 0.1 or 0.1
    bottom = low - pad if low - pad >= 0 or low < 0 else 0.0  # the margin never crosses 0
    return widened(bottom, high + pad)


def widened(low: float, high: float) -> tuple[float, float]:
    """[low, high] as a range a chart can draw and label: finite ends (NaN: 0, infinite: the
    largest float) in order, at least MIN_SPAN and RESOLUTION of its size wide (grown
    about its middle, never below 0 where it was not)."""
    ends = (min(max(end, -BIGGEST), BIGGEST) if end == end else 0.0 for end in (low, high))
    low, high = sorted(ends)
    need = max(MIN_SPAN, RESOLUTION * max(-low, high))
    if high / 2 - low / 2 >= need / 2:
        return low, high
    bottom = min(max(low / 2 + high / 2 - need / 2, 0.0 if low >= 0 else -BIGGEST), BIGGEST - need)
    return bottom, bottom + need


def positions(values: Iterable[float], start: float, end: float, last: float) -> list[int]:
    """Values' dots on a `widened` axis from `start` (0) to `end` (`last`); off it: its edge."""
    scale = last / (end / 2 - start / 2)  # halves: no overflow
    placed = [(value / 2 - start / 2) * scale for value in values]
    return [round(p) if 0 <= p <= last else last if p > last else 0 for p in placed]


def nice_step(span: float, count: float, multiples: Sequence[float] = (1, 2, 2.5, 5)) -> float:
    """A round step (`multiples` of a power of ten, 1e-307 to 1e308): `count` over `span`."""
    rough = span / count
    if not rough > 0:
        return 1.0
    power = 10.0 ** max(math.floor(math.log10(min(rough, 1e308))), -307)
    return min(next((m * power for m in multiples if m * power >= rough), 10 * power), 1e308)


def round_ticks(
    low: float, high: float, count: int, multiples: Sequence[float], room: int = LABEL_WIDTH
) -> list[tuple[float, str]]:
    """Round values in [low, high], about `count` of them, labelled apart in `room`
    characters: fewer, a coarser step apart, where they would not be; else the middle."""
    step = nice_step(high / 2 - low / 2, max(count, 1) / 2, multiples)  # halves: finite
    while step < 1e308:
        first, last = low / step, high / step
        if math.isfinite(first) and math.isfinite(last) and last - first <= 1000:
            nths = range(math.ceil(first), math.floor(last) + 1)
            values = [n * step for n in nths if low <= n * step <= high]  # none rounded in
            labels = [number_label(value, step) for value in values]
            if values and len(set(labels)) == len(values) and all(len(t) <= room for t in labels):
                return list(zip(values, labels, strict=True))
        step = nice_step(step * 1.001, 1, multiples)  # the next coarser
    middle = low + (high / 2 - low / 2)  # no round value fits: the middle, to 3 digits or fewer
    power = math.floor(math.log10(abs(middle))) if middle else 0
    labels = [number_label(middle, 10.0 ** max(power - p, -307)) for p in (2, 1, 0)]
    return [(middle, next((text for text in labels if len(text) <= room), labels[-1]))]


def log_ticks(low: float, high: float, count: int) -> list[tuple[float, str]]:
    """Ticks of a log10 axis from `low` to `high` (exponents of normal floats), labelled: 1-2-5
    or 1-3 of each decade where about `count` fit, else decades, else round values."""
    low, high = max(low, LOG_RANGE[0]), min(high, LOG_RANGE[1])
    if not low <= high:
        return []
    for multiples in ((1, 2, 5), (1, 3)):
        ticks = [
            (d + math.log10(m), number_label(m * 10.0**d, 10.0**d))
            for d in range(math.floor(low), math.ceil(high) + 1)
            for m in multiples
            if low <= d + math.log10(m) <= high
        ]
        if 2 <= len(ticks) <= count + 1:
            return ticks
    decades = list(range(math.ceil(low), math.floor(high) + 1))
    if len(decades) >= 2:
        every = -(-len(decades) // max(count, 2))
        return [(float(d), number_label(10.0**d, 10.0**d)) for d in decades[::every]]
    ticks = round_ticks(10**low, 10**high, count, (1, 2, 2.5, 5))
    return [(math.log10(value), label) for value, label in ticks if value > 0]


def number_label(value: float, step: float) -> str:
    """A tick's number to the precision of its axis's `step` (a positive float): the first
    of plain (0.25), SI up to T (150k, 1.2M) and scientific (1.5e-4, 1e28) in 6 characters
    and a minus, else the shortest. The labels of distinct multiples of a step differ."""
    if not math.isfinite(value):
        return str(value)
    mantissa, exponent = f"{step:.5e}".split("e")  # to 6 digits: 2.50000e-04
    decimals = len(mantissa.rstrip("0")) - 2 - int(exponent)  # of the plain number
    forms = [f"{value or 0.0:.{max(0, decimals)}f}"]  # never "-0"
    if not value:
        return forms[0] if len(forms[0]) <= 6 else "0"
    power = math.floor(math.log10(abs(value)))
    if 3 <= power < 15:  # k, M, G or T
        group = power // 3
        forms.append(f"{value / 1000.0**group:.{max(0, decimals + 3 * group)}f}" + " kMGT"[group])
    mantissa, exponent = f"{value:.{max(0, decimals + power)}e}".split("e")
    forms.append(f"{mantissa}e{int(exponent)}")
    fitting = [form for form in forms if len(form.lstrip("-")) <= 6]
    return fitting[0] if fitting else min(forms, key=len)


def axis_ticks(low: float, high: float, count: int, scale: str) -> list[tuple[float, str]]:
    """Where the ticks of an axis go and what they say, distinct ticks in distinct labels of
    LABEL_WIDTH characters (none for a range that is not one): `scale` is "linear", "log"
    (the axis is in log10 of the values), "percent" (values are percent: "90 %") or
    "epochs" (steps of 1, 2 or 5, never 2.5)."""
    if not (math.isfinite(low) and math.isfinite(high) and low <= high):
        return []
    if scale == "log":
        return log_ticks(low, high, count)
    unit = " %" if scale == "percent" else ""
    multiples = (1, 2, 5) if scale == "epochs" else (1, 2, 2.5, 5)
    ticks = round_ticks(low, high, count, multiples, LABEL_WIDTH - len(unit))
    return [(value, label + unit) for value, label in ticks]


# Braille: the bit of the dot at (column dx, row dy) of a cell.
_DOT = ((0x01, 0x02, 0x04, 0x40), (0x08, 0x10, 0x20, 0x80))
# The bits of a cell's dots from row a to row b (a <= b) of column dx: _SPAN[dx][a][b].
_SPAN = tuple(
    tuple(tuple(sum(_DOT[dx][a : b + 1]) for b in range(4)) for a in range(4)) for dx in (0, 1)
)
_CELLS = [" "] + [chr(0x2800 + mask) for mask in range(1, 256)]


class Canvas:
    """A grid of braille cells, each dot set by a series, each cell the colour of the last
    series that set a dot in it; while `under` is set, what is drawn fills only the cells
    no other series has dots in."""

    def __init__(self, columns: int, rows: int) -> None:
        self.columns, self.rows = columns, rows
        self.dots = bytearray(columns * rows)
        self.inks = [0] * (columns * rows)
        self.under = False

    def spans(self, xs: Iterable[int], tops: Iterable[int], bottoms: Iterable[int], ink: int):
        """The dots of each column x from row top to row bottom (dot coordinates, top <=
        bottom), in one loop: a chart draws thousands of them."""
        dots, inks, columns, under = self.dots, self.inks, self.columns, self.under
        for x, top, bottom in zip(xs, tops, bottoms, strict=True):
            spans, cell_x = _SPAN[x & 1], x >> 1
            first, last = top >> 2, bottom >> 2
            if first == last:  # most spans: within one cell
                cell = first * columns + cell_x
                if not under or inks[cell] in (0, ink):
                    dots[cell] |= spans[top & 3][bottom & 3]
                    inks[cell] = ink
                continue
            for row in range(first, last + 1):
                cell = row * columns + cell_x
                if under and inks[cell] not in (0, ink):
                    continue
                dots[cell] |= spans[top & 3 if row == first else 0][
                    bottom & 3 if row == last else 3
                ]
                inks[cell] = ink

    def line(self, xs: list[int], ys: list[int], ink: int) -> None:
        """A line through the points (dot coordinates, in order of x)."""
        if not xs:
            return
        before = [ys[0], *ys[:-1]]
        if max(map(abs, map(sub, xs[1:], xs[:-1])), default=0) <= 1:
            # dense points, a column apart at most: the rise or fall to each in one span
            self.spans(xs, map(min, before, ys), map(max, before, ys), ink)
            return
        px, py = xs[0], ys[0]
        for x, y in zip(xs, ys, strict=True):  # sparse points: each column on the way
            steps, direction = max(1, abs(x - px)), 1 if x >= px else -1
            heights = [round(py + (y - py) * i / steps) for i in range(steps + 1)]
            columns = [px + direction * i for i in range(1, abs(x - px) + 1)] or [x]
            self.spans(columns, map(min, heights, heights[1:]), map(max, heights, heights[1:]), ink)
            px, py = x, y

    def band(self, xs: list[int], tops: list[int], bottoms: list[int], mids: list[int], ink: int):
        """Dense points (a column of dots apart at most) drawn as the spread of each, joined
        to the middle of the one before: a noisy series as it looks, at one span a point."""
        before = [mids[0], *mids[:-1]] if mids else []
        self.spans(xs, map(min, tops, before), map(max, bottoms, before), ink)

    def runs(self, row: int) -> list[tuple[str, int]]:
        """Row `row` of cells as runs of cells of one colour: (text, ink), 0 for none."""
        start, end = row * self.columns, (row + 1) * self.columns
        text = "".join(map(_CELLS.__getitem__, self.dots[start:end]))
        segments: list[tuple[str, int]] = []
        at = 0
        for ink, run in groupby(self.inks[start:end]):  # a cell without dots has no ink
            length = len(list(run))
            segments.append((text[at : at + length], ink))
            at += length
        return segments
