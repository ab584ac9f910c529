"""The arithmetic of the app's charts: ranges, ticks, smoothing, decimation, a run's curves."""

import math
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.contract import events as ev
from resnet_tui.app.widgets.charts import SMOOTHING_FACTORS, ChartView, next_smoothing, picture
from resnet_tui.charts.scale import (
    LABEL_WIDTH,
    MIN_SPAN,
    Canvas,
    RunCurves,
    axis_ticks,
    buckets,
    ended_words,
    positions,
    robust_range,
    widened,
)
from resnet_tui.runs.compare import smooth
from resnet_tui.runs.state import RunState
from tests.conftest import record_fault
from tests.runs.made_events import epoch_ended, progress, started

finite = st.floats(allow_nan=False, allow_infinity=False)
# Every float: subnormals (5e-324), the largest (1.8e308), infinities and NaN.
any_float = st.floats() | st.sampled_from([5e-324, 1e-323, -5e-324, 2.2e-308, 1.7e308, -1e308])
metric = st.floats(min_value=-1e12, max_value=1e12, allow_nan=False)  # what a run reports
factor = st.sampled_from(SMOOTHING_FACTORS)


@given(st.lists(finite), st.lists(finite, max_size=5))
def test_any_finite_series_gets_a_finite_range_holding_most_points_and_all_kept(values, keep):
    low, high = robust_range(values, keep)
    assert math.isfinite(low) and math.isfinite(high) and low < high
    outside = [v for v in values if not low <= v <= high]
    # The lowest 1 % and the highest 5 % may fall outside: a point more each way where the
    # quantiles fall between points (3 of 29, say).
    assert len(outside) <= math.ceil(0.01 * len(values)) + math.ceil(0.05 * len(values)) + 1
    assert all(low <= v <= high for v in keep)


