"""The queue and sweep screens and cross-validation from the launch form, driven by Pilot."""

import os
import re

import pytest

from engine.contract.spec import RunSpec
from resnet_tui.app.app import ResnetApp
from resnet_tui.app.dialogs import ConfirmDialog, QuitDialog
from resnet_tui.app.screens.compare import CompareScreen
from resnet_tui.app.screens.history import HistoryScreen
from resnet_tui.app.screens.queue import QueueScreen
from resnet_tui.app.screens.sweep import SweepScreen
from resnet_tui.runs.launcher import setting_of
from resnet_tui.runs.queue import RunQueue
from resnet_tui.runs.store import RunStore
from tests.app.conftest import TWO_GPUS
from tests.app.pilot import app_store, wait_for, wait_for_the_app
from tests.fake_engine import EPOCH_S_VARIABLE

SIZE = (120, 40)


@pytest.fixture
def store(tmp_path, monkeypatch):
    return app_store(tmp_path, monkeypatch)


def sweep_run(store: RunStore, name: str) -> int:
    """A run of a sweep, made as `resnet-tui sweep` or `--folds` makes it: with its setting
    (its name, less ` fold k/K` for a fold), which is kept from then on."""
    spec = RunSpec(name=name)
    fold = re.search(r" fold (\d+)/(\d+)$", name)
    if fold:
        spec.folds, spec.fold = int(fold[2]), int(fold[1]) - 1
    return store.create_run(spec, setting=setting_of(spec))


def queued(store: RunStore, names: list[str]) -> list[int]:
    """Runs queued as one sweep, as `resnet-tui sweep` makes them (none trains)."""
    ids = [sweep_run(store, name) for name in names]
    RunQueue(store).enqueue(ids)
    return ids


def queue_order(store: RunStore) -> list[int]:
    return [run.id for run in RunQueue(store).waiting()]


def shown_order(screen: QueueScreen) -> list[tuple[str, str]]:
    """(place, id) of each row of the queue screen, top to bottom."""
    table = screen.query_one("#queue")
    return [tuple(str(cell) for cell in table.get_row_at(i)[:2]) for i in range(table.row_count)]


def notices(app: ResnetApp) -> str:
    return "\n".join(notification.message for notification in app._notifications)


async def test_the_queue_screen_reorders_runs_and_follows_a_worker_taking_them(store):
    first, second, third = queued(store, ["a", "b", "c"])
    app = ResnetApp(store)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("w")
        screen = app.screen
        assert isinstance(screen, QueueScreen)
        assert shown_order(screen) == [("1", str(first)), ("2", str(second)), ("3", str(third))]
        await pilot.press("down", "down", "shift+up")
        assert queue_order(store) == [first, third, second]
        assert screen.selected_run_id() == third  # the cursor goes with the run
        assert shown_order(screen) == [("1", str(first)), ("2", str(third)), ("3", str(second))]
        await pilot.press("K")
        assert queue_order(store) == [third, first, second]
        await pilot.press("shift+up")
        assert "run 3 is first in line already" in notices(app)
        await pilot.press("down", "down", "f")
        assert queue_order(store) == [second, third, first]
        assert screen.selected_run_id() == second
        await pilot.press("shift+down")
        assert queue_order(store) == [third, second, first]

        RunQueue(store).take_next(os.getpid())  # a worker elsewhere takes the first in line
        await wait_for(pilot, lambda: len(shown_order(screen)) == 2, timeout=5)
        assert shown_order(screen) == [("1", str(second)), ("2", str(first))]
        assert "1 running" in str(screen.query_one("#queue-title").render())
        await pilot.press("enter")
        assert app.screen.run_id == second


async def test_cancelling_a_queued_run_removes_it_and_a_run_taken_meanwhile_stays(store):
    first, second = queued(store, ["a", "b"])
    folder = store.run(first).folder
    app = ResnetApp(store)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("w", "d")
        assert isinstance(app.screen, ConfirmDialog)
        await pilot.press("n")  # kept
        assert queue_order(store) == [first, second]
        await pilot.press("d", "y")
        assert store.run(first) is None and not folder.exists()
        screen = app.screen
        assert shown_order(screen) == [("1", str(second))]
        history = app.history.query_one("DataTable")
        await wait_for_the_app(pilot, lambda: str(first) not in history.rows)

        await pilot.press("d")
        assert isinstance(app.screen, ConfirmDialog)
        RunQueue(store).take_next(os.getpid())  # a worker takes it while the question is open
        await pilot.press("y")
        assert store.run(second).status == "running"  # not deleted under the worker
        assert "a worker took run 2 meanwhile (it is running)" in notices(app)
        assert shown_order(screen) == []
        assert screen.query_one("#queue-empty").display
        assert "resnet-tui worker --devices" in str(screen.query_one("#queue-empty").render())


