"""The launch form's choices: the focused field stands out in every theme; the data root
defaults as the CLI's and a missing dataset downloads after a yes to its size; only the
devices this machine has are offered, several (DDP) only where there are several GPUs; a
policy that needs pretrained weights on scratch warns, and the run still launches."""

from pathlib import Path

import pytest
from textual.widgets import Checkbox, Input, Select

from engine.contract import locate
from engine.contract.spec import RunSpec
from resnet_tui.app.app import ResnetApp
from resnet_tui.app.dialogs import ConfirmDialog
from resnet_tui.app.screens.launch import LaunchScreen
from tests.app.conftest import TWO_GPUS
from tests.app.pilot import app_store, wait_for
from tests.app.test_launch_form import problem_of

SIZE = (140, 40)
MNIST_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)


async def open_form(pilot) -> LaunchScreen:
    await pilot.press("n")
    form = pilot.app.screen
    assert isinstance(form, LaunchScreen)
    await wait_for(pilot, lambda: form.devices is not None, 10, "the devices")
    return form


def started_runs(app: ResnetApp) -> list:
    """Record the specs the form launches instead of starting them."""
    started: list = []
    app.start_run = started.append  # type: ignore[method-assign]
    return started


@pytest.mark.parametrize("theme", ["textual-dark", "textual-light", "nord"])
async def test_the_focused_field_and_its_label_stand_out(
    tmp_path, monkeypatch, fake_devices, theme
):
    store = app_store(tmp_path, monkeypatch)
    async with ResnetApp(store).run_test(size=SIZE) as pilot:
        pilot.app.theme = theme
        form = await open_form(pilot)
        epochs, seed = form.query_one("#epochs", Input), form.query_one("#seed", Input)
        epochs.focus()
        await pilot.pause()
        assert epochs.styles.background != seed.styles.background
        assert form.query_one("#epochs-label").has_class("-focused")
        assert not form.query_one("#seed-label").has_class("-focused")
        freeze, optimizer = form.query_one("#freeze", Select), form.query_one("#optimizer", Select)
        freeze.focus()
        await pilot.pause()
        shown = freeze.query_one("SelectCurrent").styles.background
        assert shown != optimizer.query_one("SelectCurrent").styles.background
        assert form.query_one("#freeze-label").has_class("-focused")
        assert not form.query_one("#epochs-label").has_class("-focused")


async def test_data_root_and_a_download_asked_for_before_launch(
    tmp_path, monkeypatch, fake_devices
):
    store = app_store(tmp_path, monkeypatch)
    async with ResnetApp(store).run_test(size=SIZE) as pilot:
        started = started_runs(pilot.app)
        form = await open_form(pilot)
        assert not form.query_one("#data-row").display  # shapes is built in: no data root
        assert form.spec is not None and form.spec.data_root is None
        form.query_one("#dataset", Select).value = "mnist"
        await pilot.pause()
        root = form.query_one("#data_root", Input)
        assert form.query_one("#data-row").display
        assert root.value == str(locate.default_data_root()) == str(tmp_path / "data")
        assert "not downloaded (about 11 MB)" in str(form.query_one("#dataset", Select)._options)
        assert form.query_one("#launch").disabled  # not on disk, download off

        form.query_one("#download", Checkbox).value = True
        await pilot.pause()
        assert form.spec is not None and form.spec.download
        assert form.spec.data_root == str((tmp_path / "data").resolve())
        assert "mnist will be downloaded (about 11 MB)" in problem_of(form)
        await pilot.press("ctrl+l")
        await pilot.pause()
        assert isinstance(pilot.app.screen, ConfirmDialog)
        assert "about 11 MB" in pilot.app.screen.question
        await pilot.click("#no")
        await pilot.pause()
        assert pilot.app.screen is form and started == []
        await pilot.press("ctrl+l")
        await pilot.pause()
        await pilot.click("#yes")
        await pilot.pause()
        assert len(started) == 1 and started[0].download and started[0].dataset == "mnist"
        assert started[0].data_root == str((tmp_path / "data").resolve())

        # A data root that holds a copy: nothing to download, nothing to ask.
        copy = tmp_path / "copy" / "MNIST" / "raw"
        copy.mkdir(parents=True)
        for name in MNIST_FILES:
            (copy / name).write_bytes(b"")
        root.value = str(tmp_path / "copy")
        form.query_one("#download", Checkbox).value = False
        await pilot.pause()
        assert "✓" in problem_of(form) and "downloaded" not in problem_of(form)
        await pilot.press("ctrl+l")
        await pilot.pause()
        assert len(started) == 2 and started[1].data_root == str(Path(root.value).resolve())