@given(st.floats(min_value=0.1, max_value=10), st.integers(min_value=200, max_value=2000))
def test_the_first_steps_spike_is_left_above_the_range(final, steps):
    curve = [final * (1 + 1 / (1 + i)) for i in range(steps)]
    low, high = robust_range([100 * final] * (steps // 50) + curve)
    assert high < 100 * final  # the spike is clipped at the top, the curve fills the chart
    assert high - low < 2 * final
    assert sum(low <= v <= high for v in curve) >= 0.9 * len(curve) and low <= curve[-1]


@given(metric, st.integers(min_value=1, max_value=50), factor)
def test_the_ema_of_a_constant_is_the_constant(value, length, weight):
    assert smooth([value] * length, weight) == [value] * length


@given(st.lists(metric, min_size=1), factor)
def test_the_ema_stays_between_the_lowest_and_highest_value(values, weight):
    smoothed = smooth(values, weight)
    slack = 1e-9 * max(1.0, *map(abs, values))
    assert len(smoothed) == len(values) and smoothed[0] == values[0]
    assert all(min(values) - slack <= s <= max(values) + slack for s in smoothed)
    assert smooth(values, 0.0) == values


def test_g_cycles_the_smoothing_off_06_08_09_095_off():
    seen, weight = [], 0.0
    for _ in range(5):
        weight = next_smoothing(weight)
        seen.append(weight)
    assert seen == [0.6, 0.8, 0.9, 0.95, 0.0]


@given(
    st.lists(st.floats(allow_nan=True, allow_infinity=True), min_size=1, max_size=3000),
    st.integers(min_value=1, max_value=400),
)
def test_buckets_hold_every_finite_point_in_a_bounded_number_of_buckets(ys, limit):
    cut = buckets([(i / 10, y) for i, y in enumerate(ys)], limit)
    assert len(cut.xs) <= limit + 1
    assert cut.xs == sorted(cut.xs)
    values = [*cut.lows, *cut.means, *cut.highs]
    assert all(math.isfinite(v) for v in values)
    assert all(
        lo <= mean <= hi for lo, mean, hi in zip(cut.lows, cut.means, cut.highs, strict=True)
    )
    if any(math.isfinite(y) for y in ys):
        finite_ys = [y for y in ys if math.isfinite(y)]
        rounding = 1e-12 * max(map(abs, finite_ys))  # a mean is rounded
        assert min(cut.lows) >= min(finite_ys) - rounding
        assert max(cut.highs) <= max(finite_ys) + rounding


@settings(max_examples=300)
@given(
    st.floats(min_value=-1e4, max_value=1e4),
    st.floats(min_value=1e-2, max_value=1e6),
    st.integers(min_value=2, max_value=12),
)
def test_linear_ticks_lie_in_the_range_in_order_with_distinct_labels(low, span, count):
    span = max(span, 1e-2 * abs(low))  # the range of a chart: a metric's own precision
    ticks = axis_ticks(low, low + span, count, "linear")
    values = [value for value, _ in ticks]
    slack = 1e-9 * max(1.0, abs(low) + span)
    assert values == sorted(values) and all(low - slack <= v <= low + span + slack for v in values)
    assert len({label for _, label in ticks}) == len(ticks)
    assert all(len(label.lstrip("-")) <= 6 for _, label in ticks)


@given(st.floats(min_value=0, max_value=98), st.floats(min_value=2, max_value=100))
def test_accuracy_ticks_read_as_percent_never_as_fractions(low, span):
    high = min(100.0, low + span)
    for value, label in axis_ticks(low, high, 5, "percent"):
        assert re.fullmatch(r"\d{1,3}(\.\d)? %", label), label
        assert 0 <= value <= 100


@given(st.floats(min_value=-6, max_value=3), st.floats(min_value=0.005, max_value=6))
def test_log_ticks_are_round_values_inside_the_range(low, span):
    ticks = axis_ticks(low, low + span, 5, "log")
    assert ticks and all(low - 1e-9 <= t <= low + span + 1e-9 for t, _ in ticks)
    assert len({label for _, label in ticks}) == len(ticks)
    for value, label in ticks:
        assert math.isclose(read(label), 10**value, rel_tol=0.11), (value, label)


@settings(max_examples=300)
@given(st.lists(any_float, max_size=60), st.lists(any_float, max_size=3), st.lists(any_float))
def test_any_values_get_a_range_whose_dots_are_on_the_plot(values, keep, placed):
    low, high = robust_range(values, keep)
    assert math.isfinite(low) and math.isfinite(high) and low < high
    assert high / 2 - low / 2 >= MIN_SPAN / 4  # a dot's size stays finite
    for start, end in ((low, high), (high, low)):  # x from the left, y from the top
        dots = positions(placed, start, end, 95)
        assert len(dots) == len(placed) and all(0 <= dot <= 95 for dot in dots)
        assert all(type(dot) is int for dot in dots)


@given(any_float, any_float)
def test_any_two_ends_widen_into_a_range_that_holds_them(low, high):
    bottom, top = widened(low, high)
    assert math.isfinite(bottom) and math.isfinite(top) and bottom < top
    finite_ends = [end for end in (low, high) if math.isfinite(end)]
    assert all(bottom <= end <= top for end in finite_ends)
    if not (low < 0 or high < 0):  # NaN: 0
        assert bottom >= 0  # a loss's range never reaches below 0


@settings(max_examples=500)
@given(
    any_float,
    any_float,
    st.integers(min_value=1, max_value=20),
    st.sampled_from(["linear", "log", "percent", "epochs"]),
)
def test_ticks_of_any_range_read_apart_in_seven_characters(low, high, count, scale):
    ticks = axis_ticks(low, high, count, scale)
    if not (math.isfinite(low) and math.isfinite(high) and low <= high):
        assert ticks == []
        return
    values = [value for value, _ in ticks]
    labels = [label.removesuffix(" %") for _, label in ticks]
    assert values == sorted(values) and len(set(values)) == len(values)
    assert len(set(labels)) == len(labels), ticks  # distinct ticks read distinct
    assert all(len(label) <= LABEL_WIDTH for label in labels), ticks
    slack = 1e-9 * max(abs(low), abs(high), 1.0) if scale == "log" else 0.0  # 10 ** t rounded
    assert all(low - slack <= value <= high + slack for value in values), ticks


FLAT = [2.303 + 1e-4 * math.sin(i) for i in range(300)]  # a loss flat within ±1e-4


@pytest.mark.parametrize("log_scale", [True, False], ids=["log", "linear"])
def test_a_flat_loss_has_labels_as_distinct_as_its_ticks(log_scale):
    _, shown = picture(chart_view([(i / 100, y) for i, y in enumerate(FLAT)], log_scale))
    assert len(shown.y_ticks) >= 3 and len(set(shown.y_ticks)) == len(shown.y_ticks)
    assert all(len(label) <= LABEL_WIDTH for label in shown.y_ticks), shown.y_ticks
    assert all(2.3028 <= float(label) <= 2.3032 for label in shown.y_ticks), shown.y_ticks


def test_a_diverging_loss_reads_in_si_up_to_t_then_in_powers_of_ten():
    linear = [label for _, label in axis_ticks(0, 1e28, 5, "linear")]
    assert linear == ["0", "2e27", "4e27", "6e27", "8e27", "1.0e28"]
    assert [label for _, label in axis_ticks(0, 1e14, 5, "linear")][-1] == "100T"
    assert [label for _, label in axis_ticks(0, 1e16, 5, "linear")][-1] == "1.0e16"
    decades = [label for _, label in axis_ticks(0, 40, 5, "log")]
    assert decades == ["1", "1G", "1e18", "1e27", "1e36"]


def chart_view(points: list[tuple[float, float]], log_scale: bool, **values) -> ChartView:
    """A loss chart of one series at 80x24."""
    fields = {"width": 80, "height": 24, "title": "loss", "percent": False, "smoothing": 0.0}
    fields |= {"noisy": None, "x_range": (0.0, 3.0), **values}
    return ChartView(log_scale=log_scale, series={"step loss": points}, **fields)


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.tuples(any_float, any_float), max_size=300),
    st.tuples(any_float, any_float),
    st.booleans(),
    st.booleans(),
    st.sampled_from([(80, 24), (30, 8), (12, 4)]),
)
def test_any_numbers_draw_a_picture_of_the_chart_s_size(points, x_range, log_scale, percent, size):
    width, height = size
    view = chart_view(points, log_scale, percent=percent, x_range=x_range, smoothing=0.8)
    view.width, view.height = size
    lines, shown = picture(view)
    assert len(lines) == height and all(line.cell_length == width for line in lines)
    assert all(math.isfinite(end) for end in (*shown.x_range, *shown.y_range))


