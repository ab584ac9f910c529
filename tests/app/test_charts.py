"""The live charts of the run screen and compare: log scale, smoothing, percent, one x-axis,
the legend above the plot, and the final state of a run that ended early.

Runs are faked without an engine: their event logs are written here, as an engine would.
"""

import math

import pytest
from textual.widgets import ProgressBar, Static

from engine.contract import events as ev
from engine.contract.spec import RunSpec
from resnet_tui.app.app import ResnetApp
from resnet_tui.app.screens.compare import CompareScreen
from resnet_tui.app.widgets.charts import MetricChart
from resnet_tui.runs.follower import RunFollower
from resnet_tui.runs.store import RunStore
from tests.app.pilot import app_store, wait_for
from tests.conftest import record_fault
from tests.runs.made_events import epoch_ended, progress, started, write_log

STEPS = 40  # an epoch's steps
SPIKE = 9.0  # the first steps' loss


def run_log(epochs_done: int, end: str = "completed", steps_into_next: int = 0) -> list[ev.Event]:
    """A run of 10 epochs: a step loss with a spike at the start, then `end`."""
    events: list[ev.Event] = [started(1, steps_per_epoch=STEPS, epochs=10)]
    seq = 1
    for global_step in range(1, epochs_done * STEPS + steps_into_next + 1):
        seq += 1
        epoch = (global_step - 1) // STEPS + 1
        loss = SPIKE if global_step <= 3 else 0.05 + 2 / (1 + global_step / 30)
        events.append(
            ev.Progress(
                seq=seq,
                t=100.0 + seq,
                epoch=epoch,
                step=(global_step - 1) % STEPS + 1,
                steps=STEPS,
                global_step=global_step,
                loss=loss * (1.2 if global_step % 2 else 0.8),
                samples_per_s=500.0,
                lr=0.1,
            )
        )
        if global_step % STEPS == 0:
            seq += 1
            accuracy = 0.5 + 0.04 * epoch
            events.append(epoch_ended(seq, epoch, accuracy, epochs=10, train_acc=accuracy + 0.02))
    seq += 1
    events.append(
        ev.Finished(seq=seq, t=300.0, status=end, best_val_acc=0.9, test=None, seconds=90.0)
    )
    return events


@pytest.fixture
def store(tmp_path, monkeypatch) -> RunStore:
    """Run 1 completed 10 epochs, run 2 stopped in epoch 4, run 3 failed before it started."""
    opened = app_store(tmp_path, monkeypatch)
    for name, events, status, done in (
        ("done", run_log(10), "completed", 10),
        ("stopped", run_log(3, "stopped", steps_into_next=12), "stopped", 3),
        ("failed", [], "failed", 0),
    ):
        run_id = opened.create_run(RunSpec(epochs=10, name=name))
        write_log(opened.run(run_id).events_path, events)
        opened.update(run_id, status=status, epochs_done=done)
    return opened


def charts(app) -> tuple[MetricChart, MetricChart]:
    return app.screen.query_one("#loss-chart"), app.screen.query_one("#acc-chart")


async def drawn(pilot) -> None:
    """Wait until every chart in view shows its newest picture (drawn in a thread)."""
    await pilot.pause(0.1)
    await wait_for(
        pilot,
        lambda: all(
            chart.shown and not chart.drawing and not chart.dirty
            for chart in pilot.app.screen.query(MetricChart)
        ),
        timeout=10,
        what="the charts",
    )


async def open_run(pilot, run_id: int) -> None:
    pilot.app.open_run(run_id)
    await wait_for(pilot, lambda: getattr(pilot.app.screen, "run_id", None) == run_id)
    await drawn(pilot)


async def test_loss_is_on_a_log_scale_that_l_toggles_and_the_spike_is_clipped(store):
    async with ResnetApp(store).run_test(size=(120, 40)) as pilot:
        await open_run(pilot, 1)
        loss, accuracy = charts(pilot.app)
        assert loss.log_scale and loss.shown.title == "loss · log"
        low, high = loss.shown.y_range  # log10 of the losses
        assert 10**high < SPIKE  # the first steps' spike does not squash the curve
        assert 10**low < 0.3
        assert {"0.2", "0.5", "1"} <= set(loss.shown.y_ticks) <= {"0.1", "0.2", "0.5", "1", "2"}
        await pilot.press("l")
        await drawn(pilot)
        assert not loss.log_scale and loss.shown.title == "loss · linear"
        assert loss.shown.y_range[1] < SPIKE and loss.shown.y_range[0] >= 0
        await pilot.press("l")
        await drawn(pilot)
        assert loss.log_scale and loss.shown.title == "loss · log"
        assert not accuracy.log_scale and accuracy.shown.title == "accuracy"