async def test_a_sweep_shows_in_the_history_and_its_screen_gives_mean_and_spread(store):
    folds = queued(store, ["lr=0.1 fold 1/2", "lr=0.1 fold 2/2", "lr=0.01 fold 1/2"])
    for run_id, (val, test) in zip(folds, [(0.5, 0.4), (0.7, 0.6), (0.2, 0.3)], strict=True):
        store.update(
            run_id,
            status="completed",
            queue_position=None,
            best_val_acc=val,
            test_acc=test,
            seconds=60.0,
        )
    last = sweep_run(store, "lr=0.01 fold 2/2")
    store.update(last, sweep=1, status="running", pid=os.getpid())
    alone = store.create_run(RunSpec(name="not swept"))
    store.update(alone, status="completed")
    app = ResnetApp(store)
    async with app.run_test(size=SIZE) as pilot:
        table = app.screen.query_one("DataTable")
        assert [str(table.get_row(str(i))[2]) for i in (*folds, alone)] == ["1", "1", "1", ""]
        await pilot.press("S")  # on the newest run, which is in no sweep
        assert "run 5 is not part of a sweep" in notices(app)
        app.screen.query_one("#filter").value = "sweep:1"
        await pilot.pause()
        assert table.row_count == 4
        await pilot.press("S")
        screen = app.screen
        assert isinstance(screen, SweepScreen)
        settings = screen.query_one("#sweep-settings")
        rows = [[str(cell) for cell in settings.get_row_at(i)] for i in range(2)]
        assert rows[0] == ["lr=0.1", "2", "2", "60.0% ± 14.1", "50.0% ± 14.1", "1:00 ± 0:00"]
        assert rows[1] == ["lr=0.01", "2", "1", "20.0%", "30.0%", "1:00"]
        assert "4 runs: 1 running, 3 completed" in str(screen.query_one("#sweep-title").render())

        store.update(last, status="completed", best_val_acc=0.4, test_acc=0.5, seconds=120.0)
        await wait_for(pilot, lambda: str(settings.get_row_at(1)[2]) == "2", timeout=5)
        assert str(settings.get_row_at(1)[4]) == "40.0% ± 14.1"
        await pilot.press("c")
        assert isinstance(app.screen, CompareScreen)
        assert app.screen.run_ids == [*folds, last]
        await pilot.press("escape", "enter")
        assert app.screen.run_id == folds[0]


async def test_a_sweep_too_big_for_one_chart_compares_the_best_run_of_each_setting(store):
    settings, best = 11, []
    for setting in range(settings):
        ids = [sweep_run(store, f"seed={setting} fold {k}/2") for k in (1, 2)]
        for run_id, val in zip(ids, (0.5, 0.5 + (-0.1 if setting % 2 else 0.1)), strict=True):
            store.update(run_id, status="completed", sweep=1, best_val_acc=val, test_acc=0.9)
        best.append(ids[0] if setting % 2 else ids[1])
    many = [sweep_run(store, f"seed={seed}") for seed in range(21)]
    for run_id in many:
        store.update(run_id, status="completed", sweep=2, best_val_acc=0.5)
    app = ResnetApp(store)
    async with app.run_test(size=SIZE) as pilot:
        app.open_sweep(2)
        await pilot.pause()
        await pilot.press("c")
        assert isinstance(app.screen, SweepScreen)
        assert "sweep 2 has 21 settings, more than 20" in notices(app)
        await pilot.press("escape")
        app.open_sweep(1)
        await pilot.pause()
        await pilot.press("c")
        assert isinstance(app.screen, CompareScreen)
        assert app.screen.run_ids == best
        assert "the best run of each of the 11 settings" in notices(app)


