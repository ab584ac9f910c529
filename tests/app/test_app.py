"""The Textual app driven by Pilot: launch a real tiny run, watch it, find it; stop, resume
and fuse runs, edit them. Where the app's and the supervisor's part is the point, the runs
train on the fake engine (tests/fake_engine.py, a recorded run replayed without torch)."""

import io
import os

import pytest
from rich.console import Console

from engine.contract.spec import RunSpec
from resnet_tui.app.app import ResnetApp
from resnet_tui.app.dialogs import FuseDialog
from resnet_tui.app.screens.history import HistoryScreen
from resnet_tui.app.screens.launch import LaunchScreen
from resnet_tui.app.screens.run import RunScreen
from resnet_tui.runs.store import RunStore
from tests.app.pilot import app_store, wait_for, wait_for_status
from tests.fake_engine import WAIT_AFTER_EPOCH_VARIABLE

TINY = {"arch": "resnet8", "width": 4, "limit": 256, "image_size": 16, "epochs": 2}
SIZE = (120, 40)


@pytest.fixture
def store(tmp_path, monkeypatch):
    return app_store(tmp_path, monkeypatch)


@pytest.mark.slow
async def test_fill_the_form_launch_watch_it_finish_and_find_it_in_the_history(store):
    # The real engine: the app's whole way from the form to a trained run (the spec it
    # writes, the engine's training and test report as the run screen shows them, the
    # devices the engine lists for the form).
    app = ResnetApp(store)
    async with app.run_test(size=SIZE) as pilot:
        assert isinstance(app.screen, HistoryScreen)
        await pilot.press("n")
        assert isinstance(app.screen, LaunchScreen)
        form = app.screen
        form.query_one("#epochs").value = "0"
        await pilot.pause()
        assert "Epochs must be a positive number" in str(form.query_one("#problem").render())
        assert form.query_one("#launch").disabled
        for key, value in {
            "epochs": "2",
            "limit": "256",
            "image_size": "16",
            "name": "tiny",
        }.items():
            form.query_one(f"#{key}").value = value
        await pilot.pause()
        assert not form.query_one("#launch").disabled
        await pilot.press("ctrl+l")
        await pilot.pause()
        assert isinstance(app.screen, RunScreen)
        run_id = app.screen.run_id
        await wait_for_status(pilot, store, run_id, "completed")
        await wait_for(
            pilot, lambda: "completed" in str(app.screen.query_one("#settings").render())
        )
        chart = app.screen.query_one("#acc-chart")
        assert [len(chart.series[s]) for s in ("train", "val")] == [2, 2]
        await pilot.press("t", "t")
        assert app.screen.query_one("TabbedContent").active == "test-tab"
        report = app.screen.query_one("#test").content
        assert "Confusion matrix" in _text(report) and "circle" in _text(report)
        await pilot.press("escape")
        assert isinstance(app.screen, HistoryScreen)
        table = app.screen.query_one("DataTable")
        assert table.row_count == 1
        assert "tiny" in table.get_row(str(run_id))[1]
        assert "completed" in table.get_row(str(run_id))[3]


async def test_the_form_starts_from_an_earlier_run_and_checks_it_as_you_type(store, fake_devices):
    app = ResnetApp(store)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("n")
        form = app.screen
        assert not form.query_one("#init-source").display
        form.query_one("#init").value = "run"
        await pilot.pause()
        assert form.query_one("#init-source").display
        form.query_one("#init-source").value = "4"
        await pilot.pause()
        assert "there is no run 4" in str(form.query_one("#problem").render())
        assert form.query_one("#launch").disabled
        form.query_one("#freeze").value = "last-2"
        form.query_one("#init").value = "scratch"
        await pilot.pause()
        assert "policy last-2 (the last K stages" in str(form.query_one("#problem").render())


async def test_a_run_name_that_looks_like_markup_is_shown_as_typed(store):
    name = "[/] sweep [b]lr=[0.1, 0.01]"
    run_id = store.create_run(RunSpec(name=name))
    app = ResnetApp(store)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        assert str(app.screen.query_one("DataTable").get_row(str(run_id))[1]) == name


