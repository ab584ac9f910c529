"""The app while the world changes around it: runs that train on while a dialog is open, runs
started by other processes or by a worker, several live runs, compared runs that train, runs
left running or stopped as the app quits, and folds that outlive the app.

What is tested here is the app's and the supervisor's: every run trains on the fake engine
(tests/fake_engine.py), a recorded run replayed without torch.
"""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from textual.widgets import DataTable, RichLog

from engine.contract.spec import RunSpec
from resnet_tui.app.app import ResnetApp
from resnet_tui.app.dialogs import EditRunDialog, QuitDialog
from resnet_tui.app.screens.history import HistoryScreen
from resnet_tui.app.screens.run import RunScreen
from resnet_tui.runs.launcher import launch, queue, start_queued
from resnet_tui.runs.ownership import Owners, ProcessName, process_alive
from resnet_tui.runs.queue import RunQueue
from resnet_tui.runs.store import RunStore
from resnet_tui.runs.sweeps import fold_specs, summary
from tests.app.pilot import (
    app_store,
    stop_what_is_left,
    wait_for,
    wait_for_status,
    wait_for_the_app,
)
from tests.cli.command import cli
from tests.event_log import logged
from tests.fake_engine import EPOCH_S_VARIABLE

TINY = {"arch": "resnet8", "width": 4, "limit": 256, "image_size": 16, "device": "cpu"}
SIZE = (140, 40)
DEADLINE_S = 30


@pytest.fixture
def store(tmp_path, monkeypatch, fake_engine):
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


async def test_several_live_runs_are_tabs_and_show_their_device_load(store):
    spec = RunSpec.from_dict({**TINY, "epochs": 1000})
    app = ResnetApp(store)
    async with app.run_test(size=SIZE) as pilot:
        first, first_process = launch(store, spec)  # started outside the app
        app.start_run(spec)
        await pilot.pause()
        second = app.screen.run_id
        await wait_for_the_app(pilot, lambda: app.screen.tab_run_ids == [first, second])
        assert app.screen.query_one("#run-tabs").display
        await wait_for(pilot, lambda: "CPU" in str(app.screen.query_one("#load").content))
        assert "engine" in str(app.screen.query_one("#load").content)
        await pilot.press("right_square_bracket")
        await pilot.pause()
        assert isinstance(app.screen, RunScreen) and app.screen.run_id == first
        assert f"[reverse] {first} " in str(app.screen.query_one("#run-tabs").content)
        for run_id in (first, second):
            os.kill(store.run(run_id).pid, signal.SIGTERM)  # its supervisor stops it
        await wait_for_the_app(pilot, lambda: not app.live_run_ids())
        await wait_for_the_app(
            pilot, lambda: "●" not in str(app.screen.query_one("#run-tabs").content)
        )
    first_process.wait(timeout=60)


def _start_detached(tmp_path: Path, epochs: int) -> int:
    env = {**os.environ, "RESNET_TUI_DATA": str(tmp_path / "data")}
    args = ["--arch", "resnet8", "--width", "4", "--image-size", "16", "--device", "cpu"]
    result = subprocess.run(
        [sys.executable, "-m", "resnet_tui", "run", *args, "--epochs", str(epochs), "--detach"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=True,
        stdin=subprocess.DEVNULL,
    )
    return int(result.stdout)


async def test_a_run_started_detached_before_the_app_opened_shows_up_live(
    store, tmp_path, monkeypatch
):
    monkeypatch.setenv(EPOCH_S_VARIABLE, "3")  # still training when the app opens
    run_id = _start_detached(tmp_path, epochs=2)
    app = ResnetApp(store)
    async with app.run_test(size=SIZE) as pilot:
        assert run_id in app.live_run_ids()
        await pilot.press("enter")
        assert isinstance(app.screen, RunScreen) and app.screen.run_id == run_id
        await wait_for_status(pilot, store, run_id, "completed")
        await wait_for(
            pilot,
            lambda: len(app.screen.query_one("#acc-chart").series.get("val", [])) == 2,
            timeout=30,
        )


async def test_queued_runs_wait_and_a_run_a_worker_starts_shows_up_live(store, monkeypatch):
    monkeypatch.setenv(EPOCH_S_VARIABLE, "3")  # training long enough to be seen live
    first, second = (
        store.create_run(RunSpec.from_dict({**TINY, "epochs": 2, "seed": seed})) for seed in (0, 1)
    )
    run_queue = RunQueue(store)
    run_queue.enqueue([first, second])
    app = ResnetApp(store)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause(1.5)  # several looks at the store
        assert store.run(first).status == "queued"  # waiting, not taken for dead
        assert first not in app.live_run_ids()
        run = run_queue.take_next(os.getpid())  # what `resnet-tui worker` does
        supervisor = start_queued(store, run, "cpu")
        table = app.history.query_one("DataTable")
        await wait_for(pilot, lambda: first in app.live_run_ids(), timeout=30)
        await wait_for_status(pilot, store, first, "completed")
        await wait_for(pilot, lambda: "completed" in str(table.get_row(str(first))[3]), timeout=30)
        await pilot.pause()
        # the column grew from "queued" to hold "completed", not cut to "comple"
        assert table.columns["status"].content_width >= len("completed")
        assert [r.id for r in run_queue.waiting()] == [second]
    assert supervisor.wait(timeout=60) == 0


def engine_of(folder: Path, timeout: float = 30) -> ProcessName:
    """The engine a run's supervisor started, once it names one."""
    deadline = time.monotonic() + timeout
    while (owners := Owners.read(folder)) is None or owners.engine is None:
        assert time.monotonic() < deadline, "the supervisor named no engine"
        time.sleep(0.1)
    return owners.engine


@pytest.mark.parametrize("choice", ["leave", "stop"])
async def test_quit_with_a_live_run_leaves_it_running_or_stops_it(store, choice):
    spec = RunSpec.from_dict({**TINY, "epochs": 100, "limit": None})
    app = ResnetApp(store)
    async with app.run_test(size=SIZE) as pilot:
        run_id, process = launch(store, spec)  # its supervisor, whose pid the run has
        pid, folder = store.run(run_id).pid, store.run(run_id).folder
        assert pid == process.pid
        await wait_for_the_app(pilot, lambda: run_id in app.live_run_ids())
        await pilot.press("q")
        assert isinstance(app.screen, QuitDialog)
        await pilot.click(f"#{choice}")
    if choice == "leave":
        time.sleep(1)
        assert process.poll() is None and process_alive(pid)
        assert engine_of(folder).alive()
        os.kill(pid, signal.SIGTERM)
    process.wait(timeout=120)
    reopened = RunStore(store.path)  # the app closed its store as it quit
    assert reopened.run(run_id).status == "stopped"  # as the supervisor recorded it
    assert logged(reopened.run(run_id).events_path)[-1]["status"] == "stopped"


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


async def test_closing_the_app_mid_cross_validation_leaves_the_folds_training(
    store, tmp_path, monkeypatch
):
    monkeypatch.setenv(EPOCH_S_VARIABLE, "3")  # a fold trains long enough to be seen running
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
