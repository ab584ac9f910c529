"""Comparing runs: differing settings, results side by side, smoothing; the CLI and the app."""

import json

import pytest

from engine.contract import events as ev
from engine.contract.spec import RunSpec
from resnet_tui.app.app import ResnetApp
from resnet_tui.app.screens.compare import CompareScreen
from resnet_tui.charts.scale import RunCurves
from resnet_tui.runs.compare import comparison, curve, differing_settings, smooth
from resnet_tui.runs.follower import RunFollower
from resnet_tui.runs.state import RunState
from resnet_tui.runs.store import RunStore
from tests.cli.command import invoke
from tests.runs.made_events import epoch_ended, finished, progress, started, write_log


def test_only_the_settings_that_differ_are_kept():
    specs = [{"arch": "resnet8", "lr": 0.1, "seed": 0}, {"arch": "resnet8", "lr": 0.01, "seed": 0}]
    assert differing_settings(specs) == [("lr", [0.1, 0.01])]
    assert differing_settings([specs[0], specs[0]]) == []


def test_smoothing_is_an_exponential_moving_average():
    assert smooth([1.0, 0.0, 0.0], 0.5) == [1.0, 0.5, 0.25]
    assert smooth([3.0, 1.0], 0.0) == [3.0, 1.0]


@pytest.fixture
def store_with_runs(tmp_path):
    store = RunStore(tmp_path / "runs.db")
    for lr, acc in ((0.1, 0.8), (0.01, 0.9)):
        run_id = store.create_run(RunSpec(lr=lr))
        events = [
            ev.EpochEnded(
                seq=epoch,
                t=1.0,
                epoch=epoch,
                epochs=2,
                train_loss=1 / epoch,
                train_acc=acc / 2,
                val_loss=1 / epoch,
                val_acc=acc * epoch / 2,
                lr={"weights": lr},
                seconds=1.0,
                elapsed=float(epoch),
            )
            for epoch in (1, 2)
        ]
        run = store.run(run_id)
        write_log(run.events_path, events)
        assert RunFollower(store, run).poll() == events
        store.update(run_id, status="completed", test_acc=acc)
    return store


def test_comparison_names_runs_settings_and_results(store_with_runs):
    result = comparison(store_with_runs, [1, 2])
    assert [run["id"] for run in result["runs"]] == [1, 2]
    assert result["settings"] == {"lr": [0.1, 0.01]}
    assert result["results"]["test acc"] == [0.8, 0.9]
    with pytest.raises(KeyError, match="no run 9"):
        comparison(store_with_runs, [1, 9])


def run_of_steps(store: RunStore, steps: int, end: str | None) -> tuple[int, list[ev.Event]]:
    """A run of 3 epochs of 10 steps that got to global step `steps`, then ended with `end`
    (None: it trains on), as the store has it."""
    events: list[ev.Event] = [started(1, steps_per_epoch=10, epochs=3)]
    for step in range(1, steps + 1):
        events.append(progress(len(events) + 1, (step - 1) // 10 + 1, step, 1.0 / step))
        if step % 10 == 0:
            events.append(epoch_ended(len(events) + 1, step // 10, 0.5, epochs=3))
    if end:
        events.append(finished(len(events) + 1, status=end))
    run_id = store.create_run(RunSpec(epochs=3))
    write_log(store.run(run_id).events_path, events)
    RunFollower(store, store.run(run_id)).poll()
    return run_id, events


@pytest.mark.parametrize(
    ("steps", "end", "last_epoch"),
    [(30, "completed", 3.0), (15, "stopped", 1.5), (25, None, 2.5)],
    ids=["completed", "stopped mid-epoch", "live"],
)
def test_compare_puts_each_step_at_the_epoch_the_run_screen_does(tmp_path, steps, end, last_epoch):
    store = RunStore(tmp_path / "runs.db")
    run_id, events = run_of_steps(store, steps, end)
    assert store.run(run_id).epochs_done == steps // 10
    points = curve(store, run_id, "step loss")
    assert points[-1][0] == last_epoch and points[9] == (1.0, 0.1)  # step 10 ends epoch 1
    on_run_screen = RunCurves().update(RunState().apply_all(events))[0]["step loss"]
    assert points == on_run_screen
    assert curve(store, run_id, "val acc") == [(epoch, 0.5) for epoch in range(1, steps // 10 + 1)]


def test_the_compare_command_prints_a_table_or_json(store_with_runs, tmp_path):
    shown = invoke("compare", "1", "2", "--db", str(store_with_runs.path), cwd=tmp_path)
    assert shown.returncode == 0 and "lr" in shown.stdout and "90.0%" in shown.stdout
    data = json.loads(invoke("compare", "1", "2", "--json", cwd=tmp_path).stdout)
    assert data["settings"]["lr"] == [0.1, 0.01]
    refused = invoke("compare", "1", cwd=tmp_path)
    assert refused.returncode == 2 and "at least two" in refused.stderr


async def test_mark_two_runs_and_compare_their_curves(store_with_runs):
    app = ResnetApp(store_with_runs)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("c")  # nothing marked yet: a warning, no screen
        assert not isinstance(app.screen, CompareScreen)
        await pilot.press("space", "down", "space", "c")
        assert isinstance(app.screen, CompareScreen)
        chart = app.screen.query_one("#compare-chart")
        assert sorted(chart.series) == ["1 resnet8 on shapes", "2 resnet8 on shapes"]
        assert chart.series["1 resnet8 on shapes"] == [(1, 0.4), (2, 0.8)]
        await pilot.press("m")
        assert app.screen.metric == "val loss"
        await pilot.press("g", "l", "l")  # a loss is on a log scale to begin with
        assert app.screen.smoothing and chart.log_scale
        table = app.screen.query_one("#differences")
        assert str(table.get_row_at(0)[0]) == "lr"  # cells are Text: names print as written
