"""The launch form's Find LR (issue 27, item 1): the real engine's range test of the form's
spec in the background, the form usable meanwhile, its curve in a dialog and the suggested
rate put into the Learning rate field; Escape or leaving the form stops it, no engine left;
an invalid form and a failing engine each said in one notification."""

import os
import re

import pytest
from PIL import Image
from textual.widgets import Checkbox, Input, Select, Static

from engine.contract.spec import RunSpec
from resnet_tui.app.app import ResnetApp
from resnet_tui.app.dialogs import ConfirmDialog
from resnet_tui.app.screens.launch import LaunchScreen
from resnet_tui.app.screens.launch_lr_dialog import LrCurveDialog
from tests.app.pilot import app_store, wait_for

SIZE = (100, 30)
SUGGESTION = re.compile(r"suggested lr ([0-9.e+-]+) \(valley; steepest descent at [0-9.e+-]+\)")


@pytest.fixture
def tiny_spec(tiny_spec_options) -> RunSpec:
    """A spec whose range test takes a second or two on a CPU."""
    return RunSpec(**{**tiny_spec_options, "limit": 64, "batch_size": 16})


def text_of(screen, selector: str) -> str:
    return str(screen.query_one(selector, Static).render())


def told(app) -> list[str]:
    return [notification.message for notification in app._notifications]


def engine_gone(pid: int) -> bool:
    """Whether the process is gone (reaped, not a zombie)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


async def open_form(pilot, spec: RunSpec, steps: int) -> LaunchScreen:
    form = LaunchScreen(spec)
    form.lr_finder.steps = steps
    await pilot.app.push_screen(form)
    await pilot.pause()
    return form


async def running(pilot, form: LaunchScreen) -> int:
    """Wait until the engine reports its steps; the engine's process id."""
    stepping = re.compile(r"Find LR: step \d+ of \d+, lr [0-9.e+-]+, loss ")
    await wait_for(pilot, lambda: stepping.match(text_of(form, "#find-lr-status")), 60, "a step")
    test = form.lr_finder.test
    assert test is not None and test.job is not None and test.job.pid is not None
    return test.job.pid


async def test_find_lr_shows_the_curve_and_fills_the_learning_rate(
    tmp_path, monkeypatch, fake_devices, tiny_spec
):
    store = app_store(tmp_path, monkeypatch)
    app = ResnetApp(store)
    async with app.run_test(size=SIZE) as pilot:
        form = await open_form(pilot, tiny_spec, steps=20)
        await pilot.press("ctrl+f")
        assert form.lr_finder.running
        await pilot.press("ctrl+f")  # a second while one runs: refused
        assert any("Find LR is under way" in message for message in told(app))
        form.query_one("#epochs", Input).value = "3"  # the form answers meanwhile
        await pilot.pause()
        assert "3 epochs" in text_of(form, "#problem")
        await wait_for(pilot, lambda: isinstance(app.screen, LrCurveDialog), 60, "the curve")
        dialog = app.screen
        said = SUGGESTION.fullmatch(text_of(dialog, "#lr-curve-suggestion"))
        assert said, text_of(dialog, "#lr-curve-suggestion")
        chart = dialog.query_one("#lr-curve").render().plain.splitlines()
        assert any("lr└" in line and "1e-7" in line for line in chart)
        assert any(re.search("▲ valley|valley ▲", line) for line in chart), chart
        assert "20 steps" in text_of(dialog, "#lr-curve-title")
        await pilot.press("u")
        assert app.screen is form and not form.lr_finder.running
        assert form.query_one("#lr", Input).value == said.group(1)
        assert form.spec is not None and form.spec.lr == float(said.group(1))
        assert f"lr {float(said.group(1)):g}" in text_of(form, "#problem")
        assert not form.query_one("#find-lr-status").display