async def test_a_run_that_starts_as_the_app_closes_is_left_to_run(store, tmp_path):
    """The once-a-second look at the store can come while the app is closing, its screens
    half gone (it crashed the app as it quit, found by CI); by then it does nothing."""
    run_id = store.create_run(RunSpec(name="started elsewhere"))
    app = ResnetApp(store)
    async with app.run_test(size=SIZE):
        pass
    revision, live = app.revision, dict(app.live)
    RunStore(tmp_path / "runs.db").update(run_id, status="running", pid=os.getpid())
    app.look_at_the_store()
    assert app.live == live and app.live_run_ids() == []  # nothing taken up as it closes
    assert app.revision == revision
    assert RunStore(tmp_path / "runs.db").run(run_id).status == "running"


async def test_sort_and_filter_the_history(store):
    for arch, acc in (("resnet20", 0.5), ("plain20", 0.9), ("resnet8", 0.7)):
        run_id = store.create_run(RunSpec(arch=arch))
        store.update(run_id, status="completed", test_acc=acc)
    app = ResnetApp(store)
    async with app.run_test(size=SIZE) as pilot:
        history = app.screen
        table = history.query_one("DataTable")
        assert [str(table.get_row_at(i)[0]) for i in range(3)] == ["3", "2", "1"]
        history.sort, history.descending = "test_acc", True
        history.reload()
        assert [str(table.get_row_at(i)[4]) for i in range(3)] == ["plain20", "resnet8", "resnet20"]
        await pilot.press("r")
        assert [str(table.get_row_at(i)[4]) for i in range(3)] == ["resnet20", "resnet8", "plain20"]
        await pilot.press("slash")
        await pilot.press(*"resnet")
        await pilot.pause()
        assert table.row_count == 2
        await pilot.press("escape")
        assert table.row_count == 3


async def launch_and_stop_after_an_epoch(pilot, store: RunStore, spec: RunSpec) -> int:
    """Launch `spec` from the app, stop it from its screen once an epoch is done; its id."""
    pilot.app.start_run(spec)
    await pilot.pause()
    run_id = pilot.app.screen.run_id
    await wait_for(pilot, lambda: store.run(run_id).epochs_done >= 1)
    await pilot.press("x", "y")
    await wait_for_status(pilot, store, run_id, "stopped")
    return run_id


async def test_stop_a_live_run_from_its_screen(store, fake_engine):
    spec = RunSpec.from_dict({**TINY, "epochs": 100, "limit": None})
    async with ResnetApp(store).run_test(size=SIZE) as pilot:
        run_id = await launch_and_stop_after_an_epoch(pilot, store, spec)
        # the fake's stand-in; the real engine's is checked in tests/integration/test_faults.py
        assert (store.run(run_id).folder / "checkpoints" / "last.pt").exists()


@pytest.mark.parametrize("where", ["history", "run screen"])
async def test_a_stopped_run_resumes_from_the_history_and_completes(
    store, fake_engine, monkeypatch, where
):
    monkeypatch.setenv(WAIT_AFTER_EPOCH_VARIABLE, "1")  # trains on only once resumed
    spec = RunSpec.from_dict({**TINY, "epochs": 3, "limit": None})
    app = ResnetApp(store)
    async with app.run_test(size=SIZE) as pilot:
        run_id = await launch_and_stop_after_an_epoch(pilot, store, spec)
        done = store.run(run_id).epochs_done
        assert done < 3
        screens = len(app.screen_stack)
        if where == "history":
            await pilot.press("escape")
            assert isinstance(app.screen, HistoryScreen)
        await pilot.press("u")
        await pilot.pause()
        assert isinstance(app.screen, RunScreen) and app.screen.run_id == run_id
        assert where == "history" or len(app.screen_stack) == screens  # the same screen
        await wait_for_status(pilot, store, run_id, "completed")
        chart = app.screen.query_one("#acc-chart")
        # the screen has read the run to its end, and charted it since
        await wait_for(pilot, lambda: app.screen.state.ended and not chart.dirty, timeout=30)
        val = chart.series["val"]
        assert [epoch for epoch, _ in val] == [1, 2, 3]
        assert store.run(run_id).epochs_done == 3