async def test_g_cycles_the_smoothing_of_the_step_loss_and_the_title_shows_it(store):
    async with ResnetApp(store).run_test(size=(120, 40)) as pilot:
        await open_run(pilot, 1)
        loss, accuracy = charts(pilot.app)
        titles = []
        for _ in range(5):
            await pilot.press("g")
            await drawn(pilot)
            titles.append(loss.shown.title)
        assert titles == [
            "loss · log · ema 0.6",
            "loss · log · ema 0.8",
            "loss · log · ema 0.9",
            "loss · log · ema 0.95",
            "loss · log",
        ]
        assert accuracy.shown.title == "accuracy"  # epoch points: nothing to smooth


async def test_accuracy_reads_in_percent_and_both_charts_share_one_x_axis_of_epochs(store):
    async with ResnetApp(store).run_test(size=(120, 40)) as pilot:
        await open_run(pilot, 2)  # stopped 12 steps into epoch 4
        loss, accuracy = charts(pilot.app)
        assert accuracy.shown.y_ticks and all(
            label.endswith(" %") and 0 <= float(label[:-2]) <= 100
            for label in accuracy.shown.y_ticks
        )
        assert accuracy.series["val"][0] == (1, 0.54)  # the run's fractions, drawn as 54 %
        assert loss.series["step loss"][0] == (1 / STEPS, SPIKE * 1.2)  # at fractional epochs
        assert loss.shown.x_range == accuracy.shown.x_range == (0.0, 3 + 12 / STEPS)
        assert loss.shown.x_ticks == accuracy.shown.x_ticks
        assert [label for _, label in loss.shown.x_ticks] == ["0", "1", "2", "3"]


@pytest.mark.parametrize("size", [(80, 24), (160, 48)], ids=["80x24", "160x48"])
async def test_the_legend_is_a_row_of_its_own_above_the_plot(store, size):
    async with ResnetApp(store).run_test(size=size) as pilot:
        await open_run(pilot, 1)
        loss, accuracy = charts(pilot.app)
        assert loss.shown.legend == ["train loss", "val loss", "step loss"]
        rows = [line.text for line in loss.lines]
        header = rows[: next(i for i, row in enumerate(rows) if "│" in row or "┤" in row)]
        assert len(header) <= 2 and header[0].startswith(" loss · log")
        assert "━ train loss  ━ val loss  ━ step loss" in header[-1]  # all of it, at 80 columns
        assert not any(0x2800 <= ord(c) <= 0x28FF for row in header for c in row)
        plot = rows[len(header) :]
        assert not any("loss" in row for row in plot)  # nothing written over the curves


async def test_a_stopped_or_failed_run_shows_how_far_it_got_with_no_bar_pulsing(store):
    async with ResnetApp(store).run_test(size=(120, 40)) as pilot:
        for run_id, words in (
            (2, "stopped in epoch 4/10 at step 12/40"),
            (3, "failed before training started"),
        ):
            await open_run(pilot, run_id)
            screen = pilot.app.screen
            speed = screen.query_one("#speed", Static)
            await wait_for(pilot, lambda: str(speed.render()) == words, what=words)  # noqa: B023
            bars = list(screen.query(ProgressBar))
            assert len(bars) == 2 and all(bar.total is not None for bar in bars)  # none pulses
            await pilot.press("escape")
        await open_run(pilot, 2)
        epoch_bar = pilot.app.screen.query_one("#epoch-bar", ProgressBar)
        assert epoch_bar.total == 10 and math.isclose(epoch_bar.progress, 3 + 12 / STEPS)