def read(label: str) -> float:
    """A tick label's number: 150k is 150,000."""
    scale = 1000.0 ** (" kMGT".index(label[-1])) if label[-1] in "kMGT" else 1.0
    return float(label.rstrip("kMGT")) * scale


def test_a_line_sets_dots_at_both_ends_and_rows_keep_their_width():
    canvas = Canvas(10, 3)
    canvas.line([0, 19], [0, 11], ink=1)
    assert canvas.dots[0] & 0x01 and canvas.dots[2 * 10 + 9] & 0x80
    for row in range(3):
        assert sum(len(text) for text, _ in canvas.runs(row)) == 10


def run_events(resume_at: int | None) -> list[ev.Event]:
    """A run of 2 epochs of 5 steps, stopped in epoch 2 and resumed after epoch 1 if asked."""
    events: list[ev.Event] = [started(1, steps_per_epoch=5, epochs=2)]
    seq = 1
    for global_step in range(1, 9):
        seq += 1
        events.append(progress(seq, (global_step - 1) // 5 + 1, global_step, 1.0 / global_step))
        if global_step == 5:
            seq += 1
            events.append(epoch_ended(seq, 1, 0.5))
    if resume_at is not None:
        seq += 1
        events.append(started(seq, resumed_from_epoch=resume_at, steps_per_epoch=5, epochs=2))
        for global_step in range(6, 11):
            seq += 1
            events.append(progress(seq, 2, global_step, 0.5 / global_step))
    return events


@given(st.sampled_from([None, 1]), st.lists(st.integers(min_value=1, max_value=6), max_size=8))
def test_the_step_loss_grown_piece_by_piece_is_the_one_listed_at_once(resume_at, pieces):
    events, state, curves, at = run_events(resume_at), RunState(), RunCurves(), 0
    for size in [*pieces, len(events)]:
        state.apply_all(events[at : at + size])
        at += size
        loss, accuracy = curves.update(state)
    every = [(p.global_step / 5, p.loss) for p in state.step_loss_points]
    assert loss["step loss"] == every
    assert accuracy["val"] == [(1, 0.5)] and list(loss)[:2] == ["train loss", "val loss"]


@pytest.mark.parametrize(
    ("status", "events", "words"),
    [
        ("stopped", run_events(None)[:-1], "stopped in epoch 2/2 at step 1/10"),
        ("failed", [], "failed before training started"),
        ("crashed", run_events(None)[:7], "crashed after epoch 1/2"),
        ("running", run_events(None), None),
        ("completed", run_events(None), None),
    ],
)
def test_a_run_that_ended_early_says_how_far_it_got(status, events, words):
    assert ended_words(status, RunState().apply_all(events)) == words


HOSTILE_SERIES = "hostile numbers in a chart's series: drawn, no crash"
HOSTILE = [
    ("NaN and infinite losses", [(i / 10, math.nan if i % 3 else math.inf) for i in range(50)]),
    ("every loss NaN", [(i / 10, math.nan) for i in range(500)]),
    ("zero and negative losses on a log axis", [(i / 10, -float(i % 2)) for i in range(300)]),
    ("losses near the largest float", [(i / 10, 1e308 * (i % 2)) for i in range(200)]),
    ("one point", [(0.0, 1.0)]),
    ("every x the same", [(1.0, float(i)) for i in range(300)]),
    ("subnormal losses", [(i / 10, 5e-324 if i % 2 else 1e-323) for i in range(300)]),
    ("losses from -1e308 to 1e308", [(i / 10, 1e308 * (-1) ** i) for i in range(300)]),
    ("the largest float's x", [(1.7e308 * i / 300, 1.0) for i in range(300)]),
]


@pytest.mark.parametrize(("case", "points"), HOSTILE, ids=[case for case, _ in HOSTILE])
@pytest.mark.parametrize("log_scale", [True, False])
def test_hostile_numbers_are_drawn_without_a_crash(case, points, log_scale):
    survived = False
    try:
        for width, height in ((80, 24), (12, 4)):
            view = ChartView(
                width=width,
                height=height,
                title="loss",
                percent=False,
                log_scale=log_scale,
                smoothing=0.9,
                noisy=None,
                series={"step loss": points},
                x_range=(0.0, 30.0),
            )
            lines, _ = picture(view)
            assert len(lines) == height and all(line.cell_length == width for line in lines)
        survived = True
    finally:
        record_fault(HOSTILE_SERIES, survived)


HOSTILE_X = "hostile x-range of a chart: drawn, no crash"
X_RANGES = [
    ("NaN", (math.nan, 1.0)),
    ("infinite", (0.0, math.inf)),
    ("the largest floats", (-1e308, 1e308)),
    ("up to 1e308", (0.0, 1e308)),
    ("backwards", (3.0, -3.0)),
    ("empty", (1.0, 1.0)),
]


@pytest.mark.parametrize(("case", "x_range"), X_RANGES, ids=[case for case, _ in X_RANGES])
def test_a_hostile_x_range_is_drawn_without_a_crash(case, x_range):
    survived = False
    try:
        lines, shown = picture(chart_view([(0.5, 1.0), (1.0, 0.5)], True, x_range=x_range))
        assert len(lines) == 24 and all(line.cell_length == 80 for line in lines)
        assert shown.x_ticks and all(len(label) <= LABEL_WIDTH for _, label in shown.x_ticks)
        survived = True
    finally:
        record_fault(HOSTILE_X, survived)


HOSTILE_NAMES = "hostile text in a chart's title or names: escaped, width kept"


@pytest.mark.parametrize(
    "name", ["\x1b[31mred\x1b[0m", "名前の長い実験 " * 4, "a\u202eb", "[b]markup[/b]"]
)
def test_hostile_names_are_shown_escaped_and_keep_the_chart_its_width(name):
    survived = False
    try:
        view = ChartView(
            width=40,
            height=10,
            title=name,
            percent=True,
            log_scale=False,
            smoothing=0.0,
            noisy=(),
            series={name: [(0.0, 0.5), (1.0, 0.7)], "val": [(1.0, 0.6)]},
            x_range=(0.0, 1.0),
        )
        lines, shown = picture(view)
        text = "".join(line.text for line in lines)
        assert "\x1b" not in text and "\u202e" not in text and shown.legend[0] == name
        assert len(lines) == 10 and all(line.cell_length == 40 for line in lines)
        survived = True
    finally:
        record_fault(HOSTILE_NAMES, survived)