async def test_escape_stops_the_range_test_and_leaving_the_form_stops_it_too(
    tmp_path, monkeypatch, fake_devices, tiny_spec
):
    store = app_store(tmp_path, monkeypatch)
    app = ResnetApp(store)
    async with app.run_test(size=SIZE) as pilot:
        form = await open_form(pilot, tiny_spec, steps=5000)
        await pilot.press("ctrl+f")
        pid = await running(pilot, form)
        await pilot.press("escape")  # stops the test; the form stays
        assert engine_gone(pid) and not form.lr_finder.running
        assert app.screen is form and "Find LR stopped" in told(app)
        assert not form.query_one("#find-lr-status").display
        await pilot.pause(0.5)
        assert not isinstance(app.screen, LrCurveDialog)

        await pilot.press("ctrl+f")
        pid = await running(pilot, form)
        app.pop_screen()  # leaving the form
        await wait_for(pilot, lambda: engine_gone(pid), 15, "the engine to end")
        assert form.lr_finder.test is None


async def test_an_invalid_form_refuses_with_its_message(
    tmp_path, monkeypatch, fake_devices, tiny_spec
):
    store = app_store(tmp_path, monkeypatch)
    app = ResnetApp(store)
    async with app.run_test(size=SIZE) as pilot:
        form = await open_form(pilot, tiny_spec, steps=20)
        form.query_one("#lr", Input).value = "fast"
        await pilot.pause()
        problem = text_of(form, "#problem")
        assert "✗" in problem and "Learning rate" in problem
        await pilot.press("ctrl+f")
        assert told(app) == [problem] and not form.lr_finder.running
        assert [n.severity for n in app._notifications] == ["error"]


def truncated_images(root, size: int = 20):
    """An image folder of two classes whose PNGs are cut off halfway."""
    for name in ("ants", "bees"):
        (root / name).mkdir(parents=True)
        for index in range(8):
            path = root / name / f"{index}.png"
            Image.new("RGB", (size, size), (30 * index, 90, 0)).save(path)
            path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return root


def garbage_weights(tmp_path):
    weights = tmp_path / "weights [bold].pt"
    weights.write_bytes(b"not weights at all\n" * 8)
    return weights


@pytest.mark.parametrize("bad", ["weights", "images"])
async def test_an_engine_error_is_one_notification_with_the_engines_line(
    tmp_path, monkeypatch, fake_devices, tiny_spec, bad
):
    store = app_store(tmp_path, monkeypatch)
    app = ResnetApp(store)
    async with app.run_test(size=SIZE) as pilot:
        form = await open_form(pilot, tiny_spec, steps=20)
        if bad == "weights":
            path = garbage_weights(tmp_path)
            form.query_one("#init", Select).value = "file"
            form.query_one("#init-source", Input).value = str(path)
            words = "cannot be read as weights"
        else:
            path = truncated_images(tmp_path / "pets [x]")
            form.query_one("#dataset", Select).value = "imagefolder"
            form.query_one("#folder", Input).value = str(path)
            form.query_one("#image_size", Input).value = ""  # settled from the images
            words = "image file is truncated"
            await wait_for(
                pilot, lambda: "2 classes" in text_of(form, "#folder-facts"), 10, "the scan"
            )
        await pilot.pause()
        assert "✓" in text_of(form, "#problem")
        form.query_one("#find-lr").scroll_visible(animate=False)
        await pilot.pause()
        await pilot.click("#find-lr")  # the button by the field does what ctrl+f does
        test = form.lr_finder.test
        assert test is not None, told(app)
        # settled as `resnet-tui lr-find` settles it: small images train at their own size
        assert test.spec.image_size == (20 if bad == "images" else 16)
        await wait_for(pilot, lambda: not form.lr_finder.running, 60, "the engine's refusal")
        (message,) = told(app)
        assert message.startswith("Find LR: ") and words in message, message
        assert str(path) in message and "\n" not in message and "Traceback" not in message
        assert app.screen is form and not form.query_one("#find-lr-status").display


async def test_a_dataset_to_download_asks_first(tmp_path, monkeypatch, fake_devices, tiny_spec):
    store = app_store(tmp_path, monkeypatch)
    app = ResnetApp(store)
    async with app.run_test(size=SIZE) as pilot:
        form = await open_form(pilot, tiny_spec, steps=20)
        form.query_one("#dataset", Select).value = "mnist"
        form.query_one("#data_root", Input).value = str(tmp_path / "empty")
        form.query_one("#download", Checkbox).value = True
        await pilot.pause()
        await pilot.press("ctrl+f")
        assert isinstance(app.screen, ConfirmDialog)
        assert "Download it and run the range test?" in str(app.screen.question)
        await pilot.press("n")
        assert app.screen is form and not form.lr_finder.running
