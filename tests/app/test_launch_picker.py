"""Picking an earlier run in the launch form: a table of the store's runs (newest first,
filtered as you type, names shown as written) fills "init from" and adds teachers."""

from textual.widgets import Input, Select

from engine.contract.spec import RunSpec
from resnet_tui.app.app import ResnetApp
from resnet_tui.app.screens.launch import LaunchScreen
from resnet_tui.app.screens.run_picker import RunPicker
from tests.app.pilot import app_store
from tests.app.test_launch_form import problem_of

SIZE = (140, 40)
HOSTILE = "[bold red]beta[/]"


def runs_with_weights(store) -> None:
    """Three finished runs, each with a best checkpoint; the second's name is markup."""
    for name, arch, val in (
        ("alpha", "resnet8", 0.81),
        (HOSTILE, "resnet8", 0.9),
        ("gamma", "resnet20", None),
    ):
        run_id = store.create_run(RunSpec(name=name, arch=arch), status="completed")
        store.update(run_id, best_val_acc=val)
        checkpoints = store.run(run_id).folder / "checkpoints"
        checkpoints.mkdir(parents=True)
        (checkpoints / "best.pt").write_bytes(b"")


def listed(picker: RunPicker) -> list[str]:
    table = picker.query_one("#pick-runs")
    return [str(table.get_row_at(row)[0]) for row in range(table.row_count)]


async def test_the_picker_fills_init_from_and_adds_teachers(tmp_path, monkeypatch, fake_devices):
    store = app_store(tmp_path, monkeypatch)
    runs_with_weights(store)
    async with ResnetApp(store).run_test(size=SIZE) as pilot:
        await pilot.press("n")
        form = pilot.app.screen
        assert isinstance(form, LaunchScreen)

        await pilot.press("ctrl+o")  # from the architecture: the run to start from
        picker = pilot.app.screen
        assert isinstance(picker, RunPicker)
        assert listed(picker) == ["3", "2", "1"]
        table = picker.query_one("#pick-runs")
        assert [str(c.label) for c in table.columns.values()] == [
            "id",
            "name",
            "arch",
            "dataset",
            "best val",
            "status",
        ]
        assert table.get_row_at(1)[1].plain == HOSTILE  # as written, never read as markup
        assert table.get_row_at(1)[4] == "90.0%" and table.get_row_at(0)[4] == "-"
        await pilot.press(*"alpha")
        assert listed(picker) == ["1"]
        await pilot.press("enter")
        assert pilot.app.screen is form
        assert form.query_one("#init", Select).value == "run"
        assert form.query_one("#init-source", Input).value == "1"
        await pilot.pause()
        assert "weights run:1" in problem_of(form)

        form.query_one("#teacher", Input).focus()
        await pilot.press("ctrl+o", "down", "enter")  # newest first: the second row is run 2
        assert form.query_one("#teacher", Input).value == "2"
        await pilot.press("ctrl+o", "enter")
        assert form.query_one("#teacher", Input).value == "2,3"
        await pilot.press("ctrl+o", "down", "enter")  # a teacher already there is not doubled
        assert form.query_one("#teacher", Input).value == "2,3"

        await pilot.press("ctrl+o", "escape")  # escape leaves the fields as they were
        assert pilot.app.screen is form
        assert form.query_one("#teacher", Input).value == "2,3"
        assert form.query_one("#init-source", Input).value == "1"

        await pilot.click("#pick-teacher")  # the button beside the field
        assert isinstance(pilot.app.screen, RunPicker)
        await pilot.press(*"zzz")
        assert listed(pilot.app.screen) == []
        await pilot.press("enter")  # nothing to pick: the picker stays
        assert isinstance(pilot.app.screen, RunPicker)
        await pilot.press("escape")
        assert form.query_one("#teacher", Input).value == "2,3"