async def test_fuse_marked_runs_into_an_ensemble_and_choose_a_teacher_in_the_form(
    store, fake_engine, fake_devices
):
    app = ResnetApp(store)
    async with app.run_test(size=SIZE) as pilot:
        for seed in (0, 1):
            app.start_run(RunSpec.from_dict({**TINY, "seed": seed}))
            await pilot.pause()
            run = app.screen.run_id
            await wait_for_status(pilot, store, run, "completed")
            await pilot.press("escape")
        assert app.screen.selected_run_id() == 1  # the cursor stays where it was
        await pilot.press("space", "up", "space", "f")
        assert isinstance(app.screen, FuseDialog)
        assert len(app.screen.query("#wise-ft")) == 0  # WiSE-FT takes one run, not two
        await pilot.click("#ensemble")
        await pilot.pause()
        assert isinstance(app.screen, RunScreen) and app.screen.run_id == 3
        await wait_for_status(pilot, store, 3, "completed")
        await wait_for(
            pilot, lambda: "completed" in str(app.screen.query_one("#settings").render())
        )
        assert "ensemble of runs 1, 2" in str(app.screen.query_one("#settings").render())

        def log_text() -> str:
            return "\n".join(line.text for line in app.screen.query_one("RichLog").lines)

        # the store can say `completed` a moment before the log has drawn the last events
        await wait_for(pilot, lambda: "ensemble       val acc" in log_text())
        log = log_text()
        assert "ensemble       val acc" in log and "run 1          val acc" in log
        assert store.run(3).kind == "ensemble" and store.run(3).parents == (1, 2)

        await pilot.press("escape", "n")
        form = app.screen
        form.query_one("#teacher").value = "9"
        await pilot.pause()
        assert "Teachers run:9: there is no run 9" in str(form.query_one("#problem").render())
        form.query_one("#teacher").value = "3"
        await pilot.pause()
        assert "run 3 is an ensemble" in str(form.query_one("#problem").render())
        form.query_one("#teacher").value = "1,2"
        form.query_one("#kd_alpha").value = "0.5"
        await pilot.pause()
        assert "distilled from run:1, run:2 (alpha 0.5," in str(form.query_one("#problem").render())


def _text(renderable: object) -> str:
    """What a widget's renderable would print, as plain text."""
    console = Console(width=200, record=True, file=io.StringIO())
    console.print(renderable)
    return console.export_text()


async def test_rename_tag_and_note_a_run(store):
    run_id = store.create_run(RunSpec())
    store.update(run_id, status="completed")
    app = ResnetApp(store)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("e")
        dialog = app.screen
        dialog.query_one("#name").value = "baseline"
        dialog.query_one("#tags").value = "quick, shapes"
        dialog.query_one("#notes").value = "the default run"
        await pilot.click("#save")
        await pilot.pause()
        run = store.run(run_id)
        assert (run.name, run.tags, run.notes) == (
            "baseline",
            "quick, shapes",
            "the default run",
        )
        assert "baseline" in app.screen.query_one("DataTable").get_row(str(run_id))[1]


async def test_every_key_of_the_screen_is_a_palette_command(store, fake_devices):
    run_id = store.create_run(RunSpec())
    store.update(run_id, status="completed")
    app = ResnetApp(store)
    async with app.run_test(size=SIZE) as pilot:
        commands = list(app.get_system_commands(app.screen))
        titles = [command.title for command in commands]
        for title in ("New run", "Compare", "Mark", "Edit", "Delete", "Filter", "Quit"):
            assert title in titles
        assert titles.count("Save screenshot") == 1
        assert next(c.help for c in commands if c.title == "Compare") == "key: c"
        await pilot.press("ctrl+p")
        await pilot.press(*"New run")
        await pilot.pause(0.5)
        await pilot.press("enter")
        await pilot.pause(0.5)
        assert isinstance(app.screen, LaunchScreen)


async def test_ctrl_s_saves_a_screenshot_in_the_folder_the_app_started_in(store, tmp_path):
    app = ResnetApp(store)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: list(tmp_path.glob("*.svg")), timeout=10)
        [picture] = tmp_path.glob("*.svg")
        assert "<svg" in picture.read_text()
        assert any("Saved screenshot to" in str(n.message) for n in app._notifications)


async def test_live_runs_polled_before_a_run_screen_is_mounted_do_not_break_it(store):
    """The app's poll can reach a run screen that is pushed but not yet mounted."""
    run_id = store.create_run(RunSpec(name="opening"))
    app = ResnetApp(store)
    async with app.run_test() as pilot:
        screen = RunScreen(store, run_id)
        screen.show_run_tabs()  # before mounting: nothing to show yet, and no error
        await app.push_screen(screen)
        await pilot.pause()
        screen.show_run_tabs()
        assert screen.query_one("#run-tabs").display is False  # one run: no tabs to show