async def test_the_form_takes_folds_and_several_devices_in_its_own_words(
    store, fake_devices, monkeypatch
):
    monkeypatch.setattr("resnet_tui.app.screens.launch.list_devices", lambda: TWO_GPUS)
    app = ResnetApp(store)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("n")
        form = app.screen

        async def problem(**fields: str) -> str:
            for key, value in fields.items():
                form.query_one(f"#{key}").value = value
            await pilot.pause()
            return str(form.query_one("#problem").render())

        gpus = "cuda:0,cuda:1"
        assert "Cross-val folds must be from 2 to 20" in await problem(folds="1")
        assert form.query_one("#launch").disabled
        assert "Cross-val folds trains one process a fold" in await problem(folds="5", devices=gpus)
        assert "Cross-val folds trains one process a fold" in await problem(devices="", nproc="2")
        assert "5-fold cross-validation: 5 runs queued" in await problem(nproc="")
        assert "name each GPU once" in await problem(folds="", devices="cuda:0,cuda:0")
        assert "DDP processes says 3 and Devices (DDP) names 2" in await problem(
            devices=gpus, nproc="3"
        )
        assert "DDP on cuda:0,cuda:1" in await problem(nproc="")
        assert not form.query_one("#launch").disabled


async def test_folds_launched_from_the_form_train_one_after_another_then_summarise(
    store, fake_engine, fake_devices, monkeypatch
):
    """The form queues the folds as one sweep and starts a worker of their own, detached:
    it trains them one after another whether or not the app stays open (closing it leaves
    the worker training the rest), and the sweep's screen fills in as they end."""
    monkeypatch.setenv(EPOCH_S_VARIABLE, "4")  # the folds train on while the app closes
    app = ResnetApp(store)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("n")
        for key, value in {"epochs": 1, "limit": 256, "image_size": 16, "folds": 2}.items():
            app.screen.query_one(f"#{key}").value = str(value)
        app.screen.query_one("#device").value = "cpu"
        await pilot.pause()
        await pilot.press("ctrl+l")
        await wait_for(pilot, lambda: isinstance(app.screen, SweepScreen), timeout=10)
        assert app.screen.sweep == 1
        assert [run.name for run in store.sweep_runs(1)] == [
            "resnet8 on shapes fold 1/2",
            "resnet8 on shapes fold 2/2",
        ]
        [worker] = app.started_here  # the sweep's worker, started by the form
        try:
            await wait_for(pilot, lambda: store.run(1).status == "running")
            assert store.run(2).status == "queued"  # one after another
            await pilot.press("q")
            assert isinstance(app.screen, QuitDialog)
            said = " ".join(str(label.render()) for label in app.screen.query("Label"))
            assert "1 run is still training. It goes on without the app" in said
            await pilot.click("#leave")
        except BaseException:
            worker.kill()
            raise
    try:
        await _the_worker_trains_the_rest_and_the_sweep_fills_in(RunStore(store.path), worker)
    finally:
        if worker.poll() is None:
            worker.kill()


async def _the_worker_trains_the_rest_and_the_sweep_fills_in(store: RunStore, worker) -> None:
    """After the app that launched the folds closed: its worker goes on with them, on the
    device the form gave, and a new app finds the sweep's screen filling in."""
    assert worker.poll() is None  # closing the app left the worker training the rest
    app = ResnetApp(store)
    async with app.run_test(size=SIZE) as pilot:
        app.open_sweep(1)
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, SweepScreen)
        most_at_once = 0

        def both_done() -> bool:
            nonlocal most_at_once
            runs = store.sweep_runs(1)
            most_at_once = max(most_at_once, sum(run.status == "running" for run in runs))
            return all(run.status == "completed" for run in runs)

        await wait_for(pilot, both_done)
        assert most_at_once == 1
        first, second = store.sweep_runs(1)
        assert second.started_at >= first.ended_at  # the second fold began after the first
        settings = screen.query_one("#sweep-settings")
        await wait_for(pilot, lambda: str(settings.get_row_at(0)[2]) == "2", timeout=30)
        assert " ± " in str(settings.get_row_at(0)[3])
        # the worker is done with the sweep once both folds are (the app trains nothing)
        assert worker.wait(timeout=30) == 0
        said = (store.runs_dir / "sweep-1-worker.log").read_text()
        assert "2 queued runs; running on cpu" in said
        for run in (first, second):
            assert f"run {run.id} ({run.name}) completed" in said
        await pilot.press("escape")
        assert isinstance(app.screen, HistoryScreen)


async def test_the_store_is_looked_at_between_a_screens_push_and_its_mount(store):
    """The app's once-a-second look at the store can fall between pushing the queue or
    sweep screen and its mount, before it has its tables' columns: it must wait for them."""
    queued(store, ["a", "b"])
    app = ResnetApp(store)
    async with app.run_test(size=SIZE) as pilot:
        app.action_show_queue()
        app.look_at_the_store()
        await pilot.pause()
        assert shown_order(app.screen) == [("1", "1"), ("2", "2")]
        app.open_sweep(1)
        app.look_at_the_store()
        await pilot.pause()
        assert app.screen.query_one("#sweep-runs").row_count == 2
