"""The app while the world changes around it: runs that train on while a dialog is open, runs
started by other processes, compared runs that train, and folds that outlive the app."""

import os
import signal
import time

import pytest
from textual.widgets import DataTable, RichLog

from engine.contract.spec import RunSpec
from resnet_tui.app.app import ResnetApp
from resnet_tui.app.dialogs import EditRunDialog
from resnet_tui.app.screens.history import HistoryScreen
from resnet_tui.runs.launcher import launch, queue
from resnet_tui.runs.ownership import Owners
from resnet_tui.runs.store import RunStore
from resnet_tui.runs.sweeps import fold_specs, summary
from tests.app.pilot import app_store, stop_what_is_left, wait_for
from tests.cli.command import cli

TINY = {"arch": "resnet8", "width": 4, "limit": 256, "image_size": 16, "device": "cpu"}
SIZE = (140, 40)
DEADLINE_S = 30


@pytest.fixture
def store(tmp_path, monkeypatch):
    yield app_store(tmp_path, monkeypatch)
    stop_what_is_left(tmp_path)


async def until(pilot, condition, what: str = "the app") -> None:
    await wait_for(pilot, condition, DEADLINE_S, what)


def cell(app: ResnetApp, run_id: int, column: str) -> str:
    table = app.history.query_one(DataTable)
    if str(run_id) not in table.rows:
        return ""
    return str(table.get_cell(str(run_id), column))


def trained_epochs(store: RunStore, run_id: int) -> int:
    run = store.run(run_id)
    return run.epochs_done if run else 0


async def test_editing_a_run_while_it_trains_keeps_the_dialog_and_saves_the_name(store):
    run_id, _ = launch(store, RunSpec.from_dict({**TINY, "epochs": 1000, "name": "before"}))
    app = ResnetApp(store)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: trained_epochs(store, run_id) >= 1, what="an epoch")
        await pilot.press("e")
        await pilot.pause()
        assert isinstance(app.screen, EditRunDialog)
        epochs = trained_epochs(store, run_id)
        await until(pilot, lambda: trained_epochs(store, run_id) > epochs, what="events")
        await pilot.pause(1.0)  # the app looked at the store with the dialog up
        assert isinstance(app.screen, EditRunDialog)
        name = app.screen.query_one("#name")
        name.value = "after"
        await pilot.press("enter")
        await until(pilot, lambda: cell(app, run_id, "name") == "after", what="the new name")
        assert isinstance(app.screen, HistoryScreen)
        assert store.run(run_id).name == "after"
        await until(
            pilot,
            lambda: cell(app, run_id, "epochs_done").startswith(
                f"{trained_epochs(store, run_id)}/"
            ),
            what="the row to follow the run",
        )


async def test_a_run_started_by_another_process_shows_in_an_open_history(store, tmp_path):
    app = ResnetApp(store)
    async with app.run_test(size=SIZE) as pilot:
        flags = [f"--{key.replace('_', '-')}={value}" for key, value in TINY.items()]
        result = cli(
            "run", *flags, "--epochs", "2", "--name", "from a shell", "--detach", cwd=tmp_path
        )
        assert result.returncode == 0, result.stderr
        run_id = int(result.stdout)
        await until(pilot, lambda: cell(app, run_id, "name") == "from a shell", what="the run")
        await until(pilot, lambda: cell(app, run_id, "status") == "completed", what="its end")
        assert cell(app, run_id, "epochs_done") == "2/2"


async def test_the_comparison_follows_runs_that_train(store):
    first, _ = launch(store, RunSpec.from_dict({**TINY, "epochs": 1000, "name": "long"}))
    second, _ = launch(store, RunSpec.from_dict({**TINY, "epochs": 1000, "name": "other"}))
    app = ResnetApp(store)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: trained_epochs(store, first) >= 1, what="an epoch")
        app.compare_runs([first, second])
        await pilot.pause()
        table = app.screen.query_one("#differences", DataTable)

        def epochs_shown() -> int:
            for key in table.rows:
                cells = [str(value) for value in table.get_row(key)]
                if cells[0] == "epochs":
                    return int(cells[1]) if cells[1].isdigit() else 0
            return 0

        shown = epochs_shown()
        await until(pilot, lambda: epochs_shown() > shown, what="the table to follow")
        chart = app.screen.query_one("#compare-chart")
        await until(
            pilot,
            lambda: len(next(iter(chart.series.values()), [])) >= shown + 1,
            what="the curve to follow",
        )


def test_renaming_a_run_of_a_sweep_leaves_its_summary_as_it_was(store):
    spec = RunSpec.from_dict({**TINY, "epochs": 1, "folds": 3, "name": "base"})
    run_ids, sweep = queue(store, fold_specs(spec))
    for index, run_id in enumerate(run_ids):
        store.update(run_id, status="completed", best_val_acc=0.5 + index / 10, test_acc=0.6)
    before = summary(store.sweep_runs(sweep))
    store.edit(run_ids[0], name="my favourite fold", tags="", notes="")
    store.edit(run_ids[1], name="base fold 3/3", tags="", notes="")
    assert summary(store.sweep_runs(sweep)) == before
    assert [row["setting"] for row in before] == ["base"] and before[0]["completed"] == 3


async def test_closing_the_app_mid_cross_validation_leaves_the_folds_training(store, tmp_path):
    spec = RunSpec.from_dict({**TINY, "epochs": 1, "folds": 2, "name": "cv"})
    app = ResnetApp(store)
    async with app.run_test(size=SIZE) as pilot:
        app.start_cross_validation(spec)
        await pilot.pause()
        sweep = max(run.sweep or 0 for run in store.list_runs())
        runs = store.sweep_runs(sweep)
        assert len(runs) == 2
        await until(
            pilot,
            lambda: any(run.status == "running" for run in store.sweep_runs(sweep)),
            what="the first fold",
        )
        await pilot.press("q")
        await pilot.pause()
        await pilot.press("enter")  # "Leave running", the default
        await pilot.pause()
    assert not app.is_running
    after = RunStore(tmp_path / "runs.db")  # the app closed its own
    deadline = time.monotonic() + 180
    while not all(run.status == "completed" for run in after.sweep_runs(sweep)):
        assert time.monotonic() < deadline, [run.status for run in after.sweep_runs(sweep)]
        time.sleep(0.5)
    ends = sorted((run.started_at, run.ended_at) for run in after.sweep_runs(sweep))
    after.close()
    assert ends[0][1] <= ends[1][0]  # one after another


async def test_a_run_killed_while_its_screen_is_open_says_why_there(store):
    run_id, _ = launch(store, RunSpec.from_dict({**TINY, "epochs": 1000, "name": "doomed"}))
    app = ResnetApp(store)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: trained_epochs(store, run_id) >= 1, what="an epoch")
        app.open_run(run_id)
        await pilot.pause()
        screen = app.screen
        owners = Owners.read(store.run(run_id).folder)
        os.kill(owners.engine.pid, signal.SIGKILL)
        log = screen.query_one(RichLog)

        def said() -> str:
            return "\n".join(line.text for line in log.lines)

        await until(pilot, lambda: "crashed: the engine was killed by SIGKILL" in said())
        assert screen.sub_title == f"run {run_id} · crashed"
        speed = screen.query_one("#speed")
        await until(pilot, lambda: "left" not in str(speed.render()), what="no time left")