async def test_several_devices_are_refused_with_one_and_offered_with_two_gpus(
    tmp_path, monkeypatch, fake_devices
):
    store = app_store(tmp_path, monkeypatch)
    async with ResnetApp(store).run_test(size=SIZE) as pilot:
        form = await open_form(pilot)
        device = form.query_one("#device", Select)
        assert [value for _, value in device._options] == ["auto", "cpu"]
        # No GPUs: the DDP fields are not offered (a form filled in elsewhere still checks them).
        assert not any(form.query_one(f"#{key}").display for key in ("devices", "nproc"))
        for key, value in (("devices", "cpu,cpu"), ("nproc", "2")):
            form.query_one(f"#{key}", Input).value = value
            await pilot.pause()
            said = problem_of(form)
            assert "this machine has no GPU, and several devices (DDP) need two GPUs" in said
            assert "--" not in said and form.query_one("#launch").disabled
            form.query_one(f"#{key}", Input).value = ""
        await pilot.pause()
        assert "✓" in problem_of(form)

        monkeypatch.setattr("resnet_tui.app.screens.launch.list_devices", lambda: TWO_GPUS)
        await pilot.press("escape")
        form = await open_form(pilot)
        device = form.query_one("#device", Select)
        labels = [str(label) for label, _ in device._options]
        assert any("cuda:1 · NVIDIA H100 · 78.1 of 79.6 GB free" in label for label in labels)
        assert "all 2 GPUs · several devices (DDP)" in labels
        assert all(form.query_one(f"#{key}").display for key in ("devices", "nproc"))
        device.value = "cuda:0,cuda:1"
        await pilot.pause()
        assert "DDP on cuda:0,cuda:1" in problem_of(form)
        assert form.spec is not None and form.spec.devices == ["cuda:0", "cuda:1"]
        device.value = "auto"
        form.query_one("#nproc", Input).value = "4"
        await pilot.pause()
        assert "DDP processes: 4 processes, but this machine has 2 GPUs" in problem_of(form)


async def test_policies_that_need_pretrained_weights_warn_on_scratch_and_still_launch(
    tmp_path, monkeypatch, fake_devices
):
    store = app_store(tmp_path, monkeypatch)
    async with ResnetApp(store).run_test(size=SIZE) as pilot:
        started = started_runs(pilot.app)
        form = await open_form(pilot)
        warned = form.query_one("#warnings")
        assert not warned.display
        for policy, words in (
            ("gradual", "gradual on scratch weights: the stages wait frozen"),
            ("head", "head on scratch weights: only the head trains"),
            ("last-1", "last-1 on scratch weights: the frozen stages stay random"),
            ("lp-ft", "lp-ft on scratch weights: the probe learns on random"),
        ):
            form.query_one("#freeze", Select).value = policy
            await pilot.pause()
            assert warned.display and words in str(warned.render())
            assert "✓" in problem_of(form) and not form.query_one("#launch").disabled
        assert warned.styles.color != form.query_one("#problem").styles.color
        await pilot.press("ctrl+l")
        await pilot.pause()
        assert [spec.freeze for spec in started] == ["lp-ft"]

        form = await open_form(pilot)
        form.query_one("#arch", Select).value = "resnet18"
        form.query_one("#init", Select).value = "imagenet"
        form.query_one("#freeze", Select).value = "gradual"
        await pilot.pause()
        assert "✓" in problem_of(form) and not form.query_one("#warnings").display


async def test_a_run_made_again_keeps_the_options_the_form_has_no_field_for(
    tmp_path, monkeypatch, fake_devices
):
    store = app_store(tmp_path, monkeypatch)
    earlier = RunSpec(arch="resnet8", width=4, weight_decay=0.01, epochs=3)
    async with ResnetApp(store).run_test(size=SIZE) as pilot:
        started = started_runs(pilot.app)
        await pilot.app.push_screen(LaunchScreen(earlier))
        form = pilot.app.screen
        await pilot.pause()
        assert "kept from the run it repeats: width 4, weight decay 0.01" in problem_of(form)
        await pilot.press("ctrl+l")
        await pilot.pause()
        assert [(s.width, s.weight_decay, s.epochs) for s in started] == [(4, 0.01, 3)]