async def test_compare_uses_the_same_chart_with_the_same_keys(store):
    for run_id in (1, 2):
        RunFollower(store, store.run(run_id)).poll()
    async with ResnetApp(store).run_test(size=(120, 40)) as pilot:
        pilot.app.compare_runs([1, 2])
        await wait_for(pilot, lambda: isinstance(pilot.app.screen, CompareScreen))
        await drawn(pilot)
        chart = pilot.app.screen.query_one("#compare-chart")
        assert type(chart) is MetricChart and chart.kind == "accuracy"
        assert all(label.endswith(" %") for label in chart.shown.y_ticks)
        await pilot.press("m")  # val loss
        await drawn(pilot)
        assert chart.kind == "loss" and chart.shown.title == "val loss · log"
        await pilot.press("g", "g")
        await drawn(pilot)
        assert chart.shown.title == "val loss · log · ema 0.8"
        await pilot.press("l")
        await drawn(pilot)
        assert chart.shown.title == "val loss · linear · ema 0.8"
        title = str(pilot.app.screen.query_one("#compare-title", Static).render())
        assert "smoothing ema 0.8" in title and "log scale off" in title


async def test_compare_puts_the_step_loss_at_the_epochs_of_the_run_screen(store):
    for run_id in (1, 2):
        RunFollower(store, store.run(run_id)).poll()
    async with ResnetApp(store).run_test(size=(120, 40)) as pilot:
        await open_run(pilot, 2)  # stopped 12 steps into epoch 4
        on_run_screen = charts(pilot.app)[0].series["step loss"]
        assert on_run_screen[-1][0] == 3 + 12 / STEPS
        await pilot.press("escape")
        pilot.app.compare_runs([1, 2])
        await wait_for(pilot, lambda: isinstance(pilot.app.screen, CompareScreen))
        while pilot.app.screen.metric != "step loss":
            await pilot.press("m")
        await drawn(pilot)
        chart = pilot.app.screen.query_one("#compare-chart")
        assert chart.series["2 stopped"] == on_run_screen
        assert chart.series["1 done"][-1][0] == 10 and chart.shown.x_range == (0.0, 10.0)


EDGE_NUMBERS = "numbers at a float's edges in a run's events: charts drawn, no crash"
EDGES = [  # (case, two steps' losses, an epoch's loss and accuracy)
    ("subnormal losses and accuracy", (5e-324, 1e-323), (1e-323, 5e-324)),
    ("the largest losses", (1.7e308, 1e308), (1.7e308, 1.0)),
    ("zero losses", (0.0, 0.0), (0.0, 1.0)),
    ("losses and accuracy flat within 1e-12", (2.303, 2.303 + 1e-12), (2.303, 0.9 + 1e-12)),
]


@pytest.mark.parametrize(("case", "losses", "epoch"), EDGES, ids=[case for case, *_ in EDGES])
async def test_a_run_of_edge_numbers_is_charted_on_both_scales(
    tmp_path, monkeypatch, case, losses, epoch
):
    survived = False
    try:
        opened = app_store(tmp_path, monkeypatch)
        loss, accuracy = epoch
        events: list[ev.Event] = [started(1, steps_per_epoch=2, epochs=2)]
        events += [progress(2, 1, 1, losses[0]), progress(3, 1, 2, losses[1])]
        events.append(
            epoch_ended(4, 1, accuracy, train_loss=loss, val_loss=loss, train_acc=accuracy)
        )
        run_id = opened.create_run(RunSpec(epochs=2, name="edge"))
        write_log(opened.run(run_id).events_path, events)
        RunFollower(opened, opened.run(run_id)).poll()
        async with ResnetApp(opened).run_test(size=(80, 24)) as pilot:
            await open_run(pilot, run_id)
            await pilot.press("l")  # the loss on a linear scale
            await drawn(pilot)
            for chart in charts(pilot.app):
                assert chart.shown.legend and all(map(math.isfinite, chart.shown.y_range))
                assert len(set(chart.shown.y_ticks)) == len(chart.shown.y_ticks)
            pilot.app.compare_runs([run_id, run_id])
            await wait_for(pilot, lambda: isinstance(pilot.app.screen, CompareScreen))
            for key in ("m", "l", "m", "m", "m"):  # each metric, the losses on both scales
                await pilot.press(key)
                await drawn(pilot)
        survived = True
    finally:
        record_fault(EDGE_NUMBERS, survived)
